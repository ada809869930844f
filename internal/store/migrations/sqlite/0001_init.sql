-- feedd's first schema. Times are INTEGER unix seconds (UTC); JSON columns
-- are TEXT. Tables are STRICT so a wrong type fails loudly.

CREATE TABLE feeds (
	id               TEXT PRIMARY KEY,
	name             TEXT NOT NULL,
	allowed_origins  TEXT NOT NULL DEFAULT '[]',
	status           TEXT NOT NULL DEFAULT 'not_connected'
	                 CHECK (status IN ('not_connected', 'active', 'needs_reauth', 'error')),
	status_reason    TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	last_viewed_at   INTEGER,
	last_fetch_at    INTEGER,
	last_fetch_ok    INTEGER,
	last_fetch_error TEXT,
	fetched_at       INTEGER,
	next_fetch_at    INTEGER,
	fetch_failures   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX feeds_due ON feeds (status, next_fetch_at);

CREATE TABLE accounts (
	feed_id         TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	app_user_id     TEXT NOT NULL,
	ig_user_id      TEXT NOT NULL,
	username        TEXT NOT NULL DEFAULT '',
	name            TEXT,
	account_type    TEXT NOT NULL DEFAULT '',
	avatar_key      TEXT,
	followers_count INTEGER,
	follows_count   INTEGER,
	media_count     INTEGER,
	connected_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX accounts_app_user_id ON accounts (app_user_id);
CREATE INDEX accounts_ig_user_id ON accounts (ig_user_id);

-- sealed is secret.Box output with AAD "feedd/token/" || feed_id.
CREATE TABLE tokens (
	feed_id            TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	sealed             BLOB NOT NULL,
	obtained_at        INTEGER NOT NULL,
	expires_at         INTEGER NOT NULL,
	expiry_assumed     INTEGER NOT NULL DEFAULT 0,
	refreshed_at       INTEGER,
	next_refresh_at    INTEGER,
	refresh_failures   INTEGER NOT NULL DEFAULT 0,
	last_refresh_error TEXT
) STRICT;

CREATE TABLE posts (
	feed_id        TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	id             TEXT NOT NULL,
	position       INTEGER NOT NULL,
	media_type     TEXT NOT NULL,
	is_reel        INTEGER NOT NULL DEFAULT 0,
	permalink      TEXT NOT NULL DEFAULT '',
	timestamp      INTEGER NOT NULL,
	caption        TEXT,
	alt_text       TEXT,
	like_count     INTEGER,
	comments_count INTEGER,
	media_key      TEXT,
	children       TEXT NOT NULL DEFAULT '[]',
	PRIMARY KEY (feed_id, id)
) STRICT;

CREATE INDEX posts_position ON posts (feed_id, position);

-- Every media key a feed references (post covers, carousel children, the
-- account's avatar), kept with the posts so orphaned images are found by
-- index instead of by scanning JSON.
CREATE TABLE media_refs (
	feed_id TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	key     TEXT NOT NULL,
	PRIMARY KEY (feed_id, key)
) STRICT;

CREATE INDEX media_refs_key ON media_refs (key);

CREATE TABLE media (
	key        TEXT PRIMARY KEY,
	width      INTEGER NOT NULL,
	height     INTEGER NOT NULL,
	color      TEXT NOT NULL DEFAULT '',
	variants   TEXT NOT NULL DEFAULT '[]',
	bytes      INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_states (
	state_hash   BLOB PRIMARY KEY,
	feed_id      TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	session_hash BLOB,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	used_at      INTEGER
) STRICT;

CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE admin (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	token_hash BLOB NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE admin_sessions (
	id_hash    BLOB PRIMARY KEY,
	csrf       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE setup_links (
	token_hash BLOB PRIMARY KEY,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER
) STRICT;

CREATE TABLE deletion_requests (
	code           TEXT PRIMARY KEY,
	kind           TEXT NOT NULL CHECK (kind IN ('deauthorize', 'delete')),
	user_id        TEXT NOT NULL,
	requested_at   INTEGER NOT NULL,
	completed_at   INTEGER,
	feeds_affected INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
