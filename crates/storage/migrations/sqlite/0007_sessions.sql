-- Switchyard storage schema, version 7 (sqlite): the web UI's sign-in sessions. Keep in step with
-- the other backend's 0007_sessions.sql.

-- A session: an API token exchanged for a cookie at sign-in. Only the SHA-256 of the cookie's
-- secret is kept (a copy of this table signs no one in); the token is referenced by id, so
-- revoking it ends its sessions. Shared by every replica: a load balancer needs no stickiness.
CREATE TABLE ui_sessions (
    id_hash       TEXT PRIMARY KEY,
    token_id      TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_last_seen ON ui_sessions (last_seen_ms);
