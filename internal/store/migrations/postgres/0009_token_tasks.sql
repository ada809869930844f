-- The twin of sqlite/0009_token_tasks.sql: when the token_expiring
-- reminder for a feed's token was last sent, and when the idle token was
-- last probed, each claimed by one instance.
ALTER TABLE tokens ADD COLUMN expiry_warned_at BIGINT;
ALTER TABLE tokens ADD COLUMN probed_at BIGINT;
