package graph

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
)

func bucHeader(id string, pct, regainMin int) string {
	return `{"` + id + `":[{"type":"instagram","call_count":` + itoa(pct) + `,"total_cputime":3,"total_time":8,"estimated_time_to_regain_access":` + itoa(regainMin) + `}]}`
}

func TestThrottleErrorStopsNetworkCalls(t *testing.T) {
	e := newEnv(t, serveFile(t, 400, "error_graph_buc_limit.json",
		"X-Business-Use-Case-Usage", bucHeader(testAcct, 100, 17)))
	ctx := context.Background()

	_, err := e.c.Me(ctx, testAcct, testToken)
	var ge *Error
	if !errors.As(err, &ge) || !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v, want throttled", err)
	}
	if ge.RetryAfter != 17*time.Minute {
		t.Errorf("RetryAfter = %v, want the 17 min the header promised", ge.RetryAfter)
	}
	if got := e.c.BlockedUntil(testAcct); !got.Equal(epoch.Add(17 * time.Minute)) {
		t.Errorf("BlockedUntil = %v", got)
	}
	if e.f.count() != 1 || len(e.sl.durations()) != 0 {
		t.Fatalf("a throttle error must not be retried: %d calls, sleeps %v", e.f.count(), e.sl.durations())
	}

	// While blocked: no network call, for every endpoint of this account.
	for range 3 {
		if _, err := e.c.Media(ctx, testAcct, testToken, 5); !errors.Is(err, ErrThrottled) || RetryAfter(err) <= 0 {
			t.Errorf("blocked call: err = %v", err)
		}
		if _, err := e.c.Refresh(ctx, testAcct, testToken); !errors.Is(err, ErrThrottled) {
			t.Errorf("blocked refresh: err = %v", err)
		}
	}
	if e.f.count() != 1 {
		t.Fatalf("server saw %d calls while the account was blocked, want 1", e.f.count())
	}
	if got := testutil.ToFloat64(e.c.metrics.calls.WithLabelValues("media", "blocked")); got != 3 {
		t.Errorf("blocked media calls metric = %v, want 3", got)
	}
	// Another account is not blocked by this one's limit.
	if !e.c.BlockedUntil("17841499999999999").IsZero() {
		t.Errorf("another account is blocked too")
	}
	// After the regain time, calls go out again.
	e.clock.Advance(17*time.Minute + time.Second)
	_, _ = e.c.Me(ctx, testAcct, testToken)
	if e.f.count() != 2 {
		t.Errorf("after the block expired: %d calls, want 2", e.f.count())
	}
}

func TestAppLimitBlocksEveryAccount(t *testing.T) {
	e := newEnv(t, serveFile(t, 400, "error_graph_app_limit.json"))
	_, err := e.c.Me(context.Background(), testAcct, testToken)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v", err)
	}
	for _, acct := range []string{testAcct, "17841499999999999", ""} {
		if e.c.BlockedUntil(acct).IsZero() {
			t.Errorf("code 4 is app-wide, but %q is not blocked", acct)
		}
	}
	if _, err := e.c.ExchangeLongLived(context.Background(), "IGAAshortTOKENflat123"); !errors.Is(err, ErrThrottled) {
		t.Errorf("exchange during an app block: %v", err)
	}
	if e.f.count() != 1 {
		t.Errorf("%d calls, want 1", e.f.count())
	}
}

func TestThrottleBackoffGrowsAndIsCapped(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 400, []byte(`{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17}}`))
	})
	var waits []time.Duration
	for range 9 {
		_, err := e.c.Me(context.Background(), testAcct, testToken)
		waits = append(waits, RetryAfter(err))
		e.clock.Advance(RetryAfter(err))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		if waits[i] != w*time.Minute {
			t.Fatalf("waits = %v, want minutes %v (doubling, capped at 1h)", waits, want)
		}
	}
	if e.f.count() != len(want) {
		t.Errorf("%d calls, want %d", e.f.count(), len(want))
	}
	if got := testutil.ToFloat64(e.c.metrics.blocked); got != float64(len(want)) {
		t.Errorf("feedd_graph_blocked_total = %v", got)
	}
}

func TestTemporaryBlockBacksOffLong(t *testing.T) {
	e := newEnv(t, serveFile(t, 400, "error_graph_blocked.json"))
	_, err := e.c.Me(context.Background(), testAcct, testToken)
	if !errors.Is(err, ErrThrottled) || RetryAfter(err) < time.Hour {
		t.Fatalf("368: err = %v, want throttled for at least an hour", err)
	}
}

func TestRetryAfterHeaderIsHonoured(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	_, err := e.c.Me(context.Background(), testAcct, testToken)
	if !errors.Is(err, ErrThrottled) || RetryAfter(err) != 2*time.Minute {
		t.Fatalf("err = %v (retry after %v)", err, RetryAfter(err))
	}
}

func TestUsageHighWaterPausesBeforeAnyError(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		value      string
		blocked    []string
		notBlocked []string
		gauge      string
		want       float64
	}{
		{"app usage", "X-App-Usage", `{"call_count":95,"total_time":25,"total_cputime":25}`,
			[]string{testAcct, "other", ""}, nil, "app_call_count", 95},
		{"account usage", "X-Business-Use-Case-Usage", bucHeader(testAcct, 92, 0),
			[]string{testAcct}, []string{"other"}, "business_call_count", 92},
		{"regain time below the mark", "X-Business-Use-Case-Usage", bucHeader(testAcct, 40, 3),
			[]string{testAcct}, []string{"other"}, "business_call_count", 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, serveFile(t, 200, "me.json", tt.header, tt.value))
			if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil {
				t.Fatalf("the call itself succeeds: %v", err)
			}
			for _, a := range tt.blocked {
				if e.c.BlockedUntil(a).IsZero() {
					t.Errorf("%q not blocked", a)
				}
			}
			for _, a := range tt.notBlocked {
				if !e.c.BlockedUntil(a).IsZero() {
					t.Errorf("%q blocked", a)
				}
			}
			if _, err := e.c.Me(context.Background(), testAcct, testToken); !errors.Is(err, ErrThrottled) {
				t.Errorf("next call: err = %v, want throttled", err)
			}
			if e.f.count() != 1 {
				t.Errorf("%d calls, want 1", e.f.count())
			}
			if got := testutil.ToFloat64(e.c.metrics.usage.WithLabelValues(tt.gauge)); got != tt.want {
				t.Errorf("usage gauge %s = %v, want %v", tt.gauge, got, tt.want)
			}
		})
	}
}

func TestUsageBelowMarkKeepsCalling(t *testing.T) {
	e := newEnv(t, serveFile(t, 200, "me.json",
		"X-App-Usage", `{"call_count":28,"total_time":25,"total_cputime":25}`,
		"X-Business-Use-Case-Usage", bucHeader(testAcct, 50, 0)))
	for range 3 {
		if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil {
			t.Fatal(err)
		}
	}
	if e.f.count() != 3 {
		t.Errorf("%d calls, want 3", e.f.count())
	}
}

func TestHostileUsageHeadersAreHarmless(t *testing.T) {
	for _, v := range []string{`{`, `[]`, `{"x":1}`, `{"1":[{"call_count":"lots","estimated_time_to_regain_access":1e308}]}`,
		`{"1":[{"estimated_time_to_regain_access":-5}]}`} {
		e := newEnv(t, serveFile(t, 200, "me.json", "X-App-Usage", v, "X-Business-Use-Case-Usage", v))
		if _, err := e.c.Me(context.Background(), testAcct, testToken); err != nil {
			t.Errorf("header %s: %v", v, err)
		}
		if until := e.c.BlockedUntil("1"); until.After(epoch.Add(8 * 24 * time.Hour)) {
			t.Errorf("header %s blocked until %v", v, until)
		}
	}
}

func TestLimiterIsWaitedOnBeforeEachCall(t *testing.T) {
	// A bucket with no tokens and a deadline: the client gives up locally.
	lim := rate.NewLimiter(rate.Every(time.Hour), 1)
	lim.Allow() // drain the burst
	e := newEnv(t, serveFile(t, 200, "me.json"), func(c *Config) { c.Limiter = lim })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.c.Me(ctx, testAcct, testToken); err == nil {
		t.Fatal("call went out without a limiter token")
	}
	if e.f.count() != 0 {
		t.Errorf("%d calls reached the server", e.f.count())
	}
}
