-- A feed's connection generation: bumped by every connect, disconnect and
-- data deletion. Writes of a poll or a refresh name the generation they
-- started under and are refused once it has moved on.
ALTER TABLE feeds ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
