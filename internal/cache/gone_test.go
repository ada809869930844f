package cache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	errGone = errors.New("test: not found")
	errDown = errors.New("test: database down")
)

func isGone(err error) bool { return errors.Is(err, errGone) }

// feedSource is a loader over one feed whose state a test changes: a load
// answers "<key> v<version>", or err when set.
type feedSource struct {
	mu      sync.Mutex
	version int
	err     error
	loads   int
	// hold, when set, makes the next load read the state and then wait
	// until hold is closed: a load that started before a change.
	hold chan struct{}
	// boom, when set, makes loads panic with it.
	boom any
}

func (s *feedSource) set(version int, err error) {
	s.mu.Lock()
	s.version, s.err = version, err
	s.mu.Unlock()
}

func (s *feedSource) panicWith(v any) {
	s.mu.Lock()
	s.boom = v
	s.mu.Unlock()
}

func (s *feedSource) holdNext() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = make(chan struct{})
	return s.hold
}

func (s *feedSource) load(ctx context.Context, group, key string) (*Entry, error) {
	s.mu.Lock()
	s.loads++
	v, err, hold, boom := s.version, s.err, s.hold, s.boom
	s.hold = nil
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if boom != nil {
		panic(boom)
	}
	if err != nil {
		return nil, err
	}
	return NewEntry([]byte(key+" v"+strconv.Itoa(v)), nil)
}

// goneFixture is a cache over a feedSource with Fresh 1m, MaxStale 10m.
type goneFixture struct {
	c   *Cache
	src *feedSource
	clk *clock
}

func newGoneFixture(t *testing.T, gone func(error) bool) *goneFixture {
	t.Helper()
	return newFixture(t, Options{Gone: gone})
}

// newFixture fills in o's loader, clock and windows.
func newFixture(t *testing.T, o Options) *goneFixture {
	t.Helper()
	fx := &goneFixture{src: &feedSource{version: 1}, clk: &clock{T: time.Unix(1_800_000_000, 0)}}
	o.Load, o.Now, o.Fresh, o.MaxStale = fx.src.load, fx.clk.Now, time.Minute, 10*time.Minute
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	fx.c = c
	return fx
}

// get fails the test unless Get answers want (an entry's body) with res, or
// wantErr.
func (fx *goneFixture) get(t *testing.T, key, want string, res Result, wantErr error) {
	t.Helper()
	group, _, _ := cutGroup(key)
	e, r, err := fx.c.Get(context.Background(), group, key)
	switch {
	case wantErr != nil:
		if !errors.Is(err, wantErr) || e != nil {
			t.Fatalf("Get %s = %v %v %v, want error %v", key, body(e), r, err, wantErr)
		}
	case err != nil || r != res || string(e.JSON) != want:
		t.Fatalf("Get %s = %q %v %v, want %q %v", key, body(e), r, err, want, res)
	}
}

func cutGroup(key string) (string, string, bool) {
	for i := range len(key) {
		if key[i] == '?' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func body(e *Entry) string {
	if e == nil {
		return "<nil>"
	}
	return string(e.JSON)
}

// groups counts the groups the cache keeps a generation for.
func groups(c *Cache) int {
	n := 0
	c.gens.Range(func(any, any) bool { n++; return true })
	return n
}

// staleWithRefreshInFlight leaves key's entry ("v1") stale with a background
// refresh that read version 2 and waits; the returned func lets it finish.
// Must run in a synctest bubble.
func (fx *goneFixture) staleWithRefreshInFlight(t *testing.T, key string) (finish func()) {
	t.Helper()
	fx.get(t, key, key+" v1", Miss, nil)
	fx.clk.Add(2 * time.Minute)
	fx.src.set(2, nil)
	hold := fx.src.holdNext()
	fx.get(t, key, key+" v1", Stale, nil)
	synctest.Wait() // the refresh has read v2 and waits
	return func() { close(hold); fx.c.Close() }
}

// getInBubble runs Get in its own goroutine, waits until it returns or
// blocks, and reports whether it returned. A Get that joined a load still
// in flight blocks.
func (fx *goneFixture) getInBubble(key string) (done func() (*Entry, Result, error), returned bool) {
	type out struct {
		e   *Entry
		r   Result
		err error
	}
	ch := make(chan out, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		group, _, _ := cutGroup(key)
		e, r, err := fx.c.Get(ctx, group, key)
		ch <- out{e, r, err}
	}()
	synctest.Wait()
	returned = len(ch) == 1
	return func() (*Entry, Result, error) {
		defer cancel()
		o := <-ch
		return o.e, o.r, o.err
	}, returned
}

func TestDeletedFeedAnswersNotFoundRightAfterInvalidate(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, fx *goneFixture)
	}{
		{"every key of the group answers not found and is dropped", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.get(t, "f?limit=5", "f?limit=5 v1", Miss, nil)
			fx.get(t, "g", "g v1", Miss, nil)
			fx.src.set(1, errGone)
			fx.c.Invalidate("f")
			fx.get(t, "f", "", 0, errGone)
			fx.get(t, "f?limit=5", "", 0, errGone)
			if n := fx.c.Len(); n != 1 {
				t.Fatalf("%d entries, want 1 (g only)", n)
			}
		}},
		{"a load that read the feed before the delete is not joined", func(t *testing.T, fx *goneFixture) {
			finish := fx.staleWithRefreshInFlight(t, "f")
			fx.src.set(3, errGone)
			fx.c.Invalidate("f")
			done, returned := fx.getInBubble("f")
			finish()
			e, r, err := done()
			if !returned || !errors.Is(err, errGone) {
				t.Fatalf("Get = %q %v %v (returned before the older load ended: %v), want not found at once", body(e), r, err, returned)
			}
			fx.get(t, "f", "", 0, errGone) // the older load stored nothing
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { tt.run(t, newGoneFixture(t, isGone)) })
		})
	}
}

func TestLoadFindingGoneDropsTheEntry(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, fx *goneFixture)
	}{
		{"background refresh drops every entry of the group", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.get(t, "f?limit=5", "f?limit=5 v1", Miss, nil)
			fx.clk.Add(2 * time.Minute)
			fx.src.set(1, errGone) // deleted, and nobody told the cache
			fx.get(t, "f", "f v1", Stale, nil)
			fx.c.bg.Wait()
			if n := fx.c.Len(); n != 0 {
				t.Fatalf("%d entries after the refresh, want 0", n)
			}
			fx.get(t, "f", "", 0, errGone)
			fx.src.set(1, errDown) // nothing of f is left to serve stale
			fx.get(t, "f?limit=5", "", 0, errDown)
		}},
		{"load of an expired entry drops it and the group's fresh others load", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.clk.Add(11 * time.Minute)
			fx.get(t, "f?limit=5", "f?limit=5 v1", Miss, nil)
			fx.src.set(1, errGone)
			fx.get(t, "f", "", 0, errGone)
			fx.get(t, "f?limit=5", "", 0, errGone) // fresh, but its feed is known gone
			if n := fx.c.Len(); n != 0 {
				t.Fatalf("%d entries, want 0", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { tt.run(t, newGoneFixture(t, isGone)) })
		})
	}
}

func TestTransientLoadErrorServesStale(t *testing.T) {
	tests := []struct {
		name string
		gone func(error) bool
		err  error
		run  func(t *testing.T, fx *goneFixture)
	}{
		{"after an invalidate, the previous entry as stale, never an older load as fresh", isGone, errDown, func(t *testing.T, fx *goneFixture) {
			finish := fx.staleWithRefreshInFlight(t, "f")
			fx.src.set(3, errDown)
			fx.c.Invalidate("f")
			done, _ := fx.getInBubble("f")
			finish()
			if e, r, err := done(); err != nil || r != Stale || body(e) != "f v1" {
				t.Fatalf("Get = %q %v %v, want the previous entry as stale", body(e), r, err)
			}
		}},
		{"after an invalidate, changed bytes, never an older load's", isGone, nil, func(t *testing.T, fx *goneFixture) {
			finish := fx.staleWithRefreshInFlight(t, "f")
			fx.src.set(3, nil)
			fx.c.Invalidate("f")
			done, _ := fx.getInBubble("f")
			finish()
			if e, r, err := done(); err != nil || r != Miss || body(e) != "f v3" {
				t.Fatalf("Get = %q %v %v, want the new load", body(e), r, err)
			}
		}},
		{"after an invalidate, the previous entry as stale", isGone, errDown, func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.src.set(2, errDown)
			fx.c.Invalidate("f")
			fx.get(t, "f", "f v1", Stale, nil)
		}},
		{"a failed background refresh keeps the entry", isGone, errDown, func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.clk.Add(2 * time.Minute)
			fx.src.set(2, errDown)
			fx.get(t, "f", "f v1", Stale, nil)
			fx.c.bg.Wait()
			fx.get(t, "f", "f v1", Stale, nil)
		}},
		{"with no Gone func even not found is served stale", nil, errGone, func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.src.set(2, errGone)
			fx.c.Invalidate("f")
			fx.get(t, "f", "f v1", Stale, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { tt.run(t, newGoneFixture(t, tt.gone)) })
		})
	}
}

func TestNotFoundCreatesNoEntry(t *testing.T) {
	tests := []struct {
		name        string
		run         func(t *testing.T, fx *goneFixture)
		entries     int
		generations int
	}{
		{"unknown ids leave nothing behind", func(t *testing.T, fx *goneFixture) {
			fx.src.set(1, errGone)
			for i := range 1000 {
				fx.get(t, "x"+strconv.Itoa(i), "", 0, errGone)
			}
		}, 0, 0},
		{"an unknown cursor leaves its feed's entry in place", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.src.set(1, errGone)
			for i := range 100 {
				fx.get(t, "f?after="+strconv.Itoa(i), "", 0, errGone)
			}
			fx.get(t, "f", "f v1", Hit, nil)
		}, 1, 0},
		{"a stored key that turns not found is removed", func(t *testing.T, fx *goneFixture) {
			fx.get(t, "f", "f v1", Miss, nil)
			fx.clk.Add(11 * time.Minute)
			fx.src.set(1, errGone)
			fx.get(t, "f", "", 0, errGone)
		}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newGoneFixture(t, isGone)
			tt.run(t, fx)
			if n := fx.c.Len(); n != tt.entries {
				t.Errorf("%d entries, want %d", n, tt.entries)
			}
			if n := groups(fx.c); n != tt.generations {
				t.Errorf("generations kept for %d groups, want %d", n, tt.generations)
			}
		})
	}
}
