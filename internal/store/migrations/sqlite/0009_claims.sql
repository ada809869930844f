-- When the token_expiring reminder for a feed's token was last sent, and
-- when the idle token was last probed: one instance claims each
-- (ClaimTokenTask), so several instances and restarts do it once per
-- period between them. A reconnect clears both.
ALTER TABLE tokens ADD COLUMN expiry_warned_at INTEGER;
ALTER TABLE tokens ADD COLUMN probed_at INTEGER;

-- The instance encoding an image's AVIF and WebP, until when
-- (ClaimFormats): the others leave that image alone meanwhile.
ALTER TABLE media ADD COLUMN format_holder TEXT;
ALTER TABLE media ADD COLUMN format_until INTEGER;
