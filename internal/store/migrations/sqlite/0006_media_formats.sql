-- The formats encoded beside a stored image's JPEGs (AVIF, WebP) by the
-- background encoder. formats lists those done, comma-separated and sorted
-- ("avif,webp"); the encoder's pending set is the rows lacking a wanted
-- format, so a restart resumes where it stopped. A failed attempt is
-- counted and retried after format_retry_at (unix seconds), up to a limit.
ALTER TABLE media ADD COLUMN formats TEXT NOT NULL DEFAULT '';
ALTER TABLE media ADD COLUMN format_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE media ADD COLUMN format_retry_at INTEGER NOT NULL DEFAULT 0;
