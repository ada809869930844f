package owner

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/testutil"
)

const testToken = "right-admin-token"

// gateFixture is the real server with the gate over the real store, as
// the app wires them, the admin token set to testToken.
type gateFixture struct {
	srv   *server.Server
	gate  *Gate
	store *store.Store
	path  string
	clock *testutil.Clock
	logs  *testutil.SyncBuffer
}

// newGateFixture serves publicURL; token is the admin token ("": none set yet).
func newGateFixture(t *testing.T, publicURL, token string) *gateFixture {
	t.Helper()
	f := &gateFixture{clock: testutil.NewClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)), logs: &testutil.SyncBuffer{}}
	f.path = filepath.Join(t.TempDir(), "feedd.db")
	f.store = testenv.StoreAt(t, f.path, f.clock.Now)
	if token != "" {
		if err := SetAdminToken(context.Background(), f.store, token); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(publicURL)
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.srv, f.gate = gatedServer(t, f.store, server.Options{PublicURL: u, Logger: logger, Registry: prometheus.NewRegistry(), RateLimit: 1000, Now: f.clock.Now})
	return f
}

// gatedServer is the real server on so with the gate over st installed,
// as the app wires them.
func gatedServer(t *testing.T, st GateStore, so server.Options) (*server.Server, *Gate) {
	t.Helper()
	srv, err := server.New(so)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := NewGate(GateOptions{Store: st, PublicURL: so.PublicURL, Failures: srv, Now: so.Now, Logger: so.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGate(gate)
	gate.RegisterSignIn(srv.SignIn(), srv.Setup())
	return srv, gate
}

// do sends r through the server's handler.
func (f *gateFixture) do(r *http.Request) *httptest.ResponseRecorder {
	return testenv.Serve(f.srv.Handler(), r)
}

// adminFixture has an admin API route and setup page routes that echo what
// the gate decided.
func adminFixture(t *testing.T) *gateFixture {
	return adminRoutes(newGateFixture(t, "http://feedd.test", testToken))
}

// adminRoutes adds the routes of adminFixture to f.
func adminRoutes(f *gateFixture) *gateFixture {
	testenv.GateProbes(f.srv.Admin(), f.srv.Setup(), CSRFToken)
	return f
}

// signIn posts the admin token to the login form and returns the cookie.
func (f *gateFixture) signIn(t *testing.T) *http.Cookie {
	t.Helper()
	return testenv.SignIn(t, f.srv.Handler(), testToken, SessionCookie)
}

func (f *gateFixture) csrfFor(t *testing.T, ck *http.Cookie) string {
	t.Helper()
	return testenv.CSRF(t, f.srv.Handler(), ck)
}

func TestAdminBearer(t *testing.T) {
	f := adminFixture(t)
	tests := []struct {
		name   string
		auth   string
		status int
	}{
		{"missing", "", 401},
		{"wrong", "Bearer nope", 401},
		{"wrong scheme", "Basic " + testToken, 401},
		{"right", "Bearer " + testToken, 200},
		{"right, lower-case scheme", "bearer " + testToken, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", tt.auth))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			var ae apiError
			if tt.status == 401 && (json.Unmarshal(w.Body.Bytes(), &ae) != nil || ae.Error.Code != "unauthorized") {
				t.Errorf("body %s", w.Body)
			}
		})
	}
	t.Run("no token stored yet refuses everything", func(t *testing.T) {
		f := adminRoutes(newGateFixture(t, "http://feedd.test", ""))
		for _, tok := range []string{"", testToken} {
			if w := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+tok)); w.Code != 401 {
				t.Errorf("token %q: %d", tok, w.Code)
			}
		}
	})
	t.Run("bearer POST needs no CSRF token", func(t *testing.T) {
		if w := f.do(testenv.Req("POST", "/api/admin/feeds", strings.NewReader("{}"), "Authorization", "Bearer "+testToken)); w.Code != 201 {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
}

func TestSessionCookie(t *testing.T) {
	f := adminFixture(t)
	t.Run("browser without session is sent to sign in", func(t *testing.T) {
		w := f.do(testenv.Req("GET", "/setup", nil))
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup/login" {
			t.Fatalf("got %d %v", w.Code, w.Header())
		}
	})
	t.Run("wrong token on the form", func(t *testing.T) {
		w := f.do(testenv.Form("POST", "/setup/login", url.Values{"token": {"guess"}}))
		if w.Code != 401 || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "not right") {
			t.Fatalf("got %d %s", w.Code, w.Body)
		}
	})
	ck := f.signIn(t)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("cookie attributes: %+v", ck)
	}
	if ck.MaxAge < int((29 * 24 * time.Hour).Seconds()) {
		t.Errorf("cookie max age %d", ck.MaxAge)
	}
	if _, err := f.store.Session(t.Context(), HashToken(ck.Value), f.clock.Now()); err != nil {
		t.Errorf("session not stored under its id's hash: %v", err)
	}
	if err := f.store.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if db, err := os.ReadFile(f.path); err != nil || bytes.Contains(db, []byte(ck.Value)) {
		t.Errorf("session id stored in the clear (%v)", err)
	}
	t.Run("cookie opens the setup page and the admin API", func(t *testing.T) {
		r := testenv.Req("GET", "/setup", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 200 || !strings.Contains(w.Body.String(), "session=yes") {
			t.Fatalf("setup: %d %s", w.Code, w.Body)
		}
		r = testenv.Req("GET", "/api/admin/feeds", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 200 {
			t.Fatalf("api: %d", w.Code)
		}
	})
	t.Run("signed-in visit to the login page goes to setup", func(t *testing.T) {
		r := testenv.Req("GET", "/setup/login", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != http.StatusSeeOther {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("forged cookie", func(t *testing.T) {
		r := testenv.Req("GET", "/api/admin/feeds", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "forged"})
		if w := f.do(r); w.Code != 401 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		f.clock.Add(SessionTTL + time.Minute)
		defer f.clock.Add(-SessionTTL - time.Minute)
		r := testenv.Req("GET", "/api/admin/feeds", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 401 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("logout ends the session", func(t *testing.T) {
		ck := f.signIn(t)
		tok := f.csrfFor(t, ck)
		r := testenv.Form("POST", "/setup/logout", url.Values{"_csrf": {tok}})
		r.AddCookie(ck)
		w := f.do(r)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("logout: %d %s", w.Code, w.Body)
		}
		r = testenv.Req("GET", "/api/admin/feeds", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 401 {
			t.Fatalf("after logout: %d", w.Code)
		}
	})
	t.Run("secure cookie on https", func(t *testing.T) {
		f := newGateFixture(t, "https://feeds.example.com", testToken)
		if ck := f.signIn(t); !ck.Secure {
			t.Error("cookie not Secure")
		}
	})
}

func TestCSRF(t *testing.T) {
	f := adminFixture(t)
	ck := f.signIn(t)
	tok := f.csrfFor(t, ck)
	tests := []struct {
		name   string
		r      *http.Request
		status int
	}{
		{"missing", testenv.Form("POST", "/setup/feeds", url.Values{}), 403},
		{"wrong", testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {"wrong-" + tok}}), 403},
		{"right form field", testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}), 200},
		{"right header", testenv.Req("POST", "/api/admin/feeds", strings.NewReader("{}"), "X-CSRF-Token", tok), 201},
		{"missing on the API", testenv.Req("POST", "/api/admin/feeds", strings.NewReader("{}")), 403},
		{"cross-site", testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Sec-Fetch-Site", "cross-site"), 403},
		{"foreign origin", testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Origin", "https://evil.example"), 403},
		{"own origin", testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Origin", "http://feedd.test", "Sec-Fetch-Site", "same-origin"), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.AddCookie(ck)
			w := f.do(tt.r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
		})
	}
	t.Run("another session's token is refused", func(t *testing.T) {
		other := f.signIn(t)
		r := testenv.Form("POST", "/setup/feeds", url.Values{"_csrf": {tok}})
		r.AddCookie(other)
		if w := f.do(r); w.Code != 403 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("cross-site login refused", func(t *testing.T) {
		w := f.do(testenv.Form("POST", "/setup/login", url.Values{"token": {testToken}}, "Origin", "https://evil.example"))
		if w.Code != 403 {
			t.Fatalf("got %d", w.Code)
		}
	})
}

func TestSetupLink(t *testing.T) {
	f := adminFixture(t)
	link, err := f.gate.IssueSetupLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "http://feedd.test/setup/login?t=") {
		t.Fatalf("link %q", link)
	}
	u, _ := url.Parse(link)
	w := f.do(testenv.Req("GET", u.RequestURI(), nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup" || len(w.Result().Cookies()) != 1 {
		t.Fatalf("first use: %d %v", w.Code, w.Header())
	}
	r := testenv.Req("GET", "/setup", nil)
	r.AddCookie(w.Result().Cookies()[0])
	if w := f.do(r); w.Code != 200 {
		t.Fatalf("session from link: %d", w.Code)
	}
	if w := f.do(testenv.Req("GET", u.RequestURI(), nil)); w.Code != 401 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("second use: %d", w.Code)
	}
	t.Run("expired", func(t *testing.T) {
		link, _ := f.gate.IssueSetupLink(context.Background())
		f.clock.Add(SetupLinkTTL + time.Second)
		u, _ := url.Parse(link)
		if w := f.do(testenv.Req("GET", u.RequestURI(), nil)); w.Code != 401 {
			t.Fatalf("got %d", w.Code)
		}
	})
	if strings.Contains(f.logs.String(), u.Query().Get("t")) {
		t.Error("setup link token logged")
	}
}

func TestSetAdminTokenInvalidatesSessions(t *testing.T) {
	f := adminFixture(t)
	ck := f.signIn(t)
	tok, err := GenerateAdminToken()
	if err != nil || len(tok) < 40 {
		t.Fatalf("token %q %v", tok, err)
	}
	if err := SetAdminToken(context.Background(), f.store, tok); err != nil {
		t.Fatal(err)
	}
	r := testenv.Req("GET", "/api/admin/feeds", nil)
	r.AddCookie(ck)
	if w := f.do(r); w.Code != 401 {
		t.Errorf("old session still valid: %d", w.Code)
	}
	if w := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+testToken)); w.Code != 401 {
		t.Errorf("old token still valid: %d", w.Code)
	}
	if w := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+tok)); w.Code != 200 {
		t.Errorf("new token refused: %d", w.Code)
	}
}
