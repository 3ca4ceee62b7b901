-- Switchyard storage schema, version 5 (SQLite): webhooks and scheduled changes. Keep in step
-- with ../postgres/0005_automation.sql.

-- Subscriptions: URL, body format, event filter, signing secret (as JSON), versioned and
-- audited (subject kind `webhook`) like flags.
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- The outbox: one row per subscription and event, written in the transaction of the change
-- it reports, delivered at least once by whichever replica claims it first.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook          TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_at_ms       INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at_ms  INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook, id);

-- Scheduled changes: one flag operation at a time in one environment. Run by whichever replica
-- holds the global write lock first once it is due; `state` moves pending → done | failed |
-- cancelled exactly once, in the transaction of the change (or of the failure).
CREATE TABLE schedules (
    id            TEXT PRIMARY KEY,
    flag          TEXT NOT NULL,
    environment   TEXT NOT NULL,
    action        TEXT NOT NULL,
    due_at_ms     INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    created_by    TEXT NOT NULL,
    created_by_name TEXT,
    reason        TEXT,
    created_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    outcome       TEXT
);
CREATE INDEX schedules_due ON schedules (state, due_at_ms);
