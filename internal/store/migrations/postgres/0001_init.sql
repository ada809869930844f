-- feedd's first schema on PostgreSQL, the twin of sqlite/0001_init.sql.
-- Times are BIGINT unix seconds (UTC); JSON columns are TEXT; booleans are
-- BIGINT 0/1, so every query reads the same on both engines.

CREATE TABLE feeds (
	id               TEXT PRIMARY KEY,
	name             TEXT NOT NULL,
	allowed_origins  TEXT NOT NULL DEFAULT '[]',
	status           TEXT NOT NULL DEFAULT 'not_connected'
	                 CHECK (status IN ('not_connected', 'active', 'needs_reauth', 'error')),
	status_reason    TEXT NOT NULL DEFAULT '',
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	last_viewed_at   BIGINT,
	last_fetch_at    BIGINT,
	last_fetch_ok    BIGINT,
	last_fetch_error TEXT,
	fetched_at       BIGINT,
	next_fetch_at    BIGINT,
	fetch_failures   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX feeds_due ON feeds (status, next_fetch_at);

CREATE TABLE accounts (
	feed_id         TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	app_user_id     TEXT NOT NULL,
	ig_user_id      TEXT NOT NULL,
	username        TEXT NOT NULL DEFAULT '',
	name            TEXT,
	account_type    TEXT NOT NULL DEFAULT '',
	avatar_key      TEXT,
	followers_count BIGINT,
	follows_count   BIGINT,
	media_count     BIGINT,
	connected_at    BIGINT NOT NULL
);

CREATE INDEX accounts_app_user_id ON accounts (app_user_id);
CREATE INDEX accounts_ig_user_id ON accounts (ig_user_id);

-- sealed is secret.Box output with AAD "feedd/token/" || feed_id.
CREATE TABLE tokens (
	feed_id            TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	sealed             BYTEA NOT NULL,
	obtained_at        BIGINT NOT NULL,
	expires_at         BIGINT NOT NULL,
	expiry_assumed     BIGINT NOT NULL DEFAULT 0,
	refreshed_at       BIGINT,
	next_refresh_at    BIGINT,
	refresh_failures   BIGINT NOT NULL DEFAULT 0,
	last_refresh_error TEXT
);

CREATE TABLE posts (
	feed_id        TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	id             TEXT NOT NULL,
	position       BIGINT NOT NULL,
	media_type     TEXT NOT NULL,
	is_reel        BIGINT NOT NULL DEFAULT 0,
	permalink      TEXT NOT NULL DEFAULT '',
	timestamp      BIGINT NOT NULL,
	caption        TEXT,
	alt_text       TEXT,
	like_count     BIGINT,
	comments_count BIGINT,
	media_key      TEXT,
	children       TEXT NOT NULL DEFAULT '[]',
	PRIMARY KEY (feed_id, id)
);

CREATE INDEX posts_position ON posts (feed_id, position);

-- Every media key a feed references (post covers, carousel children, the
-- account's avatar), kept with the posts so orphaned images are found by
-- index instead of by scanning JSON.
CREATE TABLE media_refs (
	feed_id TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	key     TEXT NOT NULL,
	PRIMARY KEY (feed_id, key)
);

CREATE INDEX media_refs_key ON media_refs (key);

CREATE TABLE media (
	key        TEXT PRIMARY KEY,
	width      BIGINT NOT NULL,
	height     BIGINT NOT NULL,
	color      TEXT NOT NULL DEFAULT '',
	variants   TEXT NOT NULL DEFAULT '[]',
	bytes      BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);

CREATE TABLE oauth_states (
	state_hash   BYTEA PRIMARY KEY,
	feed_id      TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	session_hash BYTEA,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	used_at      BIGINT
);

CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE admin (
	id         BIGINT PRIMARY KEY CHECK (id = 1),
	token_hash BYTEA NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE TABLE admin_sessions (
	id_hash    BYTEA PRIMARY KEY,
	csrf       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);

CREATE TABLE setup_links (
	token_hash BYTEA PRIMARY KEY,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT
);

CREATE TABLE deletion_requests (
	code           TEXT PRIMARY KEY,
	kind           TEXT NOT NULL CHECK (kind IN ('deauthorize', 'delete')),
	user_id        TEXT NOT NULL,
	requested_at   BIGINT NOT NULL,
	completed_at   BIGINT,
	feeds_affected BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BYTEA NOT NULL
);
