-- The twin of sqlite/0005_curation.sql: what the owner chose each feed to
-- show (hidden and pinned post ids in pin order, caption rules, the post
-- types shown, a cap), lists as JSON arrays of strings.
CREATE TABLE curations (
	feed_id       TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	hidden        TEXT NOT NULL DEFAULT '[]',
	pinned        TEXT NOT NULL DEFAULT '[]',
	include_rules TEXT NOT NULL DEFAULT '[]',
	exclude_rules TEXT NOT NULL DEFAULT '[]',
	types         TEXT NOT NULL DEFAULT '[]',
	max_posts     BIGINT NOT NULL DEFAULT 0,
	updated_at    BIGINT NOT NULL
);
