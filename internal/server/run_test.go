package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	f := newFixture(t, nil)
	started := make(chan struct{})
	release := make(chan struct{})
	f.srv.Echo().GET("/slow", func(c *echo.Context) error {
		close(started)
		<-release
		return c.String(200, "done")
	})
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + f.srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- f.srv.Run(ctx) }()

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel()

	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still accepting after shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned before the in-flight request finished: %v", err)
	default:
	}
	close(release)
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestListenErrorNamesAddress(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Addr = "256.0.0.1:99999" })
	err := f.srv.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "256.0.0.1:99999") {
		t.Fatalf("err = %v", err)
	}
}

// feedBytes stands in for a cached feed body.
var feedBytes = []byte(`{"version":1,"id":"k3v9x2m4q8","posts":[]}`)

var (
	hdrTestJSON  = []string{"application/json"}
	hdrTestCache = []string{"public, max-age=60"}
)

func feedLike(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = hdrTestJSON
	h["Cache-Control"] = hdrTestCache
	w.WriteHeader(200)
	_, _ = w.Write(feedBytes)
}

// BenchmarkPublicRoute measures the whole server stack (core middleware,
// rate limit, routing, metrics) around a handler that writes cached bytes;
// compare with BenchmarkBareHandler.
func BenchmarkPublicRoute(b *testing.B) {
	srv, err := New(Options{
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)), // info: the production level
		Registry:  prometheus.NewRegistry(),
		RateLimit: 1e9,
	})
	if err != nil {
		b.Fatal(err)
	}
	srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error {
		feedLike(c.Response())
		return nil
	})
	h := srv.Handler()
	r := httptest.NewRequest("GET", "/api/v1/feeds/k3v9x2m4q8", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

func BenchmarkBareHandler(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/feeds/{id}", func(w http.ResponseWriter, r *http.Request) { feedLike(w) })
	r := httptest.NewRequest("GET", "/api/v1/feeds/k3v9x2m4q8", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		mux.ServeHTTP(w, r)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
