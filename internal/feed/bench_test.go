package feed

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/server"
)

// BenchmarkServerStack measures the warm feed request through the
// production server: every public middleware plus the feed handler.
func BenchmarkServerStack(b *testing.B) {
	h, path, etag := serverStack(b)
	for _, bc := range []struct{ name, key, value string }{
		{"200", "", ""},
		{"gzip", "Accept-Encoding", "gzip, deflate, br"},
		{"304", "If-None-Match", etag},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = "192.0.2.1:1234"
			r.Header.Set("Origin", "https://site.example")
			if bc.key != "" {
				r.Header.Set(bc.key, bc.value)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if want := map[string]int{"200": 200, "gzip": 200, "304": 304}[bc.name]; w.code != want {
				b.Fatalf("status %d, want %d", w.code, want)
			}
		})
	}
}

// serverStack is the production server with the feed handler on a
// fetched feed, that feed's path and its ETag.
func serverStack(t testing.TB) (http.Handler, string, string) {
	fx := sampleEnv(t, envOptions{})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("https://feeds.example.com")
	srv, err := server.New(server.Options{
		Addr: "127.0.0.1:0", PublicURL: pub, Logger: quietLogger(), Registry: prometheus.NewRegistry(),
		RateLimit: 1e9, Ready: func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	NewHandler(fx.svc).Register(srv.Public())
	e, err := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler(), "/api/v1/feeds/" + fx.id, e.ETag
}

// A warm feed request through the whole server allocates only its request
// id (the response header map is the HTTP server's, reused here).
func TestServerStackAllocatesOnlyTheRequestID(t *testing.T) {
	h, path, etag := serverStack(t)
	for _, hdr := range [][2]string{{}, {"Accept-Encoding", "gzip"}, {"If-None-Match", etag}} {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		if hdr[0] != "" {
			r.Header.Set(hdr[0], hdr[1])
		}
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r) // first request resolves the metric children
		allocs := testing.AllocsPerRun(200, func() {
			clear(w.h)
			h.ServeHTTP(w, r)
		})
		if allocs > 1 {
			t.Errorf("%q: warm request allocates %.0f times, want 1", hdr[0], allocs)
		}
	}
}
