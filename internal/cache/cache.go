// Package cache is feedd's in-process hot cache of ready-to-send responses.
//
// An Entry holds the bytes a handler writes (the JSON body, its gzip form
// compressed once when the entry is built, a strong ETag) so that a warm
// request does no encoding, hashing or compression. Concurrent misses for one
// key collapse into a single load; an entry past its freshness is still served
// while one background load replaces it (stale-while-revalidate), and when a
// load fails the previous entry keeps being served (stale-if-error), unless
// the failure says the thing is gone (Options.Gone).
// Entries are grouped (by feed id) so that one call drops every variant of a
// feed when a new snapshot lands.
//
// The entries' memory is bounded (Options.MaxBytes): beyond it the least
// recently used entries are evicted, so whatever keys visitors make up, the
// cache holds at most that much. An entry of a group that was invalidated
// is kept only as the fallback of a failing load, and is the first evicted.
// Variant keys (Options.Variant: pages made of any query) are kept only
// once asked for twice, and within a share of the bound of their own, so
// that a flood of them never evicts the entries visitors come for most.
package cache

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/feedd/feedd/internal/guard"
)

// ErrNoEntry is returned when a Loader returns neither an entry nor an error.
var ErrNoEntry = errors.New("cache: loader returned no entry")

// ErrLoadPanicked is returned when a Loader panicked. The panic itself is
// logged and counted by Options.Guard.
var ErrLoadPanicked = errors.New("cache: load panicked")

// Result says how a Get was answered.
type Result int

// Results of Get, also the values of the result label of the metric.
const (
	Hit   Result = iota // fresh entry from memory
	Miss                // loaded while the caller waited
	Stale               // old entry served; a refresh runs in the background (or the load failed)
)

func (r Result) String() string {
	switch r {
	case Hit:
		return "hit"
	case Miss:
		return "miss"
	default:
		return "stale"
	}
}

// Entry is one ready-to-send response. Its fields never change after NewEntry.
type Entry struct {
	// JSON is the identity-encoded body.
	JSON []byte
	// Gzip is JSON compressed once, at build time.
	Gzip []byte
	// ETag is the strong, quoted entity tag of JSON.
	ETag string
	// BuiltAt is when the entry was loaded (set by the cache from its clock).
	BuiltAt time.Time
	// Meta is the caller's own precomputed data (the feed package keeps its
	// CORS header values here). When it implements Sizer, its Size counts
	// against Options.MaxBytes.
	Meta any

	// Header values prepared once, assigned straight into header maps.
	etagHeader []string
	jsonLen    []string
	gzipLen    []string

	group      string
	gen        uint64
	refreshing atomic.Bool

	// Set when the entry is stored, under the cache's lock.
	key          string
	size         int64
	variant      bool   // kept in the variants' list (Options.Variant)
	used         uint64 // when last used, in the cache's ticks; 0: invalidated
	prev, next   *Entry // recency list: prev is more recently used
	gprev, gnext *Entry // the group's entries
}

// Sizer is implemented by an Entry's Meta that holds memory worth counting
// against the bound.
type Sizer interface {
	// Size is about how many bytes the value keeps alive.
	Size() int
}

// entryOverhead is what an entry costs besides its bytes: the Entry, its
// header slices and the map slot.
const entryOverhead = int64(unsafe.Sizeof(Entry{})) + 128

// cost is the memory e holds, as counted against the bound.
func (e *Entry) cost(key string) int64 {
	n := int64(len(e.JSON)+len(e.Gzip)+len(e.ETag)+len(e.jsonLen[0])+len(e.gzipLen[0])+len(key)) + entryOverhead
	if m, ok := e.Meta.(Sizer); ok {
		n += int64(m.Size())
	}
	return n
}

// compressors and their output buffers are reused: a gzip writer at
// BestCompression holds about a megabyte of tables, which a flood of
// distinct loads would otherwise allocate once per entry.
var (
	compressors = sync.Pool{New: func() any {
		zw, _ := gzip.NewWriterLevel(nil, gzip.BestCompression)
		return zw
	}}
	gzipBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// NewEntry prepares an entry for body: compresses it and computes the ETag.
func NewEntry(body []byte, meta any) (*Entry, error) {
	buf := gzipBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer gzipBuffers.Put(buf)
	zw := compressors.Get().(*gzip.Writer)
	zw.Reset(buf)
	_, err := zw.Write(body)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	compressors.Put(zw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	// An exact copy: the buffer grew by doubling, and the entry keeps its
	// bytes for as long as it is cached.
	gz := bytes.Clone(buf.Bytes())
	return &Entry{
		JSON:       body,
		Gzip:       gz,
		ETag:       etag,
		Meta:       meta,
		etagHeader: []string{etag},
		jsonLen:    []string{strconv.Itoa(len(body))},
		gzipLen:    []string{strconv.Itoa(len(gz))},
	}, nil
}

// NewMetaEntry makes an entry that holds only meta: a loader's
// intermediate result that other loads build on (read with Shared), never
// a response.
func NewMetaEntry(meta any) *Entry {
	return &Entry{Meta: meta, jsonLen: []string{"0"}, gzipLen: []string{"0"}}
}

// ETagHeader is the ETag as a header value slice. Callers must not modify it.
func (e *Entry) ETagHeader() []string { return e.etagHeader }

// LengthHeader is the Content-Length value of the JSON (or gzip) body.
// Callers must not modify it.
func (e *Entry) LengthHeader(gzipped bool) []string {
	if gzipped {
		return e.gzipLen
	}
	return e.jsonLen
}

// Loader builds the entry for key (a member of group) on a miss. The
// context is detached from any single request so that one caller going away
// does not fail the others. A Cache has one Loader, fixed at New, so that a
// Get allocates nothing (no per-request closure).
type Loader func(ctx context.Context, group, key string) (*Entry, error)

// Options configure a Cache.
type Options struct {
	// Load builds missing entries (required).
	Load Loader
	// Gone reports whether a load error means the key's thing no longer
	// exists (a deleted feed). Such an error reaches the caller at once:
	// the key's entry and every other entry of its group are dropped, never
	// served again. Nil: nothing is gone; every failed load falls back on
	// the previous entry.
	Gone func(error) bool
	// Fresh is how long an entry is served without a refresh (default 5m).
	Fresh time.Duration
	// MaxStale is the age up to which an old entry is served while a
	// background load replaces it (default 1h). Older entries are loaded
	// while the caller waits (and still served if that load fails).
	MaxStale time.Duration
	// LoadTimeout bounds one load (default 30s).
	LoadTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives failed background loads (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the cache's metrics: requests by result, bytes,
	// entries and evictions (nil: not registered).
	Registerer prometheus.Registerer
	// Guard recovers a panicking load (nil: recovered, logged, not counted).
	Guard *guard.Guard
	// MaxBytes bounds the memory the entries hold (default DefaultMaxBytes);
	// the least recently used are evicted beyond it. An entry larger than
	// the bound answers its callers and is not kept.
	MaxBytes int64
	// Variant reports the keys to keep only once they are asked for a
	// second time (the feed's pages other than the default one): a key
	// asked for once, like the made-up queries of a flood, is answered
	// and not kept. Nil: every key is kept at once.
	Variant func(group, key string) bool
	// MaxVariantBytes bounds the variant keys' entries within MaxBytes
	// (default a quarter of it): a flood that asks each made-up key twice
	// evicts other variants, never the entries visitors come for most.
	MaxVariantBytes int64
}

// DefaultMaxBytes is the bound when Options.MaxBytes is not set
// (FEEDD_CACHE_MEMORY's default).
const DefaultMaxBytes = 64 << 20

// Cache is the hot cache. The zero value is not usable; call New.
type Cache struct {
	opts Options
	sf   singleflight.Group

	// gens holds each group's generation (*atomic.Uint64), read without a
	// lock on every Get; Invalidate moves it on.
	gens sync.Map

	mu     sync.Mutex
	items  map[string]*Entry
	groups map[string]*Entry // first entry of each group
	// lists are the recency lists of the other entries (0) and of the
	// variants (1).
	lists        [2]recency
	tick         uint64 // counts uses, for Entry.used
	variantBytes int64
	bytes        atomic.Int64 // written under mu
	count        atomic.Int64 // written under mu

	// lastSweep is when forgotten entries were last removed (unix ns).
	lastSweep atomic.Int64

	// asked remembers variant keys asked for recently, as hashes in a
	// fixed table: a slot keeps the last key that hashed to it, so memory
	// stays fixed and a collision only makes a key wait for one more ask.
	asked [askedSlots]atomic.Uint64
	seed  maphash.Seed

	bg      sync.WaitGroup
	closing atomic.Bool

	requests  [3]prometheus.Counter
	evictions prometheus.Counter
}

// New returns a Cache.
func New(opts Options) (*Cache, error) {
	if opts.Load == nil {
		return nil, errors.New("cache: Options.Load is required")
	}
	if opts.Fresh <= 0 {
		opts.Fresh = 5 * time.Minute
	}
	if opts.MaxStale < opts.Fresh {
		opts.MaxStale = time.Hour
		if opts.MaxStale < opts.Fresh {
			opts.MaxStale = opts.Fresh
		}
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxVariantBytes <= 0 || opts.MaxVariantBytes > opts.MaxBytes {
		opts.MaxVariantBytes = opts.MaxBytes / 4
	}
	// No janitor goroutine: loads sweep out the entries nobody asked for
	// in a long time (see sweep), and stores evict beyond the bound.
	c := &Cache{
		opts:   opts,
		items:  make(map[string]*Entry),
		groups: make(map[string]*Entry),
		seed:   maphash.MakeSeed(),
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedd_feed_cache_requests_total",
		Help: "Feed requests answered from the hot cache, by result (hit, miss, stale).",
	}, []string{"result"})
	c.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "feedd_feed_cache_evictions_total",
		Help: "Hot cache entries evicted, least recently used first, to stay within FEEDD_CACHE_MEMORY.",
	})
	collectors := []prometheus.Collector{vec, c.evictions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "feedd_feed_cache_bytes",
			Help: "Memory the hot cache's entries hold (bodies, gzip forms, documents), bounded by FEEDD_CACHE_MEMORY.",
		}, func() float64 { return float64(c.bytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "feedd_feed_cache_entries",
			Help: "Entries in the hot cache.",
		}, func() float64 { return float64(c.count.Load()) }),
	}
	if opts.Registerer != nil {
		for _, col := range collectors {
			if err := opts.Registerer.Register(col); err != nil {
				return nil, err
			}
		}
	}
	c.lastSweep.Store(opts.Now().UnixNano())
	for _, r := range []Result{Hit, Miss, Stale} {
		c.requests[r] = vec.WithLabelValues(r.String())
	}
	return c, nil
}

func (c *Cache) gen(group string) uint64 {
	if g, ok := c.gens.Load(group); ok {
		return g.(*atomic.Uint64).Load()
	}
	return 0
}

// Invalidate drops every entry of group: the next Get of any of its keys
// loads afresh (an entry from before is served only if that load fails, and
// not with a Gone error). Until then the group's entries are the first to
// be evicted.
func (c *Cache) Invalidate(group string) {
	g, ok := c.gens.Load(group)
	if !ok {
		g, _ = c.gens.LoadOrStore(group, new(atomic.Uint64))
	}
	g.(*atomic.Uint64).Add(1)
	c.mu.Lock()
	for e := c.groups[group]; e != nil; e = e.gnext {
		c.lists[b2i(e.variant)].moveToBack(e)
		e.used = 0
	}
	c.mu.Unlock()
}

// InvalidateAll invalidates every group that has entries (see Invalidate).
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	groups := make([]string, 0, len(c.groups))
	for g := range c.groups {
		groups = append(groups, g)
	}
	c.mu.Unlock()
	for _, g := range groups {
		c.Invalidate(g)
	}
}

// lookup returns key's entry and marks it used.
func (c *Cache) lookup(key string) *Entry {
	c.mu.Lock()
	e := c.items[key]
	if e != nil {
		c.tick++
		e.used = c.tick
		if l := &c.lists[b2i(e.variant)]; e != l.head {
			l.unlink(e)
			l.pushFront(e)
		}
	}
	c.mu.Unlock()
	return e
}

// peek returns key's entry without marking it used.
func (c *Cache) peek(key string) *Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items[key]
}

// askedSlots is the size of the table of recently asked variants (64k
// slots, 512 KiB).
const askedSlots = 1 << 16

// admit reports whether key's entry is to be kept, a variant only when it
// was asked for before, and whether it is a variant.
func (c *Cache) admit(group, key string) (keep, variant bool) {
	if c.opts.Variant == nil || !c.opts.Variant(group, key) {
		return true, false
	}
	h := maphash.String(c.seed, key) | 1 // never the empty slot's 0
	slot := &c.asked[h%askedSlots]
	if slot.Load() == h {
		return true, true
	}
	slot.Store(h)
	return false, true
}

// store keeps e under key, replacing what was there, and evicts the least
// recently used entries beyond the bounds.
func (c *Cache) store(key string, e *Entry, variant bool) {
	size := e.cost(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.items[key]; old != nil {
		c.removeLocked(old)
	}
	if size > c.opts.MaxBytes || variant && size > c.opts.MaxVariantBytes {
		return
	}
	c.tick++
	e.key, e.size, e.variant, e.used = key, size, variant, c.tick
	c.items[key] = e
	c.lists[b2i(variant)].pushFront(e)
	if first := c.groups[e.group]; first != nil {
		first.gprev = e
		e.gnext = first
	}
	c.groups[e.group] = e
	c.bytes.Add(size)
	c.count.Add(1)
	if variant {
		c.variantBytes += size
	}
	for c.variantBytes > c.opts.MaxVariantBytes {
		c.evictLocked(c.lists[1].tail)
	}
	for c.bytes.Load() > c.opts.MaxBytes {
		// The least recently used of both lists.
		victim := c.lists[0].tail
		if v := c.lists[1].tail; victim == nil || v != nil && v.used < victim.used {
			victim = v
		}
		c.evictLocked(victim)
	}
}

func (c *Cache) evictLocked(e *Entry) {
	c.removeLocked(e)
	c.evictions.Inc()
}

// removeLocked forgets e. c.mu is held.
func (c *Cache) removeLocked(e *Entry) {
	delete(c.items, e.key)
	c.lists[b2i(e.variant)].unlink(e)
	switch {
	case e.gprev != nil:
		e.gprev.gnext = e.gnext
	case e.gnext != nil:
		c.groups[e.group] = e.gnext
	default:
		delete(c.groups, e.group)
	}
	if e.gnext != nil {
		e.gnext.gprev = e.gprev
	}
	e.gprev, e.gnext = nil, nil
	c.bytes.Add(-e.size)
	c.count.Add(-1)
	if e.variant {
		c.variantBytes -= e.size
	}
}

// recency is a list of entries, most recently used first.
type recency struct {
	head, tail *Entry
}

func (l *recency) pushFront(e *Entry) {
	e.prev, e.next = nil, l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
}

func (l *recency) moveToBack(e *Entry) {
	if e == l.tail {
		return
	}
	l.unlink(e)
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	}
	l.tail = e
	if l.head == nil {
		l.head = e
	}
}

func (l *recency) unlink(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Get returns the entry for key (a member of group), loading it on a miss.
// Concurrent misses for one key share one load. An entry past Fresh is
// returned as Stale and refreshed once in the background.
func (c *Cache) Get(ctx context.Context, group, key string) (*Entry, Result, error) {
	e, r, err := c.get(ctx, group, key)
	if err == nil {
		c.requests[r].Inc()
	}
	return e, r, err
}

// Shared is Get for the entries that loads build on (see NewMetaEntry):
// the same loading, freshness and bound, not counted as a request.
func (c *Cache) Shared(ctx context.Context, group, key string) (*Entry, error) {
	e, _, err := c.get(ctx, group, key)
	return e, err
}

func (c *Cache) get(ctx context.Context, group, key string) (*Entry, Result, error) {
	gen := c.gen(group)
	var old *Entry
	if e := c.lookup(key); e != nil {
		switch age := c.opts.Now().Sub(e.BuiltAt); {
		case age > c.forgetAfter():
			// As good as gone: a load's sweep removes it.
		case e.gen != gen:
			old = e
		case age <= c.opts.Fresh:
			return e, Hit, nil
		case age <= c.opts.MaxStale:
			if e.refreshing.CompareAndSwap(false, true) {
				c.refresh(group, key, gen, e)
			}
			return e, Stale, nil
		default:
			old = e
		}
	}
	e, err := c.load(ctx, group, key, gen)
	if err != nil {
		if old != nil && !c.gone(err) {
			// Serving the previous bytes beats failing the visitor.
			c.opts.Logger.Warn("cache load failed; serving previous entry", slog.String("key", key), slog.Any("error", err))
			return old, Stale, nil
		}
		return nil, Miss, err
	}
	return e, Miss, nil
}

// load runs one shared load for key at generation gen and stores its
// result. Flights are keyed by generation as well: a Get after an Invalidate
// must not join a load that may have read the group before it.
func (c *Cache) load(ctx context.Context, group, key string, gen uint64) (*Entry, error) {
	ch := c.sf.DoChan(key+"\x00"+strconv.FormatUint(gen, 10), func() (v any, err error) {
		// singleflight re-raises a panic of DoChan's function where nobody
		// can recover it, so it must not leave the flight.
		if c.opts.Guard.Run("cache_load", func() { v, err = c.fill(ctx, group, key, gen) }) {
			return nil, ErrLoadPanicked
		}
		return v, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Entry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill is the body of one flight: it loads key and stores the entry.
func (c *Cache) fill(ctx context.Context, group, key string, gen uint64) (*Entry, error) {
	// A caller that missed just before the previous load stored its entry
	// arrives here after that flight ended: use its entry rather than load
	// a second time.
	if e := c.peek(key); e != nil && e.gen == gen && c.opts.Now().Sub(e.BuiltAt) <= c.opts.Fresh {
		return e, nil
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
	defer cancel()
	e, err := c.opts.Load(lctx, group, key)
	if err != nil {
		if c.gone(err) {
			c.drop(group, key)
		}
		return nil, err
	}
	if e == nil {
		return nil, ErrNoEntry
	}
	e.BuiltAt = c.opts.Now()
	e.group, e.gen = group, gen
	// After an invalidation during the load the entry may be older than the
	// group's snapshot: it answers the callers that asked before, but is not
	// stored, so the next Get loads again. (An invalidation between this
	// check and store leaves an entry whose gen is behind: never served fresh.)
	if keep, variant := c.admit(group, key); keep && c.gen(group) == gen {
		c.store(key, e, variant)
	}
	c.sweep(e.BuiltAt)
	return e, nil
}

func (c *Cache) gone(err error) bool { return c.opts.Gone != nil && c.opts.Gone(err) }

// drop forgets the group of key after a load found key gone. Only a key that
// had an entry counts: a request for an unknown id leaves no trace, so
// whatever visitors send costs no memory. A key that had one names something
// that existed, most often its whole group (a deleted feed), so every entry
// of the group goes, and the generation moves on so that a load still in
// flight stores nothing.
func (c *Cache) drop(group, key string) {
	if c.peek(key) == nil {
		return
	}
	c.Invalidate(group)
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.groups[group]; e != nil; e = c.groups[group] {
		c.removeLocked(e)
	}
}

// forgetAfter is the age past which an entry is neither served nor kept.
func (c *Cache) forgetAfter() time.Duration { return 2 * c.opts.MaxStale }

// sweep removes entries older than forgetAfter, at most once per MaxStale.
// It runs on loads: only loads add entries, so memory goes back once
// nobody asks, without a goroutine of its own.
func (c *Cache) sweep(now time.Time) {
	last := c.lastSweep.Load()
	if now.UnixNano()-last < int64(c.opts.MaxStale) || !c.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.lists {
		for e := c.lists[i].tail; e != nil; {
			prev := e.prev
			if now.Sub(e.BuiltAt) > c.forgetAfter() {
				c.removeLocked(e)
			}
			e = prev
		}
	}
}

// refresh replaces old (the entry of key at generation gen) in the
// background.
func (c *Cache) refresh(group, key string, gen uint64, old *Entry) {
	if c.closing.Load() {
		old.refreshing.Store(false)
		return
	}
	c.bg.Add(1)
	c.opts.Guard.Go("cache_refresh", func() {
		defer c.bg.Done()
		// A replaced entry is no longer served; one that was not (even after
		// a panic) lets a later request try again.
		defer old.refreshing.Store(false)
		_, err := c.load(context.Background(), group, key, gen)
		switch {
		case err == nil:
		case c.gone(err):
			// fill dropped the entry.
			c.opts.Logger.Info("cache entry gone", slog.String("key", key), slog.Any("error", err))
		default:
			c.opts.Logger.Warn("cache refresh failed; serving previous entry", slog.String("key", key), slog.Any("error", err))
		}
	})
}

// Close waits for background refreshes and starts no more.
func (c *Cache) Close() {
	c.closing.Store(true)
	c.bg.Wait()
}

// Len is the number of stored entries (fresh or not).
func (c *Cache) Len() int { return int(c.count.Load()) }

// Bytes is the memory the stored entries hold, as counted against
// Options.MaxBytes.
func (c *Cache) Bytes() int64 { return c.bytes.Load() }
