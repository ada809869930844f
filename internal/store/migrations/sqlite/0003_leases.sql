-- Claims of work by one of several instances sharing the database (see
-- leases.go): who polls a feed and who refreshes a token, until when.
ALTER TABLE feeds ADD COLUMN poll_holder TEXT;
ALTER TABLE feeds ADD COLUMN poll_until INTEGER;
ALTER TABLE tokens ADD COLUMN refresh_holder TEXT;
ALTER TABLE tokens ADD COLUMN refresh_until INTEGER;
