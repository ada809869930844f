package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testutil"
)

// Env is what a test of the connection lifecycle runs on: the real store
// (with failures to switch on), the sandbox on loopback, a Graph client on
// it, stand-ins for the media files and the feed service, and a log sink,
// all on one test clock.
type Env struct {
	Clock   *testutil.Clock
	Logs    *testutil.SyncBuffer
	Store   *FaultStore
	Files   *Files
	Feeds   *Feeds
	Sandbox *sandbox.Sandbox
	Graph   *graph.Client // for the redirect URI given to New and the sandbox's app

	t        testing.TB
	sbServer *httptest.Server
	mu       sync.Mutex
	secrets  []string
}

// New builds an Env whose sandbox accepts redirectURI. When the test ends
// its logs are printed if it failed, and they must hold no secret: not the
// app secret, no stored token, nothing given to AddSecret. Services built
// on it are to be closed by cleanups registered after New, so that they
// have logged all they will before the scan.
func New(t testing.TB, redirectURI string) *Env {
	t.Helper()
	e := &Env{t: t, Clock: testutil.NewClock(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)),
		Logs: &testutil.SyncBuffer{}, Files: &Files{}}
	e.Feeds = &Feeds{env: e}
	e.Store = &FaultStore{Store: Store(t, e.Clock.Now)}
	e.Sandbox = sandbox.New(sandbox.Options{
		RedirectURIs: []string{redirectURI}, Now: e.Clock.Now, Seed: 7,
		DisableImageGenerator: true, AccountCallBudget: 1 << 30, AppCallBudget: 1 << 30,
	})
	e.sbServer = httptest.NewServer(e.Sandbox)
	t.Cleanup(e.sbServer.Close)
	if err := e.Sandbox.SetBaseURL(e.sbServer.URL); err != nil {
		t.Fatal(err)
	}
	e.Graph = e.NewGraph(redirectURI, e.Sandbox.AppID(), e.Sandbox.AppSecret())
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.Logs.String())
		}
		e.assertNoSecrets()
	})
	return e
}

// Logger writes everything, debug included, to Logs.
func (e *Env) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// NewGraph is a Graph client on the sandbox as the app appID with secret,
// for redirect. Its waits advance the clock instead of sleeping.
func (e *Env) NewGraph(redirect, appID, secret string) *graph.Client {
	gc, err := graph.New(graph.Config{
		AppID: appID, AppSecret: secret, RedirectURI: redirect,
		AuthorizeURL: e.Sandbox.AuthorizeURL(), TokenURL: e.Sandbox.TokenURL(), GraphURL: e.Sandbox.GraphURL(),
		HTTPClient: e.sbServer.Client(), Now: e.Clock.Now,
		Sleep:  func(ctx context.Context, d time.Duration) error { e.Clock.Advance(d); return ctx.Err() },
		Logger: e.Logger(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return gc
}

// GraphCalls counts the sandbox's calls to endpoint.
func (e *Env) GraphCalls(endpoint string) int {
	n := 0
	for _, c := range e.Sandbox.Calls() {
		if c.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// Fetched stores what a poll at `at` stores: one post with one image
// file (when it succeeded), and the poll's outcome.
func (e *Env) Fetched(id string, at time.Time, ok bool) {
	e.t.Helper()
	ctx := context.Background()
	f, err := e.Store.Store.Feed(ctx, id)
	if err != nil {
		if !errors.Is(err, model.ErrNotFound) { // deleted while it was fetched
			e.t.Error(err)
		}
		return
	}
	if ok && f.Account != nil {
		key := "post:" + id
		if err := e.Store.PutMedia(ctx, model.Media{Key: key, Width: 10, Height: 10,
			Variants: []model.Variant{{Width: 10, Height: 10, File: "media/" + id + "-a.jpg", Bytes: 1}}}); err != nil {
			e.t.Error(err)
			return
		}
		posts := []model.Post{{ID: "p-" + id, MediaType: model.MediaImage, Permalink: "https://www.instagram.com/p/" + id, Timestamp: at, MediaKey: key}}
		if _, err := e.Store.ReplacePosts(ctx, id, f.Generation, nil, posts, at); err != nil {
			if !errors.Is(err, model.ErrConnectionChanged) { // a poll of an older connection writes nothing
				e.t.Error(err)
			}
			return
		}
	}
	r := model.FetchResult{At: at, OK: ok, NextFetchAt: at.Add(15 * time.Minute)}
	if !ok {
		r.Err, r.Failures = "Instagram could not be reached", 1
	}
	if err := e.Store.RecordFetch(ctx, id, f.Generation, r); err != nil && !errors.Is(err, model.ErrConnectionChanged) {
		e.t.Error(err)
	}
}

// AddSecret adds s (a code or a token the test saw) to what the logs
// must not hold.
func (e *Env) AddSecret(s string) {
	e.mu.Lock()
	e.secrets = append(e.secrets, s)
	e.mu.Unlock()
}

// assertNoSecrets scans the logs for the app secret, every stored token
// and every secret added.
func (e *Env) assertNoSecrets() {
	e.t.Helper()
	logs := e.Logs.String()
	if strings.Contains(logs, e.Sandbox.AppSecret()) {
		e.t.Errorf("app secret leaked into logs, webhook bodies or answers")
	}
	e.mu.Lock()
	toks := slices.Clone(e.secrets)
	e.mu.Unlock()
	ctx := context.Background()
	if fs, err := e.Store.Store.Feeds(ctx); err == nil {
		for _, f := range fs {
			if t, err := e.Store.Store.Token(ctx, f.ID); err == nil {
				toks = append(toks, t.AccessToken)
			}
		}
	}
	for _, tok := range toks {
		if tok != "" && strings.Contains(logs, tok) {
			e.t.Errorf("a token or code leaked into logs, webhook bodies or answers")
		}
	}
}

// Feeds stands in for the feed service: a fetch stores what a poll stores
// (Env.Fetched), succeeding unless SetErr says otherwise, and
// invalidations are recorded.
type Feeds struct {
	env   *Env
	mu    sync.Mutex
	err   error
	calls int
	inval []string
}

// FetchNow stores what a poll stores and returns the outcome SetErr chose.
func (f *Feeds) FetchNow(_ context.Context, id string) error {
	f.mu.Lock()
	f.calls++
	err := f.err
	f.mu.Unlock()
	f.env.Fetched(id, f.env.Clock.Now(), err == nil)
	return err
}

// SetErr makes the next fetches fail with err (nil: succeed).
func (f *Feeds) SetErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// Fetches counts the fetches so far.
func (f *Feeds) Fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Invalidate records that the feed's cache was dropped.
func (f *Feeds) Invalidate(id string) {
	f.mu.Lock()
	f.inval = append(f.inval, id)
	f.mu.Unlock()
}

// Invalidations counts the times feed id's cache was dropped.
func (f *Feeds) Invalidations(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, i := range f.inval {
		if i == id {
			n++
		}
	}
	return n
}

// Webhook receives notification webhooks on loopback. It keeps each body
// as an E and copies it to the log sink, so that secret scans cover the
// bodies too.
type Webhook[E any] struct {
	URL    string
	mu     sync.Mutex
	events []E
}

// NewWebhook starts a receiver that copies each body to logs; a body that
// is not an E fails the test.
func NewWebhook[E any](t testing.TB, logs io.Writer) *Webhook[E] {
	w := &Webhook[E]{}
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		var ev E
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("webhook body is not an event: %v", err)
		}
		w.mu.Lock()
		w.events = append(w.events, ev)
		w.mu.Unlock()
		logs.Write(append([]byte("WEBHOOK "), b...))
	}))
	t.Cleanup(srv.Close)
	w.URL = srv.URL
	return w
}

// Events lists the events received so far, in order.
func (w *Webhook[E]) Events() []E {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}
