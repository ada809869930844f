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

// SetCuration replaces the feed's curation (model.ErrNotFound for an
// unknown feed) and returns it as stored. The caller validates it.
func (s *Store) SetCuration(ctx context.Context, feedID string, c model.Curation) (model.Curation, error) {
	c.UpdatedAt = s.now().UTC().Truncate(time.Second)
	cols := make([]any, 0, 5)
	for _, list := range [][]string{c.Hidden, c.Pinned, c.Include, c.Exclude, c.Types} {
		if list == nil {
			list = []string{}
		}
		b, err := json.Marshal(list)
		if err != nil {
			return model.Curation{}, err
		}
		cols = append(cols, string(b))
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM feeds WHERE id = ?`+s.d.forUpdate, feedID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO curations (feed_id, hidden, pinned, include_rules, exclude_rules, types, max_posts, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (feed_id) DO UPDATE SET hidden = excluded.hidden, pinned = excluded.pinned,
				include_rules = excluded.include_rules, exclude_rules = excluded.exclude_rules,
				types = excluded.types, max_posts = excluded.max_posts, updated_at = excluded.updated_at`,
			feedID, cols[0], cols[1], cols[2], cols[3], cols[4], c.MaxPosts, unix(c.UpdatedAt))
		return err
	})
	if err != nil {
		return model.Curation{}, wrap("set curation", err)
	}
	return c, nil
}
