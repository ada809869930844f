package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// AnyGeneration, as the generation a write names, applies it to whatever
// connection the feed has: for set-up code that read nothing before.
const AnyGeneration int64 = -1

// Connect stores the feed's account and sealed token and marks the feed
// active, all in one transaction: a failed connect writes nothing. It
// applies only while the feed is on connection gen, the one the caller
// read it on (model.ErrConnectionChanged otherwise: a connect, disconnect
// or data deletion since then wins; AnyGeneration: whatever it is), and
// moves the feed to a new generation. When the feed was connected to another Instagram account,
// that account's posts are dropped; reconnecting the same account keeps
// its stored profile picture unless acct names another. It returns the
// feed as it was before, and the files of images no feed references any
// more, for the caller to delete after this commit.
func (s *Store) Connect(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token) (prev model.Feed, files []string, err error) {
	if !model.ValidFeedID(feedID) {
		return model.Feed{}, nil, model.ErrNotFound
	}
	if tok.AccessToken == "" || acct.IGUserID == "" {
		return model.Feed{}, nil, fmt.Errorf("%w: connect needs an access token and an account id", ErrInvalid)
	}
	sealed, err := s.box.Seal([]byte(tok.AccessToken), tokenAAD(feedID))
	if err != nil {
		return model.Feed{}, nil, err
	}
	now := s.now()
	if acct.ConnectedAt.IsZero() {
		acct.ConnectedAt = now
	}
	if tok.ObtainedAt.IsZero() {
		tok.ObtainedAt = now
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if prev, err = s.feedInTx(ctx, tx, feedID, gen); err != nil {
			return err
		}
		cands, err := feedRefs(ctx, tx, feedID)
		if err != nil {
			return err
		}
		var dup int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sources WHERE feed_id = ? AND ig_user_id = ?`,
			feedID, acct.IGUserID).Scan(&dup); err != nil {
			return err
		}
		if dup > 0 {
			return model.ErrSourceDuplicate
		}
		if old := prev.Account; old != nil {
			if old.IGUserID != acct.IGUserID {
				if _, err := tx.ExecContext(ctx, `DELETE FROM posts WHERE feed_id = ? AND source_id = ?`, feedID, model.MainSource); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE curations SET hidden = '[]', pinned = '[]' WHERE feed_id = ?`, feedID); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE feeds SET fetched_at = NULL WHERE id = ?`, feedID); err != nil {
					return err
				}
			} else if acct.AvatarKey == "" {
				// The connect flow never fetches pictures: an empty key
				// would orphan (and so delete) the stored one until the
				// poller's next profile read.
				acct.AvatarKey = old.AvatarKey
			}
		}
		if err := upsertAccount(ctx, tx, feedID, acct); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (feed_id, sealed, obtained_at, expires_at, expiry_assumed,
				refreshed_at, next_refresh_at, refresh_failures, last_refresh_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL)
			ON CONFLICT (feed_id) DO UPDATE SET sealed = excluded.sealed, obtained_at = excluded.obtained_at,
				expires_at = excluded.expires_at, expiry_assumed = excluded.expiry_assumed,
				refreshed_at = excluded.refreshed_at, next_refresh_at = excluded.next_refresh_at,
				refresh_failures = 0, last_refresh_error = NULL, expiry_warned_at = NULL, probed_at = NULL`,
			feedID, sealed, unix(tok.ObtainedAt), unix(tok.ExpiresAt), boolInt(tok.ExpiryAssumed),
			nullUnix(tok.RefreshedAt), nullUnix(tok.NextRefreshAt)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE feeds SET status = 'active', status_reason = '', updated_at = ?,
				next_fetch_at = ?, fetch_failures = 0, generation = generation + 1 WHERE id = ?`, unix(now), unix(now), feedID); err != nil {
			return err
		}
		if err := s.recomputeRefs(ctx, tx, feedID); err != nil {
			return err
		}
		files, err = s.dropOrphans(ctx, tx, cands)
		return err
	})
	if err != nil {
		return model.Feed{}, nil, wrap("connect", err)
	}
	return prev, files, nil
}

// feedInTx locks and reads the feed inside a write, and checks that it is
// still on connection gen (unless gen is AnyGeneration).
func (s *Store) feedInTx(ctx context.Context, tx *sql.Tx, feedID string, gen int64) (model.Feed, error) {
	if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
		return model.Feed{}, err
	}
	f, err := scanFeed(tx.QueryRowContext(ctx, feedSelect+` WHERE f.id = ?`, feedID))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Feed{}, model.ErrNotFound
	}
	if err != nil {
		return model.Feed{}, err
	}
	if gen != AnyGeneration && f.Generation != gen {
		return model.Feed{}, model.ErrConnectionChanged
	}
	return f, nil
}

func upsertAccount(ctx context.Context, tx *sql.Tx, feedID string, a model.Account) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO accounts (feed_id, app_user_id, ig_user_id, username, name, account_type,
			avatar_key, followers_count, follows_count, media_count, connected_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (feed_id) DO UPDATE SET app_user_id = excluded.app_user_id, ig_user_id = excluded.ig_user_id,
			username = excluded.username, name = excluded.name, account_type = excluded.account_type,
			avatar_key = excluded.avatar_key, followers_count = excluded.followers_count,
			follows_count = excluded.follows_count, media_count = excluded.media_count,
			connected_at = excluded.connected_at`,
		feedID, a.AppUserID, a.IGUserID, a.Username, nullString(a.Name), a.AccountType, nullString(a.AvatarKey),
		nullInt(a.FollowersCount), nullInt(a.FollowsCount), nullInt(a.MediaCount), unix(a.ConnectedAt))
	return err
}

const tokenSelect = `SELECT feed_id, sealed, obtained_at, expires_at, expiry_assumed, refreshed_at, next_refresh_at,
	refresh_failures, last_refresh_error FROM tokens`

func (s *Store) scanToken(sc scanner) (model.Token, error) {
	var (
		t                          model.Token
		sealed                     []byte
		obtained, expires, assumed int64
		refreshed, next            sql.NullInt64
		lastErr                    sql.NullString
	)
	if err := sc.Scan(&t.FeedID, &sealed, &obtained, &expires, &assumed, &refreshed, &next, &t.RefreshFailures, &lastErr); err != nil {
		return model.Token{}, err
	}
	pt, err := s.box.Open(sealed, tokenAAD(t.FeedID))
	if err != nil {
		return model.Token{}, fmt.Errorf("store: token of feed %s: %w", t.FeedID, err)
	}
	t.AccessToken = string(pt)
	t.ObtainedAt, t.ExpiresAt, t.ExpiryAssumed = fromUnix(obtained), fromUnix(expires), assumed != 0
	t.RefreshedAt, t.NextRefreshAt, t.LastRefreshError = fromNullUnix(refreshed), fromNullUnix(next), lastErr.String
	return t, nil
}

// Token returns the feed's token, decrypted: ErrNotFound for an unknown
// feed, ErrNotConnected for a feed without a token.
func (s *Store) Token(ctx context.Context, feedID string) (model.Token, error) {
	if !model.ValidFeedID(feedID) {
		return model.Token{}, model.ErrNotFound
	}
	t, err := s.scanToken(s.r.QueryRowContext(ctx, tokenSelect+` WHERE feed_id = ?`, feedID))
	if errors.Is(err, sql.ErrNoRows) {
		var n int
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM feeds WHERE id = ?`, feedID).Scan(&n); err != nil {
			return model.Token{}, fmt.Errorf("store: read token: %w", err)
		}
		if n == 0 {
			return model.Token{}, model.ErrNotFound
		}
		return model.Token{}, model.ErrNotConnected
	}
	if err != nil {
		return model.Token{}, wrap("read token", err)
	}
	return t, nil
}

// ReplaceToken swaps in a refreshed token if the stored one is still
// oldAccessToken (ErrTokenChanged otherwise: a reconnect or another refresh
// won). Refresh failures are cleared.
func (s *Store) ReplaceToken(ctx context.Context, feedID, oldAccessToken string, nt model.Token) error {
	if !model.ValidFeedID(feedID) {
		return model.ErrNotFound
	}
	if nt.AccessToken == "" {
		return fmt.Errorf("%w: empty access token", ErrInvalid)
	}
	return s.swapToken(ctx, feedID, oldAccessToken, nt, tokenPlace{
		what: "replace token", aad: tokenAAD(feedID), sel: tokenSelect, scan: s.scanToken, missing: model.ErrNotFound,
		table: "tokens", where: "feed_id = ?", args: []any{feedID},
	})
}

// tokenPlace is where a token is stored: the feed's main token or a
// further source's.
type tokenPlace struct {
	what    string // the operation, for errors
	aad     []byte // the sealing's additional data
	sel     string // the SELECT that scan reads
	scan    func(scanner) (model.Token, error)
	missing error // when no row is there
	table   string
	where   string
	args    []any
}

// swapToken replaces the token at p if it is still oldAccessToken
// (model.ErrTokenChanged otherwise), under the feed's row lock, clearing
// refresh failures.
func (s *Store) swapToken(ctx context.Context, feedID, oldAccessToken string, nt model.Token, p tokenPlace) error {
	sealed, err := s.box.Seal([]byte(nt.AccessToken), p.aad)
	if err != nil {
		return err
	}
	if nt.ObtainedAt.IsZero() {
		nt.ObtainedAt = s.now()
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
			return err
		}
		cur, err := p.scan(tx.QueryRowContext(ctx, p.sel+` WHERE `+p.where, p.args...))
		if errors.Is(err, sql.ErrNoRows) {
			return p.missing
		}
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(cur.AccessToken), []byte(oldAccessToken)) != 1 {
			return model.ErrTokenChanged
		}
		_, err = tx.ExecContext(ctx, `UPDATE `+p.table+` SET sealed = ?, obtained_at = ?, expires_at = ?, expiry_assumed = ?,
			refreshed_at = ?, next_refresh_at = ?, refresh_failures = 0, last_refresh_error = NULL WHERE `+p.where,
			append([]any{sealed, unix(nt.ObtainedAt), unix(nt.ExpiresAt), boolInt(nt.ExpiryAssumed),
				nullUnix(nt.RefreshedAt), nullUnix(nt.NextRefreshAt)}, p.args...)...)
		return err
	})
	return wrap(p.what, err)
}

// RecordRefreshFailure counts a failed refresh, keeps its owner-facing
// message and schedules the next attempt at nextAt.
func (s *Store) RecordRefreshFailure(ctx context.Context, feedID, errText string, nextAt time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE tokens SET refresh_failures = refresh_failures + 1,
			last_refresh_error = ?, next_refresh_at = ? WHERE feed_id = ?`, errText, nullUnix(nextAt), feedID))
	})
	return wrap("record refresh failure", err)
}

// TokensDue returns the decrypted tokens to refresh now: those with a
// scheduled attempt that has come, and unscheduled ones at least 24 hours
// old that expire within window. Feeds that need reauthorization are
// skipped: their token is dead.
func (s *Store) TokensDue(ctx context.Context, now time.Time, window time.Duration) ([]model.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.feed_id, t.sealed, t.obtained_at, t.expires_at, t.expiry_assumed,
			t.refreshed_at, t.next_refresh_at, t.refresh_failures, t.last_refresh_error
		FROM tokens t JOIN feeds f ON f.id = t.feed_id
		WHERE f.status != 'needs_reauth' AND (
			(t.next_refresh_at IS NOT NULL AND t.next_refresh_at <= ?)
			OR (t.next_refresh_at IS NULL AND t.obtained_at <= ? AND t.expires_at <= ?))
		ORDER BY t.expires_at`,
		unix(now), unix(now.Add(-24*time.Hour)), unix(now.Add(window)))
	return s.readTokens(rows, err, s.scanToken, "tokens due")
}

// readTokens reads the tokens of a query's rows, skipping (with a warning)
// those that cannot be opened, so one bad row never stops every refresh.
func (s *Store) readTokens(rows *sql.Rows, err error, scan func(scanner) (model.Token, error), what string) ([]model.Token, error) {
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	out := []model.Token{}
	for rows.Next() {
		t, err := scan(rows)
		if err != nil {
			s.log.Warn("skip token that cannot be read", slog.Any("error", err))
			continue
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// Disconnect removes the feed's token, account, further sources and posts and marks it
// not_connected, in one transaction that moves the feed to a new
// connection generation (so a poll still running cannot write back). It
// returns the feed as it was before, and the files of images no feed
// references any more, for the caller to delete after this commit.
func (s *Store) Disconnect(ctx context.Context, feedID string) (prev model.Feed, files []string, err error) {
	if !model.ValidFeedID(feedID) {
		return model.Feed{}, nil, model.ErrNotFound
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if prev, err = s.feedInTx(ctx, tx, feedID, AnyGeneration); err != nil {
			return err
		}
		cands, err := feedRefs(ctx, tx, feedID)
		if err != nil {
			return err
		}
		if err := rowsAffected(tx.ExecContext(ctx, `UPDATE feeds SET status = 'not_connected', status_reason = '',
				updated_at = ?, last_fetch_at = NULL, last_fetch_ok = NULL, last_fetch_error = NULL, fetched_at = NULL,
				next_fetch_at = NULL, fetch_failures = 0, generation = generation + 1 WHERE id = ?`,
			unix(s.now()), feedID)); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM tokens WHERE feed_id = ?`,
			`DELETE FROM accounts WHERE feed_id = ?`,
			`DELETE FROM sources WHERE feed_id = ?`,
			`DELETE FROM posts WHERE feed_id = ?`,
			`DELETE FROM media_refs WHERE feed_id = ?`,
			// The ids of the posts the owner hid or pinned go with the
			// posts; the caption rules stay the owner's.
			`UPDATE curations SET hidden = '[]', pinned = '[]' WHERE feed_id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, feedID); err != nil {
				return err
			}
		}
		files, err = s.dropOrphans(ctx, tx, cands)
		return err
	})
	if err != nil {
		return model.Feed{}, nil, wrap("disconnect", err)
	}
	return prev, files, nil
}
