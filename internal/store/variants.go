package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// The background encoder's state per stored image (migration 0006): the
// formats done beside the JPEGs, and the failures of the attempts.

// lacksFormats is the SQL condition "the media row lacks one of formats",
// with one argument per format. formats is a sorted, comma-separated list,
// so each format is matched between commas.
func lacksFormats(formats []string) (string, []any) {
	conds := make([]string, len(formats))
	args := make([]any, len(formats))
	for i, f := range formats {
		conds[i] = `(',' || formats || ',') NOT LIKE ?`
		args[i] = "%," + f + ",%"
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// pendingFormats is the SQL condition "the media row is the encoder's to
// do now": it lacks one of formats, has failed fewer than maxFailures
// times, is due at now and no holder but holder claims it. PendingFormats
// lists by it and ClaimFormats checks it again on the row.
func pendingFormats(formats []string, maxFailures int, now time.Time, holder string) (string, []any) {
	cond, args := lacksFormats(formats)
	return cond + ` AND format_failures < ? AND format_retry_at <= ?
		AND (format_until IS NULL OR format_until <= ? OR format_holder = ?)`,
		append(args, maxFailures, unix(now), unix(now), holder)
}

// PendingFormats returns up to limit stored images that lack one of
// formats, have failed fewer than maxFailures times, are due for another
// attempt at now and are not being encoded by another holder than holder
// (ClaimFormats): the covers of the posts feeds show first (a grid's first
// row before its last; a new post, shown first, before older ones), then
// other images (carousel items, avatars), newest first. Not the newest
// first overall: a poll stores its newest post's images first, so they are
// the oldest of that poll.
func (s *Store) PendingFormats(ctx context.Context, formats []string, maxFailures int, now time.Time, holder string, limit int) ([]model.Media, error) {
	if len(formats) == 0 || limit <= 0 {
		return nil, nil
	}
	cond, args := pendingFormats(formats, maxFailures, now, holder)
	rows, err := s.r.QueryContext(ctx, `SELECT m.key, m.width, m.height, m.color, m.variants, m.bytes, m.created_at
		FROM media m LEFT JOIN (SELECT media_key, min(position) AS pos FROM posts GROUP BY media_key) p ON p.media_key = m.key
		WHERE `+cond+`
		ORDER BY coalesce(p.pos, 1000000), m.created_at DESC, m.key LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: pending formats: %w", err)
	}
	defer rows.Close()
	var out []model.Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, fmt.Errorf("store: pending formats: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pending formats: %w", err)
	}
	return out, nil
}

// CountPendingFormats counts the stored images that lack one of formats
// and have failed fewer than maxFailures times, due now or later.
func (s *Store) CountPendingFormats(ctx context.Context, formats []string, maxFailures int) (int, error) {
	if len(formats) == 0 {
		return 0, nil
	}
	cond, args := lacksFormats(formats)
	args = append(args, maxFailures)
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM media WHERE `+cond+` AND format_failures < ?`, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count pending formats: %w", err)
	}
	return n, nil
}

// ClaimFormats makes holder the one encoding key's formats until until,
// if the image is still pending as PendingFormats says (it lacks one of
// formats, has failed fewer than maxFailures times and is due at now) and
// no other holder's claim holds: an instance whose list is stale (another
// finished or failed the image since) gets false. AddFormats and
// FormatFailed end the claim; an instance that dies leaves it to lapse.
func (s *Store) ClaimFormats(ctx context.Context, key string, formats []string, maxFailures int, now time.Time, holder string, until time.Time) (bool, error) {
	if len(formats) == 0 {
		return false, nil
	}
	cond, args := pendingFormats(formats, maxFailures, now, holder)
	return s.claim(ctx, "claim formats", `UPDATE media SET format_holder = ?, format_until = ? WHERE key = ? AND `+cond,
		append([]any{holder, unix(until), key}, args...)...)
}

// AddFormats records what the encoder made for m (as it was read): the
// added variants join the row's, and formats (every format now done for
// the image) is stored sorted. It applies only while the row still has the
// variants m has: a row deleted or replaced meanwhile gives
// model.ErrNotFound, and the caller removes the files it wrote. It returns
// the feeds that show the image, whose cached documents are now outdated.
func (s *Store) AddFormats(ctx context.Context, m model.Media, added []model.Variant, formats []string) ([]string, error) {
	done := slices.Clone(formats)
	slices.Sort(done)
	done = slices.Compact(done)
	for _, f := range done {
		if f == "" || strings.Contains(f, ",") {
			return nil, fmt.Errorf("%w: format %q", ErrInvalid, f)
		}
	}
	var feeds []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		var raw string
		var bytes int64
		err := tx.QueryRowContext(ctx, `SELECT variants, bytes FROM media WHERE key = ?`+s.d.forUpdate, m.Key).Scan(&raw, &bytes)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		var cur []model.Variant
		if err := json.Unmarshal([]byte(raw), &cur); err != nil {
			return fmt.Errorf("media %s variants: %w", m.Key, err)
		}
		if !slices.Equal(cur, m.Variants) {
			return fmt.Errorf("%w: media %s changed since it was read", model.ErrNotFound, m.Key)
		}
		all := slices.Clone(cur)
		for _, v := range added {
			if !slices.ContainsFunc(all, func(c model.Variant) bool { return c.File == v.File }) {
				all = append(all, v)
				bytes += v.Bytes
			}
		}
		vj, err := json.Marshal(all)
		if err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, `UPDATE media SET variants = ?, bytes = ?, formats = ?, format_failures = 0,
			format_retry_at = 0, format_holder = NULL, format_until = NULL WHERE key = ?`, string(vj), bytes, strings.Join(done, ","), m.Key); err != nil {
			return err
		}
		if len(added) == 0 {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT feed_id FROM media_refs WHERE key = ? ORDER BY feed_id`, m.Key)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			feeds = append(feeds, id)
		}
		return rows.Err()
	})
	return feeds, wrap("add formats", err)
}

// FormatFailed counts a failed attempt at key's formats and defers the next
// one to retryAt(the failures counted so far), which it returns. A key
// deleted meanwhile is model.ErrNotFound.
func (s *Store) FormatFailed(ctx context.Context, key string, retryAt func(failures int) time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE media SET format_failures = format_failures + 1
			WHERE key = ? RETURNING format_failures`, key).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE media SET format_retry_at = ?, format_holder = NULL, format_until = NULL
			WHERE key = ?`, unix(retryAt(n)), key)
		return err
	})
	return n, wrap("format failed", err)
}

// UnnamedFiles returns the files among files that no media row names: the
// ones the encoder may remove after AddFormats refused its write (files
// are content-addressed, so another image may share one).
func (s *Store) UnnamedFiles(ctx context.Context, files []string) ([]string, error) {
	var out []string
	for _, f := range files {
		var named bool
		if err := s.r.QueryRowContext(ctx, s.d.fileShared, f).Scan(&named); err != nil {
			return nil, fmt.Errorf("store: unnamed files: %w", err)
		}
		if !named {
			out = append(out, f)
		}
	}
	return out, nil
}
