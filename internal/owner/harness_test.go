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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/testenv"
)

const testAdminToken = "admin-token-for-tests"

// env runs feedd's owner routes on the real server and gate over the real
// store in a temp dir, against the sandbox (testenv.Env). Its browser is
// signed in; the API is called with the bearer admin token.
type env struct {
	*testenv.Env
	t       *testing.T
	conn    *connection.Service
	svc     *Service
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	browser *http.Client
	csrf    string // the browser session's CSRF token
	opts    func(*connection.Options)
	noFeeds bool
	inUse   *graph.Client // the Graph client the services use (Env.Graph unless a test swaps it)
	hook    *testenv.Webhook[connection.Event]
}

func newEnv(t *testing.T, mod ...func(*connection.Options)) *env {
	t.Helper()
	e := &env{t: t}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.Env = testenv.New(t, e.srv.URL+"/auth/instagram/callback")
	e.hook = testenv.NewWebhook[connection.Event](t, e.Logs)
	if len(mod) > 0 {
		e.opts = mod[0]
	}
	e.inUse = e.Graph
	if err := SetAdminToken(context.Background(), e.Store, testAdminToken); err != nil {
		t.Fatal(err)
	}
	e.start()
	t.Cleanup(func() { e.conn.Close() })
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.signIn()
	return e
}

// start builds fresh services and the real server with the gate over the
// same store: also a "restart".
func (e *env) start() {
	logger := e.Logger()
	o := connection.Options{
		Store: e.Store, Graph: e.inUse, Files: e.Files,
		PublicURL: e.srv.URL, AppID: e.Sandbox.AppID(), AppSecret: e.Sandbox.AppSecret(),
		CheckInterval: time.Hour, RefreshWindow: 720 * time.Hour, NotifyWebhook: e.hook.URL,
		Now: e.Clock.Now, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
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
		conn.SetFeeds(e.Feeds)
	}
	svc, err := New(Options{Store: e.Store, Connections: conn, Feeds: e.Feeds, Files: e.Files,
		PublicURL: e.srv.URL, Now: e.Clock.Now, Logger: logger})
	if err != nil {
		e.t.Fatal(err)
	}
	if e.conn != nil {
		e.conn.Close()
	}
	e.conn, e.svc = conn, svc
	srv := e.newServer(logger)
	h := NewHandler(svc, HTTPOptions{})
	h.RegisterCallbacks(srv.Echo(), srv.Limit(server.LimitCallback))
	h.RegisterAdmin(srv.Admin())
	h.RegisterSetup(srv.Setup())
	var hh http.Handler = srv.Handler()
	e.handler.Store(&hh)
}

// newServer is the real server with the gate over the env's store.
func (e *env) newServer(logger *slog.Logger) *server.Server {
	e.t.Helper()
	u, _ := url.Parse(e.srv.URL)
	srv, _ := gatedServer(e.t, e.Store, server.Options{PublicURL: u, Logger: logger, Registry: prometheus.NewRegistry(), Now: e.Clock.Now})
	return srv
}

// useGraph restarts the services on another Instagram client (the state
// of pending connects lives in the store).
func (e *env) useGraph(gc *graph.Client) {
	e.inUse = gc
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
	b := e.answer(resp, err)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// answer reads resp's body (failing the test on err) and copies it to the
// logs, so that secret scans cover answers too.
func (e *env) answer(resp *http.Response, err error) string {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.Logs.Write(append([]byte("RESPONSE "), b...))
	return string(b)
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
	return resp, e.answer(resp, err)
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
	return resp, e.answer(resp, err)
}

// authorize plays the owner on the sandbox's consent page: Allow as acct
// (or Cancel when acct is ""), returning the callback URL Instagram redirects to.
func (e *env) authorize(authorizeURL, acct string) string {
	e.t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil || !strings.HasPrefix(authorizeURL, e.Sandbox.AuthorizeURL()+"?") {
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
	resp, err = e.browser.PostForm(e.Sandbox.AuthorizeURL(), form)
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
	return e.hook.Events()
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
