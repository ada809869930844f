package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testutil"
)

type clock = testutil.Clock

func newClock() *clock { return &clock{T: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)} }

type syncBuffer = testutil.SyncBuffer

const testToken = "right-admin-token"

type fixture struct {
	srv   *Server
	store *store.Store
	gate  *owner.Gate
	clock *clock
	logs  *syncBuffer
	reg   *prometheus.Registry
}

// newFixture builds a server with the owner's gate over the real store in
// a temp dir, the admin token set to testToken.
func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	f.store, err = store.Open(context.Background(), filepath.Join(t.TempDir(), "feedd.db"), box, store.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	if err := owner.SetAdminToken(context.Background(), f.store, testToken); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://feedd.test")
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := Options{
		Addr:      "127.0.0.1:0",
		PublicURL: u,
		Logger:    logger,
		Registry:  f.reg,
		RateLimit: 1000,
		Now:       f.clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.gate, err = owner.NewGate(owner.GateOptions{Store: f.store, PublicURL: opts.PublicURL, Failures: srv, Now: f.clock.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGate(f.gate)
	f.gate.RegisterSignIn(srv.SignIn(), srv.Setup())
	return f
}

// do sends a request through the handler from peer 192.0.2.1 unless the
// request sets RemoteAddr.
func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	if r.RemoteAddr == "192.0.2.1:1234" || r.RemoteAddr == "" {
		r.RemoteAddr = "192.0.2.1:1234"
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return w
}

func req(method, target string, body io.Reader, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func form(method, target string, vals url.Values, hdr ...string) *http.Request {
	r := req(method, target, strings.NewReader(vals.Encode()), hdr...)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
