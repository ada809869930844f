package sandbox

import (
	"bytes"
	"encoding/json"
	"github.com/feedd/feedd/internal/testutil"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testRedirect = "https://feedd.example/setup/callback"

type fakeClock = testutil.Clock

type env struct {
	t     *testing.T
	sb    *Sandbox
	srv   *httptest.Server
	clock *fakeClock
	hc    *http.Client
	base  string
}

// newEnv serves a sandbox mounted under /sb on a loopback server, so any URL
// built without the prefix fails.
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clock := &fakeClock{T: time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.RedirectURIs == nil {
		opts.RedirectURIs = []string{testRedirect}
	}
	opts.DisableImageGenerator = opts.DisableImageGenerator || testing.Short()
	sb := New(opts)
	mux := http.NewServeMux()
	mux.Handle("/sb/", sb)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := sb.SetBaseURL(srv.URL + "/sb"); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
	return &env{t: t, sb: sb, srv: srv, clock: clock, hc: hc, base: srv.URL + "/sb"}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func (e *env) get(rawURL string) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

func (e *env) postForm(rawURL string, v url.Values) result {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(v.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

func (e *env) graph(path string, v url.Values) result {
	e.t.Helper()
	return e.get(e.sb.GraphURL() + path + "?" + v.Encode())
}

// codeFor goes through Approve and returns the code from the redirect.
func (e *env) codeFor(acct string) string {
	e.t.Helper()
	loc, err := e.sb.Approve(acct, testRedirect, "st")
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Query().Get("code")
}

func (e *env) exchangeCode(code string) result {
	e.t.Helper()
	return e.postForm(e.sb.TokenURL(), url.Values{
		"client_id": {e.sb.AppID()}, "client_secret": {e.sb.AppSecret()}, "grant_type": {"authorization_code"},
		"redirect_uri": {testRedirect}, "code": {code},
	})
}

// shortToken runs authorize + code exchange for acct.
func (e *env) shortToken(acct string) string {
	e.t.Helper()
	r := e.exchangeCode(e.codeFor(acct))
	if r.status != 200 {
		e.t.Fatalf("code exchange: %d %s", r.status, r.body)
	}
	tok, _ := r.json(e.t)["access_token"].(string)
	return tok
}

func (e *env) longToken(acct string) string {
	e.t.Helper()
	r := e.graph("/access_token", url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {e.shortToken(acct)}})
	if r.status != 200 {
		e.t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	tok, _ := r.json(e.t)["access_token"].(string)
	return tok
}

// graphErr asserts a Graph error envelope and returns code and subcode.
func graphErr(t *testing.T, r result) (code, subcode int, msg string, transient bool) {
	t.Helper()
	var env struct {
		Error struct {
			Message     string `json:"message"`
			Type        string `json:"type"`
			Code        int    `json:"code"`
			Subcode     int    `json:"error_subcode"`
			FBTraceID   string `json:"fbtrace_id"`
			IsTransient *bool  `json:"is_transient"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error.Code == 0 {
		t.Fatalf("not a Graph error envelope (%d): %s", r.status, r.body)
	}
	if env.Error.Type == "" || env.Error.FBTraceID == "" || env.Error.IsTransient == nil || env.Error.Message == "" {
		t.Errorf("Graph error lacks type, fbtrace_id, is_transient or message: %s", r.body)
	}
	return env.Error.Code, env.Error.Subcode, env.Error.Message, *env.Error.IsTransient
}

func mustAccount(t *testing.T, sb *Sandbox, name string) Account {
	t.Helper()
	a, err := sb.Account(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
