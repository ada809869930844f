package cluster

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	tu "github.com/feedd/feedd/internal/testutil"
)

// renewals wraps the real store: it counts renewals and can make them fail
// (the database unreachable from this instance).
type renewals struct {
	*store.Store
	n    atomic.Int32
	fail atomic.Bool
}

var errUnreachable = errors.New("database unreachable")

func (r *renewals) RenewLease(ctx context.Context, kind model.LeaseKind, feedID, holder string, until time.Time) (bool, error) {
	if r.fail.Load() {
		return false, errUnreachable
	}
	defer r.n.Add(1)
	return r.Store.RenewLease(ctx, kind, feedID, holder, until)
}

type claimEnv struct {
	st    *renewals
	clock *tu.Clock
	feed  model.Feed
}

// newClaimEnv opens a store with one connected feed.
func newClaimEnv(t *testing.T) *claimEnv {
	t.Helper()
	ctx := context.Background()
	clock := tu.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	box, err := secret.New(bytes.Repeat([]byte{1}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "feedd.db"), box, store.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := st.CreateFeed(ctx, "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Connect(ctx, f.ID, f.Generation, model.Account{AppUserID: "a1", IGUserID: "1", Username: "u"},
		model.Token{AccessToken: "IGAAtoken", TokenInfo: model.TokenInfo{ObtainedAt: clock.Now(), ExpiresAt: clock.Now().AddDate(0, 2, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if f, err = st.Feed(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	return &claimEnv{st: &renewals{Store: st}, clock: clock, feed: f}
}

func (e *claimEnv) claims(t *testing.T, instance string) *Claims {
	t.Helper()
	c, err := NewClaims(ClaimsOptions{Store: e.st, Instance: instance, TTL: 30 * time.Second, RenewEvery: 5 * time.Millisecond, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	waitFor(t, 5*time.Second, what, ok)
}

// Work that runs longer than the lease keeps its claim by renewing it;
// its release frees the work at once.
func TestLongWorkKeepsItsClaim(t *testing.T) {
	e := newClaimEnv(t)
	a, b := e.claims(t, "a"), e.claims(t, "b")
	ctx, release, ok, err := a.Poll(context.Background(), e.feed.ID, e.feed.NextFetchAt, false)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	for range 3 { // 60 s of work with a 30 s lease
		e.clock.Advance(20 * time.Second)
		n := e.st.n.Load()
		waitUntil(t, "a renewal", func() bool { return e.st.n.Load() > n })
	}
	e.clock.Advance(25 * time.Second)
	if _, _, ok, _ := b.Poll(context.Background(), e.feed.ID, e.feed.NextFetchAt, false); ok {
		t.Fatal("another instance took work whose claim was renewed")
	}
	if ctx.Err() != nil {
		t.Fatalf("work cancelled while its claim held: %v", context.Cause(ctx))
	}
	release()
	if ctx.Err() == nil {
		t.Error("the work's context outlives its release")
	}
	_, release2, ok, err := b.Poll(context.Background(), e.feed.ID, e.feed.NextFetchAt, false)
	if err != nil || !ok {
		t.Fatalf("claim after release: %v %v", ok, err)
	}
	release2()
	if got := testutil.ToFloat64(b.count.WithLabelValues("poll", "refused")); got != 1 {
		t.Errorf("refused claims counted %v, want 1", got)
	}
}

// An instance that cannot renew its claim before it lapses, or finds it
// taken over, stops its work: another instance may be doing it now.
func TestLostClaimStopsTheWork(t *testing.T) {
	for _, tc := range []struct {
		name    string
		between func(e *claimEnv, b *Claims)
	}{
		{"database unreachable until the lease lapsed", func(*claimEnv, *Claims) {}},
		{"taken over after it lapsed", func(e *claimEnv, b *Claims) {
			if _, _, ok, err := b.Refresh(context.Background(), e.feed.ID, *e.feed.Token); err != nil || !ok {
				panic("the lapsed claim could not be taken over")
			}
			e.st.fail.Store(false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newClaimEnv(t)
			a, b := e.claims(t, "a"), e.claims(t, "b")
			ctx, release, ok, err := a.Refresh(context.Background(), e.feed.ID, *e.feed.Token)
			if err != nil || !ok {
				t.Fatalf("claim: %v %v", ok, err)
			}
			defer release()
			e.st.fail.Store(true)
			e.clock.Advance(31 * time.Second)
			tc.between(e, b)
			waitUntil(t, "the work cancelled", func() bool { return ctx.Err() != nil })
			if !errors.Is(context.Cause(ctx), ErrLeaseLost) {
				t.Errorf("cause %v, want ErrLeaseLost", context.Cause(ctx))
			}
			if got := testutil.ToFloat64(a.count.WithLabelValues("refresh", "lost")); got != 1 {
				t.Errorf("lost claims counted %v, want 1", got)
			}
		})
	}
}

// A renewal that fails while the claim still holds is tried again.
func TestRenewalFailureWithinTheLeaseIsRetried(t *testing.T) {
	e := newClaimEnv(t)
	a := e.claims(t, "a")
	ctx, release, ok, err := a.Poll(context.Background(), e.feed.ID, time.Time{}, true)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	defer release()
	e.st.fail.Store(true)
	e.clock.Advance(10 * time.Second)
	time.Sleep(50 * time.Millisecond) // ten failed renewals
	e.st.fail.Store(false)
	n := e.st.n.Load()
	waitUntil(t, "a renewal", func() bool { return e.st.n.Load() > n })
	if ctx.Err() != nil {
		t.Fatalf("work cancelled after renewals failed within the lease: %v", context.Cause(ctx))
	}
}
