-- Switchyard storage schema, version 4 (SQLite): experiments. Keep in step with
-- ../postgres/0004_experiments.sql.

-- An experiment's definition (environment, flag, arms, metrics, audience, state and its
-- timeline) as JSON, versioned like flags. Changed only through the control layer, each
-- write audited as subject kind `experiment`. Not in the change feed: what is served (the
-- running experiment's block in its flag) reaches replicas through the flag's own change.
CREATE TABLE experiments (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- One row per experiment and unit: the first exposure while it ran (variant and time).
CREATE TABLE experiment_exposures (
    experiment     TEXT NOT NULL,
    unit           TEXT NOT NULL,
    variant        TEXT NOT NULL,
    first_at_ms    INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (experiment, unit)
);

-- SQLite cannot alter a CHECK constraint: the audit log is rebuilt with `experiment` (and
-- the automation's kinds: webhook, schedule, rollout, guard, request) among its subject kinds (ids kept; dropping a table fires no row triggers), then its indexes
-- and append-only triggers are recreated.
CREATE TABLE audit_log_v4 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_kind TEXT NOT NULL
        CHECK (subject_kind IN ('flag', 'segment', 'environment', 'token', 'experiment', 'webhook',
                            'schedule', 'rollout', 'guard', 'request')),
    subject      TEXT NOT NULL,
    environment  TEXT,
    before_json  TEXT,
    after_json   TEXT,
    reason       TEXT,
    actor_name   TEXT
);
INSERT INTO audit_log_v4
    (id, at_ms, actor, action, subject_kind, subject, environment, before_json, after_json,
     reason, actor_name)
    SELECT id, at_ms, actor, action, subject_kind, subject, environment, before_json,
           after_json, reason, actor_name
    FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_v4 RENAME TO audit_log;
CREATE INDEX audit_log_subject ON audit_log (subject_kind, subject, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at_ms, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Results read each exposed unit's events of several metrics at once: one range per unit,
-- covering (the value included), instead of the per-event-name index of version 3.
DROP INDEX metric_events_by_event;
CREATE INDEX metric_events_by_unit ON metric_events (environment, unit, event, at_ms, value);
