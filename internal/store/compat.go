package store

import (
	"context"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// Transitional names for callers not yet on internal/model; removed once
// every caller uses model directly.
type (
	Feed            = model.Feed
	Account         = model.Account
	Token           = model.Token
	Post            = model.Post
	Child           = model.Child
	Media           = model.Media
	Variant         = model.Variant
	FetchResult     = model.FetchResult
	OAuthState      = model.OAuthState
	Session         = model.Session
	DeletionRequest = model.DeletionRequest
)

var (
	ErrNotFound      = model.ErrNotFound
	ErrTokenChanged  = model.ErrTokenChanged
	ErrNotConnected  = model.ErrNotConnected
	ErrStateNotFound = model.ErrStateNotFound
	ErrStateUsed     = model.ErrStateUsed
	ErrStateExpired  = model.ErrStateExpired
)

const (
	StatusNotConnected = string(model.StatusNotConnected)
	StatusActive       = string(model.StatusActive)
	StatusNeedsReauth  = string(model.StatusNeedsReauth)
	StatusError        = string(model.StatusError)
)

// ValidFeedID is model.ValidFeedID.
func ValidFeedID(id string) bool { return model.ValidFeedID(id) }

// SetStatus sets the status on the feed's current connection.
func (s *Store) SetStatus(ctx context.Context, id, status, reason string) error {
	f, err := s.Feed(ctx, id)
	if err != nil {
		return err
	}
	_, _, err = s.ChangeStatus(ctx, model.StatusChange{FeedID: id, Generation: f.Generation, To: model.Status(status), Reason: reason})
	return err
}

// ReplacePostsCurrent is ReplacePosts on the feed's current connection.
func (s *Store) ReplacePostsCurrent(ctx context.Context, feedID string, acct *Account, posts []Post, at time.Time) ([]string, error) {
	f, err := s.Feed(ctx, feedID)
	if err != nil {
		return nil, err
	}
	return s.ReplacePosts(ctx, feedID, f.Generation, acct, posts, at)
}

// RecordFetchCurrent is RecordFetch on the feed's current connection.
func (s *Store) RecordFetchCurrent(ctx context.Context, id string, r FetchResult) error {
	f, err := s.Feed(ctx, id)
	if err != nil {
		return err
	}
	return s.RecordFetch(ctx, id, f.Generation, r)
}
