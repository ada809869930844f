package server

import (
	"context"
	"github.com/feedd/feedd/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// memStore is an in-memory AdminStore.
type memStore struct {
	mu       sync.Mutex
	token    []byte
	sessions map[string]Session
	links    map[string]time.Time // hash → expiry; deleted when used
	err      error                // returned by every call when set
}

func newMemStore() *memStore {
	return &memStore{sessions: map[string]Session{}, links: map[string]time.Time{}}
}

func (m *memStore) AdminTokenHash(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token, m.err
}

func (m *memStore) SetAdminTokenHash(ctx context.Context, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.token = h
	clear(m.sessions)
	return m.err
}

func (m *memStore) CreateSession(ctx context.Context, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[string(s.IDHash)] = s
	return m.err
}

func (m *memStore) Session(ctx context.Context, h []byte) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return Session{}, m.err
	}
	s, ok := m.sessions[string(h)]
	if !ok {
		return Session{}, ErrNotFound
	}
	return s, nil
}

func (m *memStore) DeleteSession(ctx context.Context, h []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, string(h))
	return m.err
}

func (m *memStore) CreateSetupLink(ctx context.Context, h []byte, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.links[string(h)] = exp
	return m.err
}

func (m *memStore) ConsumeSetupLink(ctx context.Context, h []byte, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.links[string(h)]
	if !ok || !now.Before(exp) {
		return ErrNotFound
	}
	delete(m.links, string(h))
	return nil
}

type clock = testutil.Clock

func newClock() *clock { return &clock{T: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)} }

type syncBuffer = testutil.SyncBuffer

const testToken = "right-admin-token"

type fixture struct {
	srv   *Server
	store *memStore
	clock *clock
	logs  *syncBuffer
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	f := &fixture{store: newMemStore(), clock: newClock(), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	f.store.token = HashToken(testToken)
	u, _ := url.Parse("http://feedd.test")
	opts := Options{
		Addr:       "127.0.0.1:0",
		PublicURL:  u,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:   f.reg,
		RateLimit:  1000,
		AdminStore: f.store,
		Now:        f.clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
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
