package feed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/feedd/feedd/internal/testutil"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStore is an in-memory FeedStore with the semantics internal/store promises.
type fakeStore struct {
	mu     sync.Mutex
	feeds  map[string]*FeedRecord
	tokens map[string]string
	posts  map[string][]PostRecord
	media  map[string]MediaRecord
	errs   map[string]string // last fetch error per feed
	reads  atomic.Int32      // Feed calls
	views  atomic.Int32      // MarkViewed calls
	down   atomic.Bool       // every call fails
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		feeds:  map[string]*FeedRecord{},
		tokens: map[string]string{},
		posts:  map[string][]PostRecord{},
		media:  map[string]MediaRecord{},
		errs:   map[string]string{},
	}
}

var errDown = errors.New("fake store: down")

// addFeed adds a connected feed (token "tok-<id>") or, with acct nil, an unconnected one.
func (s *fakeStore) addFeed(id string, origins []string, acct *AccountRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &FeedRecord{ID: id, AllowedOrigins: origins, Status: StatusNotConnected}
	if acct != nil {
		a := *acct
		f.Account = &a
		f.Status = StatusActive
		s.tokens[id] = "tok-" + id
	}
	s.feeds[id] = f
}

func (s *fakeStore) feed(id string) FeedRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := *s.feeds[id]
	return f
}

func (s *fakeStore) Feed(ctx context.Context, id string) (FeedRecord, error) {
	s.reads.Add(1)
	if s.down.Load() {
		return FeedRecord{}, errDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.feeds[id]
	if !ok {
		return FeedRecord{}, ErrNotFound
	}
	out := *f
	if f.Account != nil {
		a := *f.Account
		out.Account = &a
	}
	return out, nil
}

func (s *fakeStore) Posts(ctx context.Context, id string) ([]PostRecord, error) {
	if s.down.Load() {
		return nil, errDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.posts[id]), nil
}

func (s *fakeStore) MediaByKeys(ctx context.Context, keys []string) (map[string]MediaRecord, error) {
	if s.down.Load() {
		return nil, errDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]MediaRecord{}
	for _, k := range keys {
		if m, ok := s.media[k]; ok {
			out[k] = m
		}
	}
	return out, nil
}

func (s *fakeStore) PutMedia(ctx context.Context, m MediaRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media[m.Key] = m
	return nil
}

func (s *fakeStore) ReplacePosts(ctx context.Context, id string, acct *AccountRecord, posts []PostRecord, at time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.feeds[id]
	if !ok {
		return nil, ErrNotFound
	}
	if acct != nil {
		a := *acct
		f.Account = &a
	}
	f.FetchedAt = at
	s.posts[id] = slices.Clone(posts)
	// Media rows no feed references any more are deleted; their files returned.
	used := map[string]bool{}
	for fid, ps := range s.posts {
		if ff := s.feeds[fid]; ff != nil && ff.Account != nil {
			used[ff.Account.AvatarKey] = true
		}
		for _, p := range ps {
			used[p.MediaKey] = true
			for _, c := range p.Children {
				used[c.MediaKey] = true
			}
		}
	}
	var files []string
	for k, m := range s.media {
		if !used[k] {
			for _, v := range m.Variants {
				files = append(files, v.File)
			}
			delete(s.media, k)
		}
	}
	return files, nil
}

func (s *fakeStore) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]FeedRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []FeedRecord
	for _, f := range s.feeds {
		if f.Status == StatusActive && !f.NextFetchAt.After(now) && !f.LastViewedAt.Before(viewedSince) {
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b FeedRecord) int { return cmpStr(a.ID, b.ID) })
	return out, nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *fakeStore) MarkViewed(ctx context.Context, id string, at time.Time) error {
	s.views.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.feeds[id]; ok {
		f.LastViewedAt = at
	}
	return nil
}

func (s *fakeStore) RecordFetch(ctx context.Context, id string, r FetchResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.feeds[id]
	f.LastFetchAt, f.LastFetchOK, f.NextFetchAt, f.FetchFailures = r.At, r.OK, r.NextFetchAt, r.Failures
	s.errs[id] = r.Err
	return nil
}

func (s *fakeStore) SetStatus(ctx context.Context, id, status, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.feeds[id].Status = status
	return nil
}

func (s *fakeStore) AccessToken(ctx context.Context, id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok {
		return "", ErrNotConnected
	}
	return t, nil
}

// graphErr is the fake client's classified error.
type graphErr struct {
	kind  ErrorKind
	retry time.Duration
}

func (e *graphErr) Error() string { return fmt.Sprintf("graph error kind %d", e.kind) }

// fakeGraph serves a settable media list and counts calls.
type fakeGraph struct {
	mu         sync.Mutex
	items      []GraphMedia
	profile    GraphProfile
	err        error
	gate       chan struct{} // when set, Media waits for it
	onMedia    func()        // runs inside Media (e.g. to race a token refresh)
	mediaCalls atomic.Int32
	meCalls    atomic.Int32
	tokens     []string
}

func (g *fakeGraph) set(items []GraphMedia, err error) {
	g.mu.Lock()
	g.items, g.err = items, err
	g.mu.Unlock()
}

func (g *fakeGraph) Media(ctx context.Context, acct, token string, n int) ([]GraphMedia, error) {
	g.mediaCalls.Add(1)
	if g.gate != nil {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if g.onMedia != nil {
		g.onMedia()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tokens = append(g.tokens, token)
	if g.err != nil {
		return nil, g.err
	}
	return slices.Clone(g.items[:min(n, len(g.items))]), nil
}

func (g *fakeGraph) Me(ctx context.Context, acct, token string) (GraphProfile, error) {
	g.meCalls.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return GraphProfile{}, g.err
	}
	return g.profile, nil
}

func (g *fakeGraph) Classify(err error) (ErrorKind, time.Duration) {
	var e *graphErr
	if errors.As(err, &e) {
		return e.kind, e.retry
	}
	return KindTransient, 0
}

// fakeMedia "stores" images by URL: three sizes of a 1080×1350 picture
// named after the URL's hash, and counts downloads per URL.
type fakeMedia struct {
	mu      sync.Mutex
	fetched map[string]int
	fail    map[string]bool
	removed []string
	gate    func(url string) // when set, runs before each fetch (outside the lock)
}

func newFakeMedia() *fakeMedia {
	return &fakeMedia{fetched: map[string]int{}, fail: map[string]bool{}}
}

func (m *fakeMedia) Fetch(ctx context.Context, url string) (MediaRecord, error) {
	if m.gate != nil {
		m.gate(url)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetched[url]++
	if m.fail[url] {
		return MediaRecord{}, errors.New("media: upstream 403")
	}
	sum := sha256.Sum256([]byte(url))
	h := hex.EncodeToString(sum[:8])
	// Largest first on purpose: the feed must sort smallest first.
	return MediaRecord{Width: 1080, Height: 1350, Color: "#" + h[:6], Bytes: 300,
		Variants: []Variant{
			{Width: 1080, Height: 1350, File: h[:2] + "/" + h + "-1080.jpg", Bytes: 200},
			{Width: 320, Height: 400, File: h[:2] + "/" + h + "-320.jpg", Bytes: 30},
			{Width: 640, Height: 800, File: h[:2] + "/" + h + "-640.jpg", Bytes: 70},
		}}, nil
}

func (m *fakeMedia) Remove(files []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removed = append(m.removed, files...)
	return nil
}

func (m *fakeMedia) count(url string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetched[url]
}

type clock = testutil.Clock

// fixture is a service over fakes with one connected feed "feed1".
type fixture struct {
	store *fakeStore
	graph *fakeGraph
	media *fakeMedia
	clock *clock
	svc   *Service
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fx := &fixture{
		store: newFakeStore(),
		graph: &fakeGraph{items: sampleMedia(), profile: GraphProfile{ID: "app1", UserID: "1784", Username: "acme", Name: "Acme", ProfilePictureURL: "https://scontent.cdninstagram.com/v/avatar1.jpg?oh=sig&oe=AAAA"}},
		media: newFakeMedia(),
		clock: &clock{T: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)},
	}
	fx.store.addFeed("feed1", nil, &AccountRecord{AppUserID: "app1", IGUserID: "1784", Username: "acme", Name: "Acme", AccountType: "BUSINESS"})
	fx.store.feeds["feed1"].LastViewedAt = fx.clock.Now() // a visitor saw it
	fx.svc = fx.newService(t)
	return fx
}

func (fx *fixture) newService(t testing.TB) *Service {
	t.Helper()
	svc, err := New(Options{
		Store: fx.store, Graph: fx.graph, Media: fx.media,
		PublicURL:     "https://feeds.example.com/",
		FetchInterval: 15 * time.Minute,
		Now:           fx.clock.Now,
		Jitter:        func() float64 { return 0.5 },
		Logger:        quietLogger(),
		CacheFresh:    time.Minute,
		CacheMaxStale: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func ptr[T any](v T) *T { return &v }

func cdn(name string) string {
	return "https://scontent-ams2-1.cdninstagram.com/v/t51.29350-15/" + name + ".jpg?stp=dst-jpg&oh=00_sig&oe=6A1B2C3D"
}

func ts(day int) time.Time { return time.Date(2026, 11, day, 8, 25, 28, 0, time.UTC) }

// sampleMedia is a newest-first media list with one of each kind.
func sampleMedia() []GraphMedia {
	return []GraphMedia{
		{ID: "101", MediaType: "IMAGE", MediaURL: cdn("img101"), Permalink: "https://www.instagram.com/p/A101/", Timestamp: ts(20),
			Caption: ptr("Sunrise over the harbour. #sea #morning @friend"), LikeCount: ptr[int64](12), CommentsCount: ptr[int64](3)},
		{ID: "102", MediaType: "CAROUSEL_ALBUM", MediaURL: cdn("c1021"), Permalink: "https://www.instagram.com/p/A102/", Timestamp: ts(19),
			Caption: ptr("Three views"), LikeCount: ptr[int64](5), CommentsCount: ptr[int64](0),
			Children: []GraphMedia{
				{ID: "1021", MediaType: "IMAGE", MediaURL: cdn("c1021"), AltText: ptr("A red door")},
				{ID: "1022", MediaType: "VIDEO", MediaURL: "https://video.cdninstagram.com/v/c1022.mp4?oh=x", ThumbnailURL: cdn("c1022thumb")},
				{ID: "1023", MediaType: "IMAGE", MediaURL: cdn("c1023")},
			}},
		{ID: "103", MediaType: "VIDEO", MediaURL: "https://video.cdninstagram.com/v/r103.mp4?oh=x", ThumbnailURL: cdn("r103thumb"),
			Permalink: "https://www.instagram.com/reel/R103/", Timestamp: ts(18), Caption: ptr("Reel with sound"), CommentsCount: ptr[int64](1)},
		// A reel with copyrighted audio: no media_url.
		{ID: "104", MediaType: "VIDEO", ThumbnailURL: cdn("r104thumb"), Permalink: "https://www.instagram.com/reel/R104/", Timestamp: ts(17),
			LikeCount: ptr[int64](7), CommentsCount: ptr[int64](0)},
		{ID: "105", MediaType: "VIDEO", MediaURL: "https://video.cdninstagram.com/v/v105.mp4?oh=x", ThumbnailURL: cdn("v105thumb"),
			Permalink: "https://www.instagram.com/p/V105/", Timestamp: ts(16), Caption: ptr("#only #tags"), CommentsCount: ptr[int64](2)},
	}
}
