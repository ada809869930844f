-- Owner notifications (webhook events and e-mails) on their way, and the
-- record of their delivery: the feed's delivery log. A pending row is
-- claimed by one instance at a time (claimed_until) and tried again at
-- next_at until it is delivered or given up.
CREATE TABLE notifications (
	id            INTEGER PRIMARY KEY,
	feed_id       TEXT NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
	channel       TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
	event         TEXT NOT NULL,
	body          TEXT NOT NULL,
	state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
	attempts      INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	next_at       INTEGER NOT NULL,
	claimed_until INTEGER,
	finished_at   INTEGER,
	last_status   INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX notifications_due ON notifications (state, next_at);
CREATE INDEX notifications_feed ON notifications (feed_id, channel, id);
