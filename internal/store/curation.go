package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// Curation returns what the owner chose the feed to show; a feed whose
// owner chose nothing (or an unknown feed) gets the zero Curation.
func (s *Store) Curation(ctx context.Context, feedID string) (model.Curation, error) {
	var (
		c                                       model.Curation
		hidden, pinned, include, exclude, types string
		updated                                 int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT hidden, pinned, include_rules, exclude_rules, types, max_posts, updated_at
		FROM curations WHERE feed_id = ?`, feedID).Scan(&hidden, &pinned, &include, &exclude, &types, &c.MaxPosts, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return model.Curation{}, nil
	}
	if err != nil {
		return model.Curation{}, fmt.Errorf("store: read curation: %w", err)
	}
	for _, col := range []struct {
		raw string
		dst *[]string
	}{{hidden, &c.Hidden}, {pinned, &c.Pinned}, {include, &c.Include}, {exclude, &c.Exclude}, {types, &c.Types}} {
		if err := json.Unmarshal([]byte(col.raw), col.dst); err != nil {
			return model.Curation{}, fmt.Errorf("store: feed %s curation: %w", feedID, err)
		}
	}
	c.UpdatedAt = fromUnix(updated)
	return c, nil
}

// SetCuration replaces the feed's curation with next if it is still prev,
// the one the caller read (model.ErrCurationChanged otherwise), and
// returns it as stored; model.ErrNotFound for an unknown feed. The caller
// validates next.
func (s *Store) SetCuration(ctx context.Context, feedID string, prev, next model.Curation) (model.Curation, error) {
	next.UpdatedAt = s.now().UTC().Truncate(time.Second)
	was, err := curationColumns(prev)
	if err != nil {
		return model.Curation{}, err
	}
	cols, err := curationColumns(next)
	if err != nil {
		return model.Curation{}, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		// The feed's row lock (PostgreSQL) makes concurrent changes of one
		// feed's curation take turns; SQLite's writes always do.
		if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
			return err
		}
		cur := make([]any, 6)
		cur[0], cur[1], cur[2], cur[3], cur[4], cur[5] = new(string), new(string), new(string), new(string), new(string), new(int64)
		err = tx.QueryRowContext(ctx, `SELECT hidden, pinned, include_rules, exclude_rules, types, max_posts
			FROM curations WHERE feed_id = ?`, feedID).Scan(cur...)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			cur, err = curationColumns(model.Curation{})
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			for i := range 5 {
				cur[i] = *cur[i].(*string)
			}
			cur[5] = *cur[5].(*int64)
		}
		for i := range cur {
			if cur[i] != was[i] {
				return model.ErrCurationChanged
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO curations (feed_id, hidden, pinned, include_rules, exclude_rules, types, max_posts, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (feed_id) DO UPDATE SET hidden = excluded.hidden, pinned = excluded.pinned,
				include_rules = excluded.include_rules, exclude_rules = excluded.exclude_rules,
				types = excluded.types, max_posts = excluded.max_posts, updated_at = excluded.updated_at`,
			feedID, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], unix(next.UpdatedAt))
		return err
	})
	if err != nil {
		return model.Curation{}, wrap("set curation", err)
	}
	return next, nil
}

// curationColumns are c's lists as stored (JSON arrays, never null) and
// its cap, in the order of the table's columns.
func curationColumns(c model.Curation) ([]any, error) {
	cols := make([]any, 0, 6)
	for _, list := range [][]string{c.Hidden, c.Pinned, c.Include, c.Exclude, c.Types} {
		if list == nil {
			list = []string{}
		}
		b, err := json.Marshal(list)
		if err != nil {
			return nil, err
		}
		cols = append(cols, string(b))
	}
	return append(cols, int64(c.MaxPosts)), nil
}
