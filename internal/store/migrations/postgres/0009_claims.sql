-- The twin of sqlite/0009_claims.sql: when the token_expiring reminder for
-- a feed's token was last sent and when the idle token was last probed,
-- each claimed by one instance; and the instance encoding an image's AVIF
-- and WebP, until when.
ALTER TABLE tokens ADD COLUMN expiry_warned_at BIGINT;
ALTER TABLE tokens ADD COLUMN probed_at BIGINT;
ALTER TABLE media ADD COLUMN format_holder TEXT;
ALTER TABLE media ADD COLUMN format_until BIGINT;
