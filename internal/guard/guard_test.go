package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// newGuard returns a Guard logging JSON into the returned buffer.
func newGuard(t *testing.T, reg prometheus.Registerer) (*Guard, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	g, err := New(slog.New(slog.NewJSONHandler(&buf, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return g, &buf
}

// records decodes the JSON log lines in buf.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// explode panics with v from a frame of its own, for the stack to show.
func explode(v any) { panic(v) }

func TestRunRecoversLogsWithStackAndCounts(t *testing.T) {
	tests := []struct {
		name      string
		value     any
		wantPanic string
	}{
		{"string value", "boom", "boom"},
		{"error value", errors.New("broken"), "broken"},
		{"nil value", nil, "panic called with nil argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			g, buf := newGuard(t, reg)
			after := false
			if !g.Run("poller", func() { explode(tt.value); after = true }) {
				t.Fatal("Run = false, want true")
			}
			if after {
				t.Fatal("fn went on after its panic")
			}
			recs := records(t, buf)
			if len(recs) != 1 {
				t.Fatalf("%d log records, want 1: %s", len(recs), buf)
			}
			r := recs[0]
			if r["level"] != "ERROR" || r["msg"] != "panic recovered" || r["where"] != "poller" {
				t.Errorf("record %v", r)
			}
			if p, _ := r["panic"].(string); !strings.Contains(p, tt.wantPanic) {
				t.Errorf("panic = %q, want it to contain %q", p, tt.wantPanic)
			}
			if s, _ := r["stack"].(string); !strings.Contains(s, "guard.explode") {
				t.Errorf("stack does not show the panicking function:\n%s", s)
			}
			if n := testutil.ToFloat64(g.panics.WithLabelValues("poller")); n != 1 {
				t.Errorf("feedd_panics_total{where=poller} = %v, want 1", n)
			}
			if n, err := testutil.GatherAndCount(reg, "feedd_panics_total"); err != nil || n != 1 {
				t.Errorf("registered series = %d (%v), want 1", n, err)
			}
		})
	}
}

func TestRunWithoutPanicJustRunsFn(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, buf := newGuard(t, reg)
	ran := false
	if g.Run("poller", func() { ran = true }) {
		t.Fatal("Run = true without a panic")
	}
	if !ran || buf.Len() != 0 {
		t.Fatalf("ran = %v, log %q", ran, buf)
	}
	if n, _ := testutil.GatherAndCount(reg, "feedd_panics_total"); n != 0 {
		t.Fatalf("%d series, want none", n)
	}
}

func TestGoRecoversAndTheCallerCarriesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, buf := newGuard(t, nil)
		done := make(chan struct{})
		g.Go("webhook", func() { defer close(done); explode("boom") })
		<-done
		synctest.Wait() // the goroutine has logged, counted and ended
		if n := testutil.ToFloat64(g.panics.WithLabelValues("webhook")); n != 1 {
			t.Errorf("count = %v, want 1", n)
		}
		if recs := records(t, buf); len(recs) != 1 || recs[0]["where"] != "webhook" {
			t.Errorf("log %s", buf)
		}
	})
}

func TestNilGuardRecovers(t *testing.T) {
	var g *Guard
	if !g.Run("poller", func() { explode("boom") }) {
		t.Fatal("Run = false, want true")
	}
	if g.Run("poller", func() {}) {
		t.Fatal("Run = true without a panic")
	}
	synctest.Test(t, func(t *testing.T) {
		g.Go("poller", func() { explode("boom") })
		synctest.Wait()
	})
}

func TestSecondGuardOnOneRegistrySharesTheCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, _ := newGuard(t, reg)
	b, _ := newGuard(t, reg)
	a.Run("poller", func() { explode("a") })
	b.Run("poller", func() { explode("b") })
	if n := testutil.ToFloat64(a.panics.WithLabelValues("poller")); n != 2 {
		t.Fatalf("count = %v, want 2", n)
	}
}

func TestNewRefusesAClashingMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "feedd_panics_total", Help: "not ours"}))
	if _, err := New(nil, reg); err == nil {
		t.Fatal("New = nil error, want the registration error")
	}
}
