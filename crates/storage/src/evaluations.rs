//! Last-evaluated times per environment and flag (see the server's `evaluated` module): an
//! upsert keeping the later time, outside the flag write path (no revision, no audit).

use sqlx::Row;

use crate::{Result, Store};

/// The meta key holding when last-evaluated times started being recorded (unix ms): a flag
/// is only called unevaluated for N days once they have been recorded for N days.
const TRACKED_SINCE: &str = "evaluations-tracked-since";

impl Store {
    /// Records `(environment, flag, unix ms)` rows, keeping the later of the stored and the
    /// given time; the first call (at `now_ms`) starts the record.
    pub async fn record_evaluations(
        &self,
        rows: &[(String, String, i64)],
        now_ms: i64,
    ) -> Result<()> {
        // Kept from the first call on (one statement, whoever flushes first).
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(TRACKED_SINCE)
            .bind(now_ms.to_string())
            .execute(self.pool())
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for (env, flag, at) in rows {
            sqlx::query(
                "INSERT INTO flag_evaluations (environment, flag, last_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (environment, flag) DO UPDATE SET last_at_ms = \
                 CASE WHEN excluded.last_at_ms > flag_evaluations.last_at_ms \
                 THEN excluded.last_at_ms ELSE flag_evaluations.last_at_ms END",
            )
            .bind(env)
            .bind(flag)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every recorded `(environment, flag, unix ms)`, and since when they are recorded.
    pub async fn last_evaluations(&self) -> Result<(Vec<(String, String, i64)>, Option<i64>)> {
        let rows = sqlx::query("SELECT environment, flag, last_at_ms FROM flag_evaluations")
            .fetch_all(self.pool())
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("environment")?,
                    r.try_get("flag")?,
                    r.try_get("last_at_ms")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let since = self
            .get_meta(TRACKED_SINCE)
            .await?
            .and_then(|v| v.parse().ok());
        Ok((rows, since))
    }
}
