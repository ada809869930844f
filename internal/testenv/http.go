package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
)

// Req is a request to a handler with header name, value pairs, from peer
// 192.0.2.1.
func Req(method, target string, body io.Reader, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// Form is Req with vals as a URL-encoded form body.
func Form(method, target string, vals url.Values, hdr ...string) *http.Request {
	r := Req(method, target, strings.NewReader(vals.Encode()), hdr...)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// Serve sends r through h, from peer 192.0.2.1 unless r names another,
// and returns the answer.
func Serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	if r.RemoteAddr == "" {
		r.RemoteAddr = "192.0.2.1:1234"
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// GateProbes registers on a server's owner groups an admin API route and
// setup page routes that answer what the gate decided: GET /setup shows
// "csrf=TOKEN session=yes|no", where csrf reads the request's CSRF token
// (the owner's CSRFToken), which only a cookie session has.
func GateProbes(admin, setup *echo.Group, csrf func(*echo.Context) string) {
	admin.GET("/feeds", func(c *echo.Context) error { return c.JSON(200, map[string]bool{"ok": true}) })
	admin.POST("/feeds", func(c *echo.Context) error { return c.JSON(201, map[string]bool{"created": true}) })
	setup.GET("", func(c *echo.Context) error {
		ok := csrf(c) != ""
		return c.String(200, "setup csrf="+csrf(c)+" session="+map[bool]string{true: "yes", false: "no"}[ok])
	})
	setup.POST("/feeds", func(c *echo.Context) error { return c.String(200, "created") })
}

// SignIn posts the admin token to h's sign-in form and returns the
// session cookie, named cookie, that sends the browser to /setup.
func SignIn(t testing.TB, h http.Handler, token, cookie string) *http.Cookie {
	t.Helper()
	w := Serve(h, Form("POST", "/setup/login", url.Values{"token": {token}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/setup" {
		t.Fatalf("sign in: %d %v %s", w.Code, w.Header(), w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == cookie {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

// CSRF reads the CSRF token of session ck from h's setup page, which
// shows it as "csrf=TOKEN " (GateProbes' page does).
func CSRF(t testing.TB, h http.Handler, ck *http.Cookie) string {
	t.Helper()
	r := Req("GET", "/setup", nil)
	r.AddCookie(ck)
	w := Serve(h, r)
	_, rest, _ := strings.Cut(w.Body.String(), "csrf=")
	tok, _, _ := strings.Cut(rest, " ")
	if w.Code != 200 || tok == "" {
		t.Fatalf("setup page: %d %s", w.Code, w.Body)
	}
	return tok
}
