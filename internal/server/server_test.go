package server

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/web"
)

type envelope struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeEnvelope(t *testing.T, body string) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an error envelope: %v: %q", err, body)
	}
	return e
}

func TestErrorEnvelope(t *testing.T) {
	f := newFixture(t, nil)
	e := f.srv.Echo()
	e.GET("/client", func(c *echo.Context) error {
		return web.BadRequest("invalid_limit", "limit must be 1..100, got %q", "500")
	})
	e.GET("/retry", func(c *echo.Context) error {
		return &web.Error{Status: 503, Code: "busy", Message: "try later", RetryAfter: 7}
	})
	e.GET("/internal", func(c *echo.Context) error {
		return errors.New("db: disk I/O error at /var/secret/path")
	})
	e.GET("/panic", func(c *echo.Context) error { panic("boom") })
	e.POST("/echo", func(c *echo.Context) error {
		b, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		return c.String(200, string(b))
	})

	tests := []struct {
		name       string
		r          *http.Request
		status     int
		code       string
		retryAfter string
	}{
		{"client error keeps status and message", testenv.Req("GET", "/client", nil), 400, "invalid_limit", ""},
		{"retry after is sent", testenv.Req("GET", "/retry", nil), 503, "busy", "7"},
		{"other errors are internal", testenv.Req("GET", "/internal", nil), 500, "internal", ""},
		{"panic is internal", testenv.Req("GET", "/panic", nil), 500, "internal", ""},
		{"unknown route", testenv.Req("GET", "/nope", nil), 404, "not_found", ""},
		{"wrong method", testenv.Req("DELETE", "/client", nil), 405, "method_not_allowed", ""},
		{"declared body too large", testenv.Req("POST", "/echo", strings.NewReader(strings.Repeat("x", DefaultBodyLimit+1))), 413, "body_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(tt.r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			env := decodeEnvelope(t, w.Body.String())
			if env.Error.Code != tt.code || env.Error.Message == "" {
				t.Errorf("error = %+v, want code %q", env.Error, tt.code)
			}
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if strings.Contains(w.Body.String(), "disk") || strings.Contains(w.Body.String(), "boom") {
				t.Errorf("internal details leaked: %s", w.Body)
			}
		})
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "disk I/O error") || !strings.Contains(logs, "boom") {
		t.Errorf("internal errors not logged:\n%s", logs)
	}
}

func TestStreamedBodyOverLimit(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.BodyLimit = 10 })
	f.srv.Echo().POST("/echo", func(c *echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		return c.NoContent(204)
	})
	r := testenv.Req("POST", "/echo", io.NopCloser(strings.NewReader(strings.Repeat("x", 100))))
	r.ContentLength = -1 // chunked: only the reader can stop it
	w := f.do(r)
	if w.Code != 413 || decodeEnvelope(t, w.Body.String()).Error.Code != "body_too_large" {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
}

func TestHTMLErrorPagesForOwnerRoutes(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.Echo().GET("/auth/instagram/callback", func(c *echo.Context) error {
		return web.BadRequest("bad_state", "the sign-in link expired")
	})
	w := f.do(testenv.Req("GET", "/auth/instagram/callback?state=x&code=SECRETCODE", nil, "Accept", "text/html"))
	if w.Code != 400 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("got %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	if !strings.Contains(body, "The sign-in link expired.") || strings.Contains(body, "SECRETCODE") {
		t.Errorf("page: %s", body)
	}
	// API clients asking for JSON get the envelope.
	w = f.do(testenv.Req("GET", "/auth/instagram/callback", nil, "Accept", "application/json"))
	if decodeEnvelope(t, w.Body.String()).Error.Code != "bad_state" {
		t.Errorf("json: %s", w.Body)
	}
}

func TestHealthAndReady(t *testing.T) {
	var ready error
	f := newFixture(t, func(o *Options) {
		o.Ready = func(ctx context.Context) error { return ready }
	})
	if w := f.do(testenv.Req("GET", "/healthz", nil)); w.Code != 200 || w.Body.String() != "ok" {
		t.Errorf("healthz: %d %q", w.Code, w.Body)
	}
	if w := f.do(testenv.Req("GET", "/readyz", nil)); w.Code != 200 {
		t.Errorf("readyz: %d", w.Code)
	}
	ready = errors.New("store: database is locked")
	if w := f.do(testenv.Req("GET", "/readyz", nil)); w.Code != 503 || strings.Contains(w.Body.String(), "locked") {
		t.Errorf("readyz when the database is down: %d %q", w.Code, w.Body)
	}
}

func TestMetricsByRoutePattern(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error { return c.String(200, "{}") })
	for _, id := range []string{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"} {
		f.do(testenv.Req("GET", "/api/v1/feeds/"+id, nil))
	}
	f.do(testenv.Req("GET", "/random/path/1", nil))
	f.do(testenv.Req("GET", "/healthz", nil))
	w := f.do(testenv.Req("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`feedd_http_requests_total{code="200",method="GET",route="/api/v1/feeds/:id"} 3`,
		`feedd_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`feedd_http_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`feedd_http_request_duration_seconds_count{route="/api/v1/feeds/:id"} 3`,
		"go_goroutines",
		"process_",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "aaaaaaaaaa") {
		t.Error("raw path used as a label")
	}
	if strings.Contains(body, `route="/readyz"`) {
		t.Error("a route nobody requested is listed")
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.Public().GET("/feeds/:id/embed", func(c *echo.Context) error { return c.HTML(200, "<p>feed</p>") })
	f.srv.Admin().GET("/feeds", func(c *echo.Context) error { return c.JSON(200, []string{}) })
	f.srv.Setup().GET("", func(c *echo.Context) error { return c.HTML(200, "setup") })

	check := func(name string, w *http.Response, frameable bool) {
		t.Helper()
		h := w.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "strict-origin-when-cross-origin" {
			t.Errorf("%s: base headers missing: %v", name, h)
		}
		if h.Get("X-Request-Id") == "" {
			t.Errorf("%s: no request id", name)
		}
		denied := h.Get("X-Frame-Options") == "DENY" && strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'")
		if frameable == denied {
			t.Errorf("%s: frameable=%v but headers %v", name, frameable, h)
		}
	}
	check("embed", f.do(testenv.Req("GET", "/feeds/abc/embed", nil)).Result(), true)
	check("admin", f.do(testenv.Req("GET", "/api/admin/feeds", nil, "Authorization", "Bearer "+testToken)).Result(), false)
	check("login", f.do(testenv.Req("GET", "/setup/login", nil)).Result(), false)
	check("not found", f.do(testenv.Req("GET", "/nope", nil)).Result(), false)

	w := f.do(testenv.Req("GET", "/setup/login", nil))
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("setup CSP %q lacks %q", csp, want)
		}
	}
	// A caller's plain request id is kept; a hostile one is replaced.
	if got := f.do(testenv.Req("GET", "/healthz", nil, "X-Request-Id", "abc-123")).Header().Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("request id = %q", got)
	}
	if got := f.do(testenv.Req("GET", "/healthz", nil, "X-Request-Id", "a\"b <x>")).Header().Get("X-Request-Id"); got == "a\"b <x>" || got == "" {
		t.Errorf("request id = %q", got)
	}
}

func TestSetupCSPAllowsConnectRedirect(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.FormActionOrigins = []string{"https://www.instagram.com"} })
	w := f.do(testenv.Req("GET", "/setup/login", nil))
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://www.instagram.com;") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestRequestLogHasNoQueryString(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error { return c.String(200, "{}") })
	f.do(testenv.Req("GET", "/api/v1/feeds/abc?access_token=IGSECRET123&after=x", nil))
	f.do(testenv.Req("GET", "/auth/instagram/callback?code=CODESECRET", nil))
	logs := f.logs.String()
	if strings.Contains(logs, "IGSECRET123") || strings.Contains(logs, "CODESECRET") || strings.Contains(logs, "access_token") {
		t.Fatalf("query string logged:\n%s", logs)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if strings.Contains(l, `"route":"/api/v1/feeds/:id"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no request log line:\n%s", logs)
	}
	for _, k := range []string{"method", "route", "path", "status", "duration", "bytes", "request_id", "client_ip"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %q: %v", k, line)
		}
	}
	if line["path"] != "/api/v1/feeds/abc" || line["client_ip"] != "192.0.2.1" {
		t.Errorf("log line: %v", line)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.RateLimit = 1 // burst 2
		o.TrustedProxies = []netip.Prefix{mustPrefix("10.0.0.0/8")}
	})
	f.srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error { return c.String(200, "{}") })
	get := func(peer, xff string) *http.Response {
		r := testenv.Req("GET", "/api/v1/feeds/abc", nil)
		r.RemoteAddr = peer
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return f.do(r).Result()
	}

	for i := range 2 {
		if w := get("192.0.2.1:1", ""); w.StatusCode != 200 {
			t.Fatalf("request %d within burst: %d", i, w.StatusCode)
		}
	}
	w := get("192.0.2.1:1", "")
	if w.StatusCode != 429 || w.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d Retry-After %q", w.StatusCode, w.Header.Get("Retry-After"))
	}
	body, _ := io.ReadAll(w.Body)
	if decodeEnvelope(t, string(body)).Error.Code != "rate_limited" {
		t.Errorf("body %s", body)
	}
	t.Run("other clients are not affected", func(t *testing.T) {
		if w := get("192.0.2.2:1", ""); w.StatusCode != 200 {
			t.Errorf("status %d", w.StatusCode)
		}
	})
	t.Run("tokens refill with time", func(t *testing.T) {
		f.clock.Add(time.Second)
		if w := get("192.0.2.1:1", ""); w.StatusCode != 200 {
			t.Errorf("status %d", w.StatusCode)
		}
	})
	t.Run("X-Forwarded-For from an untrusted peer is ignored", func(t *testing.T) {
		get("192.0.2.3:1", "198.51.100.1")
		get("192.0.2.3:1", "198.51.100.2")
		if w := get("192.0.2.3:1", "198.51.100.3"); w.StatusCode != 429 {
			t.Errorf("spoofed X-Forwarded-For escaped the limit: %d", w.StatusCode)
		}
	})
	t.Run("X-Forwarded-For from a trusted proxy is honoured", func(t *testing.T) {
		for i := range 3 {
			if w := get("10.1.1.1:1", "203.0.113.9, 198.51.100.7"); w.StatusCode != 200 && i < 2 {
				t.Fatalf("request %d: %d", i, w.StatusCode)
			}
		}
		if w := get("10.1.1.1:1", "198.51.100.7"); w.StatusCode != 429 {
			t.Errorf("same client behind the proxy not limited: %d", w.StatusCode)
		}
		// A different client through the same proxy has its own bucket.
		if w := get("10.1.1.1:1", "198.51.100.8"); w.StatusCode != 200 {
			t.Errorf("another client behind the proxy limited: %d", w.StatusCode)
		}
	})
	t.Run("admin routes are not visitor-limited", func(t *testing.T) {
		f.srv.Admin().GET("/ping", func(c *echo.Context) error { return c.NoContent(204) })
		for range 5 {
			r := testenv.Req("GET", "/api/admin/ping", nil, "Authorization", "Bearer "+testToken)
			if w := f.do(r); w.Code != 204 {
				t.Fatalf("admin: %d", w.Code)
			}
		}
	})
}

func TestClientIP(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("::1/128")}
	})
	tests := []struct {
		name, peer, xff, want string
	}{
		{"direct peer", "192.0.2.1:5", "", "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:5", "198.51.100.1", "192.0.2.1"},
		{"trusted proxy", "10.0.0.1:5", "198.51.100.1", "198.51.100.1"},
		{"client cannot prepend a fake", "10.0.0.1:5", "6.6.6.6, 198.51.100.1", "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.1:5", "198.51.100.1, 10.0.0.2", "198.51.100.1"},
		{"garbage stops the walk", "10.0.0.1:5", "nonsense", "10.0.0.1"},
		{"ipv6 loopback proxy", "[::1]:5", "2001:db8::1", "2001:db8::1"},
		{"mapped ipv4 peer", "[::ffff:192.0.2.9]:5", "", "192.0.2.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testenv.Req("GET", "/", nil)
			r.RemoteAddr = tt.peer
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := f.srv.clientAddr(r).String(); got != tt.want {
				t.Errorf("client = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	c := newClock()
	l := newIPLimiter(10, 20, c.Now)
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if n := l.size(); n != 1000 {
		t.Fatalf("tracked %d", n)
	}
	// After the refill time every bucket is full again and is forgotten.
	c.Add(3 * time.Second)
	for i := range limiterShards * 4 {
		l.allow(netip.AddrFrom4([4]byte{172, 16, 0, byte(i)}))
	}
	if n := l.size(); n > limiterShards*4 {
		t.Errorf("idle buckets kept: %d", n)
	}
	// A shard never grows past its cap.
	l2 := newIPLimiter(1, 2, newClock().Now)
	for i := range limiterShards*maxPerShard + 5000 {
		l2.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := l2.size(); n > limiterShards*maxPerShard {
		t.Errorf("tracked %d > cap", n)
	}
}

func TestGzip(t *testing.T) {
	f := newFixture(t, nil)
	big := strings.Repeat(`{"name":"feed"},`, 200)
	f.srv.Admin().GET("/big", func(c *echo.Context) error { return c.JSONBlob(200, []byte(big)) })
	f.srv.Admin().GET("/small", func(c *echo.Context) error { return c.JSONBlob(200, []byte(`{}`)) })
	f.srv.Admin().GET("/pre", func(c *echo.Context) error {
		c.Response().Header().Set("Content-Encoding", "gzip")
		return c.Blob(200, "application/json", []byte("already-compressed"))
	})
	f.srv.Admin().GET("/img", func(c *echo.Context) error { return c.Blob(200, "image/jpeg", []byte(big)) })
	auth := []string{"Authorization", "Bearer " + testToken, "Accept-Encoding", "gzip, br"}

	w := f.do(testenv.Req("GET", "/api/admin/big", nil, auth...))
	if w.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(w.Header().Get("Vary"), "Accept-Encoding") {
		t.Fatalf("big JSON not gzipped: %v", w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != big {
		t.Error("gzip body differs")
	}
	if w := f.do(testenv.Req("GET", "/api/admin/small", nil, auth...)); w.Header().Get("Content-Encoding") != "" || w.Body.String() != "{}" {
		t.Errorf("small body: %v %q", w.Header(), w.Body)
	}
	if w := f.do(testenv.Req("GET", "/api/admin/pre", nil, auth...)); w.Body.String() != "already-compressed" {
		t.Errorf("precompressed body changed: %q", w.Body)
	}
	if w := f.do(testenv.Req("GET", "/api/admin/img", nil, auth...)); w.Header().Get("Content-Encoding") != "" {
		t.Error("image gzipped")
	}
	if w := f.do(testenv.Req("GET", "/api/admin/big", nil, "Authorization", "Bearer "+testToken)); w.Header().Get("Content-Encoding") != "" || w.Body.String() != big {
		t.Error("gzip without Accept-Encoding")
	}
}
