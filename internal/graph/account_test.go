package graph

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
)

const otherAcct = "17841499999999999"

// Calls for one account are spaced by its own budget (AccountRate, bursts
// of AccountBurst); another account's calls never wait for it.
func TestEachAccountHasItsOwnRate(t *testing.T) {
	e := newEnv(t, serveFile(t, 200, "me.json"), func(c *Config) { c.AccountRate, c.AccountBurst = 1, 2 })
	ctx := context.Background()
	for range 5 {
		if _, err := e.c.Me(ctx, testAcct, testToken); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.sl.durations(), []time.Duration{time.Second, time.Second, time.Second}; !slices.Equal(got, want) {
		t.Fatalf("waits for five calls of one account = %v, want %v (a burst of 2, then 1/s)", got, want)
	}
	for range 2 {
		if _, err := e.c.Me(ctx, otherAcct, testToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.sl.durations()); n != 3 {
		t.Errorf("another account's calls waited: %v", e.sl.durations())
	}
	if got := testutil.ToFloat64(e.c.metrics.waited.WithLabelValues("account")); got != 3 {
		t.Errorf("feedd_graph_wait_seconds_total{scope=account} = %v, want 3", got)
	}
}

// The account's rate follows its usage header: full up to half the
// high-water mark, slower above, and back to full when usage falls.
func TestAccountRateFollowsItsUsageHeader(t *testing.T) {
	var pct atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, fixture(t, "me.json", ""), "X-Business-Use-Case-Usage", bucHeader(testAcct, int(pct.Load()), 0))
	}, func(c *Config) { c.AccountRate, c.AccountBurst = 1, 1 })
	ctx := context.Background()
	waitAfter := func(usage int32) time.Duration {
		t.Helper()
		pct.Store(usage)
		if _, err := e.c.Me(ctx, testAcct, testToken); err != nil {
			t.Fatal(err)
		}
		before := len(e.sl.durations())
		if _, err := e.c.Me(ctx, testAcct, testToken); err != nil {
			t.Fatal(err)
		}
		ds := e.sl.durations()[before:]
		if len(ds) != 1 {
			t.Fatalf("waits %v, want one", ds)
		}
		e.clock.Advance(time.Hour) // a full bucket for the next case
		return ds[0]
	}
	for _, c := range []struct {
		usage int32
		want  time.Duration
	}{
		{30, time.Second},             // below half of 90: 1/s
		{72, 2500 * time.Millisecond}, // (90-72)/45 = 0.4 of the rate
		{89, 10 * time.Second},        // never slower than a tenth
		{20, time.Second},             // usage fell: full rate again
		{67, secs(45.0 / 23)},         // (90-67)/45
		{45, time.Second},             // exactly half: full rate
		{60, secs(45.0 / 30)},         // (90-60)/45
	} {
		if got := waitAfter(c.usage); got.Round(time.Millisecond) != c.want.Round(time.Millisecond) {
			t.Errorf("usage %d%%: second call waited %v, want %v", c.usage, got, c.want)
		}
	}
	if _, err := e.c.Me(ctx, otherAcct, testToken); err != nil || len(e.sl.durations()) != 7 {
		t.Errorf("another account paced by this one's usage: %v, waits %v", err, e.sl.durations())
	}
}

// A wait longer than the caller's deadline is not waited out: the call
// fails at once as throttled, saying how long, and nothing is sent.
func TestAccountWaitBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	e := newEnv(t, serveFile(t, 200, "me.json"), func(c *Config) { c.AccountRate, c.AccountBurst = 1.0/60, 1 })
	if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.c.Me(ctx, testAcct, testToken)
	if !errors.Is(err, ErrThrottled) || RetryAfter(err) != time.Minute {
		t.Fatalf("err = %v (retry after %v), want throttled for a minute", err, RetryAfter(err))
	}
	if e.f.count() != 1 || len(e.sl.durations()) != 0 {
		t.Errorf("%d calls, waits %v; want 1 call and no wait", e.f.count(), e.sl.durations())
	}
	// The refused call did not spend the account's budget.
	e.clock.Advance(time.Minute)
	if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil || len(e.sl.durations()) != 0 {
		t.Errorf("after a minute: %v, waits %v; want an immediate call", err, e.sl.durations())
	}
}

// The app-wide ceiling (FEEDD_GRAPH_RATE) still holds on top of the
// accounts' own budgets.
func TestAppCeilingHoldsAcrossAccounts(t *testing.T) {
	lim := rate.NewLimiter(0.5, 1)
	e := newEnv(t, serveFile(t, 200, "me.json"), func(c *Config) { c.Limiter = lim; c.AccountRate = 100 })
	for _, a := range []string{testAcct, otherAcct, "17841488888888888"} {
		if _, err := e.c.Me(context.Background(), a, testToken); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.sl.durations(), []time.Duration{2 * time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// Budgets of accounts that stopped calling are forgotten, so the client's
// memory follows the accounts in use.
func TestIdleAccountBudgetsAreForgotten(t *testing.T) {
	e := newEnv(t, serveFile(t, 200, "me.json"))
	for i := range 500 {
		if _, err := e.c.Me(context.Background(), "1784100000000"+itoa(1000+i), testToken); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(acctIdle + acctSweepEvery)
	if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil {
		t.Fatal(err)
	}
	e.c.mu.Lock()
	n := len(e.c.accounts)
	e.c.mu.Unlock()
	if n != 1 {
		t.Errorf("%d account budgets kept, want 1", n)
	}
}
