-- The twin of sqlite/0008_sources.sql: a feed's further Instagram accounts,
-- each with its own sealed token (AAD "feedd/token/" || feed_id || "/" ||
-- id), status and generation; posts name their source ('main' is the
-- feed's first account, kept in accounts and tokens).
CREATE TABLE sources (
	feed_id            TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	id                 TEXT NOT NULL,
	position           BIGINT NOT NULL,
	app_user_id        TEXT NOT NULL,
	ig_user_id         TEXT NOT NULL,
	username           TEXT NOT NULL DEFAULT '',
	name               TEXT,
	account_type       TEXT NOT NULL DEFAULT '',
	avatar_key         TEXT,
	followers_count    BIGINT,
	follows_count      BIGINT,
	media_count        BIGINT,
	connected_at       BIGINT NOT NULL,
	status             TEXT NOT NULL DEFAULT 'active'
	                   CHECK (status IN ('active', 'needs_reauth', 'error')),
	status_reason      TEXT NOT NULL DEFAULT '',
	generation         BIGINT NOT NULL DEFAULT 0,
	fetched_at         BIGINT,
	sealed             BYTEA NOT NULL,
	obtained_at        BIGINT NOT NULL,
	expires_at         BIGINT NOT NULL,
	expiry_assumed     BIGINT NOT NULL DEFAULT 0,
	refreshed_at       BIGINT,
	next_refresh_at    BIGINT,
	refresh_failures   BIGINT NOT NULL DEFAULT 0,
	last_refresh_error TEXT,
	PRIMARY KEY (feed_id, id),
	UNIQUE (feed_id, ig_user_id)
);

CREATE INDEX sources_app_user_id ON sources (app_user_id);
CREATE INDEX sources_ig_user_id ON sources (ig_user_id);

ALTER TABLE posts ADD COLUMN source_id TEXT NOT NULL DEFAULT 'main';

ALTER TABLE feeds ADD COLUMN header_source TEXT NOT NULL DEFAULT 'main';

-- A connect flow that adds a further source rather than (re)connecting the
-- feed's main account.
ALTER TABLE oauth_states ADD COLUMN add_source BIGINT NOT NULL DEFAULT 0;

-- The claim of a further source's token refresh by one of several
-- instances (see leases.go), like tokens.refresh_holder.
ALTER TABLE sources ADD COLUMN refresh_holder TEXT;
ALTER TABLE sources ADD COLUMN refresh_until BIGINT;
