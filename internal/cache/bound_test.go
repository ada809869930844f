package cache

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// randomLoader answers every key with n bytes that gzip cannot shrink, so
// that an entry costs about 2n bytes.
func randomLoader(n int) Loader {
	rnd := rand.New(rand.NewPCG(1, 2))
	return func(ctx context.Context, group, key string) (*Entry, error) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return NewEntry(b, nil)
	}
}

func newBounded(t *testing.T, max int64, load Loader) (*Cache, *prometheus.Registry, *clock) {
	t.Helper()
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	reg := prometheus.NewRegistry()
	c, err := New(Options{Load: load, MaxBytes: max, Fresh: time.Minute, MaxStale: 10 * time.Minute, Now: clk.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, reg, clk
}

func TestMemoryStaysWithinTheBoundWhateverIsAsked(t *testing.T) {
	const bound = 256 << 10
	c, reg, _ := newBounded(t, bound, randomLoader(4<<10))
	ctx := context.Background()
	for i := range 2000 {
		key := "f?after=" + strconv.Itoa(i)
		if _, r, err := c.Get(ctx, "f", key); err != nil || r != Miss {
			t.Fatalf("get %s: %v %v", key, r, err)
		}
		if b := c.Bytes(); b > bound {
			t.Fatalf("after %d distinct keys the cache holds %d bytes, bound %d", i+1, b, bound)
		}
	}
	n := c.Len()
	if n < 20 || n > 40 {
		t.Errorf("%d entries of about 8 KiB kept under a 256 KiB bound, want 20 to 40", n)
	}
	for name, want := range map[string]float64{
		"feedd_feed_cache_entries":         float64(n),
		"feedd_feed_cache_bytes":           float64(c.Bytes()),
		"feedd_feed_cache_evictions_total": float64(2000 - n),
	} {
		if got := gather(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestLeastRecentlyUsedEntriesGoFirst(t *testing.T) {
	c, _, _ := newBounded(t, 100<<10, randomLoader(4<<10))
	ctx := context.Background()
	// Ten entries of about 8 KiB fit; "hot" is asked for between the others.
	c.Get(ctx, "f", "hot")
	for i := range 30 {
		c.Get(ctx, "f", "cold"+strconv.Itoa(i))
		if _, r, _ := c.Get(ctx, "f", "hot"); r != Hit {
			t.Fatalf("hot entry evicted after %d others: %v", i+1, r)
		}
	}
	if _, r, _ := c.Get(ctx, "f", "cold29"); r != Hit {
		t.Errorf("the newest entry: %v, want hit", r)
	}
	if _, r, _ := c.Get(ctx, "f", "cold0"); r != Miss {
		t.Errorf("the oldest entry: %v, want miss (evicted)", r)
	}
}

// sizedMeta is a Meta that says how much memory it holds.
type sizedMeta int

func (m sizedMeta) Size() int { return int(m) }

func TestMetaSizeCountsAgainstTheBound(t *testing.T) {
	c, _, _ := newBounded(t, 1<<20, func(ctx context.Context, group, key string) (*Entry, error) {
		return NewEntry([]byte(`{}`), sizedMeta(300<<10))
	})
	ctx := context.Background()
	for i := range 10 {
		c.Get(ctx, "f", strconv.Itoa(i))
	}
	if n := c.Len(); n != 3 {
		t.Errorf("%d entries holding 300 KiB each under a 1 MiB bound, want 3", n)
	}
}

func TestEntryLargerThanTheBoundIsServedNotKept(t *testing.T) {
	c, _, _ := newBounded(t, 16<<10, randomLoader(64<<10))
	ctx := context.Background()
	c.Get(ctx, "f", "small") // evicted by nothing: the big one is not kept
	for range 2 {
		e, r, err := c.Get(ctx, "g", "big")
		if err != nil || r != Miss || len(e.JSON) != 64<<10 {
			t.Fatalf("big entry: %v %v, want a miss with its bytes each time", r, err)
		}
	}
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Errorf("%d entries, %d bytes kept, want none", c.Len(), c.Bytes())
	}
}

func TestInvalidatedEntriesAreEvictedFirst(t *testing.T) {
	c, _, _ := newBounded(t, 100<<10, randomLoader(4<<10))
	ctx := context.Background()
	// Eleven entries of about 8.6 KiB fit.
	for i := range 5 {
		c.Get(ctx, "new", "new"+strconv.Itoa(i))
	}
	for i := range 5 {
		c.Get(ctx, "old", "old"+strconv.Itoa(i))
	}
	// The old feed changed: its entries are a fallback only now, the first
	// to go when memory is needed, though they were used more recently.
	c.Invalidate("old")
	for i := range 6 {
		c.Get(ctx, "more", "more"+strconv.Itoa(i))
	}
	for i := range 5 {
		if _, r, _ := c.Get(ctx, "new", "new"+strconv.Itoa(i)); r != Hit {
			t.Errorf("new%d: %v, want hit (the invalidated entries should have gone first)", i, r)
		}
	}
	if got := testutil.ToFloat64(c.evictions); got != 5 {
		t.Errorf("%v evictions, want 5", got)
	}
}

func TestDroppedGroupFreesItsBytes(t *testing.T) {
	fx := newFixture(t, Options{Gone: isGone})
	c := fx.c
	ctx := context.Background()
	for i := range 10 {
		c.Get(ctx, "f", "f?limit="+strconv.Itoa(i))
	}
	if c.Bytes() == 0 {
		t.Fatal("no bytes counted")
	}
	fx.src.set(2, errGone)
	c.Invalidate("f")
	if _, _, err := c.Get(ctx, "f", "f?limit=1"); err == nil {
		t.Fatal("want the gone error")
	}
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Errorf("%d entries, %d bytes left after the feed was found gone", c.Len(), c.Bytes())
	}
}

// Building an entry reuses gzip compressors: a flood of distinct loads
// makes garbage in proportion to the bodies, not a compressor (about a
// megabyte) per entry.
func TestNewEntryReusesCompressors(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector empties sync.Pool at random")
	}
	body := make([]byte, 64<<10)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range body {
		body[i] = "abcdefgh{}\":,0123456789"[rnd.IntN(23)]
	}
	NewEntry(body, nil) // warm the pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 20
	for range n {
		if _, err := NewEntry(body, nil); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 4*uint64(len(body)) {
		t.Errorf("NewEntry of %d bytes allocates %d bytes", len(body), per)
	}
}

// A meta entry holds a loader's intermediate result for other loads: it
// follows the same generations and bound, and Shared reads it without
// counting a feed request.
func TestMetaEntriesAreSharedNotCounted(t *testing.T) {
	loads := 0
	c, reg, _ := newBounded(t, 1<<20, func(ctx context.Context, group, key string) (*Entry, error) {
		loads++
		return NewMetaEntry(sizedMeta(100 << 10)), nil
	})
	ctx := context.Background()
	for range 3 {
		e, err := c.Shared(ctx, "f", "f#")
		if err != nil || e.Meta != sizedMeta(100<<10) {
			t.Fatalf("Shared = %v, %v", e, err)
		}
	}
	if loads != 1 {
		t.Errorf("%d loads, want 1", loads)
	}
	if n := counterValue(t, reg, "feedd_feed_cache_requests_total"); n != 0 {
		t.Errorf("%v feed requests counted for shared reads", n)
	}
	if b := c.Bytes(); b < 100<<10 {
		t.Errorf("%d bytes counted for a 100 KiB meta", b)
	}
	c.Invalidate("f")
	c.Shared(ctx, "f", "f#")
	if loads != 2 {
		t.Errorf("%d loads after an invalidation, want 2", loads)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// Keys the caller marks as variants (Options.Variant) are kept only once
// asked for a second time: a flood of keys each asked once (made-up
// queries) is answered without filling the cache, while a page people do
// come back to is cached from its second request on.
func TestVariantsAreKeptOnlyWhenAskedAgain(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	loads := 0
	rl := randomLoader(4 << 10)
	c, err := New(Options{
		Load:    func(ctx context.Context, g, k string) (*Entry, error) { loads++; return rl(ctx, g, k) },
		Variant: func(group, key string) bool { return key != group },
		Now:     clk.Now, Fresh: time.Minute, MaxStale: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	for i := range 1000 {
		if _, r, err := c.Get(ctx, "f", "f?after="+strconv.Itoa(i)); err != nil || r != Miss {
			t.Fatalf("variant %d: %v %v", i, r, err)
		}
	}
	if n := c.Len(); n != 0 {
		t.Errorf("%d entries after 1000 variants asked once, want 0", n)
	}
	if _, r, _ := c.Get(ctx, "f", "f"); r != Miss || c.Len() != 1 {
		t.Errorf("the group's own key: %v, %d entries; want it kept at once", r, c.Len())
	}
	for i, want := range []Result{Miss, Miss, Hit} {
		if _, r, _ := c.Get(ctx, "f", "f?limit=5"); r != want {
			t.Errorf("a variant asked %d times: %v, want %v", i+1, r, want)
		}
	}
	if loads != 1003 {
		t.Errorf("%d loads, want 1003", loads)
	}
}

// Variant entries take at most MaxVariantBytes of the bound: a flood that
// asks each made-up key twice evicts other made-up keys, never the
// group's own entries (a feed's default page), which may use the whole
// bound.
func TestVariantsTakeAtMostTheirShare(t *testing.T) {
	clk := &clock{T: time.Unix(1_800_000_000, 0)}
	c, err := New(Options{
		Load:     randomLoader(4 << 10),
		Variant:  func(group, key string) bool { return key != group },
		MaxBytes: 256 << 10, MaxVariantBytes: 64 << 10,
		Now: clk.Now, Fresh: time.Minute, MaxStale: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	for i := range 20 {
		g := "g" + strconv.Itoa(i)
		c.Get(ctx, g, g)
	}
	for i := range 500 {
		for range 2 {
			c.Get(ctx, "g0", "g0?after="+strconv.Itoa(i))
		}
		if b := c.Bytes(); b > 256<<10 {
			t.Fatalf("%d bytes, bound %d", b, 256<<10)
		}
	}
	for i := range 20 {
		g := "g" + strconv.Itoa(i)
		if _, r, _ := c.Get(ctx, g, g); r != Hit {
			t.Errorf("%s after the flood: %v, want a hit", g, r)
		}
	}
	if v := c.variantBytes; v > 64<<10 {
		t.Errorf("variants hold %d bytes, share %d", v, 64<<10)
	}
	// The groups' own entries may fill the whole bound.
	for i := 20; i < 100; i++ {
		g := "g" + strconv.Itoa(i)
		c.Get(ctx, g, g)
	}
	if b := c.Bytes(); b < 200<<10 {
		t.Errorf("%d bytes of own entries under a 256 KiB bound, want it nearly full", b)
	}
}
