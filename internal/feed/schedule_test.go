package feed

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// pollDue runs one round of the poller and waits for the polls it started.
func (s *Service) pollDue(ctx context.Context) {
	s.pollRound(ctx)
	s.polling.Wait()
}

// heldGraph holds the Media calls of one account until release is closed,
// as an account whose Instagram answers slowly would; the others pass.
type heldGraph struct {
	Graph
	acct    string
	release chan struct{}
	held    atomic.Int32 // Media calls of acct waiting now
	maxHeld atomic.Int32
}

func (g *heldGraph) Media(ctx context.Context, acct, token string, n int) ([]graph.Media, error) {
	if acct == g.acct {
		h := g.held.Add(1)
		for m := g.maxHeld.Load(); h > m && !g.maxHeld.CompareAndSwap(m, h); m = g.maxHeld.Load() {
		}
		defer g.held.Add(-1)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Graph.Media(ctx, acct, token, n)
}

// addFeeds creates n viewed feeds connected to account.
func (e *env) addFeeds(n int, account string) []string {
	e.t.Helper()
	ctx := context.Background()
	var ids []string
	for range n {
		f, err := e.st.CreateFeed(ctx, "more", nil)
		if err != nil {
			e.t.Fatal(err)
		}
		e.connect(f.ID, account)
		if err := e.st.MarkViewed(ctx, f.ID, e.clock.Now()); err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	return ids
}

func (e *env) fetched(ids []string) int {
	e.t.Helper()
	n := 0
	for _, id := range ids {
		f, err := e.st.Feed(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if !f.FetchedAt.IsZero() {
			n++
		}
	}
	return n
}

// An account whose Instagram answers slowly holds at most PollsPerAccount
// polls; the other accounts' feeds are polled meanwhile, even though the
// slow account's feeds came due first.
func TestSlowAccountDoesNotHoldUpTheOthers(t *testing.T) {
	hg := &heldGraph{release: make(chan struct{})}
	fx := newEnv(t, envOptions{
		account: sandbox.AccountBusiness,
		graph:   func(g Graph) Graph { hg.Graph = g; return hg },
		options: func(o *Options) { o.PollWorkers, o.PollsPerAccount = 4, 2 },
	})
	slow, _ := fx.sb.Account(sandbox.AccountBusiness)
	hg.acct = slow.UserID
	slowIDs := append([]string{fx.id}, fx.addFeeds(3, sandbox.AccountBusiness)...)
	fx.clock.Add(10 * time.Second)
	others := fx.addFeeds(3, sandbox.AccountCreator)
	fx.clock.Add(10 * time.Second)

	fx.svc.pollRound(context.Background())
	eventually(t, "the other account's feeds polled while the slow one hangs", func() bool { return fx.fetched(others) == len(others) })
	if n := fx.fetched(slowIDs); n != 0 {
		t.Errorf("%d of the slow account's feeds polled before its answers came", n)
	}
	if m := hg.maxHeld.Load(); m != 2 {
		t.Errorf("%d polls of the slow account at once, want PollsPerAccount (2)", m)
	}
	close(hg.release)
	fx.svc.polling.Wait()
	if n := fx.fetched(slowIDs); n != len(slowIDs) {
		t.Errorf("%d of %d slow feeds polled after their answers came", n, len(slowIDs))
	}
}

// seededJitter is a uniform jitter that tests can reproduce.
func seededJitter(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// Feeds that missed their poll by a lot (the server was stopped for two
// hours) are not all polled at once when it starts: their polls are spread
// over half the interval.
func TestLateFeedsArePolledSpreadOut(t *testing.T) {
	fx := newEnv(t, envOptions{options: func(o *Options) {
		o.FetchInterval = time.Hour
		o.Jitter = seededJitter(3)
	}})
	ids := append([]string{fx.id}, fx.addFeeds(39, sandbox.AccountCreator)...)
	fx.clock.Add(2 * time.Hour)
	ctx := context.Background()
	var got []int
	for range 4 {
		fx.svc.pollDue(ctx)
		got = append(got, fx.fetched(ids))
		fx.clock.Add(10 * time.Minute)
	}
	// Spread uniformly over 30 minutes: about a third more every 10.
	if got[0] > 6 || got[1] < 8 || got[1] > 22 || got[2] < 20 || got[2] > 34 || got[3] != len(ids) {
		t.Errorf("feeds polled after 0, 10, 20, 30 minutes: %v of %d; want about 0, 13, 27, all", got, len(ids))
	}
	if n := fx.calls(sandbox.EndpointMedia); n != len(ids) {
		t.Errorf("%d media calls for %d feeds", n, len(ids))
	}
}

// After an app-wide block the feeds it stopped do not all come back at the
// block's end: their next polls are spread after it.
func TestPollsAfterABlockAreSpreadOut(t *testing.T) {
	fx := newEnv(t, envOptions{options: func(o *Options) { o.Jitter = seededJitter(5) }})
	ids := append([]string{fx.id}, fx.addFeeds(19, sandbox.AccountCreator)...)
	fx.sb.ThrottleApp(40 * time.Minute)
	ctx := context.Background()
	fx.svc.pollDue(ctx)
	end := fx.clock.Now().Add(40 * time.Minute)
	seen := map[time.Time]bool{}
	for _, id := range ids {
		f, err := fx.st.Feed(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if f.LastFetchOK || f.NextFetchAt.Before(end) || f.NextFetchAt.After(end.Add(fx.svc.opts.FetchInterval/2)) {
			t.Fatalf("feed %s: ok %v, next poll %v after the block's end, want within half an interval after it", id, f.LastFetchOK, f.NextFetchAt.Sub(end))
		}
		seen[f.NextFetchAt] = true
	}
	if len(seen) < len(ids)*3/4 {
		t.Errorf("%d distinct next poll times for %d feeds", len(seen), len(ids))
	}
	if f := fx.feed(); f.Status != model.StatusActive {
		t.Errorf("status %s", f.Status)
	}
}

// Feeds are late by up to a round of the poller in the normal run of
// things; however many come due in one round, that is not a herd to spread.
func TestFeedsDueWithinARoundAreNotDeferred(t *testing.T) {
	fx := newEnv(t, envOptions{options: func(o *Options) {
		o.FetchInterval, o.PollEvery = 10*time.Second, 10*time.Second
		o.Jitter = seededJitter(7)
	}})
	ids := append([]string{fx.id}, fx.addFeeds(19, sandbox.AccountCreator)...)
	fx.clock.Add(9 * time.Second) // every feed came due since the last round
	fx.svc.pollDue(context.Background())
	if n := fx.fetched(ids); n != len(ids) {
		t.Errorf("%d of %d feeds due within the last round polled, want all", n, len(ids))
	}
}
