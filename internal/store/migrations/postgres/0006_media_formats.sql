-- The twin of sqlite/0006_media_formats.sql: the formats encoded beside a
-- stored image's JPEGs, and the failures of the background encoder.
ALTER TABLE media ADD COLUMN formats TEXT NOT NULL DEFAULT '';
ALTER TABLE media ADD COLUMN format_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE media ADD COLUMN format_retry_at BIGINT NOT NULL DEFAULT 0;
