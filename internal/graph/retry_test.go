package graph

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTransientFailuresRetryWithinBudget(t *testing.T) {
	e := newEnv(t, serveFile(t, 503, "error_graph_transient.json"))
	_, err := e.c.Me(context.Background(), testAcct, testToken)
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v, want transient", err)
	}
	ds := e.sl.durations()
	if len(ds) == 0 || e.f.count() != len(ds)+1 {
		t.Fatalf("calls=%d sleeps=%d: want one more call than sleeps, at least one retry", e.f.count(), len(ds))
	}
	var total time.Duration
	for i, d := range ds {
		ceil := min(retryCap, retryBase<<i)
		if d < 0 || d > ceil {
			t.Errorf("sleep %d = %v, want within [0, %v]", i, d, ceil)
		}
		total += d
	}
	if total > DefaultRetryBudget {
		t.Errorf("slept %v in total, budget %v", total, DefaultRetryBudget)
	}
	if e.f.count() > maxAttempts {
		t.Errorf("%d attempts, want at most %d", e.f.count(), maxAttempts)
	}
}

func TestRetryBudgetBoundsRealTimeToo(t *testing.T) {
	// Each attempt "takes" 4s on the clock: a 10s budget allows few retries.
	var e *env
	e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		e.clock.Advance(4 * time.Second)
		reply(w, 500, nil)
	})
	_, err := e.c.Me(context.Background(), testAcct, testToken)
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v", err)
	}
	if n := e.f.count(); n > 3 {
		t.Errorf("%d attempts in a 10s budget of 4s calls", n)
	}
}

func TestTransientThenSuccess(t *testing.T) {
	var n atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			reply(w, 500, []byte(`<html>oops</html>`))
			return
		}
		reply(w, 200, fixture(t, "me.json", ""))
	})
	p, err := e.c.Me(context.Background(), testAcct, testToken)
	if err != nil || p.Username != "lakeside.bakery" {
		t.Fatalf("p=%+v err=%v", p, err)
	}
	if e.f.count() != 3 || len(e.sl.durations()) != 2 {
		t.Errorf("calls=%d sleeps=%d, want 3 and 2", e.f.count(), len(e.sl.durations()))
	}
}

func TestNoRetryForFinalErrors(t *testing.T) {
	for _, file := range []string{"error_graph_token_expired.json", "error_graph_bad_param.json", "error_graph_permission.json"} {
		t.Run(file, func(t *testing.T) {
			e := newEnv(t, serveFile(t, 400, file))
			_, err := e.c.Me(context.Background(), testAcct, testToken)
			if err == nil || e.f.count() != 1 || len(e.sl.durations()) != 0 {
				t.Errorf("err=%v calls=%d sleeps=%v; want one call, no retry", err, e.f.count(), e.sl.durations())
			}
		})
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("cancelled before: no call", func(t *testing.T) {
		e := newEnv(t, serveFile(t, 200, "me.json"))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.c.Me(ctx, testAcct, testToken)
		if !errors.Is(err, context.Canceled) || e.f.count() != 0 {
			t.Errorf("err=%v calls=%d", err, e.f.count())
		}
	})
	t.Run("cancelled during back-off: stops retrying", func(t *testing.T) {
		e := newEnv(t, serveFile(t, 500, "error_graph_transient.json"))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e.sl.hook = cancel
		_, err := e.c.Me(ctx, testAcct, testToken)
		if !errors.Is(err, context.Canceled) || e.f.count() != 1 {
			t.Errorf("err=%v calls=%d, want context.Canceled after 1 call", err, e.f.count())
		}
	})
	t.Run("deadline during a slow answer", func(t *testing.T) {
		release := make(chan struct{})
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err := e.c.Media(ctx, testAcct, testToken, 5)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if err != nil {
			assertNoSecrets(t, "error", err.Error())
		}
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestUnreachableIsRetriedAndRedacted(t *testing.T) {
	addr := closedAddr(t)
	e := newEnv(t, nil, func(c *Config) {
		c.GraphURL = "http://" + addr + "/mnt/graph"
		c.TokenURL = "http://" + addr + "/mnt/api/oauth/access_token"
	})
	_, err := e.c.Media(context.Background(), testAcct, testToken, 5)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v, want unreachable (a transient kind)", err)
	}
	if len(e.sl.durations()) == 0 {
		t.Errorf("a refused connection was not retried")
	}
	assertNoSecrets(t, "error", err.Error())
	if !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("want the URL kept but redacted: %s", err)
	}
	// The wrapped *url.Error is redacted too, for callers that log it.
	assertNoSecrets(t, "unwrapped error", errors.Unwrap(err).Error())

	// A code exchange that never reached the server may be sent again.
	e.sl.ds = nil
	_, err = e.c.ExchangeCode(context.Background(), testCode)
	if !errors.Is(err, ErrUnreachable) || len(e.sl.durations()) == 0 {
		t.Errorf("exchange to a closed port: err=%v sleeps=%v, want retried", err, e.sl.durations())
	}
	assertNoSecrets(t, "error", err.Error())
}

func TestCodeExchangeNotRetriedAfterReachingServer(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		// Drop the connection after the request arrived.
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Fatal("no hijacker")
		}
		conn, _, _ := hj.Hijack()
		_ = conn.Close()
	})
	_, err := e.c.ExchangeCode(context.Background(), testCode)
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v", err)
	}
	if e.f.count() != 1 {
		t.Errorf("%d exchange attempts, want 1: the code may already be spent", e.f.count())
	}
	assertNoSecrets(t, "error", err.Error())
}

func TestOversizedBodyIsRefused(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"data":[],"pad":"`))
		chunk := []byte(strings.Repeat("a", 64<<10))
		for range (MaxBodyBytes / len(chunk)) + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte(`"}`))
	})
	_, err := e.c.Media(context.Background(), testAcct, testToken, 5)
	if !errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("err = %v, want a malformed-response error", err)
	}
	if e.f.count() != 1 {
		t.Errorf("malformed answers are not retried at once: %d calls", e.f.count())
	}
}
