package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/ui"
)

// securityFixture registers stand-ins for every owner route feedd has (the
// admin API of product.md and the setup pages) on the server's groups.
// Each answers 200 "reached": whatever is tested here is decided before a
// handler runs.
func securityFixture(t *testing.T, mod func(*Options)) *fixture {
	f := newFixture(t, mod)
	reached := func(c *echo.Context) error { return c.String(200, "reached") }
	a := f.srv.Admin()
	a.POST("/feeds", reached)
	a.GET("/feeds", reached)
	a.GET("/feeds/:id", reached)
	a.PATCH("/feeds/:id", reached)
	a.DELETE("/feeds/:id", reached)
	a.POST("/feeds/:id/connect", reached)
	a.POST("/feeds/:id/token", reached)
	a.POST("/feeds/:id/refresh", reached)
	a.DELETE("/feeds/:id/token", reached)
	s := f.srv.Setup()
	s.GET("", func(c *echo.Context) error { return c.String(200, "reached csrf="+owner.CSRFToken(c)+" ") })
	s.GET("/feeds/:id", reached)
	s.POST("/feeds", reached)
	for _, action := range []string{"rename", "origins", "connect", "disconnect", "token", "refresh", "delete"} {
		s.POST("/feeds/:id/"+action, reached)
	}
	return f
}

// ownerRoutes lists every registered route behind the admin credential,
// read back from the router so a route added later is covered too.
func ownerRoutes(f *fixture) []echo.RouteInfo {
	var out []echo.RouteInfo
	for _, r := range f.srv.Echo().Router().Routes() {
		if r.Path == "/setup/login" || r.Path == ui.CSSRoute || r.Name == echo.NotFoundRouteName || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		if strings.HasPrefix(r.Path, "/api/admin") || r.Path == "/setup" || strings.HasPrefix(r.Path, "/setup/") {
			out = append(out, r)
		}
	}
	return out
}

func concrete(path string) string {
	return strings.ReplaceAll(path, ":id", "f_abc123")
}

func TestEveryOwnerRouteNeedsTheCredential(t *testing.T) {
	f := securityFixture(t, nil)
	routes := ownerRoutes(f)
	if len(routes) < 20 {
		t.Fatalf("only %d owner routes found: %v", len(routes), routes)
	}
	ck := f.signIn(t)
	csrf := f.csrfFor(t, ck)
	// Each request comes from its own peer, so the failed-credential
	// throttle (tested elsewhere) does not turn 401s into 429s here.
	peer := 0
	send := func(rq *http.Request) *http.Response {
		peer++
		rq.RemoteAddr = fmt.Sprintf("10.%d.%d.1:1234", peer/256, peer%256)
		return f.do(rq).Result()
	}
	for _, r := range routes {
		path := concrete(r.Path)
		name := r.Method + " " + path
		page := strings.HasPrefix(r.Path, "/setup")
		safe := r.Method == "GET" || r.Method == "HEAD"
		refused := func(w *http.Response, what string) {
			t.Helper()
			b, _ := io.ReadAll(w.Body)
			switch {
			case page && safe && w.StatusCode == 303:
				if loc := w.Header.Get("Location"); loc != "/setup/login" {
					t.Errorf("%s %s: redirected to %q", name, what, loc)
				}
			case w.StatusCode == 401 || w.StatusCode == 403:
			default:
				t.Errorf("%s %s: %d, want 401/403 (or 303 to sign in)", name, what, w.StatusCode)
			}
			if strings.Contains(string(b), "reached") {
				t.Errorf("%s %s: handler ran", name, what)
			}
		}
		do := func(hdr ...string) *http.Response {
			var body io.Reader
			if !safe {
				body = strings.NewReader("{}")
			}
			return send(testenv.Req(r.Method, path, body, hdr...))
		}
		withCookie := func(c *http.Cookie, hdr ...string) *http.Response {
			var body io.Reader
			if !safe {
				body = strings.NewReader("{}")
			}
			rq := testenv.Req(r.Method, path, body, hdr...)
			rq.AddCookie(c)
			return send(rq)
		}

		refused(do(), "without a credential")
		refused(do("Authorization", "Bearer wrong-token"), "with a wrong bearer")
		refused(do("Authorization", "Bearer "+testToken+"x"), "with a bearer one byte longer")
		refused(do("Authorization", "Bearer "+testToken[:len(testToken)-1]), "with a truncated bearer")
		refused(do("Authorization", "Basic "+testToken), "with the token under another scheme")
		refused(do("Cookie", owner.SessionCookie+"="+testToken), "with the token as session cookie")
		refused(withCookie(&http.Cookie{Name: owner.SessionCookie, Value: ck.Value + "x"}), "with a wrong session")
		if !safe {
			refused(withCookie(ck), "with a session but no CSRF token")
			refused(withCookie(ck, "X-CSRF-Token", csrf+"x"), "with a session and a wrong CSRF token")
			refused(withCookie(ck, "X-CSRF-Token", csrf, "Sec-Fetch-Site", "cross-site"), "with a session from another site")
		}

		// The right credential reaches the handler.
		if w := do("Authorization", "Bearer "+testToken); w.StatusCode != 200 && !(r.Path == "/setup/logout" && w.StatusCode == 303) {
			t.Errorf("%s with the right bearer: %d", name, w.StatusCode)
		}
		var hdr []string
		if !safe {
			hdr = []string{"X-CSRF-Token", csrf}
		}
		w := withCookie(ck, hdr...)
		if r.Path == "/setup/logout" {
			// Signing out is the one owner action that ends the session.
			if w.StatusCode != 303 || w.Header.Get("Location") != "/setup/login" {
				t.Errorf("%s with the right session: %d %v", name, w.StatusCode, w.Header)
			}
			ck = f.signIn(t)
			csrf = f.csrfFor(t, ck)
		} else if w.StatusCode != 200 {
			t.Errorf("%s with the right session: %d", name, w.StatusCode)
		}
	}
	// Unknown owner paths do not reveal themselves without a credential.
	for _, p := range []string{"/api/admin/nope", "/api/admin/feeds/x/nope", "/setup/nope"} {
		if w := f.do(testenv.Req("GET", p, nil)); w.Code != 401 && w.Code != 303 {
			t.Errorf("GET %s without credential: %d", p, w.Code)
		}
	}
}

func TestSignInHasNoOpenRedirect(t *testing.T) {
	f := securityFixture(t, nil)
	for _, q := range []string{"next=https://evil.test/", "redirect=//evil.test", "return_to=%2F%2Fevil.test", "continue=/\\evil.test"} {
		w := f.do(testenv.Form("POST", "/setup/login?"+q, url.Values{"token": {testToken}, "next": {"https://evil.test/"}}))
		if w.Code != 303 || w.Header().Get("Location") != "/setup" {
			t.Errorf("sign in with %s: %d Location %q", q, w.Code, w.Header().Get("Location"))
		}
	}
}

func TestRequestIDIsNeverReflectedUnsafely(t *testing.T) {
	f := securityFixture(t, nil)
	for _, id := range []string{
		"abc\r\nSet-Cookie: feedd_session=attacker",
		"abc\nX-Injected: 1",
		"abc def",
		"<script>alert(1)</script>",
		"abc\x00def",
		strings.Repeat("a", 65),
		"ünïcode",
		"a;b",
	} {
		r := testenv.Req("GET", "/healthz", nil)
		r.Header["X-Request-Id"] = []string{id}
		w := f.do(r)
		got := w.Header().Values("X-Request-Id")
		if len(got) != 1 || got[0] == id || !validRequestID(got[0]) {
			t.Errorf("X-Request-Id %q answered with %q", id, got)
		}
		if len(w.Header().Values("Set-Cookie")) != 0 || w.Header().Get("X-Injected") != "" {
			t.Errorf("X-Request-Id %q injected headers: %v", id, w.Header())
		}
	}
	// Two ids: neither is trusted.
	r := testenv.Req("GET", "/healthz", nil)
	r.Header["X-Request-Id"] = []string{"one", "two"}
	if got := f.do(r).Header().Values("X-Request-Id"); len(got) != 1 || got[0] == "one" || got[0] == "two" {
		t.Errorf("two request ids answered with %q", got)
	}
	// A plain id is echoed as is.
	r = testenv.Req("GET", "/healthz", nil, "X-Request-Id", "trace-42.a_b")
	if got := f.do(r).Header().Get("X-Request-Id"); got != "trace-42.a_b" {
		t.Errorf("plain request id answered with %q", got)
	}
	if logs := f.logs.String(); strings.Contains(logs, "Set-Cookie: feedd_session") || strings.Contains(logs, "\nX-Injected") {
		t.Errorf("log carries an injected line:\n%s", logs)
	}
}

// TestHeaderInjectionOnTheWire sends raw requests with control characters
// in headers and the path: they are refused and nothing is reflected.
func TestHeaderInjectionOnTheWire(t *testing.T) {
	f := securityFixture(t, func(o *Options) { o.Addr = "127.0.0.1:0" })
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := f.srv.Addr().String()
	for _, raw := range []string{
		"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rSet-Cookie: x=1\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x00b\r\n\r\n",
		"GET /healthz%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /api/admin/feeds%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /setup%0d%0aLocation:%20https://evil.test HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 300 && !strings.HasPrefix(raw, "GET /healthz%0d") {
			t.Errorf("%q: %d", raw, resp.StatusCode)
		}
		if len(resp.Header.Values("Set-Cookie")) != 0 || strings.Contains(resp.Header.Get("Location"), "evil") {
			t.Errorf("%q: injected header reflected: %v", raw, resp.Header)
		}
	}
}

func TestOversizedBodiesOnOwnerRoutes(t *testing.T) {
	f := securityFixture(t, func(o *Options) { o.BodyLimit = 1 << 10 })
	f.srv.Admin().POST("/echo", func(c *echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		return c.String(200, "reached")
	})
	big := strings.Repeat("x", 2<<10)
	for _, auth := range []string{"", "Bearer " + testToken} {
		// Declared too large: refused before authentication or reading.
		w := f.do(testenv.Req("POST", "/api/admin/feeds", strings.NewReader(big), "Authorization", auth))
		if w.Code != 413 || decodeEnvelope(t, w.Body.String()).Error.Code != "body_too_large" {
			t.Errorf("declared oversize, auth %q: %d %s", auth, w.Code, w.Body)
		}
	}
	// Streamed without a length: the reader stops it.
	r := testenv.Req("POST", "/api/admin/echo", io.NopCloser(strings.NewReader(big)), "Authorization", "Bearer "+testToken)
	r.ContentLength = -1
	if w := f.do(r); w.Code != 413 || strings.Contains(w.Body.String(), "reached") {
		t.Errorf("streamed oversize: %d %s", w.Code, w.Body)
	}
	// Sign-in form: an oversized token field does not get checked.
	w := f.do(testenv.Form("POST", "/setup/login", url.Values{"token": {testToken + big}}))
	if w.Code != 413 {
		t.Errorf("oversized sign-in form: %d", w.Code)
	}
}

func TestRequestIDsAreDistinctAndFitTheirBuffer(t *testing.T) {
	r := newRequestIDs()
	seen := map[string]bool{}
	for range 1000 {
		v := r.next()
		if len(v) != 1 || cap(v) != 1 || !validRequestID(v[0]) || seen[v[0]] {
			t.Fatalf("request id %q: repeated or malformed", v)
		}
		seen[v[0]] = true
	}
	// The largest counter still fits: the id is the prefix, '-' and 13 digits.
	r.n.Store(math.MaxUint64 - 1)
	v := r.next()
	if want := string(r.prefix[:]) + "-3w5e11264sgsf"; v[0] != want {
		t.Fatalf("last id %q, want %q", v[0], want)
	}
	// Each id keeps its own bytes.
	if w := r.next()[0]; w == v[0] {
		t.Fatalf("ids share storage: %q", w)
	}
}
