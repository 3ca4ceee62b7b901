-- Switchyard storage schema, version 3 (PostgreSQL): experiment events. Keep in step with
-- ../sqlite/0003_events.sql.
--
-- Events are appended in batches outside the flag write path: no revision, no change feed, no
-- audit row (they are observations, not changes), so they never wake replicas or streams.

-- One row per unit and flag: the first exposure (its variant and time) is what analysis uses.
CREATE TABLE exposures (
    environment    TEXT NOT NULL,
    flag           TEXT NOT NULL,
    unit           TEXT NOT NULL,
    variant        TEXT NOT NULL,
    first_at_ms    BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, flag, unit)
);

-- Metric events, idempotent on the client's event id within an environment.
CREATE TABLE metric_events (
    environment    TEXT NOT NULL,
    id             TEXT NOT NULL,
    unit           TEXT NOT NULL,
    event          TEXT NOT NULL,
    value          DOUBLE PRECISION,
    at_ms          BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (environment, id)
);

CREATE INDEX metric_events_by_event ON metric_events (environment, event, unit, at_ms);
