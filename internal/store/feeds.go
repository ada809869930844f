package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/feedd/feedd/internal/model"
)

func encodeOrigins(origins []string) (string, error) {
	if origins == nil {
		origins = []string{}
	}
	b, err := json.Marshal(origins)
	return string(b), err
}

// CreateFeed creates a not-connected feed with a fresh random id.
func (s *Store) CreateFeed(ctx context.Context, name string, origins []string) (model.Feed, error) {
	o, err := encodeOrigins(origins)
	if err != nil {
		return model.Feed{}, err
	}
	now := s.now()
	for range 5 {
		id := model.NewFeedID()
		err = s.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO feeds (id, name, allowed_origins, status, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?)`, id, name, o, model.StatusNotConnected, unix(now), unix(now))
			return err
		})
		if isConstraint(err) {
			continue
		}
		if err != nil {
			return model.Feed{}, fmt.Errorf("store: create feed: %w", err)
		}
		return s.Feed(ctx, id)
	}
	return model.Feed{}, fmt.Errorf("store: create feed: %w", ErrConflict)
}

const feedSelect = `SELECT f.id, f.name, f.allowed_origins, f.status, f.status_reason, f.created_at, f.updated_at,
	f.generation, f.last_viewed_at, f.last_fetch_at, f.last_fetch_ok, f.last_fetch_error, f.fetched_at, f.next_fetch_at, f.fetch_failures,
	a.feed_id, a.app_user_id, a.ig_user_id, a.username, a.name, a.account_type, a.avatar_key,
	a.followers_count, a.follows_count, a.media_count, a.connected_at,
	t.feed_id, t.obtained_at, t.expires_at, t.expiry_assumed, t.refreshed_at, t.next_refresh_at,
	t.refresh_failures, t.last_refresh_error,
	(SELECT count(*) FROM posts p WHERE p.feed_id = f.id), f.header_source
FROM feeds f
LEFT JOIN accounts a ON a.feed_id = f.id
LEFT JOIN tokens t ON t.feed_id = f.id`

type scanner interface{ Scan(dest ...any) error }

func scanFeed(sc scanner) (model.Feed, error) {
	var (
		f                                                          model.Feed
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
		&f.Generation, &viewed, &fetchAt, &fetchOK, &fetchErr, &fetched, &nextFetch, &f.FetchFailures,
		&aFeed, &aApp, &aIG, &aUser, &aName, &aType, &aAvatar, &aFollowers, &aFollows, &aMedia, &aConnected,
		&tFeed, &tObtained, &tExpires, &tAssumed, &tRefreshed, &tNext, &tFailers, &tLastErr,
		&f.PostCount, &f.HeaderSource)
	if err != nil {
		return model.Feed{}, err
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
		f.Account = &model.Account{
			AppUserID: aApp.String, IGUserID: aIG.String, Username: aUser.String, Name: aName.String,
			AccountType: aType.String, AvatarKey: aAvatar.String,
			FollowersCount: ptrInt(aFollowers), FollowsCount: ptrInt(aFollows), MediaCount: ptrInt(aMedia),
			ConnectedAt: fromNullUnix(aConnected),
		}
	}
	if tFeed.Valid {
		f.Token = &model.TokenInfo{
			ObtainedAt: fromNullUnix(tObtained), ExpiresAt: fromNullUnix(tExpires),
			ExpiryAssumed: tAssumed.Int64 != 0, RefreshedAt: fromNullUnix(tRefreshed), NextRefreshAt: fromNullUnix(tNext),
			RefreshFailures: int(tFailers.Int64), LastRefreshError: tLastErr.String,
		}
	}
	return f, nil
}

func (s *Store) queryFeeds(ctx context.Context, where string, args ...any) ([]model.Feed, error) {
	rows, err := s.r.QueryContext(ctx, feedSelect+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list feeds: %w", err)
	}
	defer rows.Close()
	out := []model.Feed{}
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
func (s *Store) Feed(ctx context.Context, id string) (model.Feed, error) {
	if !model.ValidFeedID(id) {
		return model.Feed{}, model.ErrNotFound
	}
	f, err := scanFeed(s.r.QueryRowContext(ctx, feedSelect+` WHERE f.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Feed{}, model.ErrNotFound
	}
	if err != nil {
		return model.Feed{}, fmt.Errorf("store: read feed: %w", err)
	}
	return f, nil
}

// Feeds returns every feed, oldest first.
func (s *Store) Feeds(ctx context.Context) ([]model.Feed, error) {
	return s.queryFeeds(ctx, `ORDER BY f.created_at, f.id`)
}

// UpdateFeed changes the name and/or allowed origins (nil leaves a field
// as it is) and returns the updated feed.
func (s *Store) UpdateFeed(ctx context.Context, id string, name *string, origins *[]string) (model.Feed, error) {
	if !model.ValidFeedID(id) {
		return model.Feed{}, model.ErrNotFound
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
		return model.Feed{}, wrap("update feed", err)
	}
	return s.Feed(ctx, id)
}

// DeleteFeed deletes the feed with its account, token, posts and states,
// and the images no other feed references. It returns their files, for the
// caller to delete after this commit.
func (s *Store) DeleteFeed(ctx context.Context, id string) ([]string, error) {
	if !model.ValidFeedID(id) {
		return nil, model.ErrNotFound
	}
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockFeed(ctx, tx, id); err != nil {
			return err
		}
		cands, err := feedRefs(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := rowsAffected(tx.ExecContext(ctx, `DELETE FROM feeds WHERE id = ?`, id)); err != nil {
			return err
		}
		files, err = s.dropOrphans(ctx, tx, cands)
		return err
	})
	return files, wrap("delete feed", err)
}

// ChangeStatus sets the feed's status and owner-facing reason, in one
// transaction with its conditions: the feed must still be on c.Generation
// (model.ErrConnectionChanged otherwise) and, when c.IfToken is set, still
// hold that token (model.ErrTokenChanged otherwise). It returns the status
// before the change; changed is false when the feed already had c.To (the
// reason is updated all the same).
func (s *Store) ChangeStatus(ctx context.Context, c model.StatusChange) (from model.Status, changed bool, err error) {
	if !c.To.Valid() {
		return "", false, fmt.Errorf("%w: status %q", ErrInvalid, c.To)
	}
	if !model.ValidFeedID(c.FeedID) {
		return "", false, model.ErrNotFound
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var gen int64
		err := tx.QueryRowContext(ctx, `SELECT status, generation FROM feeds WHERE id = ?`+s.d.forUpdate, c.FeedID).Scan(&from, &gen)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		if gen != c.Generation {
			return model.ErrConnectionChanged
		}
		if c.IfToken != "" {
			cur, err := s.scanToken(tx.QueryRowContext(ctx, tokenSelect+` WHERE feed_id = ?`, c.FeedID))
			if errors.Is(err, sql.ErrNoRows) {
				return model.ErrNotConnected
			}
			if err != nil {
				return err
			}
			if subtle.ConstantTimeCompare([]byte(cur.AccessToken), []byte(c.IfToken)) != 1 {
				return model.ErrTokenChanged
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE feeds SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
			c.To, c.Reason, unix(s.now()), c.FeedID)
		return err
	})
	if err != nil {
		return "", false, wrap("change status", err)
	}
	return from, from != c.To, nil
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

// RecordFetch records a poll's outcome and when to poll next, if the feed is
// still on connection gen (model.ErrConnectionChanged otherwise: the
// outcome of an older connection's poll must not delay the new one's).
func (s *Store) RecordFetch(ctx context.Context, id string, gen int64, r model.FetchResult) error {
	errText := any(nil)
	if !r.OK {
		errText = r.Err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE feeds SET last_fetch_at = ?, last_fetch_ok = ?, last_fetch_error = ?,
			next_fetch_at = ?, fetch_failures = ? WHERE id = ? AND generation = ?`,
			nullUnix(r.At), boolInt(r.OK), errText, nullUnix(r.NextFetchAt), r.Failures, id, gen))
	})
	if errors.Is(err, model.ErrNotFound) {
		err = s.generationChanged(ctx, id)
	}
	return wrap("record fetch", err)
}

// DueFeeds lists feeds with an active source (the main account active, or
// a further one while the main one needs reconnecting) whose next poll time
// has come (or was never set) and that were viewed at or after viewedSince.
func (s *Store) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]model.Feed, error) {
	return s.queryFeeds(ctx, `WHERE (f.status = 'active' OR (f.status IN ('needs_reauth', 'error')
			AND EXISTS (SELECT 1 FROM sources s WHERE s.feed_id = f.id AND s.status = 'active')))
		AND (f.next_fetch_at IS NULL OR f.next_fetch_at <= ?)
		AND f.last_viewed_at >= ? ORDER BY f.next_fetch_at`, unix(now), unix(viewedSince))
}

// FeedsForInstagramUser lists the feeds connected to the Instagram user
// with this id (either the app-scoped id or the professional account id).
func (s *Store) FeedsForInstagramUser(ctx context.Context, userID string) ([]model.Feed, error) {
	if userID == "" {
		return []model.Feed{}, nil
	}
	return s.queryFeeds(ctx, `WHERE a.app_user_id = ? OR a.ig_user_id = ? ORDER BY f.created_at, f.id`, userID, userID)
}

// lockFeed reads the feed's connection generation inside a write and, on
// PostgreSQL, locks its row until commit: every write whose condition is the
// feed's connection (connect, disconnect, a poll's snapshot, a status
// change, a token swap) takes this lock first, so conditions and writes of
// one feed take turns across instances as they do on SQLite's one writer.
func (s *Store) lockFeed(ctx context.Context, tx *sql.Tx, id string) (int64, error) {
	var gen int64
	err := tx.QueryRowContext(ctx, `SELECT generation FROM feeds WHERE id = ?`+s.d.forUpdate, id).Scan(&gen)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, model.ErrNotFound
	}
	return gen, err
}

// generationChanged tells why a write conditioned on a feed's generation
// matched no row: model.ErrNotFound when the feed is gone,
// model.ErrConnectionChanged when it was reconnected or disconnected.
func (s *Store) generationChanged(ctx context.Context, id string) error {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM feeds WHERE id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return model.ErrNotFound
	}
	return model.ErrConnectionChanged
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, model.ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, model.ErrTokenChanged) || errors.Is(err, model.ErrNotConnected) ||
		errors.Is(err, ErrConflict) || errors.Is(err, model.ErrConnectionChanged) || errors.Is(err, model.ErrStateNotFound) ||
		errors.Is(err, model.ErrStateUsed) || errors.Is(err, model.ErrStateExpired) ||
		errors.Is(err, model.ErrSourceNotFound) || errors.Is(err, model.ErrSourceDuplicate) || errors.Is(err, model.ErrMainSource) ||
		errors.Is(err, model.ErrTooManySources) {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
