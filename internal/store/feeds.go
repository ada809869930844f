package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Feed status values.
const (
	StatusNotConnected = "not_connected"
	StatusActive       = "active"
	StatusNeedsReauth  = "needs_reauth"
	StatusError        = "error"
)

// Feed is a feed with its account and token metadata (never the token).
type Feed struct {
	ID             string
	Name           string
	AllowedOrigins []string // never nil
	Status         string
	StatusReason   string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	LastViewedAt   time.Time // zero: never
	LastFetchAt    time.Time // zero: never polled
	LastFetchOK    bool
	LastFetchError string
	FetchedAt      time.Time // time of the last good snapshot; zero: none
	NextFetchAt    time.Time // zero: not scheduled
	FetchFailures  int
	Account        *Account // nil when not connected
	Token          *Token   // metadata only (AccessToken is empty); nil when none
	PostCount      int
}

// Account is the Instagram professional account connected to a feed.
type Account struct {
	AppUserID      string // the id the token exchange returns (user_id), = /me id
	IGUserID       string // the professional account id (/me user_id)
	Username       string
	Name           string
	AccountType    string
	AvatarKey      string // media key of the stored profile picture; "" when none
	FollowersCount *int64
	FollowsCount   *int64
	MediaCount     *int64
	ConnectedAt    time.Time
}

// Token is a feed's long-lived access token and its lifecycle. AccessToken
// is plaintext in memory only; the database holds it sealed.
type Token struct {
	FeedID           string
	AccessToken      string
	ObtainedAt       time.Time // when this token string was issued (refresh needs it ≥24h old)
	ExpiresAt        time.Time
	ExpiryAssumed    bool      // a pasted token whose expiry is a guess
	RefreshedAt      time.Time // zero: never refreshed
	NextRefreshAt    time.Time // zero: decided by age and expiry alone
	RefreshFailures  int
	LastRefreshError string
}

// FetchResult records one poll on a feed.
type FetchResult struct {
	At          time.Time
	OK          bool
	Err         string // owner-facing, never a token
	NextFetchAt time.Time
	Failures    int // consecutive failed polls
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newFeedID returns 10 random characters of [a-z0-9] (~51 bits).
func newFeedID() string {
	var b [10]byte
	out := make([]byte, len(b))
	for i := 0; i < len(out); {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		for _, c := range b {
			// 252 = 7*36: reject the tail to keep the alphabet uniform.
			if c < 252 && i < len(out) {
				out[i] = idAlphabet[int(c)%36]
				i++
			}
		}
	}
	return string(out)
}

// ValidFeedID reports whether id has the shape of a feed id, so hostile
// ids are refused before any query.
func ValidFeedID(id string) bool {
	if len(id) != 10 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func encodeOrigins(origins []string) (string, error) {
	if origins == nil {
		origins = []string{}
	}
	b, err := json.Marshal(origins)
	return string(b), err
}

// CreateFeed creates a not-connected feed with a fresh random id.
func (s *Store) CreateFeed(ctx context.Context, name string, origins []string) (Feed, error) {
	o, err := encodeOrigins(origins)
	if err != nil {
		return Feed{}, err
	}
	now := s.now()
	for range 5 {
		id := newFeedID()
		err = s.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO feeds (id, name, allowed_origins, status, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?)`, id, name, o, StatusNotConnected, unix(now), unix(now))
			return err
		})
		if isConstraint(err) {
			continue
		}
		if err != nil {
			return Feed{}, fmt.Errorf("store: create feed: %w", err)
		}
		return s.Feed(ctx, id)
	}
	return Feed{}, fmt.Errorf("store: create feed: %w", ErrConflict)
}

const feedSelect = `SELECT f.id, f.name, f.allowed_origins, f.status, f.status_reason, f.created_at, f.updated_at,
	f.last_viewed_at, f.last_fetch_at, f.last_fetch_ok, f.last_fetch_error, f.fetched_at, f.next_fetch_at, f.fetch_failures,
	a.feed_id, a.app_user_id, a.ig_user_id, a.username, a.name, a.account_type, a.avatar_key,
	a.followers_count, a.follows_count, a.media_count, a.connected_at,
	t.feed_id, t.obtained_at, t.expires_at, t.expiry_assumed, t.refreshed_at, t.next_refresh_at,
	t.refresh_failures, t.last_refresh_error,
	(SELECT count(*) FROM posts p WHERE p.feed_id = f.id)
FROM feeds f
LEFT JOIN accounts a ON a.feed_id = f.id
LEFT JOIN tokens t ON t.feed_id = f.id`

type scanner interface{ Scan(dest ...any) error }

func scanFeed(sc scanner) (Feed, error) {
	var (
		f                                                          Feed
		origins                                                    string
		created, updated                                           int64
		viewed, fetchAt, fetchOK, fetched, nextFetch               sql.NullInt64
		fetchErr                                                   sql.NullString
		aFeed, aApp, aIG, aUser, aName, aType, aAvatar             sql.NullString
		aFollowers, aFollows, aMedia, aConnected                   sql.NullInt64
		tFeed, tLastErr                                            sql.NullString
		tObtained, tExpires, tAssumed, tRefreshed, tNext, tFailers sql.NullInt64
	)
	err := sc.Scan(&f.ID, &f.Name, &origins, &f.Status, &f.StatusReason, &created, &updated,
		&viewed, &fetchAt, &fetchOK, &fetchErr, &fetched, &nextFetch, &f.FetchFailures,
		&aFeed, &aApp, &aIG, &aUser, &aName, &aType, &aAvatar, &aFollowers, &aFollows, &aMedia, &aConnected,
		&tFeed, &tObtained, &tExpires, &tAssumed, &tRefreshed, &tNext, &tFailers, &tLastErr,
		&f.PostCount)
	if err != nil {
		return Feed{}, err
	}
	if err := json.Unmarshal([]byte(origins), &f.AllowedOrigins); err != nil || f.AllowedOrigins == nil {
		f.AllowedOrigins = []string{}
	}
	f.CreatedAt, f.UpdatedAt = fromUnix(created), fromUnix(updated)
	f.LastViewedAt, f.LastFetchAt = fromNullUnix(viewed), fromNullUnix(fetchAt)
	f.LastFetchOK = fetchOK.Valid && fetchOK.Int64 != 0
	f.LastFetchError = fetchErr.String
	f.FetchedAt, f.NextFetchAt = fromNullUnix(fetched), fromNullUnix(nextFetch)
	if aFeed.Valid {
		f.Account = &Account{
			AppUserID: aApp.String, IGUserID: aIG.String, Username: aUser.String, Name: aName.String,
			AccountType: aType.String, AvatarKey: aAvatar.String,
			FollowersCount: ptrInt(aFollowers), FollowsCount: ptrInt(aFollows), MediaCount: ptrInt(aMedia),
			ConnectedAt: fromNullUnix(aConnected),
		}
	}
	if tFeed.Valid {
		f.Token = &Token{
			FeedID: f.ID, ObtainedAt: fromNullUnix(tObtained), ExpiresAt: fromNullUnix(tExpires),
			ExpiryAssumed: tAssumed.Int64 != 0, RefreshedAt: fromNullUnix(tRefreshed), NextRefreshAt: fromNullUnix(tNext),
			RefreshFailures: int(tFailers.Int64), LastRefreshError: tLastErr.String,
		}
	}
	return f, nil
}

func (s *Store) queryFeeds(ctx context.Context, where string, args ...any) ([]Feed, error) {
	rows, err := s.r.QueryContext(ctx, feedSelect+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list feeds: %w", err)
	}
	defer rows.Close()
	out := []Feed{}
	for rows.Next() {
		f, err := scanFeed(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list feeds: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list feeds: %w", err)
	}
	return out, nil
}

// Feed returns one feed with its account and token metadata, or ErrNotFound.
func (s *Store) Feed(ctx context.Context, id string) (Feed, error) {
	if !ValidFeedID(id) {
		return Feed{}, ErrNotFound
	}
	f, err := scanFeed(s.r.QueryRowContext(ctx, feedSelect+` WHERE f.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Feed{}, ErrNotFound
	}
	if err != nil {
		return Feed{}, fmt.Errorf("store: read feed: %w", err)
	}
	return f, nil
}

// Feeds returns every feed, oldest first.
func (s *Store) Feeds(ctx context.Context) ([]Feed, error) {
	return s.queryFeeds(ctx, `ORDER BY f.created_at, f.id`)
}

// UpdateFeed changes the name and/or allowed origins (nil leaves a field
// as it is) and returns the updated feed.
func (s *Store) UpdateFeed(ctx context.Context, id string, name *string, origins *[]string) (Feed, error) {
	if !ValidFeedID(id) {
		return Feed{}, ErrNotFound
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n, o any
		if name != nil {
			n = *name
		}
		if origins != nil {
			enc, err := encodeOrigins(*origins)
			if err != nil {
				return err
			}
			o = enc
		}
		return rowsAffected(tx.ExecContext(ctx, `UPDATE feeds SET name = coalesce(?, name),
			allowed_origins = coalesce(?, allowed_origins), updated_at = ? WHERE id = ?`, n, o, unix(s.now()), id))
	})
	if err != nil {
		return Feed{}, wrap("update feed", err)
	}
	return s.Feed(ctx, id)
}

// DeleteFeed deletes the feed with its account, token, posts and states,
// and the images no other feed references. It returns their files, for the
// caller to delete after this commit.
func (s *Store) DeleteFeed(ctx context.Context, id string) ([]string, error) {
	if !ValidFeedID(id) {
		return nil, ErrNotFound
	}
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		cands, err := feedRefs(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := rowsAffected(tx.ExecContext(ctx, `DELETE FROM feeds WHERE id = ?`, id)); err != nil {
			return err
		}
		files, err = dropOrphans(ctx, tx, cands)
		return err
	})
	return files, wrap("delete feed", err)
}

// SetStatus sets the feed's status and an owner-facing reason.
func (s *Store) SetStatus(ctx context.Context, id, status, reason string) error {
	switch status {
	case StatusNotConnected, StatusActive, StatusNeedsReauth, StatusError:
	default:
		return fmt.Errorf("%w: status %q", ErrInvalid, status)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE feeds SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
			status, reason, unix(s.now()), id))
	})
	return wrap("set status", err)
}

// MarkViewed records that the feed was requested at at. It never moves
// last_viewed_at backwards and ignores unknown feeds.
func (s *Store) MarkViewed(ctx context.Context, id string, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE feeds SET last_viewed_at = ? WHERE id = ? AND (last_viewed_at IS NULL OR last_viewed_at < ?)`,
			unix(at), id, unix(at))
		return err
	})
	return wrap("mark viewed", err)
}

// RecordFetch records a poll's outcome and when to poll next.
func (s *Store) RecordFetch(ctx context.Context, id string, r FetchResult) error {
	errText := any(nil)
	if !r.OK {
		errText = r.Err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE feeds SET last_fetch_at = ?, last_fetch_ok = ?, last_fetch_error = ?,
			next_fetch_at = ?, fetch_failures = ? WHERE id = ?`,
			nullUnix(r.At), boolInt(r.OK), errText, nullUnix(r.NextFetchAt), r.Failures, id))
	})
	return wrap("record fetch", err)
}

// DueFeeds lists active feeds whose next poll time has come (or was never
// set) and that were viewed at or after viewedSince.
func (s *Store) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]Feed, error) {
	return s.queryFeeds(ctx, `WHERE f.status = 'active' AND (f.next_fetch_at IS NULL OR f.next_fetch_at <= ?)
		AND f.last_viewed_at >= ? ORDER BY f.next_fetch_at`, unix(now), unix(viewedSince))
}

// FeedsForInstagramUser lists the feeds connected to the Instagram user
// with this id (either the app-scoped id or the professional account id).
func (s *Store) FeedsForInstagramUser(ctx context.Context, userID string) ([]Feed, error) {
	if userID == "" {
		return []Feed{}, nil
	}
	return s.queryFeeds(ctx, `WHERE a.app_user_id = ? OR a.ig_user_id = ? ORDER BY f.created_at, f.id`, userID, userID)
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrTokenChanged) || errors.Is(err, ErrNotConnected) ||
		errors.Is(err, ErrConflict) {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
