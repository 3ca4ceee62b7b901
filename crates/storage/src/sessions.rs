//! The web UI's sign-in sessions (table `ui_sessions`): outside the flag write path (no
//! revision, no audit of their own), shared by every replica.

use sqlx::Row;

use crate::{Result, Store};

/// A stored session, looked up by the hash of its cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The id of the token it was opened with (revoking the token ends the session).
    pub token_id: String,
    /// The session's anti-forgery token, sent back by the UI with every change.
    pub csrf: String,
    /// When it was opened (unix ms).
    pub created_at_ms: i64,
    /// When it was last used (unix ms, kept to within a minute).
    pub last_seen_ms: i64,
}

impl Store {
    /// Stores a new session under `id_hash`.
    pub async fn create_session(&self, id_hash: &str, record: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, token_id, csrf, created_at_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(&record.token_id)
        .bind(&record.csrf)
        .bind(record.created_at_ms)
        .bind(record.last_seen_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The session stored under `id_hash`, if any.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT token_id, csrf, created_at_ms, last_seen_ms FROM ui_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionRecord {
                token_id: r.try_get("token_id")?,
                csrf: r.try_get("csrf")?,
                created_at_ms: r.try_get("created_at_ms")?,
                last_seen_ms: r.try_get("last_seen_ms")?,
            })
        })
        .transpose()
    }

    /// Marks the session used at `now_ms`.
    pub async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE ui_sessions SET last_seen_ms = $1 WHERE id_hash = $2")
            .bind(now_ms)
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends the session; whether there was one.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session not used since `before_ms`; how many.
    pub async fn delete_idle_sessions(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM ui_sessions WHERE last_seen_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
