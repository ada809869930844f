-- Per feed, whether the video files of its videos and reels are stored, and
-- their caps in bytes: per file and for the feed as a whole. No row means
-- off with the default caps. The stored videos themselves are media rows
-- keyed "video:<feed id>:<post id>", referenced through media_refs like
-- images, so removed posts and disconnects drop them the same way.
CREATE TABLE video_settings (
	feed_id        TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	enabled        INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
	max_file_bytes INTEGER NOT NULL,
	max_feed_bytes INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL
) STRICT;
