-- Several Instagram accounts in one feed. The account and token a feed was
-- connected to first (accounts, tokens) stay its main source, sealed under
-- their AAD as before; each further account is a row here with its own
-- sealed token (AAD "feedd/token/" || feed_id || "/" || id), status and
-- generation (bumped when this source is reconnected, so a poll or refresh
-- begun before cannot write into the new connection). Posts name their
-- source; 'main' is the feed's first account.
CREATE TABLE sources (
	feed_id            TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	id                 TEXT NOT NULL,
	position           INTEGER NOT NULL,
	app_user_id        TEXT NOT NULL,
	ig_user_id         TEXT NOT NULL,
	username           TEXT NOT NULL DEFAULT '',
	name               TEXT,
	account_type       TEXT NOT NULL DEFAULT '',
	avatar_key         TEXT,
	followers_count    INTEGER,
	follows_count      INTEGER,
	media_count        INTEGER,
	connected_at       INTEGER NOT NULL,
	status             TEXT NOT NULL DEFAULT 'active'
	                   CHECK (status IN ('active', 'needs_reauth', 'error')),
	status_reason      TEXT NOT NULL DEFAULT '',
	generation         INTEGER NOT NULL DEFAULT 0,
	fetched_at         INTEGER,
	sealed             BLOB NOT NULL,
	obtained_at        INTEGER NOT NULL,
	expires_at         INTEGER NOT NULL,
	expiry_assumed     INTEGER NOT NULL DEFAULT 0,
	refreshed_at       INTEGER,
	next_refresh_at    INTEGER,
	refresh_failures   INTEGER NOT NULL DEFAULT 0,
	last_refresh_error TEXT,
	PRIMARY KEY (feed_id, id),
	UNIQUE (feed_id, ig_user_id)
) STRICT;

CREATE INDEX sources_app_user_id ON sources (app_user_id);
CREATE INDEX sources_ig_user_id ON sources (ig_user_id);

ALTER TABLE posts ADD COLUMN source_id TEXT NOT NULL DEFAULT 'main';

-- The source whose account the header shows; 'main' by default.
ALTER TABLE feeds ADD COLUMN header_source TEXT NOT NULL DEFAULT 'main';

-- A connect flow that adds a further source rather than (re)connecting the
-- feed's main account.
ALTER TABLE oauth_states ADD COLUMN add_source INTEGER NOT NULL DEFAULT 0;

-- The claim of a further source's token refresh by one of several
-- instances (see leases.go), like tokens.refresh_holder.
ALTER TABLE sources ADD COLUMN refresh_holder TEXT;
ALTER TABLE sources ADD COLUMN refresh_until INTEGER;
