package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testutil"
)

type clock = testutil.Clock

// The real dependencies fit the service's interfaces as they are.
var (
	_ Store = (*store.Store)(nil)
	_ Graph = (*graph.Client)(nil)
	_ Media = (*media.Store)(nil)
)

// env runs the service on the real store (SQLite in a temp dir), the real
// Graph client talking to the sandbox, and the real media store, with one
// feed connected to a sandbox account.
type env struct {
	t        testing.TB
	clock    *clock
	sb       *sandbox.Sandbox
	graph    *graph.Client
	st       *store.Store
	dbPath   string
	media    *media.Store
	mediaDir string
	conns    *conns
	opts     envOptions
	acct     string // the sandbox account the feed is connected to
	user     string // its username
	id       string // the connected feed
	svc      *Service

	// names maps sandbox media ids of sample posts to their names.
	names map[string]string
}

// envOptions adjust an env. Wrappers put a fault (or a counter) in front of
// one real dependency.
type envOptions struct {
	account  string // default sandbox.AccountCreator
	pictures bool   // real pictures in three sizes instead of tiny placeholders
	store    func(*store.Store) Store
	media    func(Media) Media
	graph    func(Graph) Graph
	options  func(*Options)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv starts a sandbox and a store and connects a new feed to the
// account, as if a visitor had just seen it.
func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.account == "" {
		o.account = sandbox.AccountCreator
	}
	e := &env{t: t, clock: &clock{T: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}, opts: o, acct: o.account,
		mediaDir: t.TempDir(), dbPath: filepath.Join(t.TempDir(), "feedd.db"), names: map[string]string{}}
	e.sb = sandbox.New(sandbox.Options{Now: e.clock.Now, Seed: 7, DisableImageGenerator: !o.pictures})
	mux := http.NewServeMux()
	mux.Handle("/sandbox/", e.sb)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := e.sb.SetBaseURL(srv.URL + "/sandbox"); err != nil {
		t.Fatal(err)
	}
	var err error
	e.graph, err = graph.New(graph.Config{
		AppID: e.sb.AppID(), AppSecret: e.sb.AppSecret(),
		AuthorizeURL: e.sb.AuthorizeURL(), TokenURL: e.sb.TokenURL(), GraphURL: e.sb.GraphURL(),
		Now:   e.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }, // quick retries, no waiting
		// The clock stands still while the env polls: an account budget
		// would only pile up waits. Budgets are internal/graph's tests.
		AccountRate: 1e9,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	hosts, err := media.ParseHosts(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	e.media, err = media.New(media.Options{Dir: e.mediaDir, Hosts: hosts, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.media.Close() })
	e.st = e.openStore()
	e.conns = &conns{st: e.st}
	ctx := context.Background()
	f, err := e.st.CreateFeed(ctx, "Shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.id = f.ID
	e.connect(e.id, o.account)
	if err := e.st.MarkViewed(ctx, e.id, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.svc = e.newService()
	return e
}

func (e *env) openStore() *store.Store {
	e.t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := store.Open(context.Background(), e.dbPath, box, store.Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// connect connects feed id to a sandbox account with a fresh long-lived
// token, as the connection service does, and deletes the files the
// connect orphaned.
func (e *env) connect(id, account string) string {
	e.t.Helper()
	a, err := e.sb.Account(account)
	if err != nil {
		e.t.Fatal(err)
	}
	if account == e.acct {
		e.user = a.Username
	}
	obtained := e.clock.Now().Add(-48 * time.Hour)
	tok := e.sb.MintLongLivedToken(account, obtained)
	_, files, err := e.st.Connect(context.Background(), id, store.AnyGeneration,
		model.Account{AppUserID: a.ID, IGUserID: a.UserID, Username: a.Username, Name: a.Name, AccountType: a.AccountType},
		model.Token{AccessToken: tok, TokenInfo: model.TokenInfo{ObtainedAt: obtained, ExpiresAt: obtained.Add(sandbox.LongTokenTTL)}})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.media.Remove(files); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// newService builds a service over the env's dependencies (through the
// wrappers of its options) and closes it at the end of the test.
func (e *env) newService() *Service {
	e.t.Helper()
	svc, err := New(e.options())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(svc.Close)
	return svc
}

func (e *env) options() Options {
	var st Store = e.st
	if e.opts.store != nil {
		st = e.opts.store(e.st)
	}
	var md Media = e.media
	if e.opts.media != nil {
		md = e.opts.media(e.media)
	}
	var gr Graph = e.graph
	if e.opts.graph != nil {
		gr = e.opts.graph(e.graph)
	}
	o := Options{
		Store: st, Graph: gr, Media: md, Connections: e.conns,
		PublicURL:     "https://feeds.example.com/",
		FetchInterval: 15 * time.Minute,
		Now:           e.clock.Now,
		Jitter:        func() float64 { return 0.5 },
		Logger:        quietLogger(),
		CacheFresh:    time.Minute,
		CacheMaxStale: 10 * time.Minute,
	}
	if e.opts.options != nil {
		e.opts.options(&o)
	}
	return o
}

// feed reads the connected feed from the store.
func (e *env) feed() model.Feed {
	e.t.Helper()
	f, err := e.st.Feed(context.Background(), e.id)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// fetchNow is the owner's "refresh now" on the connected feed.
func (e *env) fetchNow() error {
	return e.svc.FetchNow(context.Background(), e.id)
}

// fetchJSON returns the feed body for a raw query string.
func (e *env) fetchJSON(t testing.TB, id, rawQuery string) []byte {
	t.Helper()
	v, _ := url.ParseQuery(rawQuery)
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	en, err := e.svc.Entry(context.Background(), id, q)
	if err != nil {
		t.Fatalf("Entry(%s, %q): %v", id, rawQuery, err)
	}
	return en.JSON
}

func (e *env) doc(t testing.TB, rawQuery string) Doc {
	t.Helper()
	return e.docOf(t, e.id, rawQuery)
}

func (e *env) docOf(t testing.TB, id, rawQuery string) Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal(e.fetchJSON(t, id, rawQuery), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// ids lists a document's posts by name (sample posts) or media id.
func (e *env) ids(d Doc) string {
	var s []string
	for _, p := range d.Posts {
		s = append(s, e.name(p.ID))
	}
	return strings.Join(s, ",")
}

func (e *env) name(id string) string {
	if n, ok := e.names[id]; ok {
		return n
	}
	return id
}

// calls counts the sandbox's calls of one endpoint.
func (e *env) calls(endpoint string) int {
	n := 0
	for _, c := range e.sb.Calls() {
		if c.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// cdnPaths counts the sandbox's CDN downloads per path.
func (e *env) cdnPaths() map[string]int {
	out := map[string]int{}
	for _, c := range e.sb.Calls() {
		if c.Endpoint == sandbox.EndpointCDN {
			out[c.Path]++
		}
	}
	return out
}

// localFile is the path in the media dir of a served image URL.
func (e *env) localFile(t testing.TB, rawURL string) string {
	t.Helper()
	name, ok := strings.CutPrefix(rawURL, "https://feeds.example.com/media/")
	if !ok {
		t.Fatalf("image URL %s is not a local one", rawURL)
	}
	return filepath.Join(e.mediaDir, filepath.FromSlash(name))
}

func (e *env) fileExists(t testing.TB, rawURL string) bool {
	t.Helper()
	_, err := os.Stat(e.localFile(t, rawURL))
	return err == nil
}

// mediaFiles lists every stored image file.
func (e *env) mediaFiles() []string {
	e.t.Helper()
	var out []string
	err := filepath.WalkDir(e.mediaDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(e.mediaDir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// clearPosts deletes every post of the account at Instagram.
func (e *env) clearPosts() {
	e.t.Helper()
	posts, err := e.sb.Posts(e.acct)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range posts {
		if err := e.sb.DeletePost(e.acct, p.ID); err != nil {
			e.t.Fatal(err)
		}
	}
}

// addPost publishes a post on the account under a name for ids.
func (e *env) addPost(name string, sp sandbox.PostSpec) string {
	e.t.Helper()
	id, err := e.sb.AddPost(e.acct, sp)
	if err != nil {
		e.t.Fatal(err)
	}
	e.names[id] = name
	return id
}

// idOf is the media id of a sample post.
func (e *env) idOf(name string) string {
	for id, n := range e.names {
		if n == name {
			return id
		}
	}
	e.t.Fatalf("no post named %s", name)
	return ""
}

func ts(day int) time.Time { return time.Date(2026, 11, day, 8, 25, 28, 0, time.UTC) }

// useSample replaces the account's posts by five posts, newest first, with
// one of each kind:
//
//	101 image with a caption, 102 carousel (image with alt text, video,
//	image), 103 reel, 104 reel with copyrighted audio (no media_url, no
//	caption), 105 video whose caption is only hashtags.
func (e *env) useSample() {
	e.t.Helper()
	e.clearPosts()
	e.addPost("101", sandbox.PostSpec{Caption: "Sunrise over the harbour. #sea #morning @friend", Likes: 12, Comments: 3, Timestamp: ts(20)})
	e.addPost("102", sandbox.PostSpec{MediaType: sandbox.MediaCarousel, Caption: "Three views", Likes: 5, Timestamp: ts(19),
		Children: []sandbox.PostSpec{{AltText: "A red door"}, {MediaType: sandbox.MediaVideo}, {}}})
	e.addPost("103", sandbox.PostSpec{MediaType: sandbox.MediaVideo, Reel: true, Caption: "Reel with sound", HideLikes: true, Comments: 1, Timestamp: ts(18)})
	e.addPost("104", sandbox.PostSpec{MediaType: sandbox.MediaVideo, Reel: true, NoMediaURL: true, Likes: 7, Timestamp: ts(17)})
	e.addPost("105", sandbox.PostSpec{MediaType: sandbox.MediaVideo, Caption: "#only #tags", HideLikes: true, Comments: 2, Timestamp: ts(16)})
}

// graphMedia reads the account's media as the poller would, for a test
// that needs to know the CDN URL of a post (it is one Graph call more).
func (e *env) graphMedia() map[string]graph.Media {
	e.t.Helper()
	tok, err := e.st.Token(context.Background(), e.id)
	if err != nil {
		e.t.Fatal(err)
	}
	a, _ := e.sb.Account(e.acct)
	items, err := e.graph.Media(context.Background(), a.UserID, tok.AccessToken, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]graph.Media{}
	for _, m := range items {
		out[e.name(m.ID)] = m
	}
	return out
}

func urlPath(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// conns is the connection lifecycle as the poller sees it, over the real
// store: the token from store.Token, a rejection through store.ChangeStatus
// conditioned on the token. It records what the poller asked.
type conns struct {
	st *store.Store

	mu       sync.Mutex
	gate     chan struct{}    // when set, AccessToken waits for it
	onToken  func(tok string) // runs in AccessToken after the read
	tokens   []string         // tokens handed out, in order
	rejected []rejection      // TokenRejected calls
	entered  atomic.Int32     // AccessToken calls
}

type rejection struct {
	feedID, source, token, reason string
	gen                           int64
	err                           error
}

func (c *conns) AccessToken(ctx context.Context, feedID string) (string, error) {
	c.entered.Add(1)
	c.mu.Lock()
	gate, hook := c.gate, c.onToken
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	t, err := c.st.Token(ctx, feedID)
	if err != nil {
		return "", err
	}
	if hook != nil {
		hook(t.AccessToken)
	}
	c.mu.Lock()
	c.tokens = append(c.tokens, t.AccessToken)
	c.mu.Unlock()
	return t.AccessToken, nil
}

func (c *conns) TokenRejected(ctx context.Context, feedID string, gen int64, token, reason string) error {
	_, _, err := c.st.ChangeStatus(ctx, model.StatusChange{FeedID: feedID, Generation: gen, To: model.StatusNeedsReauth, Reason: reason, IfToken: token})
	c.mu.Lock()
	c.rejected = append(c.rejected, rejection{feedID: feedID, token: token, reason: reason, gen: gen, err: err})
	c.mu.Unlock()
	return err
}

func (c *conns) SourceAccessToken(ctx context.Context, feedID, sourceID string) (string, error) {
	t, err := c.st.SourceToken(ctx, feedID, sourceID)
	return t.AccessToken, err
}

func (c *conns) SourceTokenRejected(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, token, reason string) error {
	_, _, err := c.st.ChangeSourceStatus(ctx, model.SourceChange{FeedID: feedID, SourceID: sourceID, FeedGeneration: feedGen,
		Generation: srcGen, To: model.StatusNeedsReauth, Reason: reason, IfToken: token})
	c.mu.Lock()
	c.rejected = append(c.rejected, rejection{feedID: feedID, source: sourceID, token: token, reason: reason, gen: srcGen, err: err})
	c.mu.Unlock()
	return err
}

func (c *conns) setGate(g chan struct{}) {
	c.mu.Lock()
	c.gate = g
	c.mu.Unlock()
}

func (c *conns) setOnToken(fn func(string)) {
	c.mu.Lock()
	c.onToken = fn
	c.mu.Unlock()
}

func (c *conns) lastToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tokens) == 0 {
		return ""
	}
	return c.tokens[len(c.tokens)-1]
}

func (c *conns) rejections() []rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rejection(nil), c.rejected...)
}

// countingStore counts the feed reads, snapshot reads and view writes that
// reach the store.
type countingStore struct {
	*store.Store
	reads, posts, views atomic.Int32
}

func (s *countingStore) Posts(ctx context.Context, feedID string) ([]model.Post, error) {
	s.posts.Add(1)
	return s.Store.Posts(ctx, feedID)
}

func (s *countingStore) Feed(ctx context.Context, id string) (model.Feed, error) {
	s.reads.Add(1)
	return s.Store.Feed(ctx, id)
}

func (s *countingStore) MarkViewed(ctx context.Context, id string, at time.Time) error {
	s.views.Add(1)
	return s.Store.MarkViewed(ctx, id, at)
}

// failingMedia fails downloads whose URL path fail names, as a CDN answering
// 403 for one image would.
type failingMedia struct {
	Media
	mu   sync.Mutex
	fail map[string]bool
}

func (m *failingMedia) Fetch(ctx context.Context, rawURL string) (model.Media, error) {
	m.mu.Lock()
	bad := m.fail[pathOf(rawURL)]
	m.mu.Unlock()
	if bad {
		return model.Media{}, &media.UpstreamError{Status: http.StatusForbidden}
	}
	return m.Media.Fetch(ctx, rawURL)
}

func (m *failingMedia) set(path string, fail bool) {
	m.mu.Lock()
	m.fail[path] = fail
	m.mu.Unlock()
}

func pathOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Path
}

// gatedMedia holds downloads for which hold says so until release is closed.
type gatedMedia struct {
	Media
	hold    func(rawURL string) bool
	reached chan struct{}
	once    sync.Once
	release chan struct{}
}

func newGatedMedia(m Media, hold func(string) bool) *gatedMedia {
	return &gatedMedia{Media: m, hold: hold, reached: make(chan struct{}), release: make(chan struct{})}
}

func (m *gatedMedia) Fetch(ctx context.Context, rawURL string) (model.Media, error) {
	if m.hold(rawURL) {
		m.once.Do(func() { close(m.reached) })
		select {
		case <-m.release:
		case <-ctx.Done():
			return model.Media{}, ctx.Err()
		}
	}
	return m.Media.Fetch(ctx, rawURL)
}

func ptr[T any](v T) *T { return &v }
