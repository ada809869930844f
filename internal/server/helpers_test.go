package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testenv"
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
	f.store = testenv.Store(t, f.clock.Now)
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

// do sends r through the server's handler.
func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	return testenv.Serve(f.srv.Handler(), r)
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
