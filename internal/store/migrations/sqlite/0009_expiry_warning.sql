-- When the token_expiring reminder for a feed's token was last sent: one
-- instance claims each reminder (ClaimExpiryWarning), at most one a day,
-- across instances and restarts. A reconnect clears it.
ALTER TABLE tokens ADD COLUMN expiry_warned_at INTEGER;
