-- Switchyard storage schema, version 6 (SQLite): progressive rollouts, guards and approvals. Keep in
-- step with ../postgres/0006_rollouts.sql.

-- A progressive rollout: its plan (stages, gates, what to do on red) and its state (stage,
-- status, history), versioned and audited (subject kind `rollout`) like flags. Every
-- automatic step is a version-checked write, so two replicas never both advance it.
CREATE TABLE rollouts (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- A guard: the automatic kill switch of one flag in one environment.
CREATE TABLE guards (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- The latest gate readings of a rollout or guard (`rollout:<id>`, `guard:<id>`): written at
-- every check, so not audited and not a revision (a reading changes nothing that is served).
CREATE TABLE gate_readings (
    subject  TEXT PRIMARY KEY,
    readings TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);

-- Guards count an environment's recent events by name; events arrive in received order, so
-- this index grows at its end instead of in the middle.
CREATE INDEX metric_events_recent ON metric_events (environment, received_at_ms, event);

-- Four-eyes: in an environment that requires approval, a person's change to a flag becomes a
-- change request (the proposed definition, the version it was made against) that someone
-- else approves or rejects.
ALTER TABLE environments ADD COLUMN require_approval INTEGER NOT NULL DEFAULT 0 CHECK (require_approval IN (0, 1));

CREATE TABLE change_requests (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- When each flag was last evaluated in each environment (to within a minute), for the
-- stale-flag report. Written by each replica from memory once a minute, never per evaluation.
CREATE TABLE flag_evaluations (
    environment TEXT NOT NULL,
    flag        TEXT NOT NULL,
    last_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (environment, flag)
);
