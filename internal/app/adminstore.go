package app

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/store"
)

// AdminStore adapts *store.Store to server.AdminStore.
type AdminStore struct {
	Store *store.Store
	Now   func() time.Time
}

var _ server.AdminStore = AdminStore{}

// AdminTokenHash returns nil when no admin token is stored yet.
func (a AdminStore) AdminTokenHash(ctx context.Context) ([]byte, error) {
	h, err := a.Store.AdminTokenHash(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return h, err
}

// SetAdminTokenHash stores the hash and ends all sessions.
func (a AdminStore) SetAdminTokenHash(ctx context.Context, h []byte) error {
	return a.Store.SetAdminTokenHash(ctx, h)
}

// CreateSession stores a session.
func (a AdminStore) CreateSession(ctx context.Context, s server.Session) error {
	return a.Store.CreateSession(ctx, store.Session{IDHash: s.IDHash, CSRF: s.CSRF, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt})
}

// Session returns a live session or server.ErrNotFound.
func (a AdminStore) Session(ctx context.Context, idHash []byte) (server.Session, error) {
	s, err := a.Store.Session(ctx, idHash, a.Now())
	if errors.Is(err, store.ErrNotFound) {
		return server.Session{}, server.ErrNotFound
	}
	if err != nil {
		return server.Session{}, err
	}
	return server.Session{IDHash: s.IDHash, CSRF: s.CSRF, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}, nil
}

// DeleteSession ends a session.
func (a AdminStore) DeleteSession(ctx context.Context, idHash []byte) error {
	return a.Store.DeleteSession(ctx, idHash)
}

// CreateSetupLink stores a one-time link's hash.
func (a AdminStore) CreateSetupLink(ctx context.Context, h []byte, expires time.Time) error {
	return a.Store.CreateSetupLink(ctx, h, expires)
}

// ConsumeSetupLink uses a link once; unknown, used and expired links are
// all server.ErrNotFound (the page says the same for each).
func (a AdminStore) ConsumeSetupLink(ctx context.Context, h []byte, now time.Time) error {
	err := a.Store.ConsumeSetupLink(ctx, h, now)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrLinkUsed) || errors.Is(err, store.ErrLinkExpired) {
		return server.ErrNotFound
	}
	return err
}

// originOf returns scheme://host of a URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
