package cache

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	fake "github.com/feedd/feedd/internal/testutil"
)

type clock = fake.Clock

func newCache(t *testing.T, clk *clock, load Loader) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Options{Load: load, Fresh: time.Minute, MaxStale: 10 * time.Minute, Now: clk.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, reg
}

// counter is a loader that counts its calls and returns a body naming the call.
type counter struct {
	n    atomic.Int32
	fail atomic.Bool
	gate chan struct{}
}

func (l *counter) load(ctx context.Context, group, key string) (*Entry, error) {
	n := l.n.Add(1)
	if l.gate != nil {
		<-l.gate
	}
	if l.fail.Load() {
		return nil, errors.New("boom")
	}
	return NewEntry([]byte(`{"load":`+strconv.Itoa(int(n))+`}`), nil)
}

func TestNewEntryPrecomputesGzipAndETag(t *testing.T) {
	body := bytes.Repeat([]byte(`{"a":"bbbbbbbbbb"}`), 100)
	e, err := NewEntry(body, "meta")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(e.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if !bytes.Equal(got, body) {
		t.Fatal("gzip bytes do not decompress to the JSON")
	}
	if len(e.Gzip) >= len(body) {
		t.Errorf("gzip %d bytes not smaller than %d", len(e.Gzip), len(body))
	}
	if e.ETag[0] != '"' || e.ETag[len(e.ETag)-1] != '"' || len(e.ETag) < 20 {
		t.Errorf("ETag %q is not a quoted strong tag", e.ETag)
	}
	e2, _ := NewEntry(body, nil)
	e3, _ := NewEntry(append([]byte{' '}, body...), nil)
	if e.ETag != e2.ETag || e.ETag == e3.ETag {
		t.Error("ETag must depend on the bytes only")
	}
	if e.LengthHeader(false)[0] != strconv.Itoa(len(body)) || e.LengthHeader(true)[0] != strconv.Itoa(len(e.Gzip)) {
		t.Error("length headers wrong")
	}
}

func TestHitMissStaleAndBackgroundRefresh(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	l := &counter{}
	c, reg := newCache(t, clk, l.load)
	ctx := context.Background()

	e, r, err := c.Get(ctx, "f", "f")
	if err != nil || r != Miss || string(e.JSON) != `{"load":1}` {
		t.Fatalf("first get: %v %v %v", e, r, err)
	}
	e, r, _ = c.Get(ctx, "f", "f")
	if r != Hit || string(e.JSON) != `{"load":1}` {
		t.Fatalf("second get: %v %s", r, e.JSON)
	}
	clk.Add(2 * time.Minute)
	e, r, _ = c.Get(ctx, "f", "f")
	if r != Stale || string(e.JSON) != `{"load":1}` {
		t.Fatalf("stale get: %v %s", r, e.JSON)
	}
	// More stale requests while the refresh runs start no second load.
	c.Get(ctx, "f", "f")
	c.Close() // waits for the background refresh
	if n := l.n.Load(); n != 2 {
		t.Fatalf("loads = %d, want 2 (one refresh)", n)
	}
	e, r, _ = c.Get(ctx, "f", "f")
	if r != Hit || string(e.JSON) != `{"load":2}` {
		t.Fatalf("after refresh: %v %s", r, e.JSON)
	}
	for res, want := range map[string]float64{"hit": 2, "miss": 1, "stale": 2} {
		if got := testutil.ToFloat64(c.requests[resultOf(res)]); got != want {
			t.Errorf("%s = %v, want %v", res, got, want)
		}
	}
	if n, _ := testutil.GatherAndCount(reg, "feedd_feed_cache_requests_total"); n != 3 {
		t.Errorf("metric series = %d, want 3", n)
	}
}

func resultOf(s string) Result {
	switch s {
	case "hit":
		return Hit
	case "miss":
		return Miss
	}
	return Stale
}

func TestTooOldEntryIsLoadedWhileWaiting(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	l := &counter{}
	c, _ := newCache(t, clk, l.load)
	c.Get(context.Background(), "f", "f")
	clk.Add(11 * time.Minute)
	e, r, _ := c.Get(context.Background(), "f", "f")
	if r != Miss || string(e.JSON) != `{"load":2}` {
		t.Fatalf("got %v %s, want a fresh load", r, e.JSON)
	}
}

func TestConcurrentMissesShareOneLoad(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	l := &counter{gate: make(chan struct{})}
	c, _ := newCache(t, clk, l.load)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	const n = 200
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			e, _, err := c.Get(context.Background(), "f", "f")
			if err == nil && string(e.JSON) != `{"load":1}` {
				err = errors.New("unexpected body " + string(e.JSON))
			}
			errs <- err
		}()
	}
	started.Wait()
	// Wait until the one load is running, then let it finish.
	for l.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(l.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := l.n.Load(); got != 1 {
		t.Fatalf("loads = %d, want 1", got)
	}
}

func TestInvalidateDropsTheGroupOnly(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	a, b := &counter{}, &counter{}
	c, _ := newCache(t, clk, func(ctx context.Context, group, key string) (*Entry, error) {
		if group == "a" {
			return a.load(ctx, group, key)
		}
		return b.load(ctx, group, key)
	})
	ctx := context.Background()
	c.Get(ctx, "a", "a")
	c.Get(ctx, "a", "a?limit=5")
	c.Get(ctx, "b", "b")
	c.Invalidate("a")
	if _, r, _ := c.Get(ctx, "a", "a"); r != Miss {
		t.Errorf("a after invalidate: %v, want miss", r)
	}
	if _, r, _ := c.Get(ctx, "a", "a?limit=5"); r != Miss {
		t.Errorf("a variant after invalidate: %v, want miss", r)
	}
	if _, r, _ := c.Get(ctx, "b", "b"); r != Hit {
		t.Errorf("b after invalidating a: %v, want hit", r)
	}
}

func TestInvalidateDuringLoadIsNotLost(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	var c *Cache
	ctx := context.Background()
	var calls int
	c, _ = newCache(t, clk, func(ctx context.Context, group, key string) (*Entry, error) {
		calls++
		if calls == 1 {
			c.Invalidate("f") // a new snapshot lands while the old one is read
		}
		return NewEntry([]byte(strconv.Itoa(calls)), nil)
	})
	c.Get(ctx, "f", "f")
	e, r, _ := c.Get(ctx, "f", "f")
	if r != Miss || string(e.JSON) != "2" {
		t.Fatalf("got %v %s: an entry read before the invalidation was kept", r, e.JSON)
	}
}

func TestFailedLoadServesPreviousEntry(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	l := &counter{}
	c, _ := newCache(t, clk, l.load)
	ctx := context.Background()
	if _, _, err := c.Get(ctx, "f", "f"); err != nil {
		t.Fatal(err)
	}
	l.fail.Store(true)
	c.Invalidate("f")
	e, r, err := c.Get(ctx, "f", "f")
	if err != nil || r != Stale || string(e.JSON) != `{"load":1}` {
		t.Fatalf("got %v %v %v, want the previous entry", e, r, err)
	}
	// With nothing to fall back on the error reaches the caller.
	if _, _, err := c.Get(ctx, "g", "g"); err == nil {
		t.Fatal("want the load error")
	}
	// A failed background refresh keeps serving and may be retried.
	l.fail.Store(false)
	c.Get(ctx, "h", "h")
	l.fail.Store(true)
	clk.Add(2 * time.Minute)
	if _, r, _ := c.Get(ctx, "h", "h"); r != Stale {
		t.Fatalf("got %v, want stale", r)
	}
	c.bg.Wait()
	before := l.n.Load()
	c.Get(ctx, "h", "h")
	c.bg.Wait()
	if l.n.Load() != before+1 {
		t.Fatal("a failed refresh was not retried by a later request")
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	l := &counter{gate: make(chan struct{})}
	c, _ := newCache(t, clk, l.load)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, "f", "f")
		done <- err
	}()
	for l.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	other := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "f", "f")
		other <- err
	}()
	close(l.gate)
	if err := <-other; err != nil {
		t.Fatalf("second caller failed: %v", err)
	}
	if l.n.Load() != 1 {
		t.Fatalf("loads = %d, want 1", l.n.Load())
	}
}

func BenchmarkGetHit(b *testing.B) {
	l := &counter{}
	c, _ := New(Options{Load: l.load})
	ctx := context.Background()
	c.Get(ctx, "f", "f")
	b.ReportAllocs()
	for b.Loop() {
		if _, r, _ := c.Get(ctx, "f", "f"); r != Hit {
			b.Fatal(r)
		}
	}
}

func TestEntriesNobodyAsksForAreForgotten(t *testing.T) {
	clk := fake.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	var l counter
	c, _ := newCache(t, clk, l.load)
	ctx := context.Background()
	for i := range 50 {
		if _, _, err := c.Get(ctx, "feed1", "feed1?limit="+strconv.Itoa(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 50 {
		t.Fatalf("%d entries, want 50", c.Len())
	}

	// Past twice MaxStale an entry is not served, even while it is still
	// stored: it is loaded again.
	clk.Advance(21 * time.Minute)
	e, res, err := c.Get(ctx, "feed1", "feed1?limit=1")
	if err != nil || res != Miss || !bytes.Equal(e.JSON, []byte(`{"load":51}`)) {
		t.Fatalf("old entry: %s %v %v, want a new load", e.JSON, res, err)
	}
	// That load swept the other 49 out.
	if c.Len() != 1 {
		t.Fatalf("%d entries after the sweep, want 1", c.Len())
	}

	// Entries within their window survive a sweep.
	for _, k := range []string{"a", "b"} {
		c.Get(ctx, "feed2", k)
	}
	clk.Advance(11 * time.Minute) // the next sweep is due; a, b are 11 min old
	c.Get(ctx, "feed3", "c")
	if c.Len() != 4 {
		t.Fatalf("%d entries, want 4 (none old enough to forget)", c.Len())
	}
}
