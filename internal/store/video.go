package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// ErrVideosOff is returned by AttachVideo when the feed no longer stores
// videos (its owner turned them off while the video downloaded).
var ErrVideosOff = errors.New("store: the feed does not store videos")

// videoPrefix starts every video media key (model.VideoKey).
const videoPrefix = "video:"

// VideoSettings returns the feed's video settings; a feed whose owner never
// set them (or an unknown feed) gets model.DefaultVideoSettings.
func (s *Store) VideoSettings(ctx context.Context, feedID string) (model.VideoSettings, error) {
	v := model.DefaultVideoSettings()
	var enabled, updated int64
	err := s.r.QueryRowContext(ctx, `SELECT enabled, max_file_bytes, max_feed_bytes, updated_at
		FROM video_settings WHERE feed_id = ?`, feedID).Scan(&enabled, &v.MaxFileBytes, &v.MaxFeedBytes, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return v, nil
	}
	if err != nil {
		return model.VideoSettings{}, fmt.Errorf("store: read video settings: %w", err)
	}
	v.Enabled, v.UpdatedAt = enabled != 0, fromUnix(updated)
	return v, nil
}

// SetVideoSettings replaces the feed's video settings (model.ErrNotFound
// for an unknown feed; the caller validates the caps). Turning videos off
// drops the feed's stored videos in the same transaction and returns their
// files, to delete after commit.
func (s *Store) SetVideoSettings(ctx context.Context, feedID string, v model.VideoSettings) (model.VideoSettings, []string, error) {
	v.UpdatedAt = s.now().UTC().Truncate(time.Second)
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockFeed(ctx, tx, feedID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO video_settings (feed_id, enabled, max_file_bytes, max_feed_bytes, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (feed_id) DO UPDATE SET enabled = excluded.enabled, max_file_bytes = excluded.max_file_bytes,
				max_feed_bytes = excluded.max_feed_bytes, updated_at = excluded.updated_at`,
			feedID, boolInt(v.Enabled), v.MaxFileBytes, v.MaxFeedBytes, unix(v.UpdatedAt)); err != nil {
			return err
		}
		if v.Enabled {
			return nil
		}
		keys, err := feedVideoRefs(ctx, tx, feedID)
		if err != nil {
			return err
		}
		files, err = s.unrefVideos(ctx, tx, feedID, keys)
		return err
	})
	if err != nil {
		return model.VideoSettings{}, nil, wrap("set video settings", err)
	}
	return v, files, nil
}

// AttachVideo records m, a video file of post postID just stored, as the
// feed's video of that post (under model.VideoKey) if the feed is still on
// connection gen (model.ErrConnectionChanged), still stores videos
// (ErrVideosOff) and still shows the post (model.ErrNotFound). When it is
// refused it writes nothing and returns the files to delete: m's, unless a
// media row names the same bytes.
func (s *Store) AttachVideo(ctx context.Context, feedID string, gen int64, postID string, m model.Media) ([]string, error) {
	m.Key = model.VideoKey(feedID, postID)
	vj, err := json.Marshal(m.Variants)
	if err != nil {
		return nil, err
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.now()
	}
	var files []string
	var refused error
	err = s.write(ctx, func(tx *sql.Tx) error {
		// The feed's row first, locked (PostgreSQL) as every write that
		// depends on its generation locks it: one order, no deadlock.
		var cur int64
		err := tx.QueryRowContext(ctx, `SELECT generation FROM feeds WHERE id = ?`+s.d.forUpdate, feedID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		var enabled, shown int64
		if err := tx.QueryRowContext(ctx, `SELECT
				coalesce((SELECT enabled FROM video_settings WHERE feed_id = ?), 0),
				(SELECT count(*) FROM posts WHERE feed_id = ? AND id = ?)`, feedID, feedID, postID).Scan(&enabled, &shown); err != nil {
			return err
		}
		switch {
		case cur != gen:
			refused = model.ErrConnectionChanged
		case enabled == 0:
			refused = ErrVideosOff
		case shown == 0:
			refused = fmt.Errorf("%w: post %s", model.ErrNotFound, postID)
		}
		if refused != nil {
			// Nothing is written; the new file goes unless a row names
			// the same bytes.
			for _, v := range m.Variants {
				var shared bool
				if err := tx.QueryRowContext(ctx, s.d.fileShared, v.File).Scan(&shared); err != nil {
					return err
				}
				if !shared {
					files = append(files, v.File)
				}
			}
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO media (key, width, height, color, variants, bytes, created_at)
			VALUES (?, 0, 0, '', ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET variants = excluded.variants, bytes = excluded.bytes`,
			m.Key, string(vj), m.Bytes, unix(m.CreatedAt)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO media_refs (feed_id, key) VALUES (?, ?)
			ON CONFLICT (feed_id, key) DO NOTHING`, feedID, m.Key)
		return err
	})
	if err != nil {
		return nil, wrap("attach video", err)
	}
	return files, refused
}

// DropVideos drops the feed's stored videos among keys (those the feed cap
// no longer leaves room for) and returns their files, to delete after
// commit.
func (s *Store) DropVideos(ctx context.Context, feedID string, keys []string) ([]string, error) {
	var files []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		files, err = s.unrefVideos(ctx, tx, feedID, keys)
		return err
	})
	return files, wrap("drop videos", err)
}

// MediaUse is the disk the feed's stored media take, by the rows its posts
// and avatar reference (a file two feeds share counts for both).
func (s *Store) MediaUse(ctx context.Context, feedID string) (model.MediaUse, error) {
	var u model.MediaUse
	err := s.r.QueryRowContext(ctx, `SELECT
			coalesce(sum(CASE WHEN r.key LIKE 'video:%' THEN 0 ELSE m.bytes END), 0),
			coalesce(sum(CASE WHEN r.key LIKE 'video:%' THEN m.bytes ELSE 0 END), 0)
		FROM media_refs r JOIN media m ON m.key = r.key WHERE r.feed_id = ?`, feedID).Scan(&u.Images, &u.Videos)
	if err != nil {
		return model.MediaUse{}, fmt.Errorf("store: media use: %w", err)
	}
	return u, nil
}

// MediaUseByFeed returns MediaUse for every feed that references media.
func (s *Store) MediaUseByFeed(ctx context.Context) (map[string]model.MediaUse, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT r.feed_id,
			coalesce(sum(CASE WHEN r.key LIKE 'video:%' THEN 0 ELSE m.bytes END), 0),
			coalesce(sum(CASE WHEN r.key LIKE 'video:%' THEN m.bytes ELSE 0 END), 0)
		FROM media_refs r JOIN media m ON m.key = r.key GROUP BY r.feed_id`)
	if err != nil {
		return nil, fmt.Errorf("store: media use: %w", err)
	}
	defer rows.Close()
	out := map[string]model.MediaUse{}
	for rows.Next() {
		var id string
		var u model.MediaUse
		if err := rows.Scan(&id, &u.Images, &u.Videos); err != nil {
			return nil, fmt.Errorf("store: media use: %w", err)
		}
		out[id] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: media use: %w", err)
	}
	return out, nil
}

// videoRefs adds to a feed's media_refs its stored videos of the posts it
// shows, while it stores videos; args: feed id. It is part of rebuilding the
// refs from the posts, so a removed post's video is an orphan like its cover.
const videoRefs = `INSERT INTO media_refs (feed_id, key)
	SELECT p.feed_id, m.key FROM posts p JOIN media m ON m.key = 'video:' || p.feed_id || ':' || p.id
	WHERE p.feed_id = ? AND EXISTS (SELECT 1 FROM video_settings v WHERE v.feed_id = p.feed_id AND v.enabled = 1)
	ON CONFLICT (feed_id, key) DO NOTHING`

// feedVideoRefs lists the video keys the feed references.
func feedVideoRefs(ctx context.Context, tx *sql.Tx, feedID string) ([]string, error) {
	keys, err := feedRefs(ctx, tx, feedID)
	if err != nil {
		return nil, err
	}
	out := keys[:0]
	for _, k := range keys {
		if strings.HasPrefix(k, videoPrefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// unrefVideos removes the feed's references to the video keys, drops the
// rows nothing references any more and returns their files.
func (s *Store) unrefVideos(ctx context.Context, tx *sql.Tx, feedID string, keys []string) ([]string, error) {
	for _, k := range keys {
		if !strings.HasPrefix(k, videoPrefix) {
			return nil, fmt.Errorf("%w: %q is not a video key", ErrInvalid, k)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM media_refs WHERE feed_id = ? AND key = ?`, feedID, k); err != nil {
			return nil, err
		}
	}
	return s.dropOrphans(ctx, tx, keys)
}
