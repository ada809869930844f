package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/testenv"
)

// adminFixture has an admin API route and setup page routes that echo what
// the gate decided.
func adminFixture(t *testing.T) *fixture {
	f := newFixture(t, nil)
	testenv.GateProbes(f.srv.Admin(), f.srv.Setup(), owner.CSRFToken)
	return f
}

// signIn posts the admin token to the login form and returns the cookie.
func (f *fixture) signIn(t *testing.T) *http.Cookie {
	t.Helper()
	return testenv.SignIn(t, f.srv.Handler(), testToken, owner.SessionCookie)
}

func (f *fixture) csrfFor(t *testing.T, ck *http.Cookie) string {
	t.Helper()
	return testenv.CSRF(t, f.srv.Handler(), ck)
}

// Until the owner's gate is installed, the owner groups admit nobody.
func TestOwnerGroupsRefuseWithoutAGate(t *testing.T) {
	u, _ := url.Parse("http://feedd.test")
	srv, err := New(Options{PublicURL: u, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Admin().GET("/feeds", func(c *echo.Context) error { return c.String(200, "reached") })
	srv.Setup().GET("", func(c *echo.Context) error { return c.String(200, "reached") })
	for _, path := range []string{"/api/admin/feeds", "/setup", "/api/admin/nothing-here"} {
		r := testenv.Req("GET", path, nil, "Authorization", "Bearer "+testToken)
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s without a gate: %d", path, w.Code)
		}
	}
}

func TestFailuresThrottledButRightCredentialAccepted(t *testing.T) {
	f := adminFixture(t)
	wrong := func() int {
		return f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer wrong")).Code
	}
	for i := range failureBurst {
		if c := wrong(); c != 401 {
			t.Fatalf("failure %d: %d", i, c)
		}
	}
	w := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer wrong"))
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d", failureBurst, w.Code)
	}
	if c := f.do(testenv.Form("POST", "/setup/login", url.Values{"token": {"wrong"}})).Code; c != 429 {
		t.Errorf("login form not throttled: %d", c)
	}
	if c := f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+testToken)).Code; c != 200 {
		t.Errorf("right bearer refused while throttled: %d", c)
	}
	f.signIn(t) // right form token while throttled
	other := testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer wrong")
	other.RemoteAddr = "192.0.2.77:1"
	if c := f.do(other).Code; c != 401 {
		t.Errorf("other client throttled: %d", c)
	}
	f.clock.Add(time.Minute)
	if c := wrong(); c != 401 {
		t.Errorf("throttle did not lift: %d", c)
	}
	if strings.Contains(f.logs.String(), testToken) {
		t.Error("admin token logged")
	}
}
