-- Switchyard storage schema, version 1 (PostgreSQL).
-- Column types are BIGINT, TEXT and BOOLEAN: JSON is stored as TEXT, exactly as on SQLite.
-- Keep in step with ../sqlite/0001_initial.sql: one test suite runs against both.
-- Objects are created unqualified, in the first schema of the connection's search_path.
-- Names and keys use the "C" collation so that ORDER BY sorts by code point, as SQLite does.

-- Bumped by every write transaction, first thing; its row lock serializes writers.
CREATE TABLE store_revision (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);

CREATE TABLE environments (
    name          TEXT COLLATE "C" PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE flags (
    key           TEXT COLLATE "C" PRIMARY KEY,
    version       BIGINT NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    archived      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE segments (
    name          TEXT COLLATE "C" PRIMARY KEY,
    version       BIGINT NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Append-only: the trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('flag', 'segment', 'environment', 'token')),
    subject      TEXT NOT NULL,
    environment  TEXT,
    before_json  TEXT,
    after_json   TEXT,
    reason       TEXT
);
CREATE INDEX audit_log_subject ON audit_log (subject_kind, subject, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at_ms, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE tokens (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    environment   TEXT,
    secret_hash   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX tokens_active_role ON tokens (role) WHERE revoked_at_ms IS NULL;

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
