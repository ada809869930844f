package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
)

// Options configure a Service. Store is required; polling also needs Graph,
// Media and Connections.
type Options struct {
	Store       Store
	Graph       Graph
	Media       Media
	Connections Connections

	// PublicURL is FEEDD_PUBLIC_URL: stored images are served as
	// PublicURL + "/media/" + file.
	PublicURL string
	// FetchInterval is FEEDD_FETCH_INTERVAL (default 15m).
	FetchInterval time.Duration
	// PollEvery is how often the poller looks for due feeds (default 30s,
	// or FetchInterval when that is shorter).
	PollEvery time.Duration
	// ViewedWindow: feeds not requested for this long are not polled
	// (default 30 days); the first request after that starts a poll and
	// is answered stale until the poll ends.
	ViewedWindow time.Duration
	// ViewDebounce: a feed's view is written at most this often (default 1h).
	ViewDebounce time.Duration
	// KeepPosts is how many newest posts a poll asks for (default 50).
	KeepPosts int
	// FetchTimeout bounds one fetch, media included (default 2m).
	FetchTimeout time.Duration
	// ProfileEvery is how often the account profile (avatar, name) is
	// re-read with an extra Graph call (default 24h).
	ProfileEvery time.Duration
	// MediaWorkers is how many images download at once (default 4).
	MediaWorkers int
	// PollWorkers is how many polls the poller runs at once (default 8),
	// and PollsPerAccount how many of them may be for one Instagram account
	// (default 2): an account that answers slowly holds no more than that.
	PollWorkers, PollsPerAccount int
	// CacheFresh and CacheMaxStale tune the hot cache (defaults 5m and 1h).
	CacheFresh, CacheMaxStale time.Duration
	// CacheMemory is FEEDD_CACHE_MEMORY: the bytes the hot cache may hold
	// (default cache.DefaultMaxBytes).
	CacheMemory int64
	// Claims, with several instances on one database, makes each poll run
	// on one of them (nil: this instance polls every feed).
	Claims Claims
	// Events tells the other instances which feeds' cached answers to drop
	// (nil: no other instance).
	Events Events

	Now        func() time.Time
	Jitter     func() float64 // uniform in [0,1); default math/rand
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Guard recovers panics of the service's goroutines (nil: recovered
	// and logged, not counted).
	Guard *guard.Guard
}

// Service builds feed documents from stored snapshots, keeps them in the hot
// cache, and polls Instagram for connected feeds.
type Service struct {
	opts   Options
	store  Store
	graph  Graph
	media  Media
	conns  Connections
	guard  *guard.Guard
	log    *slog.Logger
	now    func() time.Time
	public string

	cache   *cache.Cache
	fetches singleflight.Group
	metrics *metrics

	mu          sync.Mutex
	viewed      map[string]time.Time    // last MarkViewed written, per feed
	profileRead map[string]profileState // last Me call, per feed
	ages        map[string]time.Time    // fetched_at per feed, for the age gauge
	// videoRefused holds, per feed, the videos its source refused (see
	// storeVideos).
	videoRefused map[string]map[string]videoRefusal

	closed   bool // under mu
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	queue   pollQueue
	polling sync.WaitGroup // polls the poller started
}

// errClosed is returned by fetches started after Close.
var errClosed = errors.New("feed: service closed")

// track registers a background task unless the service is closing.
func (s *Service) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	return true
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("feed: Options.Store is required")
	}
	if opts.FetchInterval <= 0 {
		opts.FetchInterval = 15 * time.Minute
	}
	if opts.PollEvery <= 0 {
		opts.PollEvery = min(30*time.Second, opts.FetchInterval)
	}
	if opts.ViewedWindow <= 0 {
		opts.ViewedWindow = 30 * 24 * time.Hour
	}
	if opts.ViewDebounce <= 0 {
		opts.ViewDebounce = time.Hour
	}
	if opts.KeepPosts <= 0 {
		opts.KeepPosts = 50
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 2 * time.Minute
	}
	if opts.ProfileEvery <= 0 {
		opts.ProfileEvery = 24 * time.Hour
	}
	if opts.MediaWorkers <= 0 {
		opts.MediaWorkers = 4
	}
	if opts.PollWorkers <= 0 {
		opts.PollWorkers = 8
	}
	if opts.PollsPerAccount <= 0 {
		opts.PollsPerAccount = 2
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{
		opts:        opts,
		store:       opts.Store,
		graph:       opts.Graph,
		media:       opts.Media,
		conns:       opts.Connections,
		guard:       opts.Guard,
		log:         opts.Logger,
		now:         opts.Now,
		public:      strings.TrimRight(opts.PublicURL, "/"),
		viewed:      make(map[string]time.Time),
		profileRead: make(map[string]profileState),
		ages:        make(map[string]time.Time),
		queue: pollQueue{
			waiting: make(map[string][]string),
			running: make(map[string]int),
			member:  make(map[string]bool),
			planned: make(map[string]time.Time),
		},
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	var err error
	if s.metrics, err = newMetrics(opts.Registerer, s); err != nil {
		return nil, err
	}
	s.cache, err = cache.New(cache.Options{
		Load:     s.load,
		Gone:     gone,
		Fresh:    opts.CacheFresh,
		MaxStale: opts.CacheMaxStale,
		MaxBytes: opts.CacheMemory,
		// Pages other than a feed's default one are kept once asked for
		// twice: a flood of made-up queries fills no memory.
		Variant:    func(id, key string) bool { return key != id && key != snapshotKey(id) },
		Now:        opts.Now,
		Logger:     opts.Logger,
		Registerer: opts.Registerer,
		Guard:      opts.Guard,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops background fetches and cache refreshes and waits for them.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.bgCancel()
	s.polling.Wait()
	s.bg.Wait()
	s.cache.Close()
}

// Events sends feed changes to the other instances; *cluster.Events
// implements it.
type Events interface {
	Publish(feedID string)
}

// Invalidate drops the cached responses of a feed, e.g. after the owner
// changed its allowed origins or disconnected it, on this instance and
// (through Options.Events) on the others. Call it after the change is
// committed.
func (s *Service) Invalidate(id string) {
	s.cache.Invalidate(id)
	if s.opts.Events != nil {
		s.opts.Events.Publish(id)
	}
}

// DropCached drops this instance's cached responses of a feed that
// another instance changed.
func (s *Service) DropCached(id string) { s.cache.Invalidate(id) }

// DropAllCached drops every cached response of this instance, when changes
// of other instances may have been missed.
func (s *Service) DropAllCached() { s.cache.InvalidateAll() }

// Entry returns the ready-to-send response for a feed and query, from the
// hot cache when possible. Unknown feeds give model.ErrNotFound; ids that
// no feed can have never reach the cache or the database.
func (s *Service) Entry(ctx context.Context, id string, q Query) (*cache.Entry, error) {
	if !model.ValidFeedID(id) {
		return nil, model.ErrNotFound
	}
	e, _, err := s.cache.Get(ctx, id, entryKey(id, q))
	if err != nil {
		e, err = s.moved(ctx, id, err)
	}
	return e, err
}

// moved answers a cursor that names no stored post with the page it leads
// to, cached under that page's own cursor: whatever cursors visitors make
// up, the entries stay one per stored post. Twice at most: a poll may land
// between the two loads.
func (s *Service) moved(ctx context.Context, id string, err error) (*cache.Entry, error) {
	var e *cache.Entry
	for range 2 {
		var m *cursorMoved
		if !errors.As(err, &m) {
			return nil, err
		}
		if e, _, err = s.cache.Get(ctx, id, entryKey(id, m.q)); err == nil {
			return e, nil
		}
	}
	return nil, err
}

// entryKey is the cache key of a feed's answer to q.
func entryKey(id string, q Query) string {
	if k := q.key(); k != "" {
		return id + "?" + k
	}
	return id
}

// cursorMoved is the load error for a cursor that names no stored post (or
// names one in another spelling): q is the same query with the cursor of
// the page that answers it.
type cursorMoved struct{ q Query }

func (e *cursorMoved) Error() string { return "feed: cursor names no stored post" }

// gone reports the load errors after which the cache drops the key's
// entries instead of serving them: a deleted feed, a cursor whose post is
// gone.
func gone(err error) bool {
	var moved *cursorMoved
	return errors.Is(err, model.ErrNotFound) || errors.As(err, &moved)
}

// Doc returns the feed document for the HTML renderer, with the feed's
// allowed origins, cut from the feed's cached snapshot. The document shares
// its posts' contents with the snapshot: callers must not modify them.
// limit 0 means DefaultLimit; bad values give a 400 *web.Error.
func (s *Service) Doc(ctx context.Context, id string, limit int, after string, types []string) (*Doc, []string, error) {
	q, err := NewQuery(limit, after, types)
	if err != nil {
		return nil, nil, err
	}
	if !model.ValidFeedID(id) {
		return nil, nil, model.ErrNotFound
	}
	e, _, err := s.cache.Get(ctx, id, snapshotKey(id))
	if err != nil {
		return nil, nil, err
	}
	sn := e.Meta.(*snapshot)
	doc, _ := sn.page(q)
	return doc, sn.allowed, nil
}

// snapshotKey is the cache key of a feed's snapshot (a meta entry); no
// query's key ends in '#'.
func snapshotKey(id string) string { return id + "#" }

// load builds a cache entry (the cache's Loader): the feed's snapshot, or
// the answer to a query, the default one straight from the database, the
// others cut from the cached snapshot.
func (s *Service) load(ctx context.Context, id, key string) (*cache.Entry, error) {
	if key == snapshotKey(id) {
		sn, err := s.readSnapshot(ctx, id)
		if err != nil {
			return nil, err
		}
		return cache.NewMetaEntry(sn), nil
	}
	q := DefaultQuery
	if _, k, ok := strings.Cut(key, "?"); ok {
		var valid bool
		if q, valid = queryFromKey(k); !valid {
			return nil, fmt.Errorf("feed: bad cache key %q", key)
		}
	}
	var sn *snapshot
	if q.key() == "" {
		// The hot page of a feed nobody pages through costs no snapshot
		// entry besides its own.
		var err error
		if sn, err = s.readSnapshot(ctx, id); err != nil {
			return nil, err
		}
	} else {
		e, err := s.cache.Shared(ctx, id, snapshotKey(id))
		if err != nil {
			return nil, err
		}
		sn = e.Meta.(*snapshot)
	}
	doc, after := sn.page(q)
	if after != q.After {
		canon, err := newQuery(q.Limit, after, q.Types)
		if err != nil {
			return nil, err
		}
		return nil, &cursorMoved{q: canon}
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return cache.NewEntry(body, newEntryMeta(sn.allowed))
}

// readSnapshot reads the feed and builds its snapshot. Reading the feed is
// a view: it is recorded, and it starts a poll of a feed never fetched or
// left outdated.
func (s *Service) readSnapshot(ctx context.Context, id string) (*snapshot, error) {
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		if errors.Is(err, model.ErrNotFound) {
			s.mu.Lock()
			delete(s.ages, id) // a deleted feed leaves the age gauge
			s.mu.Unlock()
		}
		return nil, err
	}
	now := s.now()
	s.markViewed(ctx, f, now)
	if s.pollOnView(f, now) {
		// Answer now with what is stored and fetch in the background.
		// Never make the visitor wait.
		s.fetchInBackground(id)
	}
	return s.buildSnapshot(ctx, f)
}

// pollOnView reports whether a visitor's read starts a poll at once: the
// feed is connected, due, and has nothing fetched yet or an outdated
// snapshot (the poller skips feeds nobody viewed within ViewedWindow).
func (s *Service) pollOnView(f model.Feed, now time.Time) bool {
	if f.Status != model.StatusActive || f.NextFetchAt.After(now) {
		return false
	}
	return f.FetchedAt.IsZero() || s.outdated(f, now)
}

// outdated reports a snapshot at least ViewedWindow old: no poll kept it
// fresh, so it is served stale until a poll replaces it.
func (s *Service) outdated(f model.Feed, now time.Time) bool {
	return !f.FetchedAt.IsZero() && now.Sub(f.FetchedAt) >= s.opts.ViewedWindow
}

// markViewed writes the view at most once per ViewDebounce per feed, so the
// poller knows the feed is wanted without a write per request.
func (s *Service) markViewed(ctx context.Context, f model.Feed, now time.Time) {
	s.mu.Lock()
	last, ok := s.viewed[f.ID]
	if !ok {
		last = f.LastViewedAt
	}
	due := now.Sub(last) >= s.opts.ViewDebounce
	if due {
		s.viewed[f.ID] = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.store.MarkViewed(ctx, f.ID, now); err != nil {
		s.log.Warn("mark feed viewed", slog.String("feed", f.ID), slog.Any("error", err))
		s.mu.Lock()
		delete(s.viewed, f.ID)
		s.mu.Unlock()
	}
}

func (s *Service) fetchInBackground(id string) {
	if !s.track() {
		return
	}
	s.guard.Go("feed_background_fetch", func() {
		defer s.bg.Done()
		if err := s.fetchShared(s.bgCtx, id, false); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Info("background fetch failed", slog.String("feed", id), slog.Any("error", err))
		}
	})
}
