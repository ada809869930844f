-- Claims of work by one of several instances sharing the database (see
-- leases.go), the twin of sqlite/0003_leases.sql: who polls a feed and who
-- refreshes a token, until when.
ALTER TABLE feeds ADD COLUMN poll_holder TEXT;
ALTER TABLE feeds ADD COLUMN poll_until BIGINT;
ALTER TABLE tokens ADD COLUMN refresh_holder TEXT;
ALTER TABLE tokens ADD COLUMN refresh_until BIGINT;
