package owner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/store"
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
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	f.path = filepath.Join(t.TempDir(), "feedd.db")
	if f.store, err = store.Open(context.Background(), f.path, box, store.Options{Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	if token != "" {
		if err := SetAdminToken(context.Background(), f.store, token); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(publicURL)
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.New(server.Options{PublicURL: u, Logger: logger, Registry: prometheus.NewRegistry(), RateLimit: 1000, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	if f.gate, err = NewGate(GateOptions{Store: f.store, PublicURL: u, Failures: srv, Now: f.clock.Now, Logger: logger}); err != nil {
		t.Fatal(err)
	}
	srv.SetGate(f.gate)
	f.gate.RegisterSignIn(srv.SignIn(), srv.Setup())
	return f
}

// do sends a request through the handler from peer 192.0.2.1 unless the
// request sets RemoteAddr.
func (f *gateFixture) do(r *http.Request) *httptest.ResponseRecorder {
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

// adminFixture has an admin API route and setup page routes that echo what
// the gate decided.
func adminFixture(t *testing.T) *gateFixture {
	return adminRoutes(newGateFixture(t, "http://feedd.test", testToken))
}

// adminRoutes adds the routes of adminFixture to f.
func adminRoutes(f *gateFixture) *gateFixture {
	f.srv.Admin().GET("/feeds", func(c *echo.Context) error { return c.JSON(200, map[string]bool{"ok": true}) })
	f.srv.Admin().POST("/feeds", func(c *echo.Context) error { return c.JSON(201, map[string]bool{"created": true}) })
	f.srv.Setup().GET("", func(c *echo.Context) error {
		ok := CSRFToken(c) != "" // only a cookie session has one
		return c.String(200, "setup csrf="+CSRFToken(c)+" session="+map[bool]string{true: "yes", false: "no"}[ok])
	})
	f.srv.Setup().POST("/feeds", func(c *echo.Context) error { return c.String(200, "created") })
	return f
}

// signIn posts the admin token to the login form and returns the cookie.
func (f *gateFixture) signIn(t *testing.T) *http.Cookie {
	t.Helper()
	w := f.do(form("POST", "/setup/login", url.Values{"token": {testToken}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup" {
		t.Fatalf("sign in: %d %v %s", w.Code, w.Header(), w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

func (f *gateFixture) csrfFor(t *testing.T, ck *http.Cookie) string {
	t.Helper()
	r := req("GET", "/setup", nil)
	r.AddCookie(ck)
	w := f.do(r)
	_, rest, _ := strings.Cut(w.Body.String(), "csrf=")
	tok, _, _ := strings.Cut(rest, " ")
	if w.Code != 200 || tok == "" {
		t.Fatalf("setup page: %d %s", w.Code, w.Body)
	}
	return tok
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
			w := f.do(req("GET", "/api/admin/feeds", nil, "Authorization", tt.auth))
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
			if w := f.do(req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+tok)); w.Code != 401 {
				t.Errorf("token %q: %d", tok, w.Code)
			}
		}
	})
	t.Run("bearer POST needs no CSRF token", func(t *testing.T) {
		if w := f.do(req("POST", "/api/admin/feeds", strings.NewReader("{}"), "Authorization", "Bearer "+testToken)); w.Code != 201 {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
}

func TestSessionCookie(t *testing.T) {
	f := adminFixture(t)
	t.Run("browser without session is sent to sign in", func(t *testing.T) {
		w := f.do(req("GET", "/setup", nil))
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup/login" {
			t.Fatalf("got %d %v", w.Code, w.Header())
		}
	})
	t.Run("wrong token on the form", func(t *testing.T) {
		w := f.do(form("POST", "/setup/login", url.Values{"token": {"guess"}}))
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
		r := req("GET", "/setup", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 200 || !strings.Contains(w.Body.String(), "session=yes") {
			t.Fatalf("setup: %d %s", w.Code, w.Body)
		}
		r = req("GET", "/api/admin/feeds", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 200 {
			t.Fatalf("api: %d", w.Code)
		}
	})
	t.Run("signed-in visit to the login page goes to setup", func(t *testing.T) {
		r := req("GET", "/setup/login", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != http.StatusSeeOther {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("forged cookie", func(t *testing.T) {
		r := req("GET", "/api/admin/feeds", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "forged"})
		if w := f.do(r); w.Code != 401 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		f.clock.Add(SessionTTL + time.Minute)
		defer f.clock.Add(-SessionTTL - time.Minute)
		r := req("GET", "/api/admin/feeds", nil)
		r.AddCookie(ck)
		if w := f.do(r); w.Code != 401 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("logout ends the session", func(t *testing.T) {
		ck := f.signIn(t)
		tok := f.csrfFor(t, ck)
		r := form("POST", "/setup/logout", url.Values{"_csrf": {tok}})
		r.AddCookie(ck)
		w := f.do(r)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("logout: %d %s", w.Code, w.Body)
		}
		r = req("GET", "/api/admin/feeds", nil)
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
		{"missing", form("POST", "/setup/feeds", url.Values{}), 403},
		{"wrong", form("POST", "/setup/feeds", url.Values{"_csrf": {"wrong-" + tok}}), 403},
		{"right form field", form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}), 200},
		{"right header", req("POST", "/api/admin/feeds", strings.NewReader("{}"), "X-CSRF-Token", tok), 201},
		{"missing on the API", req("POST", "/api/admin/feeds", strings.NewReader("{}")), 403},
		{"cross-site", form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Sec-Fetch-Site", "cross-site"), 403},
		{"foreign origin", form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Origin", "https://evil.example"), 403},
		{"own origin", form("POST", "/setup/feeds", url.Values{"_csrf": {tok}}, "Origin", "http://feedd.test", "Sec-Fetch-Site", "same-origin"), 200},
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
		r := form("POST", "/setup/feeds", url.Values{"_csrf": {tok}})
		r.AddCookie(other)
		if w := f.do(r); w.Code != 403 {
			t.Fatalf("got %d", w.Code)
		}
	})
	t.Run("cross-site login refused", func(t *testing.T) {
		w := f.do(form("POST", "/setup/login", url.Values{"token": {testToken}}, "Origin", "https://evil.example"))
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
	w := f.do(req("GET", u.RequestURI(), nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup" || len(w.Result().Cookies()) != 1 {
		t.Fatalf("first use: %d %v", w.Code, w.Header())
	}
	r := req("GET", "/setup", nil)
	r.AddCookie(w.Result().Cookies()[0])
	if w := f.do(r); w.Code != 200 {
		t.Fatalf("session from link: %d", w.Code)
	}
	if w := f.do(req("GET", u.RequestURI(), nil)); w.Code != 401 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("second use: %d", w.Code)
	}
	t.Run("expired", func(t *testing.T) {
		link, _ := f.gate.IssueSetupLink(context.Background())
		f.clock.Add(SetupLinkTTL + time.Second)
		u, _ := url.Parse(link)
		if w := f.do(req("GET", u.RequestURI(), nil)); w.Code != 401 {
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
	r := req("GET", "/api/admin/feeds", nil)
	r.AddCookie(ck)
	if w := f.do(r); w.Code != 401 {
		t.Errorf("old session still valid: %d", w.Code)
	}
	if w := f.do(req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+testToken)); w.Code != 401 {
		t.Errorf("old token still valid: %d", w.Code)
	}
	if w := f.do(req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+tok)); w.Code != 200 {
		t.Errorf("new token refused: %d", w.Code)
	}
}
