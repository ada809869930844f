package feed

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// fakeSource serves fixed bodies per feed id.
type fakeSource struct {
	entries map[string]*cache.Entry
	queries []Query
}

func (s *fakeSource) Entry(ctx context.Context, id string, q Query) (*cache.Entry, error) {
	s.queries = append(s.queries, q)
	e, ok := s.entries[id]
	if !ok {
		return nil, model.ErrNotFound
	}
	return e, nil
}

// newEcho mounts the handler like the server does, with an error handler
// rendering *web.Error as the JSON envelope.
func newEcho(t testing.TB, src Source) *echo.Echo {
	t.Helper()
	e := echo.New()
	e.HTTPErrorHandler = func(c *echo.Context, err error) {
		he, ok := web.As(err)
		if !ok {
			he = web.New(http.StatusInternalServerError, "internal", "internal error")
		}
		c.JSON(he.Status, map[string]any{"error": he})
	}
	NewHandler(src).Register(e.Group(""))
	return e
}

func newSource(t testing.TB) *fakeSource {
	t.Helper()
	body := []byte(`{"version":1,"id":"k3v9x2m4q8","posts":[` + strings.Repeat(`{"id":"1","caption":"hello hello hello"},`, 30) + `{"id":"2"}]}`)
	open, err := NewEntry(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	locked, _ := NewEntry([]byte(`{"version":1}`), []string{"https://shop.example", "https://www.shop.example/"})
	return &fakeSource{entries: map[string]*cache.Entry{"k3v9x2m4q8": open, "locked0001": locked}}
}

func do(e http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func TestHandlerServesCachedBytes(t *testing.T) {
	src := newSource(t)
	e := newEcho(t, src)
	want := src.entries["k3v9x2m4q8"]

	w := do(e, "GET", "/api/v1/feeds/k3v9x2m4q8")
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want.JSON) {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	h := w.Header()
	for k, v := range map[string]string{
		"Content-Type":                "application/json",
		"Cache-Control":               "public, max-age=60, stale-while-revalidate=600, stale-if-error=86400",
		"Vary":                        "Origin, Accept-Encoding",
		"ETag":                        want.ETag,
		"Access-Control-Allow-Origin": "*",
		"Content-Length":              itoa(len(want.JSON)),
	} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if h.Get("Content-Encoding") != "" {
		t.Error("compressed without Accept-Encoding")
	}

	// gzip when accepted: the precompressed bytes.
	w = do(e, "GET", "/api/v1/feeds/k3v9x2m4q8", "Accept-Encoding", "br, gzip;q=0.8")
	if w.Header().Get("Content-Encoding") != "gzip" || !bytes.Equal(w.Body.Bytes(), want.Gzip) ||
		w.Header().Get("Content-Length") != itoa(len(want.Gzip)) || w.Header().Get("ETag") != want.ETag {
		t.Fatalf("gzip: %v", w.Header())
	}
	zr, _ := gzip.NewReader(w.Body)
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, want.JSON) {
		t.Fatal("gzip body does not decode to the JSON")
	}
	if w := do(e, "GET", "/api/v1/feeds/k3v9x2m4q8", "Accept-Encoding", "gzip;q=0, deflate"); w.Header().Get("Content-Encoding") != "" {
		t.Error("gzip sent although refused with q=0")
	}

	// HEAD: headers, no body.
	w = do(e, "HEAD", "/api/v1/feeds/k3v9x2m4q8")
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("ETag") != want.ETag {
		t.Fatalf("HEAD: %d %d", w.Code, w.Body.Len())
	}
}

func TestHandlerConditionalRequests(t *testing.T) {
	src := newSource(t)
	e := newEcho(t, src)
	etag := src.entries["k3v9x2m4q8"].ETag
	tests := []struct {
		inm  string
		want int
	}{
		{etag, 304},
		{"W/" + etag, 304}, // weak comparison for If-None-Match
		{`"other", ` + etag, 304},
		{`"other",W/` + etag, 304},
		{"*", 304},
		{`"other"`, 200},
		{strings.Trim(etag, `"`), 200}, // unquoted is not a tag
		{`W/"` + strings.Trim(etag, `"`) + `x"`, 200},
		{`garbage, "x`, 200},
	}
	for _, tt := range tests {
		w := do(e, "GET", "/api/v1/feeds/k3v9x2m4q8", "If-None-Match", tt.inm)
		if w.Code != tt.want {
			t.Errorf("If-None-Match %q: %d, want %d", tt.inm, w.Code, tt.want)
		}
		if w.Code == 304 && (w.Body.Len() != 0 || w.Header().Get("ETag") != etag || w.Header().Get("Cache-Control") == "" ||
			w.Header().Get("Vary") == "") {
			t.Errorf("304 headers/body: %v %q", w.Header(), w.Body)
		}
	}
}

func TestHandlerCORS(t *testing.T) {
	src := newSource(t)
	e := newEcho(t, src)
	tests := []struct {
		name, id, origin, want string
	}{
		{"no origins configured allows all", "k3v9x2m4q8", "https://any.example", "*"},
		{"listed origin echoed", "locked0001", "https://shop.example", "https://shop.example"},
		{"trailing slash in config ignored", "locked0001", "https://www.shop.example", "https://www.shop.example"},
		{"case-insensitive", "locked0001", "https://SHOP.example", "https://SHOP.example"},
		{"other origin refused", "locked0001", "https://evil.example", ""},
		{"prefix trick refused", "locked0001", "https://shop.example.evil.example", ""},
		{"no origin header", "locked0001", "", ""},
	}
	for _, tt := range tests {
		var w *httptest.ResponseRecorder
		if tt.origin != "" {
			w = do(e, "GET", "/api/v1/feeds/"+tt.id, "Origin", tt.origin)
		} else {
			w = do(e, "GET", "/api/v1/feeds/"+tt.id)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != tt.want || w.Code != 200 {
			t.Errorf("%s: ACAO %q (status %d), want %q", tt.name, got, w.Code, tt.want)
		}
		if !strings.Contains(w.Header().Get("Vary"), "Origin") {
			t.Errorf("%s: no Vary: Origin", tt.name)
		}
	}
	// Preflight.
	w := do(e, "OPTIONS", "/api/v1/feeds/locked0001", "Origin", "https://shop.example", "Access-Control-Request-Method", "GET",
		"Access-Control-Request-Headers", "if-none-match")
	if w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "GET") ||
		!strings.EqualFold(w.Header().Get("Access-Control-Allow-Headers"), "If-None-Match") || w.Header().Get("Access-Control-Max-Age") == "" {
		t.Fatalf("preflight: %d %v", w.Code, w.Header())
	}
	w = do(e, "OPTIONS", "/api/v1/feeds/locked0001", "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("preflight for a refused origin: %v", w.Header())
	}
	if w := do(e, "OPTIONS", "/api/v1/feeds/unknown"); w.Code != 404 {
		t.Fatalf("preflight unknown feed: %d", w.Code)
	}
}

func TestHandlerErrors(t *testing.T) {
	src := newSource(t)
	e := newEcho(t, src)
	tests := []struct {
		target  string
		status  int
		code    string
		message string
	}{
		{"/api/v1/feeds/unknown", 404, "not_found", "feed not found"},
		{"/api/v1/feeds/k3v9x2m4q8?limit=0", 400, "invalid_parameter", "limit must be an integer from 1 to 100"},
		{"/api/v1/feeds/k3v9x2m4q8?limit=101", 400, "invalid_parameter", "limit must be an integer from 1 to 100"},
		{"/api/v1/feeds/k3v9x2m4q8?limit=abc", 400, "invalid_parameter", "limit must be an integer from 1 to 100"},
		{"/api/v1/feeds/k3v9x2m4q8?limit=99999999999999999999", 400, "invalid_parameter", "limit"},
		{"/api/v1/feeds/k3v9x2m4q8?type=gif", 400, "invalid_parameter", `type "gif" is not one of image, video, carousel, reel`},
		{"/api/v1/feeds/k3v9x2m4q8?type=image,%3Cscript%3E", 400, "invalid_parameter", "type"},
		{"/api/v1/feeds/k3v9x2m4q8?after=!!!", 400, "invalid_parameter", "after"},
		{"/api/v1/feeds/k3v9x2m4q8?after=" + encodeCursorRaw("x:1"), 400, "invalid_parameter", "after"},
	}
	for _, tt := range tests {
		w := do(e, "GET", tt.target)
		var env struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(w.Body.Bytes(), &env)
		if w.Code != tt.status || env.Error.Code != tt.code || !strings.Contains(env.Error.Message, tt.message) {
			t.Errorf("%s: %d %+v, want %d %s %q", tt.target, w.Code, env.Error, tt.status, tt.code, tt.message)
		}
		if strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("%s: raw markup echoed", tt.target)
		}
	}
	// Unknown parameters are ignored; equal queries normalise to one key.
	src.queries = nil
	if w := do(e, "GET", "/api/v1/feeds/k3v9x2m4q8?utm_source=x&limit=20"); w.Code != 200 {
		t.Fatalf("unknown parameter: %d", w.Code)
	}
	if q := src.queries[0]; q.key() != "" {
		t.Errorf("limit=20 with noise did not normalise to the default query: %q", q.key())
	}
}

func encodeCursorRaw(s string) string {
	return url.QueryEscape(b64(s))
}

func TestParseQueryTable(t *testing.T) {
	okCursor := encodeCursor(&Post{ID: "17918195224117851", Timestamp: ts(20)})
	tests := []struct {
		raw    string
		limit  int
		types  TypeSet
		errSub string
	}{
		{"", 20, 0, ""},
		{"limit=1", 1, 0, ""},
		{"limit=100", 100, 0, ""},
		{"limit=", 20, 0, ""},
		{"limit=-1", 0, 0, "limit"},
		{"limit=1.5", 0, 0, "limit"},
		{"type=reel", 20, FilterReel, ""},
		{"type=image,,video", 20, FilterImage | FilterVideo, ""},
		{"type=%20Carousel%20", 20, FilterCarousel, ""},
		{"type=reels", 0, 0, "type"},
		{"after=" + okCursor, 20, 0, ""},
		{"after=" + url.QueryEscape(b64("123:../../etc")), 0, 0, "after"},
		{"after=" + url.QueryEscape(b64(strings.Repeat("1", 300))), 0, 0, "after"},
	}
	for _, tt := range tests {
		v, _ := url.ParseQuery(tt.raw)
		q, err := ParseQuery(v)
		if tt.errSub != "" {
			var he *web.Error
			if !errors.As(err, &he) || he.Status != 400 || !strings.Contains(he.Message, tt.errSub) {
				t.Errorf("%q: err %v, want 400 naming %s", tt.raw, err, tt.errSub)
			}
			continue
		}
		if err != nil || q.Limit != tt.limit || q.Types != tt.types {
			t.Errorf("%q: %+v %v", tt.raw, q, err)
		}
		if back, ok := queryFromKey(q.key()); !ok || back.key() != q.key() {
			t.Errorf("%q: key %q does not round-trip", tt.raw, q.key())
		}
	}
}

func TestAltText(t *testing.T) {
	long := strings.Repeat("word ", 40)
	tests := []struct {
		name         string
		alt, caption *string
		want         string
	}{
		{"alt text wins", ptr("  A red\n door "), ptr("caption"), "A red door"},
		{"first sentence", nil, ptr("Sunrise over the harbour. Then coffee."), "Sunrise over the harbour."},
		{"hashtags and mentions trimmed", nil, ptr("#sunday Morning  walk with @ana #sea"), "Morning walk with"},
		{"first line", nil, ptr("New menu\nAvailable from Monday #food"), "New menu"},
		{"decimals kept", nil, ptr("Version 3.5 is out"), "Version 3.5 is out"},
		{"only tags", nil, ptr("#a #b @c"), "Post by @acme"},
		{"emoji only", nil, ptr("🌅🌅"), "Post by @acme"},
		{"no caption", nil, nil, "Post by @acme"},
		{"empty alt text", ptr("  "), nil, "Post by @acme"},
		{"markup is text", nil, ptr(`<script>alert(1)</script> hi`), `<script>alert(1)</script> hi`},
	}
	for _, tt := range tests {
		if got := AltText(tt.alt, tt.caption, "acme"); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	got := AltText(nil, &long, "acme")
	if n := len([]rune(got)); n > altMaxRunes+1 || !strings.HasSuffix(got, "…") || strings.HasSuffix(got, " …") {
		t.Errorf("long caption: %q (%d runes)", got, n)
	}
	if got := AltText(nil, nil, ""); got == "" {
		t.Error("empty alt")
	}
}

// The warm path must allocate (almost) nothing.
func TestWarmHandlerAllocations(t *testing.T) {
	src := newSource(t)
	e := newEcho(t, src)
	r := httptest.NewRequest("GET", "/api/v1/feeds/k3v9x2m4q8", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		e.ServeHTTP(w, r)
	})
	if allocs > 2 {
		t.Fatalf("warm request allocates %.0f times", allocs)
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func BenchmarkWarmFeedHandler(b *testing.B) {
	fx := sampleEnv(b, envOptions{})
	if err := fx.fetchNow(); err != nil {
		b.Fatal(err)
	}
	e := newEcho(b, fx.svc)
	for _, bc := range []struct {
		name string
		hdr  []string
	}{
		{"identity", nil},
		{"gzip", []string{"Accept-Encoding", "gzip, deflate, br"}},
		{"304", []string{"If-None-Match", ""}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/api/v1/feeds/"+fx.id, nil)
			r.Header.Set("Origin", "https://site.example")
			if bc.hdr != nil {
				v := bc.hdr[1]
				if bc.name == "304" {
					ent, _ := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
					v = ent.ETag
				}
				r.Header.Set(bc.hdr[0], v)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				e.ServeHTTP(w, r)
			}
			if want := map[string]int{"304": 304}[bc.name]; want != 0 && w.code != want {
				b.Fatalf("status %d", w.code)
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
