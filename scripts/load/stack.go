package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/server"
)

// feeddHandler mounts the feed handler on the production server: its
// middleware (recover, request id, request log, security headers, metrics,
// body limit, per-IP rate limit) runs on every request. The rate limit is
// set high enough never to refuse the load generator, so its cost is
// measured without its 429s.
func feeddHandler(svc *feed.Service) (http.Handler, error) {
	pub, _ := url.Parse("https://feeds.example.com")
	srv, err := server.New(server.Options{
		Addr:       "127.0.0.1:0",
		PublicURL:  pub,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:   prometheus.NewRegistry(),
		RateLimit:  1e9,
		AdminStore: noAdmin{},
		Ready:      func(context.Context) error { return nil },
	})
	if err != nil {
		return nil, err
	}
	feed.NewHandler(svc).Register(srv.Public())
	return srv.Handler(), nil
}

// noAdmin is an admin store with no admin: the load run touches no admin route.
type noAdmin struct{}

func (noAdmin) AdminTokenHash(context.Context) ([]byte, error)           { return nil, nil }
func (noAdmin) SetAdminTokenHash(context.Context, []byte) error          { return nil }
func (noAdmin) CreateSession(context.Context, server.Session) error      { return nil }
func (noAdmin) DeleteSession(context.Context, []byte) error              { return nil }
func (noAdmin) CreateSetupLink(context.Context, []byte, time.Time) error { return nil }
func (noAdmin) Session(context.Context, []byte) (server.Session, error) {
	return server.Session{}, server.ErrNotFound
}
func (noAdmin) ConsumeSetupLink(context.Context, []byte, time.Time) error { return server.ErrNotFound }
