-- Switchyard storage schema, version 1 (SQLite).
-- Column types are INTEGER and TEXT only: JSON is stored as TEXT, booleans as 0/1.
-- Keep in step with ../postgres/0001_initial.sql: one test suite runs against both.

-- Bumped by every write transaction, first thing, so it also serializes writers.
CREATE TABLE store_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);

CREATE TABLE environments (
    name          TEXT PRIMARY KEY NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE flags (
    key           TEXT PRIMARY KEY NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE segments (
    name          TEXT PRIMARY KEY NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- Append-only: AUTOINCREMENT never reuses an id, and the triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
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
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    environment   TEXT,
    secret_hash   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX tokens_active_role ON tokens (role) WHERE revoked_at_ms IS NULL;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
