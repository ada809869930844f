-- What the owner chose each feed to show: hidden and pinned post ids (in
-- pin order), caption rules, the post types shown and a cap, as JSON
-- arrays of strings. Kept across reconnects: the rules stay meaningful,
-- and ids of posts no longer stored match nothing.
CREATE TABLE curations (
	feed_id       TEXT PRIMARY KEY REFERENCES feeds (id) ON DELETE CASCADE,
	hidden        TEXT NOT NULL DEFAULT '[]',
	pinned        TEXT NOT NULL DEFAULT '[]',
	include_rules TEXT NOT NULL DEFAULT '[]',
	exclude_rules TEXT NOT NULL DEFAULT '[]',
	types         TEXT NOT NULL DEFAULT '[]',
	max_posts     INTEGER NOT NULL DEFAULT 0,
	updated_at    INTEGER NOT NULL
) STRICT;
