package connection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testutil"
)

const testPublicURL = "https://feedd.test"

var errTest = errors.New("test: injected failure")

// openStore opens a fresh SQLite store in a temp dir, as feedd does.
func openStore(t *testing.T, now func() time.Time) *store.Store {
	t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "feedd.db"), box, store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// faultStore is the real store with failures a test switches on.
type faultStore struct {
	*store.Store
	mu sync.Mutex
	// failReplace makes the next n ReplaceToken calls fail.
	failReplace int
	// failConnect makes the next n Connect calls fail.
	failConnect int
	// failRecord makes the next n RecordRefreshFailure calls fail.
	failRecord int
	// afterFeed runs once after the next Feed read (a change racing the caller).
	afterFeed func()
}

func (f *faultStore) take(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *faultStore) ReplaceToken(ctx context.Context, feedID, old string, nt model.Token) error {
	if f.take(&f.failReplace) {
		return errTest
	}
	return f.Store.ReplaceToken(ctx, feedID, old, nt)
}

func (f *faultStore) Connect(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token) (model.Feed, []string, error) {
	if f.take(&f.failConnect) {
		return model.Feed{}, nil, errTest
	}
	return f.Store.Connect(ctx, feedID, gen, acct, tok)
}

func (f *faultStore) RecordRefreshFailure(ctx context.Context, feedID, errText string, nextAt time.Time) error {
	if f.take(&f.failRecord) {
		return errTest
	}
	return f.Store.RecordRefreshFailure(ctx, feedID, errText, nextAt)
}

func (f *faultStore) Feed(ctx context.Context, id string) (model.Feed, error) {
	feed, err := f.Store.Feed(ctx, id)
	f.mu.Lock()
	hook := f.afterFeed
	f.afterFeed = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return feed, err
}

// fakeFiles records removed files.
type fakeFiles struct {
	mu      sync.Mutex
	removed []string
}

func (f *fakeFiles) Remove(files []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, files...)
	return nil
}

func (f *fakeFiles) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

// fakeFeeds stands in for the feed service: a fetch stores one post with
// one image file, as a poll does, and invalidations are recorded.
type fakeFeeds struct {
	e     *env
	mu    sync.Mutex
	calls int
	inval []string
}

func (f *fakeFeeds) FetchNow(ctx context.Context, id string) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	f.e.setFetched(id, f.e.clock.Now(), true)
	return nil
}

func (f *fakeFeeds) Invalidate(id string) {
	f.mu.Lock()
	f.inval = append(f.inval, id)
	f.mu.Unlock()
}

func (f *fakeFeeds) invalidated(id string) int {
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

// env is the service over the real store and the sandbox, with an
// injected clock and a webhook receiver on loopback.
type env struct {
	t     *testing.T
	clock *testutil.Clock
	sb    *sandbox.Sandbox
	sbSrv *httptest.Server
	store *faultStore
	files *fakeFiles
	feeds *fakeFeeds
	logs  *testutil.SyncBuffer
	reg   *prometheus.Registry
	gc    *graph.Client
	svc   *Service

	hookMu sync.Mutex
	events []Event
	hook   *httptest.Server
}

func newEnv(t *testing.T, mod ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, clock: testutil.NewClock(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)), files: &fakeFiles{},
		logs: &testutil.SyncBuffer{}, reg: prometheus.NewRegistry()}
	e.feeds = &fakeFeeds{e: e}
	e.store = &faultStore{Store: openStore(t, e.clock.Now)}
	e.sb = sandbox.New(sandbox.Options{
		RedirectURIs: []string{testPublicURL + "/auth/instagram/callback"}, Now: e.clock.Now, Seed: 7,
		DisableImageGenerator: true, AccountCallBudget: 1 << 30, AppCallBudget: 1 << 30,
	})
	e.sbSrv = httptest.NewServer(e.sb)
	t.Cleanup(e.sbSrv.Close)
	if err := e.sb.SetBaseURL(e.sbSrv.URL); err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev Event
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("webhook body is not an event: %v", err)
		}
		e.hookMu.Lock()
		e.events = append(e.events, ev)
		e.hookMu.Unlock()
		e.logs.Write(append([]byte("WEBHOOK "), b...)) // so secret scans cover webhook bodies too
	}))
	t.Cleanup(e.hook.Close)
	e.gc = e.newGraph(testPublicURL+"/auth/instagram/callback", e.sb.AppID(), e.sb.AppSecret())
	o := Options{
		Store: e.store, Graph: e.gc, Files: e.files,
		PublicURL: testPublicURL, AppID: e.sb.AppID(), AppSecret: e.sb.AppSecret(),
		CheckInterval: time.Hour, RefreshWindow: 720 * time.Hour, NotifyWebhook: e.hook.URL,
		Now: e.clock.Now, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
	}
	if len(mod) > 0 {
		mod[0](&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetFeeds(e.feeds)
	e.svc = svc
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.logs.String())
		}
		e.svc.Close()
		e.assertNoSecrets()
	})
	return e
}

func (e *env) newGraph(redirect, appID, secret string) *graph.Client {
	gc, err := graph.New(graph.Config{
		AppID: appID, AppSecret: secret, RedirectURI: redirect,
		AuthorizeURL: e.sb.AuthorizeURL(), TokenURL: e.sb.TokenURL(), GraphURL: e.sb.GraphURL(),
		HTTPClient: e.sbSrv.Client(), Now: e.clock.Now,
		Sleep:  func(ctx context.Context, d time.Duration) error { e.clock.Advance(d); return ctx.Err() },
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return gc
}

// settle waits for the fetches and deliveries the service started.
func (e *env) settle() { e.svc.Wait() }

func (e *env) createFeed(name string) string {
	e.t.Helper()
	f, err := e.store.CreateFeed(context.Background(), name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return f.ID
}

// connect creates a feed and connects it to acct the way an owner does:
// a state, Allow on the sandbox's consent, and the callback.
func (e *env) connect(name, acct string) string {
	e.t.Helper()
	id := e.createFeed(name)
	e.reconnect(id, acct)
	e.settle()
	return id
}

func (e *env) reconnect(id, acct string) {
	e.t.Helper()
	ctx := context.Background()
	authz, err := e.svc.Connect(ctx, id, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(authz)
	redirect, err := e.sb.Approve(acct, e.svc.RedirectURI(), u.Query().Get("state"))
	if err != nil {
		e.t.Fatal(err)
	}
	cb, _ := url.Parse(redirect)
	q := cb.Query()
	e.addSecret(q.Get("code"))
	if _, err := e.svc.Callback(ctx, CallbackParams{State: q.Get("state"), Code: q.Get("code")}, nil); err != nil {
		e.t.Fatalf("connect %s: %v", acct, err)
	}
}

func (e *env) feed(id string) model.Feed {
	e.t.Helper()
	e.settle()
	f, err := e.store.Feed(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) token(id string) model.Token {
	e.t.Helper()
	t, err := e.store.Store.Token(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// setFetched stores what a poll at `at` stores: one post with one image
// file, and the poll's outcome.
func (e *env) setFetched(id string, at time.Time, ok bool) {
	e.t.Helper()
	ctx := context.Background()
	f, err := e.store.Store.Feed(ctx, id)
	if err != nil {
		if !errors.Is(err, model.ErrNotFound) { // deleted while it was fetched
			e.t.Error(err)
		}
		return
	}
	if ok && f.Account != nil {
		key := "post:" + id
		if err := e.store.PutMedia(ctx, model.Media{Key: key, Width: 10, Height: 10,
			Variants: []model.Variant{{Width: 10, Height: 10, File: "media/" + id + "-a.jpg", Bytes: 1}}}); err != nil {
			e.t.Error(err)
			return
		}
		posts := []model.Post{{ID: "p-" + id, MediaType: model.MediaImage, Permalink: "https://www.instagram.com/p/" + id, Timestamp: at, MediaKey: key}}
		if _, err := e.store.ReplacePosts(ctx, id, f.Generation, nil, posts, at); err != nil {
			if !errors.Is(err, model.ErrConnectionChanged) { // a poll of an older connection writes nothing
				e.t.Error(err)
			}
			return
		}
	}
	if err := e.store.RecordFetch(ctx, id, f.Generation, model.FetchResult{At: at, OK: ok, NextFetchAt: at.Add(15 * time.Minute)}); err != nil && !errors.Is(err, model.ErrConnectionChanged) {
		e.t.Error(err)
	}
}

func (e *env) webhookEvents() []Event {
	e.settle()
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	return append([]Event(nil), e.events...)
}

// eventNames lists the webhook events sent for a feed, in order.
func (e *env) eventNames(id string) []string {
	var names []string
	for _, ev := range e.webhookEvents() {
		if ev.FeedID == id {
			names = append(names, ev.Event)
		}
	}
	return names
}

func (e *env) graphCalls(endpoint string) int {
	n := 0
	for _, c := range e.sb.Calls() {
		if c.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// metric reads a counter or gauge from the service's registry (0 when absent).
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

var (
	secretsMu sync.Mutex
	extra     = map[*testing.T][]string{}
)

func (e *env) addSecret(s string) {
	secretsMu.Lock()
	extra[e.t] = append(extra[e.t], s)
	secretsMu.Unlock()
}

// assertNoSecrets scans the logs and webhook bodies for the app secret,
// every stored token and every code or token the test saw.
func (e *env) assertNoSecrets() {
	e.t.Helper()
	logs := e.logs.String()
	if strings.Contains(logs, e.sb.AppSecret()) {
		e.t.Errorf("app secret leaked into logs")
	}
	secretsMu.Lock()
	toks := slices.Clone(extra[e.t])
	delete(extra, e.t)
	secretsMu.Unlock()
	if fs, err := e.store.Store.Feeds(context.Background()); err == nil {
		for _, f := range fs {
			if t, err := e.store.Store.Token(context.Background(), f.ID); err == nil {
				toks = append(toks, t.AccessToken)
			}
		}
	}
	for _, tok := range toks {
		if tok != "" && strings.Contains(logs, tok) {
			e.t.Errorf("a token or code leaked into logs")
		}
	}
}
