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

// ReplacePosts replaces the main source's posts (newest first) and, when
// acct is not nil, its account profile (username, name, type, avatar,
// counts), and sets fetched_at to at, in one transaction. It returns the
// files of images no feed references any more, to delete after commit.
// The write applies only while the feed is still on connection gen: after
// a reconnect, a disconnect or a data deletion it writes nothing and
// returns model.ErrConnectionChanged.
func (s *Store) ReplacePosts(ctx context.Context, feedID string, gen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error) {
	if !model.ValidFeedID(feedID) {
		return nil, model.ErrNotFound
	}
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockFeed(ctx, tx, feedID)
		if err != nil {
			return err
		}
		// A poll that finishes after a reconnect, a disconnect or a data
		// deletion must not write the older connection's posts or profile.
		if cur != gen {
			return model.ErrConnectionChanged
		}
		var connected int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE feed_id = ?`, feedID).Scan(&connected); err != nil {
			return err
		}
		if connected == 0 {
			return model.ErrNotConnected
		}
		if _, err := tx.ExecContext(ctx, `UPDATE feeds SET fetched_at = ? WHERE id = ?`, unix(at), feedID); err != nil {
			return err
		}
		if acct != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET username = ?, name = ?, account_type = ?, avatar_key = ?,
				followers_count = ?, follows_count = ?, media_count = ? WHERE feed_id = ?`,
				acct.Username, nullString(acct.Name), acct.AccountType, nullString(acct.AvatarKey),
				nullInt(acct.FollowersCount), nullInt(acct.FollowsCount), nullInt(acct.MediaCount), feedID); err != nil {
				return err
			}
		}
		files, err = s.putSourcePosts(ctx, tx, feedID, model.MainSource, posts)
		return err
	})
	return files, wrap("replace posts", err)
}

// putSourcePosts replaces one source's posts, keeps the feed's media_refs
// and drops the images no feed references any more, returning their files.
func (s *Store) putSourcePosts(ctx context.Context, tx *sql.Tx, feedID, sourceID string, posts []model.Post) ([]string, error) {
	cands, err := feedRefs(ctx, tx, feedID)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM posts WHERE feed_id = ? AND source_id = ?`, feedID, sourceID); err != nil {
		return nil, err
	}
	// Post ids are Instagram's, unique across accounts; one stored under
	// another source of this feed stays with that source.
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO posts (feed_id, id, position, media_type, is_reel, permalink,
		timestamp, caption, alt_text, like_count, comments_count, media_key, children, source_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feed_id, id) DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	seen := make(map[string]bool, len(posts))
	pos := 0
	for _, p := range posts {
		if p.ID == "" || seen[p.ID] {
			continue // Instagram may repeat a post across pages
		}
		seen[p.ID] = true
		children := p.Children
		if children == nil {
			children = []model.Child{}
		}
		cj, err := json.Marshal(children)
		if err != nil {
			return nil, err
		}
		if _, err := stmt.ExecContext(ctx, feedID, p.ID, pos, p.MediaType, boolInt(p.IsReel), p.Permalink,
			unix(p.Timestamp), nullPtrString(p.Caption), nullPtrString(p.AltText), nullInt(p.LikeCount),
			nullInt(p.CommentsCount), nullString(p.MediaKey), string(cj), sourceID); err != nil {
			return nil, err
		}
		pos++
	}
	if err := s.recomputeRefs(ctx, tx, feedID); err != nil {
		return nil, err
	}
	return s.dropOrphans(ctx, tx, cands)
}

// Posts returns the feed's snapshot: each source's posts in the order they
// were stored (Instagram's, newest first), merged newest first across
// sources.
func (s *Store) Posts(ctx context.Context, feedID string) ([]model.Post, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, media_type, is_reel, permalink, timestamp, caption, alt_text,
		like_count, comments_count, media_key, children, source_id FROM posts WHERE feed_id = ?
		ORDER BY source_id, position`, feedID)
	if err != nil {
		return nil, fmt.Errorf("store: read posts: %w", err)
	}
	defer rows.Close()
	out := []model.Post{}
	for rows.Next() {
		var (
			p                 model.Post
			reel, ts          int64
			caption, alt, key sql.NullString
			likes, comments   sql.NullInt64
			children          string
		)
		if err := rows.Scan(&p.ID, &p.MediaType, &reel, &p.Permalink, &ts, &caption, &alt, &likes, &comments, &key, &children, &p.SourceID); err != nil {
			return nil, fmt.Errorf("store: read posts: %w", err)
		}
		p.IsReel, p.Timestamp = reel != 0, fromUnix(ts)
		p.Caption, p.AltText, p.LikeCount, p.CommentsCount = ptrString(caption), ptrString(alt), ptrInt(likes), ptrInt(comments)
		p.MediaKey = key.String
		if children != "" && children != "[]" {
			if err := json.Unmarshal([]byte(children), &p.Children); err != nil {
				return nil, fmt.Errorf("store: post %s children: %w", p.ID, err)
			}
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read posts: %w", err)
	}
	return mergeSources(out), nil
}

// mergeSources merges posts grouped by source, each group in its stored
// order, newest first; a post keeps its place within its source, so one
// source's posts come out exactly as stored.
func mergeSources(posts []model.Post) []model.Post {
	var groups [][]model.Post
	for i := 0; i < len(posts); {
		j := i + 1
		for j < len(posts) && posts[j].SourceID == posts[i].SourceID {
			j++
		}
		groups = append(groups, posts[i:j])
		i = j
	}
	if len(groups) < 2 {
		return posts
	}
	// The main source first among posts of the same second.
	slices.SortStableFunc(groups, func(a, b []model.Post) int {
		if a[0].SourceID == model.MainSource {
			return -1
		}
		if b[0].SourceID == model.MainSource {
			return 1
		}
		return 0
	})
	out := make([]model.Post, 0, len(posts))
	for len(groups) > 0 {
		best := 0
		for g := 1; g < len(groups); g++ {
			if groups[g][0].Timestamp.After(groups[best][0].Timestamp) {
				best = g
			}
		}
		out = append(out, groups[best][0])
		if groups[best] = groups[best][1:]; len(groups[best]) == 0 {
			groups = slices.Delete(groups, best, best+1)
		}
	}
	return out
}

const mediaSelect = `SELECT key, width, height, color, variants, bytes, created_at FROM media`

func scanMedia(sc scanner) (model.Media, error) {
	var (
		m        model.Media
		variants string
		created  int64
	)
	if err := sc.Scan(&m.Key, &m.Width, &m.Height, &m.Color, &variants, &m.Bytes, &created); err != nil {
		return model.Media{}, err
	}
	if err := json.Unmarshal([]byte(variants), &m.Variants); err != nil {
		return model.Media{}, fmt.Errorf("media %s variants: %w", m.Key, err)
	}
	m.CreatedAt = fromUnix(created)
	return m, nil
}

// Media returns the image stored under key, or ErrNotFound.
func (s *Store) Media(ctx context.Context, key string) (model.Media, error) {
	m, err := scanMedia(s.r.QueryRowContext(ctx, mediaSelect+` WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Media{}, model.ErrNotFound
	}
	if err != nil {
		return model.Media{}, fmt.Errorf("store: read media: %w", err)
	}
	return m, nil
}

// MediaByKeys returns the stored images among keys (missing keys are absent).
func (s *Store) MediaByKeys(ctx context.Context, keys []string) (map[string]model.Media, error) {
	out := make(map[string]model.Media, len(keys))
	const chunk = 500 // well under SQLite's bound-parameter limit
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		args := make([]any, len(part))
		for i, k := range part {
			args[i] = k
		}
		q := mediaSelect + ` WHERE key IN (?` + strings.Repeat(",?", len(part)-1) + `)`
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("store: read media: %w", err)
		}
		for rows.Next() {
			m, err := scanMedia(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: read media: %w", err)
			}
			out[m.Key] = m
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: read media: %w", err)
		}
	}
	return out, nil
}

// PutMedia stores (or replaces) the image under m.Key.
func (s *Store) PutMedia(ctx context.Context, m model.Media) error {
	if m.Key == "" {
		return fmt.Errorf("%w: media without a key", ErrInvalid)
	}
	variants := m.Variants
	if variants == nil {
		variants = []model.Variant{}
	}
	vj, err := json.Marshal(variants)
	if err != nil {
		return err
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.now()
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO media (key, width, height, color, variants, bytes, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET width = excluded.width, height = excluded.height, color = excluded.color,
				variants = excluded.variants, bytes = excluded.bytes`,
			m.Key, m.Width, m.Height, m.Color, string(vj), m.Bytes, unix(m.CreatedAt))
		return err
	})
	return wrap("put media", err)
}

// ReferencedFiles returns every file named by a media row, for a start-up
// sweep that deletes files no row names.
func (s *Store) ReferencedFiles(ctx context.Context) (map[string]struct{}, error) {
	rows, err := s.r.QueryContext(ctx, s.d.mediaFiles)
	if err != nil {
		return nil, fmt.Errorf("store: referenced files: %w", err)
	}
	defer rows.Close()
	out := map[string]struct{}{}
	for rows.Next() {
		var f sql.NullString
		if err := rows.Scan(&f); err != nil {
			return nil, fmt.Errorf("store: referenced files: %w", err)
		}
		if f.Valid && f.String != "" {
			out[f.String] = struct{}{}
		}
	}
	return out, rows.Err()
}

// SweepMedia deletes media rows created before `before` that no feed
// references (left behind by a poll that failed after downloading) and
// returns their files, to delete after this commit.
func (s *Store) SweepMedia(ctx context.Context, before time.Time) ([]string, error) {
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT key FROM media WHERE created_at < ?
			AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.key = media.key)`, unix(before))
		if err != nil {
			return err
		}
		var keys []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		files, err = s.dropOrphans(ctx, tx, keys)
		return err
	})
	return files, wrap("sweep media", err)
}

// DropUnreferenced deletes the media rows among keys that no feed
// references and returns their files, to delete after this commit: what a
// poll stored for a connection that changed before it could save.
func (s *Store) DropUnreferenced(ctx context.Context, keys []string) ([]string, error) {
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		files, err = s.dropOrphans(ctx, tx, keys)
		return err
	})
	return files, wrap("drop unreferenced media", err)
}

// feedRefs lists the media keys the feed references now.
func feedRefs(ctx context.Context, tx *sql.Tx, feedID string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT key FROM media_refs WHERE feed_id = ?`, feedID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// recomputeRefs rebuilds the feed's media_refs from its posts, carousel
// children and account avatar.
func (s *Store) recomputeRefs(ctx context.Context, tx *sql.Tx, feedID string) error {
	for _, q := range []string{
		`DELETE FROM media_refs WHERE feed_id = ?`,
		`INSERT INTO media_refs (feed_id, key)
			SELECT feed_id, media_key FROM posts WHERE feed_id = ? AND coalesce(media_key, '') != ''
			ON CONFLICT DO NOTHING`,
		s.d.childRefs,
		`INSERT INTO media_refs (feed_id, key)
			SELECT feed_id, avatar_key FROM accounts WHERE feed_id = ? AND coalesce(avatar_key, '') != ''
			ON CONFLICT DO NOTHING`,
		`INSERT INTO media_refs (feed_id, key)
			SELECT feed_id, avatar_key FROM sources WHERE feed_id = ? AND coalesce(avatar_key, '') != ''
			ON CONFLICT DO NOTHING`,
		videoRefs,
	} {
		if _, err := tx.ExecContext(ctx, q, feedID); err != nil {
			return err
		}
	}
	return nil
}

// dropOrphans deletes the media rows among keys that no feed references
// and returns their files, except files another media row still names
// (files are content-addressed, so two keys may share one).
func (s *Store) dropOrphans(ctx context.Context, tx *sql.Tx, keys []string) ([]string, error) {
	// One order for every transaction: two instances dropping overlapping
	// keys lock their rows in the same order and never deadlock.
	keys = slices.Clone(keys)
	slices.Sort(keys)
	var files []string
	for _, k := range keys {
		// One conditional statement: the check and the delete are one step.
		var variants sql.NullString
		err := tx.QueryRowContext(ctx, `DELETE FROM media WHERE key = ?
			AND NOT EXISTS (SELECT 1 FROM media_refs WHERE key = ?) RETURNING variants`, k, k).Scan(&variants)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var vs []model.Variant
		if err := json.Unmarshal([]byte(variants.String), &vs); err != nil {
			continue // a corrupt row: its files are left for the start-up sweep
		}
		for _, v := range vs {
			if v.File != "" {
				files = append(files, v.File)
			}
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	out := files[:0]
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		var shared bool
		if err := tx.QueryRowContext(ctx, s.d.fileShared, f).Scan(&shared); err != nil {
			return nil, err
		}
		if !shared {
			out = append(out, f)
		}
	}
	return out, nil
}
