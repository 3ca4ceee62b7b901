-- Switchyard storage schema, version 5 (PostgreSQL): webhooks and scheduled changes. Keep in step
-- with ../sqlite/0005_automation.sql.

-- Subscriptions: URL, body format, event filter, signing secret (as JSON), versioned and
-- audited (subject kind `webhook`) like flags.
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    version       BIGINT NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- The outbox: one row per subscription and event, written in the transaction of the change
-- it reports, delivered at least once by whichever replica claims it first.
CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook          TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_at_ms       BIGINT NOT NULL,
    claimed_until_ms BIGINT NOT NULL DEFAULT 0,
    last_status      BIGINT,
    last_error       TEXT,
    delivered_at_ms  BIGINT
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
    due_at_ms     BIGINT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    created_by    TEXT NOT NULL,
    created_by_name TEXT,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    outcome       TEXT
);
CREATE INDEX schedules_due ON schedules (state, due_at_ms);
