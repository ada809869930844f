package auth

import (
	"context"
	"errors"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store"
)

// NewStore adapts the SQLite store to the service's Store interface.
func NewStore(s *store.Store) Store { return storeAdapter{s} }

type storeAdapter struct{ s *store.Store }

// mapErr translates the store's sentinels into this package's.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return errors.Join(ErrNotFound, err)
	case errors.Is(err, store.ErrNotConnected):
		return errors.Join(ErrNoToken, err)
	case errors.Is(err, store.ErrStateNotFound):
		return errors.Join(ErrStateNotFound, err)
	case errors.Is(err, store.ErrStateUsed):
		return errors.Join(ErrStateUsed, err)
	case errors.Is(err, store.ErrStateExpired):
		return errors.Join(ErrStateExpired, err)
	case errors.Is(err, store.ErrTokenChanged):
		return errors.Join(ErrTokenChanged, err)
	}
	return err
}

func feedRecord(f store.Feed) FeedRecord {
	r := FeedRecord{
		ID: f.ID, Name: f.Name, AllowedOrigins: f.AllowedOrigins, Status: string(f.Status), StatusReason: f.StatusReason,
		CreatedAt: f.CreatedAt, LastFetchAt: f.LastFetchAt, LastFetchOK: f.LastFetchOK, LastFetchError: f.LastFetchError,
		PostCount: f.PostCount,
	}
	if a := f.Account; a != nil {
		r.Account = &Account{
			AppUserID: a.AppUserID, IGUserID: a.IGUserID, Username: a.Username, Name: a.Name, AccountType: a.AccountType,
			FollowersCount: a.FollowersCount, FollowsCount: a.FollowsCount, MediaCount: a.MediaCount, ConnectedAt: a.ConnectedAt,
		}
	}
	if t := f.Token; t != nil {
		m := tokenMeta(*t)
		r.Token = &m
	}
	return r
}

func tokenMeta(t model.TokenInfo) TokenMeta {
	return TokenMeta{
		ObtainedAt: t.ObtainedAt, ExpiresAt: t.ExpiresAt, ExpiryAssumed: t.ExpiryAssumed, RefreshedAt: t.RefreshedAt,
		NextRefreshAt: t.NextRefreshAt, RefreshFailures: t.RefreshFailures, LastRefreshError: t.LastRefreshError,
	}
}

func storeToken(feedID string, t Token) store.Token {
	return store.Token{
		FeedID: feedID, AccessToken: t.AccessToken, TokenInfo: model.TokenInfo{ObtainedAt: t.ObtainedAt, ExpiresAt: t.ExpiresAt,
			ExpiryAssumed: t.ExpiryAssumed, RefreshedAt: t.RefreshedAt, NextRefreshAt: t.NextRefreshAt,
			RefreshFailures: t.RefreshFailures, LastRefreshError: t.LastRefreshError},
	}
}

func (a storeAdapter) CreateFeed(ctx context.Context, name string, origins []string) (FeedRecord, error) {
	f, err := a.s.CreateFeed(ctx, name, origins)
	return feedRecord(f), mapErr(err)
}

func (a storeAdapter) Feed(ctx context.Context, id string) (FeedRecord, error) {
	f, err := a.s.Feed(ctx, id)
	if err != nil {
		return FeedRecord{}, mapErr(err)
	}
	return feedRecord(f), nil
}

func (a storeAdapter) Feeds(ctx context.Context) ([]FeedRecord, error) {
	fs, err := a.s.Feeds(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]FeedRecord, len(fs))
	for i, f := range fs {
		out[i] = feedRecord(f)
	}
	return out, nil
}

func (a storeAdapter) UpdateFeed(ctx context.Context, id string, name *string, origins *[]string) error {
	_, err := a.s.UpdateFeed(ctx, id, name, origins)
	return mapErr(err)
}

func (a storeAdapter) DeleteFeed(ctx context.Context, id string) ([]string, error) {
	files, err := a.s.DeleteFeed(ctx, id)
	return files, mapErr(err)
}

func (a storeAdapter) SetStatus(ctx context.Context, id, status, reason string) error {
	return mapErr(a.s.SetStatus(ctx, id, status, reason))
}

func (a storeAdapter) Connect(ctx context.Context, feedID string, acct Account, tok Token) ([]string, error) {
	sa := store.Account{
		AppUserID: acct.AppUserID, IGUserID: acct.IGUserID, Username: acct.Username, Name: acct.Name,
		AccountType: acct.AccountType, FollowersCount: acct.FollowersCount, FollowsCount: acct.FollowsCount,
		MediaCount: acct.MediaCount, ConnectedAt: acct.ConnectedAt,
	}
	// Reconnecting the same account keeps its stored profile picture: the
	// service never fetches pictures, and an empty key would orphan (and
	// so delete) the file until the poller's next profile read.
	if f, err := a.s.Feed(ctx, feedID); err == nil && f.Account != nil && f.Account.IGUserID == acct.IGUserID {
		sa.AvatarKey = f.Account.AvatarKey
	}
	files, err := a.s.Connect(ctx, feedID, sa, storeToken(feedID, tok))
	return files, mapErr(err)
}

func (a storeAdapter) Disconnect(ctx context.Context, feedID string) ([]string, error) {
	files, err := a.s.Disconnect(ctx, feedID)
	return files, mapErr(err)
}

func (a storeAdapter) Token(ctx context.Context, feedID string) (Token, error) {
	t, err := a.s.Token(ctx, feedID)
	if err != nil {
		return Token{}, mapErr(err)
	}
	return Token{AccessToken: t.AccessToken, TokenMeta: tokenMeta(t.TokenInfo)}, nil
}

func (a storeAdapter) ReplaceToken(ctx context.Context, feedID, old string, tok Token) error {
	return mapErr(a.s.ReplaceToken(ctx, feedID, old, storeToken(feedID, tok)))
}

func (a storeAdapter) RecordRefreshFailure(ctx context.Context, feedID, msg string, next time.Time) error {
	return mapErr(a.s.RecordRefreshFailure(ctx, feedID, msg, next))
}

func (a storeAdapter) TokensDue(ctx context.Context, now time.Time, window time.Duration) ([]string, error) {
	ts, err := a.s.TokensDue(ctx, now, window)
	if err != nil {
		return nil, mapErr(err)
	}
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.FeedID
	}
	return ids, nil
}

func (a storeAdapter) FeedsForInstagramUser(ctx context.Context, userID string) ([]string, error) {
	fs, err := a.s.FeedsForInstagramUser(ctx, userID)
	if err != nil {
		return nil, mapErr(err)
	}
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.ID
	}
	return ids, nil
}

func (a storeAdapter) CreateState(ctx context.Context, st OAuthState) error {
	return mapErr(a.s.CreateState(ctx, store.OAuthState{
		Hash: st.Hash, FeedID: st.FeedID, SessionHash: st.SessionHash, CreatedAt: st.CreatedAt, ExpiresAt: st.ExpiresAt,
	}))
}

func (a storeAdapter) ConsumeState(ctx context.Context, hash []byte, now time.Time) (OAuthState, error) {
	st, err := a.s.ConsumeState(ctx, hash, now)
	if err != nil {
		return OAuthState{}, mapErr(err)
	}
	return OAuthState{Hash: st.Hash, FeedID: st.FeedID, SessionHash: st.SessionHash, CreatedAt: st.CreatedAt, ExpiresAt: st.ExpiresAt}, nil
}

func (a storeAdapter) CreateDeletionRequest(ctx context.Context, r DeletionRequest) error {
	return mapErr(a.s.CreateDeletionRequest(ctx, store.DeletionRequest{
		Code: r.Code, Kind: r.Kind, UserID: r.UserID, RequestedAt: r.RequestedAt, CompletedAt: r.CompletedAt, FeedsAffected: r.FeedsAffected,
	}))
}

func (a storeAdapter) DeletionRequest(ctx context.Context, code string) (DeletionRequest, error) {
	r, err := a.s.DeletionRequest(ctx, code)
	if err != nil {
		return DeletionRequest{}, mapErr(err)
	}
	return DeletionRequest{Code: r.Code, Kind: r.Kind, UserID: r.UserID, RequestedAt: r.RequestedAt, CompletedAt: r.CompletedAt, FeedsAffected: r.FeedsAffected}, nil
}

func (a storeAdapter) CompleteDeletionRequest(ctx context.Context, code string, at time.Time, feeds int) error {
	return mapErr(a.s.CompleteDeletionRequest(ctx, code, at, feeds))
}
