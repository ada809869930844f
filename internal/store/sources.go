package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// sourceAAD binds a further source's sealed token to its feed and source:
// distinct from the main token's tokenAAD, so no sealed token opens as
// another.
func sourceAAD(feedID, sourceID string) []byte {
	return []byte("feedd/token/" + feedID + "/" + sourceID)
}

const sourceSelect = `SELECT feed_id, id, app_user_id, ig_user_id, username, name, account_type, avatar_key,
	followers_count, follows_count, media_count, connected_at, status, status_reason, generation, fetched_at,
	obtained_at, expires_at, expiry_assumed, refreshed_at, next_refresh_at, refresh_failures, last_refresh_error
	FROM sources`

func scanSource(sc scanner) (model.Source, error) {
	var (
		src                             model.Source
		name, avatar, lastErr           sql.NullString
		followers, follows, media       sql.NullInt64
		connected, obtained, expires    int64
		assumed                         int64
		fetched, refreshed, nextRefresh sql.NullInt64
	)
	err := sc.Scan(&src.FeedID, &src.ID, &src.Account.AppUserID, &src.Account.IGUserID, &src.Account.Username, &name,
		&src.Account.AccountType, &avatar, &followers, &follows, &media, &connected, &src.Status, &src.StatusReason,
		&src.Generation, &fetched, &obtained, &expires, &assumed, &refreshed, &nextRefresh,
		&src.Token.RefreshFailures, &lastErr)
	if err != nil {
		return model.Source{}, err
	}
	src.Account.Name, src.Account.AvatarKey = name.String, avatar.String
	src.Account.FollowersCount, src.Account.FollowsCount, src.Account.MediaCount = ptrInt(followers), ptrInt(follows), ptrInt(media)
	src.Account.ConnectedAt, src.FetchedAt = fromUnix(connected), fromNullUnix(fetched)
	src.Token = model.TokenInfo{ObtainedAt: fromUnix(obtained), ExpiresAt: fromUnix(expires), ExpiryAssumed: assumed != 0,
		RefreshedAt: fromNullUnix(refreshed), NextRefreshAt: fromNullUnix(nextRefresh), LastRefreshError: lastErr.String}
	return src, nil
}

// Sources returns the feed's sources: the main one first (when the feed is
// connected), then the further ones in the order they were added.
func (s *Store) Sources(ctx context.Context, feedID string) ([]model.Source, error) {
	f, err := s.Feed(ctx, feedID)
	if err != nil {
		return nil, err
	}
	out := []model.Source{}
	if f.Account == nil {
		return out, nil
	}
	out = append(out, model.MainSourceOf(f))
	rows, err := s.r.QueryContext(ctx, sourceSelect+` WHERE feed_id = ? ORDER BY position`, feedID)
	if err != nil {
		return nil, fmt.Errorf("store: read sources: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		src, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("store: read sources: %w", err)
		}
		out = append(out, src)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read sources: %w", err)
	}
	return out, nil
}

// FurtherSources returns every feed's further sources (not the main
// ones), by feed id, each feed's in the order they were added: one query
// for a list of many feeds.
func (s *Store) FurtherSources(ctx context.Context) (map[string][]model.Source, error) {
	rows, err := s.r.QueryContext(ctx, sourceSelect+` ORDER BY feed_id, position`)
	if err != nil {
		return nil, fmt.Errorf("store: read sources: %w", err)
	}
	defer rows.Close()
	out := map[string][]model.Source{}
	for rows.Next() {
		src, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("store: read sources: %w", err)
		}
		out[src.FeedID] = append(out[src.FeedID], src)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read sources: %w", err)
	}
	return out, nil
}

// Source returns one source of the feed (model.ErrSourceNotFound when the
// feed has none with that id).
func (s *Store) Source(ctx context.Context, feedID, sourceID string) (model.Source, error) {
	srcs, err := s.Sources(ctx, feedID)
	if err != nil {
		return model.Source{}, err
	}
	for _, src := range srcs {
		if src.ID == sourceID {
			return src, nil
		}
	}
	return model.Source{}, model.ErrSourceNotFound
}

// AddSource adds another Instagram account to a connected feed, with its
// sealed token, while the feed is on connection gen (the one the caller
// read; model.ErrConnectionChanged otherwise). An account that is already
// the feed's main source, or an active further source, is refused with
// model.ErrSourceDuplicate; a further source that needs reconnecting gets
// the new token, becomes active and moves to a new source generation,
// keeping its id and posts. A new source gets the id newID ("" for a fresh
// one). A feed without a main source gets model.ErrNotConnected: it is
// connected first.
func (s *Store) AddSource(ctx context.Context, feedID string, gen int64, newID string, acct model.Account, tok model.Token) (model.Source, error) {
	if !model.ValidFeedID(feedID) {
		return model.Source{}, model.ErrNotFound
	}
	if tok.AccessToken == "" || acct.IGUserID == "" {
		return model.Source{}, fmt.Errorf("%w: a source needs an access token and an account id", ErrInvalid)
	}
	if newID == "" {
		newID = model.NewSourceID()
	}
	if newID == model.MainSource || !model.ValidSourceID(newID) {
		return model.Source{}, fmt.Errorf("%w: source id %q", ErrInvalid, newID)
	}
	now := s.now()
	if acct.ConnectedAt.IsZero() {
		acct.ConnectedAt = now
	}
	if tok.ObtainedAt.IsZero() {
		tok.ObtainedAt = now
	}
	var id string
	err := s.write(ctx, func(tx *sql.Tx) error {
		f, err := s.feedInTx(ctx, tx, feedID, gen)
		if err != nil {
			return err
		}
		if f.Account == nil {
			return model.ErrNotConnected
		}
		if f.Account.IGUserID == acct.IGUserID {
			return model.ErrSourceDuplicate
		}
		var status string
		err = tx.QueryRowContext(ctx, `SELECT id, status FROM sources WHERE feed_id = ? AND ig_user_id = ?`,
			feedID, acct.IGUserID).Scan(&id, &status)
		switch {
		case err == nil && model.Status(status) == model.StatusActive:
			return model.ErrSourceDuplicate
		case err == nil:
			sealed, err := s.box.Seal([]byte(tok.AccessToken), sourceAAD(feedID, id))
			if err != nil {
				return err
			}
			return rowsAffected(tx.ExecContext(ctx, `UPDATE sources SET app_user_id = ?, username = ?, name = coalesce(?, name),
					account_type = ?, connected_at = ?, status = 'active', status_reason = '', generation = generation + 1,
					sealed = ?, obtained_at = ?, expires_at = ?, expiry_assumed = ?, refreshed_at = ?, next_refresh_at = ?,
					refresh_failures = 0, last_refresh_error = NULL WHERE feed_id = ? AND id = ?`,
				acct.AppUserID, acct.Username, nullString(acct.Name), acct.AccountType, unix(acct.ConnectedAt),
				sealed, unix(tok.ObtainedAt), unix(tok.ExpiresAt), boolInt(tok.ExpiryAssumed),
				nullUnix(tok.RefreshedAt), nullUnix(tok.NextRefreshAt), feedID, id))
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var n, pos int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(max(position), 0) FROM sources WHERE feed_id = ?`,
			feedID).Scan(&n, &pos); err != nil {
			return err
		}
		if n+1 >= model.MaxSources {
			return fmt.Errorf("%w: a feed has at most %d", model.ErrTooManySources, model.MaxSources)
		}
		id = newID
		sealed, err := s.box.Seal([]byte(tok.AccessToken), sourceAAD(feedID, id))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sources (feed_id, id, position, app_user_id, ig_user_id, username, name,
				account_type, avatar_key, followers_count, follows_count, media_count, connected_at, status, status_reason,
				generation, sealed, obtained_at, expires_at, expiry_assumed, refreshed_at, next_refresh_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', '', 0, ?, ?, ?, ?, ?, ?)`,
			feedID, id, pos+1, acct.AppUserID, acct.IGUserID, acct.Username, nullString(acct.Name), acct.AccountType,
			nullString(acct.AvatarKey), nullInt(acct.FollowersCount), nullInt(acct.FollowsCount), nullInt(acct.MediaCount),
			unix(acct.ConnectedAt), sealed, unix(tok.ObtainedAt), unix(tok.ExpiresAt), boolInt(tok.ExpiryAssumed),
			nullUnix(tok.RefreshedAt), nullUnix(tok.NextRefreshAt))
		if err != nil {
			return err
		}
		// The next poll fetches the new account's posts.
		_, err = tx.ExecContext(ctx, `UPDATE feeds SET next_fetch_at = ?, updated_at = ? WHERE id = ?`, unix(now), unix(now), feedID)
		return err
	})
	if err != nil {
		return model.Source{}, wrap("add source", err)
	}
	return s.Source(ctx, feedID, id)
}

// RemoveSource removes a further source of the feed with its token and
// posts, and the images no feed references any more; it returns their
// files, to delete after this commit. A poll or refresh of the source still
// running cannot write back (its row is gone). The main source is refused
// (model.ErrMainSource).
func (s *Store) RemoveSource(ctx context.Context, feedID, sourceID string) ([]string, error) {
	if !model.ValidFeedID(feedID) {
		return nil, model.ErrNotFound
	}
	if sourceID == model.MainSource {
		return nil, model.ErrMainSource
	}
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sources WHERE feed_id = ? AND id = ?`, feedID, sourceID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return model.ErrSourceNotFound
		}
		if _, err := tx.ExecContext(ctx, `UPDATE feeds SET header_source = ? WHERE id = ? AND header_source = ?`,
			model.MainSource, feedID, sourceID); err != nil {
			return err
		}
		files, err = s.putSourcePosts(ctx, tx, feedID, sourceID, nil)
		return err
	})
	return files, wrap("remove source", err)
}

// SetHeaderSource chooses the source whose account the feed's header shows.
func (s *Store) SetHeaderSource(ctx context.Context, feedID, sourceID string) error {
	if !model.ValidFeedID(feedID) {
		return model.ErrNotFound
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
			return err
		}
		if sourceID != model.MainSource {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sources WHERE feed_id = ? AND id = ?`,
				feedID, sourceID).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return model.ErrSourceNotFound
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE feeds SET header_source = ?, updated_at = ? WHERE id = ?`,
			sourceID, unix(s.now()), feedID)
		return err
	})
	return wrap("set header source", err)
}

// sourceInTx locks the feed and reads a further source inside a write,
// checking that the feed is on feedGen and the source on srcGen:
// model.ErrConnectionChanged when either moved or the source was removed.
func (s *Store) sourceInTx(ctx context.Context, tx *sql.Tx, feedID, sourceID string, feedGen, srcGen int64) (model.Source, error) {
	cur, err := s.lockFeed(ctx, tx, feedID)
	if err != nil {
		return model.Source{}, err
	}
	if cur != feedGen {
		return model.Source{}, model.ErrConnectionChanged
	}
	src, err := scanSource(tx.QueryRowContext(ctx, sourceSelect+` WHERE feed_id = ? AND id = ?`, feedID, sourceID))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Source{}, model.ErrConnectionChanged
	}
	if err != nil {
		return model.Source{}, err
	}
	if src.Generation != srcGen {
		return model.Source{}, model.ErrConnectionChanged
	}
	return src, nil
}

// ReplaceSourcePosts replaces one further source's posts (newest first)
// and, when acct is not nil, its profile, and records at as its fetch
// time, in one transaction; the other sources' posts stay. It applies only
// while the feed is on feedGen and the source on srcGen
// (model.ErrConnectionChanged otherwise: a disconnect, the source's
// removal or reconnect won). It returns the files of images no feed
// references any more, to delete after this commit.
func (s *Store) ReplaceSourcePosts(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error) {
	if sourceID == model.MainSource {
		return s.ReplacePosts(ctx, feedID, feedGen, acct, posts, at)
	}
	if !model.ValidFeedID(feedID) {
		return nil, model.ErrNotFound
	}
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.sourceInTx(ctx, tx, feedID, sourceID, feedGen, srcGen); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET fetched_at = ? WHERE feed_id = ? AND id = ?`,
			unix(at), feedID, sourceID); err != nil {
			return err
		}
		if acct != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE sources SET username = ?, name = ?, account_type = ?, avatar_key = ?,
				followers_count = ?, follows_count = ?, media_count = ? WHERE feed_id = ? AND id = ?`,
				acct.Username, nullString(acct.Name), acct.AccountType, nullString(acct.AvatarKey),
				nullInt(acct.FollowersCount), nullInt(acct.FollowsCount), nullInt(acct.MediaCount), feedID, sourceID); err != nil {
				return err
			}
		}
		var err error
		files, err = s.putSourcePosts(ctx, tx, feedID, sourceID, posts)
		return err
	})
	return files, wrap("replace source posts", err)
}

func (s *Store) scanSourceToken(sc scanner) (model.Token, error) {
	var (
		t                          model.Token
		sealed                     []byte
		obtained, expires, assumed int64
		refreshed, next            sql.NullInt64
		lastErr                    sql.NullString
	)
	if err := sc.Scan(&t.FeedID, &t.SourceID, &sealed, &obtained, &expires, &assumed, &refreshed, &next,
		&t.RefreshFailures, &lastErr); err != nil {
		return model.Token{}, err
	}
	pt, err := s.box.Open(sealed, sourceAAD(t.FeedID, t.SourceID))
	if err != nil {
		return model.Token{}, fmt.Errorf("store: token of feed %s source %s: %w", t.FeedID, t.SourceID, err)
	}
	t.AccessToken = string(pt)
	t.ObtainedAt, t.ExpiresAt, t.ExpiryAssumed = fromUnix(obtained), fromUnix(expires), assumed != 0
	t.RefreshedAt, t.NextRefreshAt, t.LastRefreshError = fromNullUnix(refreshed), fromNullUnix(next), lastErr.String
	return t, nil
}

const sourceTokenSelect = `SELECT feed_id, id, sealed, obtained_at, expires_at, expiry_assumed, refreshed_at,
	next_refresh_at, refresh_failures, last_refresh_error FROM sources`

// SourceToken returns a source's token, decrypted; the main source's is
// the feed's token.
func (s *Store) SourceToken(ctx context.Context, feedID, sourceID string) (model.Token, error) {
	if sourceID == model.MainSource || sourceID == "" {
		t, err := s.Token(ctx, feedID)
		t.SourceID = model.MainSource
		return t, err
	}
	if !model.ValidFeedID(feedID) {
		return model.Token{}, model.ErrNotFound
	}
	t, err := s.scanSourceToken(s.r.QueryRowContext(ctx, sourceTokenSelect+` WHERE feed_id = ? AND id = ?`, feedID, sourceID))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Token{}, model.ErrSourceNotFound
	}
	return t, wrap("read source token", err)
}

// ReplaceSourceToken swaps in a refreshed token for a further source if its
// stored token is still oldAccessToken (model.ErrTokenChanged otherwise);
// refresh failures are cleared. The main source's is ReplaceToken.
func (s *Store) ReplaceSourceToken(ctx context.Context, feedID, sourceID, oldAccessToken string, nt model.Token) error {
	if sourceID == model.MainSource || sourceID == "" {
		return s.ReplaceToken(ctx, feedID, oldAccessToken, nt)
	}
	if nt.AccessToken == "" {
		return fmt.Errorf("%w: empty access token", ErrInvalid)
	}
	return s.swapToken(ctx, feedID, oldAccessToken, nt, tokenPlace{
		what: "replace source token", aad: sourceAAD(feedID, sourceID), sel: sourceTokenSelect, scan: s.scanSourceToken,
		missing: model.ErrSourceNotFound, table: "sources", where: "feed_id = ? AND id = ?", args: []any{feedID, sourceID},
	})
}

// RecordSourceRefreshFailure counts a further source's failed refresh,
// keeps its owner-facing message and schedules the next attempt at nextAt.
func (s *Store) RecordSourceRefreshFailure(ctx context.Context, feedID, sourceID, errText string, nextAt time.Time) error {
	if sourceID == model.MainSource || sourceID == "" {
		return s.RecordRefreshFailure(ctx, feedID, errText, nextAt)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := rowsAffected(tx.ExecContext(ctx, `UPDATE sources SET refresh_failures = refresh_failures + 1,
			last_refresh_error = ?, next_refresh_at = ? WHERE feed_id = ? AND id = ?`, errText, nullUnix(nextAt), feedID, sourceID))
		if errors.Is(err, model.ErrNotFound) {
			return model.ErrSourceNotFound
		}
		return err
	})
	return wrap("record source refresh failure", err)
}

// SourceTokensDue returns the further sources' decrypted tokens to refresh
// now, by the rule of TokensDue; sources that need reconnecting are
// skipped (their tokens are dead), whatever the main account's status.
func (s *Store) SourceTokensDue(ctx context.Context, now time.Time, window time.Duration) ([]model.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT s.feed_id, s.id, s.sealed, s.obtained_at, s.expires_at, s.expiry_assumed,
			s.refreshed_at, s.next_refresh_at, s.refresh_failures, s.last_refresh_error
		FROM sources s
		WHERE s.status != 'needs_reauth' AND (
			(s.next_refresh_at IS NOT NULL AND s.next_refresh_at <= ?)
			OR (s.next_refresh_at IS NULL AND s.obtained_at <= ? AND s.expires_at <= ?))
		ORDER BY s.expires_at`,
		unix(now), unix(now.Add(-24*time.Hour)), unix(now.Add(window)))
	return s.readTokens(rows, err, s.scanSourceToken, "source tokens due")
}

// ChangeSourceStatus sets a further source's status and owner-facing
// reason, in one transaction with its conditions: the feed on
// c.FeedGeneration and the source on c.Generation
// (model.ErrConnectionChanged otherwise) and, when c.IfToken is set, the
// source still holding that token (model.ErrTokenChanged otherwise). It
// returns the status before; changed is false when it already had c.To.
func (s *Store) ChangeSourceStatus(ctx context.Context, c model.SourceChange) (from model.Status, changed bool, err error) {
	if c.To != model.StatusActive && c.To != model.StatusNeedsReauth && c.To != model.StatusError {
		return "", false, fmt.Errorf("%w: source status %q", ErrInvalid, c.To)
	}
	if !model.ValidFeedID(c.FeedID) {
		return "", false, model.ErrNotFound
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		src, err := s.sourceInTx(ctx, tx, c.FeedID, c.SourceID, c.FeedGeneration, c.Generation)
		if err != nil {
			return err
		}
		from = src.Status
		if c.IfToken != "" {
			cur, err := s.scanSourceToken(tx.QueryRowContext(ctx, sourceTokenSelect+` WHERE feed_id = ? AND id = ?`, c.FeedID, c.SourceID))
			if err != nil {
				return err
			}
			if subtle.ConstantTimeCompare([]byte(cur.AccessToken), []byte(c.IfToken)) != 1 {
				return model.ErrTokenChanged
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET status = ?, status_reason = ? WHERE feed_id = ? AND id = ?`,
			c.To, c.Reason, c.FeedID, c.SourceID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE feeds SET updated_at = ? WHERE id = ?`, unix(s.now()), c.FeedID)
		return err
	})
	if err != nil {
		return "", false, wrap("change source status", err)
	}
	return from, from != c.To, nil
}

// SourcesForInstagramUser lists the further sources of any feed connected
// to the Instagram user with this id (app-scoped or professional account
// id): what Meta's deauthorize and data-deletion callbacks remove.
func (s *Store) SourcesForInstagramUser(ctx context.Context, userID string) ([]model.Source, error) {
	out := []model.Source{}
	if userID == "" {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, sourceSelect+` WHERE app_user_id = ? OR ig_user_id = ? ORDER BY feed_id, position`, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("store: sources for user: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		src, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sources for user: %w", err)
		}
		out = append(out, src)
	}
	return out, rows.Err()
}
