package owner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/testutil"
)

const testAdminToken = "admin-token-for-tests"

// env runs feedd's owner routes on the real server and gate over the real
// store in a temp dir, against the sandbox, with an injected clock. Its
// browser is signed in; the API is called with the bearer admin token.
type env struct {
	t       *testing.T
	clock   *testutil.Clock
	sb      *sandbox.Sandbox
	sbSrv   *httptest.Server
	store   *faultStore
	files   *fakeFiles
	fetcher *fakeFeeds
	logs    *testutil.SyncBuffer
	conn    *connection.Service
	svc     *Service
	gc      *graph.Client
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	browser *http.Client
	csrf    string // the browser session's CSRF token
	opts    func(*connection.Options)
	noFeeds bool
	graph   *graph.Client // the client the services use (gc unless a test swaps it)

	hookMu sync.Mutex
	events []connection.Event
	hook   *httptest.Server
}

func newEnv(t *testing.T, mod ...func(*connection.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: testutil.NewClock(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)), files: &fakeFiles{}, logs: &testutil.SyncBuffer{}}
	e.fetcher = &fakeFeeds{e: e}
	e.store = &faultStore{Store: openStore(t, e.clock.Now)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.sb = sandbox.New(sandbox.Options{
		RedirectURIs: []string{e.srv.URL + "/auth/instagram/callback"}, Now: e.clock.Now, Seed: 7,
		DisableImageGenerator: true, AccountCallBudget: 1 << 30, AppCallBudget: 1 << 30,
	})
	e.sbSrv = httptest.NewServer(e.sb)
	t.Cleanup(e.sbSrv.Close)
	if err := e.sb.SetBaseURL(e.sbSrv.URL); err != nil {
		t.Fatal(err)
	}
	e.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev connection.Event
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
	if len(mod) > 0 {
		e.opts = mod[0]
	}
	e.gc = e.newGraph(e.srv.URL+"/auth/instagram/callback", e.sb.AppID(), e.sb.AppSecret())
	e.graph = e.gc
	if err := SetAdminToken(context.Background(), e.store, testAdminToken); err != nil {
		t.Fatal(err)
	}
	e.start()
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.signIn()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.logs.String())
		}
		e.conn.Close()
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

// start builds fresh services and the real server with the gate over the
// same store: also a "restart".
func (e *env) start() {
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := connection.Options{
		Store: e.store, Graph: e.graph, Files: e.files,
		PublicURL: e.srv.URL, AppID: e.sb.AppID(), AppSecret: e.sb.AppSecret(),
		CheckInterval: time.Hour, RefreshWindow: 720 * time.Hour, NotifyWebhook: e.hook.URL,
		Now: e.clock.Now, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Logger: logger,
	}
	if e.opts != nil {
		e.opts(&o)
	}
	conn, err := connection.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if !e.noFeeds {
		conn.SetFeeds(e.fetcher)
	}
	svc, err := New(Options{Store: e.store, Connections: conn, Feeds: e.fetcher, Files: e.files,
		PublicURL: e.srv.URL, Now: e.clock.Now, Logger: logger})
	if err != nil {
		e.t.Fatal(err)
	}
	if e.conn != nil {
		e.conn.Close()
	}
	e.conn, e.svc = conn, svc
	srv := e.newServer(logger, nil)
	h := NewHandler(svc, HTTPOptions{})
	h.RegisterCallbacks(srv.Echo(), srv.Limit(server.LimitCallback))
	h.RegisterAdmin(srv.Admin())
	h.RegisterSetup(srv.Setup())
	var hh http.Handler = srv.Handler()
	e.handler.Store(&hh)
}

// newServer is the real server with the gate over the env's store, as the
// app wires them.
func (e *env) newServer(logger *slog.Logger, mod func(*server.Options)) *server.Server {
	e.t.Helper()
	u, _ := url.Parse(e.srv.URL)
	so := server.Options{PublicURL: u, Logger: logger, Registry: prometheus.NewRegistry(), Now: e.clock.Now}
	if mod != nil {
		mod(&so)
	}
	srv, err := server.New(so)
	if err != nil {
		e.t.Fatal(err)
	}
	gate, err := NewGate(GateOptions{Store: e.store, PublicURL: u, Failures: srv, Now: e.clock.Now, Logger: logger})
	if err != nil {
		e.t.Fatal(err)
	}
	srv.SetGate(gate)
	gate.RegisterSignIn(srv.SignIn(), srv.Setup())
	return srv
}

// useGraph restarts the services on another Instagram client (the state
// of pending connects lives in the store).
func (e *env) useGraph(gc *graph.Client) {
	e.graph = gc
	e.start()
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

// signIn signs the browser in with the admin token and learns its
// session's CSRF token from the setup page.
func (e *env) signIn() {
	e.t.Helper()
	resp, err := e.browser.PostForm(e.srv.URL+"/setup/login", url.Values{"token": {testAdminToken}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in: %d", resp.StatusCode)
	}
	_, page := e.get(e.srv.URL + "/setup")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		e.t.Fatalf("no CSRF token on the setup page:\n%s", page)
	}
	e.csrf = m[1]
}

// api calls the admin API with the bearer token and decodes the JSON answer.
func (e *env) api(method, path, body string, out any) int {
	e.settle()
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.logs.Write(append([]byte("RESPONSE "), b...))
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

func (e *env) createFeed(name string) Status {
	e.t.Helper()
	var st Status
	if code := e.api("POST", "/api/admin/feeds", `{"name":"`+name+`","allowed_origins":[]}`, &st); code != http.StatusCreated {
		e.t.Fatalf("create feed: %d", code)
	}
	return st
}

func (e *env) status(id string) Status {
	e.settle()
	e.t.Helper()
	var st Status
	if code := e.api("GET", "/api/admin/feeds/"+id, "", &st); code != http.StatusOK {
		e.t.Fatalf("get feed: %d", code)
	}
	return st
}

// get fetches a URL with the browser (cookies, no redirect following).
func (e *env) get(u string) (*http.Response, string) {
	e.settle()
	e.t.Helper()
	resp, err := e.browser.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.logs.Write(append([]byte("RESPONSE "), b...))
	return resp, string(b)
}

// post submits a setup form with the session's CSRF token.
func (e *env) post(path string, v url.Values) (*http.Response, string) {
	e.settle()
	e.t.Helper()
	if v == nil {
		v = url.Values{}
	}
	if v.Get("_csrf") == "" {
		v.Set("_csrf", e.csrf)
	}
	resp, err := e.browser.PostForm(e.srv.URL+path, v)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.logs.Write(append([]byte("RESPONSE "), b...))
	return resp, string(b)
}

// authorize plays the owner on the sandbox's consent page: Allow as acct
// (or Cancel when acct is ""), returning the callback URL Instagram redirects to.
func (e *env) authorize(authorizeURL, acct string) string {
	e.t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil || !strings.HasPrefix(authorizeURL, e.sb.AuthorizeURL()+"?") {
		e.t.Fatalf("authorize URL %q does not point at the sandbox", authorizeURL)
	}
	resp, body := e.get(authorizeURL)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	form := u.Query()
	if acct == "" {
		form.Set("decision", "cancel")
	} else {
		form.Set("decision", "allow")
		form.Set("account", acct)
	}
	resp, err = e.browser.PostForm(e.sb.AuthorizeURL(), form)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, e.srv.URL+"/auth/instagram/callback?") {
		e.t.Fatalf("consent answer: %d, Location %q", resp.StatusCode, loc)
	}
	return loc
}

func (e *env) webhookEvents() []connection.Event {
	e.conn.Close() // wait for deliveries
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	return append([]connection.Event(nil), e.events...)
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

var (
	secretsMu sync.Mutex
	extra     = map[*testing.T][]string{}
)

// assertNoSecrets scans the logs and answers for the app secret, every
// stored token and every code or token the test saw.
func (e *env) assertNoSecrets() {
	e.t.Helper()
	logs := e.logs.String()
	if strings.Contains(logs, e.sb.AppSecret()) {
		e.t.Errorf("app secret leaked into logs or answers")
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
			e.t.Errorf("a token or code leaked into logs or answers")
		}
	}
}

func (e *env) addSecret(s string) {
	secretsMu.Lock()
	extra[e.t] = append(extra[e.t], s)
	secretsMu.Unlock()
}

// settle waits for the fetches a connect starts in the background, so
// tests observe the feed after its first fetch, as an owner soon does.
func (e *env) settle() {
	if e.conn != nil {
		e.conn.Wait()
	}
}

// connectAPI connects a new feed to acct through the API flow.
func (e *env) connectAPI(name, acct string) string {
	e.t.Helper()
	id := e.createFeed(name).ID
	var out struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	e.api("POST", "/api/admin/feeds/"+id+"/connect", "", &out)
	resp, _ := e.get(e.authorize(out.AuthorizeURL, acct))
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("connect %s: %d", acct, resp.StatusCode)
	}
	return id
}
