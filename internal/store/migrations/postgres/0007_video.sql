-- The twin of sqlite/0007_video.sql: per feed, whether the video files of
-- its videos and reels are stored, and their caps in bytes (per file, per
-- feed). No row means off with the default caps.
CREATE TABLE video_settings (
	feed_id        TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	enabled        BIGINT NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
	max_file_bytes BIGINT NOT NULL,
	max_feed_bytes BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);
