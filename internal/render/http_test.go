package render

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/web"
	"github.com/feedd/feedd/widget"
)

// newTestEcho mounts the handlers on an Echo whose error handler renders
// *web.Error like the server's does.
func newTestEcho(t testing.TB, src Source, public string) *echo.Echo {
	t.Helper()
	h, err := NewHandlers(Config{Source: src, PublicURL: public})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = func(c *echo.Context, err error) {
		status, body := 500, map[string]any{"code": "internal"}
		if he, ok := web.As(err); ok {
			status, body = he.Status, map[string]any{"code": he.Code, "message": he.Message}
		}
		c.JSON(status, map[string]any{"error": body})
	}
	h.Register(e.Group(""))
	return e
}

func do(e http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func TestFragmentRoute(t *testing.T) {
	e := newTestEcho(t, newFakeSource(pub), pub)
	w := do(e, "GET", "/feeds/demo.html?limit=6&columns=2")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for k, v := range map[string]string{"Content-Type": "text/html; charset=utf-8", "Cache-Control": FeedCacheControl,
		"Access-Control-Allow-Origin": "*", "Vary": "Origin"} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	body := w.Body.String()
	if strings.Count(body, `<li class="feedd-item"`) != 6 || !strings.Contains(body, "feedd-c2") {
		t.Errorf("fragment is not 6 tiles in 2 columns:\n%s", body)
	}
	etag := w.Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag %q is not strong", etag)
	}
	if w := do(e, "GET", "/feeds/demo.html?limit=6&columns=2", "If-None-Match", etag); w.Code != 304 || w.Body.Len() != 0 {
		t.Errorf("revalidation: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := do(e, "GET", "/feeds/demo.html?limit=6&columns=3", "If-None-Match", etag); w.Code != 200 {
		t.Errorf("other options answered %d to the first ETag", w.Code)
	}
	if w := do(e, "HEAD", "/feeds/demo.html"); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
}

func TestFragmentErrors(t *testing.T) {
	src := newFakeSource(pub)
	e := newTestEcho(t, src, pub)
	tests := []struct {
		target string
		status int
		code   string
		msg    string
	}{
		{"/feeds/nope.html", 404, "not_found", "feed"},
		{"/feeds/demo", 404, "not_found", ""},
		{"/feeds/demo.html?columns=12", 400, "invalid_parameter", "columns"},
		{"/feeds/demo.html?after=garbage!", 400, "invalid_parameter", "after"},
		{"/feeds/demo/embed?theme=pink", 400, "invalid_parameter", "theme"},
		{"/feeds/nope/embed", 404, "not_found", "feed"},
	}
	for _, tt := range tests {
		w := do(e, "GET", tt.target)
		var got struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(w.Body.Bytes(), &got)
		if w.Code != tt.status || got.Error.Code != tt.code || !strings.Contains(got.Error.Message, tt.msg) {
			t.Errorf("%s: %d %s", tt.target, w.Code, w.Body)
		}
	}
	src.err = errors.New("database is down: secret details")
	if w := do(e, "GET", "/feeds/demo.html"); w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("source failure: %d %s", w.Code, w.Body)
	}
}

func TestFragmentCORS(t *testing.T) {
	src := newFakeSource(pub)
	src.allowed = []string{"https://shop.example/"}
	e := newTestEcho(t, src, pub)
	if w := do(e, "GET", "/feeds/demo.html", "Origin", "https://shop.example"); w.Header().Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("allowed origin: ACAO %q", w.Header().Get("Access-Control-Allow-Origin"))
	}
	if w := do(e, "GET", "/feeds/demo.html", "Origin", "https://evil.example"); w.Header().Get("Access-Control-Allow-Origin") != "" || w.Code != 200 {
		t.Errorf("other origin: %d, ACAO %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"))
	}
	w := do(e, "OPTIONS", "/feeds/demo.html", "Origin", "https://shop.example", "Access-Control-Request-Method", "GET")
	if w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != "https://shop.example" || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}
	if w := do(e, "OPTIONS", "/feeds/nope.html", "Origin", "https://shop.example"); w.Code != 404 {
		t.Errorf("preflight of unknown feed: %d", w.Code)
	}
}

func TestEmbedPage(t *testing.T) {
	src := newFakeSource(pub)
	e := newTestEcho(t, src, pub)
	w := do(e, "GET", "/feeds/demo/embed?limit=3")
	body := w.Body.String()
	if w.Code != 200 || !strings.HasPrefix(body, "<!doctype html>") || !strings.Contains(body, `<script src="`+pub+`/widget.js" async></script>`) ||
		strings.Count(body, `<li class="feedd-item"`) != 3 || !strings.Contains(body, "<title>@acme</title>") {
		t.Fatalf("embed: %d\n%s", w.Code, body)
	}
	if w.Header().Get("X-Frame-Options") != "" || !strings.Contains(w.Header().Get("Content-Security-Policy"), "frame-ancestors *") {
		t.Errorf("embed page must be frameable: %v", w.Header())
	}
	src.allowed = []string{"https://shop.example/", "https://bad.example; script-src *"}
	w = do(e, "GET", "/feeds/demo/embed")
	if csp := w.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "frame-ancestors 'self' https://shop.example") {
		t.Errorf("CSP with allowed origins: %q", csp)
	}
}

func TestWidgetAssets(t *testing.T) {
	e := newTestEcho(t, newFakeSource(pub), pub)
	for path, want := range map[string][]byte{"/widget.js": widget.JS, "/widget.css": widget.CSS} {
		w := do(e, "GET", path, "Accept-Encoding", "gzip, br")
		if w.Code != 200 || w.Header().Get("Content-Encoding") != "gzip" || w.Header().Get("Vary") != "Accept-Encoding" ||
			w.Header().Get("Cache-Control") != AssetCacheControl {
			t.Fatalf("%s: %d %v", path, w.Code, w.Header())
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(zr)
		if string(got) != string(want) {
			t.Errorf("%s: gzip body is not the embedded file", path)
		}
		plain := do(e, "GET", path)
		if plain.Header().Get("Content-Encoding") != "" || plain.Body.String() != string(want) {
			t.Errorf("%s without Accept-Encoding: not the plain file", path)
		}
		etag := w.Header().Get("ETag")
		if etag == "" || etag != plain.Header().Get("ETag") {
			t.Errorf("%s: ETag %q vs %q", path, etag, plain.Header().Get("ETag"))
		}
		if w := do(e, "GET", path, "If-None-Match", etag); w.Code != 304 {
			t.Errorf("%s: revalidation %d", path, w.Code)
		}
	}
	if ct := do(e, "GET", "/widget.js").Header().Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("widget.js Content-Type %q", ct)
	}
}

func BenchmarkFragmentHandler(b *testing.B) {
	e := newTestEcho(b, newFakeSource(pub), pub)
	r := httptest.NewRequest("GET", "/feeds/demo.html", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
	}
}
