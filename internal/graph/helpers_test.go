package graph

import (
	"bytes"
	"context"
	"github.com/feedd/feedd/internal/testutil"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	testAppID    = "1234567890123456"
	testSecret   = "appSECRETvalue0123456789abcdef"
	testRedirect = "https://feedd.example/setup/callback/"
	testToken    = "IGAAlongTOKENsecret999xyz"
	testCode     = "AQBcodeSECRETvalue42"
	testAcct     = "17841400123456789"
	mount        = "/mnt" // every upstream lives under a prefix, so a hard-coded absolute path fails
)

var epoch = time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)

type fakeClock = testutil.Clock

// sleeper records the back-off waits and advances the clock instead of sleeping.
type sleeper struct {
	mu    sync.Mutex
	ds    []time.Duration
	clock *fakeClock
	hook  func() // runs inside each sleep (e.g. to cancel a context)
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.clock.Advance(d)
	return nil
}

func (s *sleeper) durations() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ds...)
}

// seen is what the fake upstream received.
type seen struct {
	Method string
	Path   string
	Query  url.Values
	Form   url.Values
	Header http.Header
}

// fake is a loopback upstream mounted under /mnt that records each request.
type fake struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex
	got []seen
	h   http.HandlerFunc
}

func newFake(t *testing.T, h http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{t: t, h: h}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()}
		if r.Method == http.MethodPost {
			_ = r.ParseForm()
			s.Form = r.PostForm
		}
		f.mu.Lock()
		f.got = append(f.got, s)
		f.mu.Unlock()
		if !strings.HasPrefix(r.URL.Path, mount+"/") {
			t.Errorf("request outside the mounted prefix: %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		f.h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) calls() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.got...)
}

func (f *fake) count() int { return len(f.calls()) }

func (f *fake) graphURL() string { return f.srv.URL + mount + "/graph" }

// fixture reads testdata/name, with {{BASE}} replaced by the fake's Graph URL.
func fixture(t testing.TB, name string, base string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("{{BASE}}"), []byte(base))
}

// reply writes a JSON body with status and optional header pairs.
func reply(w http.ResponseWriter, status int, body []byte, headers ...string) {
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Set(headers[i], headers[i+1])
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// env is a client wired to a fake with a fake clock, a recording sleeper,
// a log buffer and its own metrics registry.
type env struct {
	c     *Client
	f     *fake
	clock *fakeClock
	sl    *sleeper
	logs  *syncBuffer
	reg   *prometheus.Registry
}

type syncBuffer = testutil.SyncBuffer

func newEnv(t *testing.T, h http.HandlerFunc, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{clock: &fakeClock{T: epoch}, logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	e.sl = &sleeper{clock: e.clock}
	e.f = newFake(t, h)
	cfg := Config{
		AppID: testAppID, AppSecret: testSecret, RedirectURI: testRedirect,
		AuthorizeURL: e.f.srv.URL + mount + "/www/oauth/authorize",
		TokenURL:     e.f.srv.URL + mount + "/api/oauth/access_token",
		GraphURL:     e.f.graphURL(),
		HTTPClient:   e.f.srv.Client(),
		Now:          e.clock.Now,
		Sleep:        e.sl.Sleep,
		Logger:       slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:   e.reg,
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// serveFile answers every request with one fixture.
func serveFile(t *testing.T, status int, name string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reply(w, status, fixture(t, name, ""), headers...)
	}
}

// assertNoSecrets fails when s holds any secret the tests use.
func assertNoSecrets(t *testing.T, where, s string, extra ...string) {
	t.Helper()
	for _, sec := range append([]string{testToken, testSecret, testCode, "IGAAshortTOKENflat123", "IGAAlongTOKEN456", "IGAAtokenFROMnext"}, extra...) {
		if strings.Contains(s, sec) {
			t.Errorf("%s leaks a secret %q: %s", where, sec, s)
		}
	}
}
