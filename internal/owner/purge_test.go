package owner

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/testutil"
)

// purgeStore is the real store telling the test about each purge.
type purgeStore struct {
	*store.Store
	purged chan time.Time
}

func (p *purgeStore) PurgeExpired(ctx context.Context, before time.Time) (int64, error) {
	n, err := p.Store.PurgeExpired(ctx, before)
	p.purged <- before
	return n, err
}

// Expired sessions, setup links and OAuth states are deleted a day after
// they expire (so a late callback still learns its state expired); live
// ones stay.
func TestPurgeDeletesExpiredCredentials(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	st := testenv.Store(t, clock.Now)
	ctx := context.Background()
	now := clock.Now()
	feed, err := st.CreateFeed(ctx, "Shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	type cred struct {
		name    string
		h       []byte
		expires time.Time
		kept    bool
	}
	creds := []cred{
		{"long expired", key(1), now.Add(-48 * time.Hour), false},
		{"just expired", key(2), now.Add(-time.Hour), true},
		{"live", key(3), now.Add(time.Hour), true},
	}
	for _, c := range creds {
		if err := st.CreateSession(ctx, model.Session{IDHash: c.h, CSRF: "x", CreatedAt: c.expires.Add(-time.Hour), ExpiresAt: c.expires}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateSetupLink(ctx, c.h, c.expires); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateState(ctx, model.OAuthState{Hash: c.h, FeedID: feed.ID, CreatedAt: c.expires.Add(-time.Hour), ExpiresAt: c.expires}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := NewGate(GateOptions{Store: st, PublicURL: mustURL(t, "http://feedd.test"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	// Asked as of before they expired, a row answers exactly when it is still stored.
	for _, c := range creds {
		past := c.expires.Add(-time.Minute)
		_, err := st.Session(ctx, c.h, past)
		if kept := err == nil; kept != c.kept {
			t.Errorf("%s session: kept %v (%v)", c.name, kept, err)
		}
		err = st.ConsumeSetupLink(ctx, c.h, past)
		if kept := err == nil; kept != c.kept {
			t.Errorf("%s setup link: kept %v (%v)", c.name, kept, err)
		}
		_, err = st.ConsumeState(ctx, c.h, past)
		if kept := !errors.Is(err, model.ErrStateNotFound); kept != c.kept {
			t.Errorf("%s OAuth state: kept %v (%v)", c.name, kept, err)
		}
	}
}

// Run purges at once and then on every tick, and stops when its context ends.
func TestPurgeLoopRunsOnEveryTickAndStopsOnCancel(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	ps := &purgeStore{Store: testenv.Store(t, clock.Now), purged: make(chan time.Time)}
	g, err := NewGate(GateOptions{Store: ps, PublicURL: mustURL(t, "http://feedd.test"), Now: clock.Now, PurgeEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	for i := range 3 {
		select {
		case before := <-ps.purged:
			if want := clock.Now().Add(-purgeGrace); !before.Equal(want) {
				t.Errorf("purge %d deletes what expired before %v, want %v", i, before, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("purge %d did not happen", i)
		}
	}
	cancel()
	for {
		select {
		case <-ps.purged: // a tick that raced the cancel
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop")
		}
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
