-- Switchyard storage schema, version 4 (PostgreSQL): experiments. Keep in step with
-- ../sqlite/0004_experiments.sql.

-- An experiment's definition (environment, flag, arms, metrics, audience, state and its
-- timeline) as JSON, versioned like flags. Changed only through the control layer, each
-- write audited as subject kind `experiment`. Not in the change feed: what is served (the
-- running experiment's block in its flag) reaches replicas through the flag's own change.
CREATE TABLE experiments (
    id            TEXT COLLATE "C" PRIMARY KEY,
    version       BIGINT NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- One row per experiment and unit: the first exposure while it ran (variant and time).
CREATE TABLE experiment_exposures (
    experiment     TEXT NOT NULL,
    unit           TEXT NOT NULL,
    variant        TEXT NOT NULL,
    first_at_ms    BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (experiment, unit)
);

ALTER TABLE audit_log DROP CONSTRAINT audit_log_subject_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_subject_kind_check
    CHECK (subject_kind IN ('flag', 'segment', 'environment', 'token', 'experiment', 'webhook',
                            'schedule', 'rollout', 'guard', 'request'));

-- Results read each exposed unit's events of several metrics at once: one range per unit,
-- covering (the value included), instead of the per-event-name index of version 3.
DROP INDEX metric_events_by_event;
CREATE INDEX metric_events_by_unit ON metric_events (environment, unit, event, at_ms, value);
