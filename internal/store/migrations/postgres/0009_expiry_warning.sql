-- The twin of sqlite/0009_expiry_warning.sql: when the token_expiring
-- reminder for a feed's token was last sent, claimed by one instance.
ALTER TABLE tokens ADD COLUMN expiry_warned_at BIGINT;
