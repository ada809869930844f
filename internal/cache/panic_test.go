package cache

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/guard"
)

// guarded is a fixture whose Guard logs into log and counts into reg.
func guarded(t *testing.T) (fx *goneFixture, log *bytes.Buffer, reg *prometheus.Registry) {
	t.Helper()
	log, reg = new(bytes.Buffer), prometheus.NewRegistry()
	g, err := guard.New(slog.New(slog.NewTextHandler(log, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, Options{Guard: g, Gone: isGone}), log, reg
}

func panicsCounted(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "feedd_panics_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestPanickingLoaderDoesNotEndTheProcess(t *testing.T) {
	tests := []struct {
		name   string
		run    func(t *testing.T, fx *goneFixture)
		panics float64
	}{
		{"background refresh: the previous entry stays served and is refreshed again", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.clk.Add(2 * time.Minute)
			fx.src.panicWith("boom")
			fx.get(t, "f", "f v1", Stale, nil)
			fx.c.bg.Wait()
			fx.get(t, "f", "f v1", Stale, nil) // starts a second refresh
			fx.c.bg.Wait()
			fx.src.panicWith(nil)
			fx.get(t, "f", "f v1", Stale, nil)
			fx.c.bg.Wait()
			fx.get(t, "f", "f v1", Hit, nil)
		}, 2},
		{"foreground load: every waiter gets ErrLoadPanicked and the next Get loads again", func(t *testing.T, fx *goneFixture) {
			fx.src.panicWith("boom")
			hold := fx.src.holdNext()
			first, _ := fx.getInBubble("f")
			second, _ := fx.getInBubble("f") // joins the first one's load
			close(hold)
			for _, done := range []func() (*Entry, Result, error){first, second} {
				if e, r, err := done(); !errors.Is(err, ErrLoadPanicked) || e != nil {
					t.Fatalf("Get = %q %v %v, want ErrLoadPanicked", body(e), r, err)
				}
			}
			if fx.src.loads != 1 {
				t.Fatalf("%d loads, want 1 shared", fx.src.loads)
			}
			fx.src.panicWith(nil)
			fx.get(t, "f", "f v1", Miss, nil)
		}, 1},
		{"foreground load with a previous entry: served stale", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.src.panicWith("boom")
			fx.c.Invalidate("f")
			fx.get(t, "f", "f v1", Stale, nil)
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx, log, reg := guarded(t)
				tt.run(t, fx)
				fx.c.Close()
				if n := panicsCounted(t, reg); n != tt.panics {
					t.Errorf("feedd_panics_total = %v, want %v", n, tt.panics)
				}
				if !strings.Contains(log.String(), `msg="panic recovered" where=cache_load panic=boom stack=`) {
					t.Errorf("no panic logged with its stack:\n%s", log)
				}
			})
		})
	}
}

func TestNilGuardStillRecoversLoads(t *testing.T) {
	fx := newGoneFixture(t, isGone)
	fx.src.panicWith("boom")
	fx.get(t, "f", "", 0, ErrLoadPanicked)
}
