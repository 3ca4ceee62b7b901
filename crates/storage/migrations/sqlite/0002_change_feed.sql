-- Switchyard storage schema, version 2 (SQLite): the change feed, the ruleset revision,
-- stable audit actors and unique token names. Keep in step with ../postgres/0002_change_feed.sql.

-- Every change, written in the transaction that makes it: replicas and streams read what
-- changed after the revision they have. `seq` orders the changes of one revision (an import
-- writes many). Rows at or below `store_revision.feed_floor` have been pruned.
CREATE TABLE change_feed (
    revision    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('flag', 'segment', 'environment', 'token')),
    key         TEXT NOT NULL,
    environment TEXT,
    op          TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
);

-- The last revision that changed a flag or segment (token changes do not change what is
-- served), and the revision up to which the feed was pruned (none yet: nothing before this
-- migration is in it, so a replica older than this reloads everything).
ALTER TABLE store_revision ADD COLUMN ruleset_revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_revision ADD COLUMN feed_floor INTEGER NOT NULL DEFAULT 0;
UPDATE store_revision SET ruleset_revision = revision, feed_floor = revision;

-- `actor` is now a stable id (`token:<id>`, `system`); `actor_name` what it was called then.
ALTER TABLE audit_log ADD COLUMN actor_name TEXT;

-- Names of active tokens are unique (they label audit entries): older duplicates get their
-- id appended.
UPDATE tokens SET name = name || '-' || id
WHERE revoked_at_ms IS NULL
  AND id NOT IN (SELECT MIN(id) FROM tokens WHERE revoked_at_ms IS NULL GROUP BY name);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at_ms IS NULL;
