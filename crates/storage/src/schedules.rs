//! Scheduled changes: stored, claimed and finished inside write transactions (so the global
//! write lock makes each run exactly once across replicas), listed from the pool.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::tx::WriteTx;
use crate::{AuditInfo, Result, Store, StoreError};

/// A scheduled flag operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    /// Unique id.
    pub id: String,
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// The operation, as the control layer wrote it (`{"op": "enable"}`, …).
    pub action: Value,
    /// When it is due, unix ms.
    pub due_at_ms: i64,
    /// `pending`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Who set it up (an actor id).
    pub created_by: String,
    /// Their name then.
    pub created_by_name: Option<String>,
    /// Why it was set up.
    pub reason: Option<String>,
    /// When it was set up, unix ms.
    pub created_at_ms: i64,
    /// When it ran, failed or was cancelled, unix ms.
    pub finished_at_ms: Option<i64>,
    /// What happened (`ran 3 s late`, the reason it failed, …).
    pub outcome: Option<String>,
}

impl ScheduleRecord {
    fn audit_json(&self) -> Value {
        json!({
            "id": self.id, "flag": self.flag, "environment": self.environment,
            "action": self.action, "dueAtMs": self.due_at_ms, "state": self.state,
            "createdBy": self.created_by, "outcome": self.outcome,
        })
    }
}

const COLUMNS: &str = "id, flag, environment, action, due_at_ms, state, created_by, \
                       created_by_name, reason, created_at_ms, finished_at_ms, outcome";

fn record(row: &AnyRow) -> Result<ScheduleRecord> {
    let id: String = row.try_get("id")?;
    let action: String = row.try_get("action")?;
    Ok(ScheduleRecord {
        action: serde_json::from_str(&action).map_err(|e| StoreError::Corrupt {
            subject: format!("schedule `{id}`"),
            reason: format!("its action is not JSON: {e}"),
        })?,
        id,
        flag: row.try_get("flag")?,
        environment: row.try_get("environment")?,
        due_at_ms: row.try_get("due_at_ms")?,
        state: row.try_get("state")?,
        created_by: row.try_get("created_by")?,
        created_by_name: row.try_get("created_by_name")?,
        reason: row.try_get("reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        outcome: row.try_get("outcome")?,
    })
}

async fn one(conn: &mut AnyConnection, id: &str) -> Result<Option<ScheduleRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(record).transpose()
}

impl WriteTx {
    /// Stores a new pending schedule, audited (`info.action`, subject kind `schedule`).
    pub async fn insert_schedule(&mut self, s: &ScheduleRecord, info: &AuditInfo) -> Result<()> {
        let now = self.now_ms();
        let conn = self.conn();
        if one(conn, &s.id).await?.is_some() {
            return Err(StoreError::Conflict {
                subject: format!("schedule `{}`", s.id),
                expected: None,
                actual: None,
            });
        }
        sqlx::query(
            "INSERT INTO schedules (id, flag, environment, action, due_at_ms, state, created_by, \
             created_by_name, reason, created_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9)",
        )
        .bind(s.id.as_str())
        .bind(s.flag.as_str())
        .bind(s.environment.as_str())
        .bind(s.action.to_string())
        .bind(s.due_at_ms)
        .bind(s.created_by.as_str())
        .bind(s.created_by_name.as_deref())
        .bind(s.reason.as_deref())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let after = s.audit_json();
        audit::append(
            conn,
            now,
            Change {
                subject_kind: "schedule",
                subject: &s.id,
                info,
                before: None,
                after: Some(&after),
            },
        )
        .await?;
        self.mark_written();
        Ok(())
    }

    /// The schedule `id`, read under the write lock.
    pub async fn schedule(&mut self, id: &str) -> Result<Option<ScheduleRecord>> {
        one(self.conn(), id).await
    }

    /// The oldest pending schedule due at `now_ms`, if any.
    pub async fn next_due_schedule(&mut self, now_ms: i64) -> Result<Option<ScheduleRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM schedules WHERE state = 'pending' AND due_at_ms <= $1 \
             ORDER BY due_at_ms, id LIMIT 1"
        ))
        .bind(now_ms)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Moves a pending schedule to `state` (`done`, `failed`, `cancelled`) with `outcome`,
    /// audited; [`StoreError::Conflict`] if it is no longer pending.
    pub async fn finish_schedule(
        &mut self,
        id: &str,
        state: &str,
        outcome: &str,
        info: &AuditInfo,
    ) -> Result<ScheduleRecord> {
        let now = self.now_ms();
        let conn = self.conn();
        let before = one(conn, id).await?.ok_or_else(|| StoreError::NotFound {
            subject: format!("schedule `{id}`"),
        })?;
        if before.state != "pending" {
            return Err(StoreError::Conflict {
                subject: format!("schedule `{id}` ({})", before.state),
                expected: None,
                actual: None,
            });
        }
        sqlx::query(
            "UPDATE schedules SET state = $2, outcome = $3, finished_at_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(outcome)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let mut after = before.clone();
        after.state = state.to_owned();
        after.outcome = Some(outcome.to_owned());
        after.finished_at_ms = Some(now);
        audit::append(
            conn,
            now,
            Change {
                subject_kind: "schedule",
                subject: id,
                info,
                before: Some(&before.audit_json()),
                after: Some(&after.audit_json()),
            },
        )
        .await?;
        self.mark_written();
        Ok(after)
    }
}

impl Store {
    /// Every schedule, soonest due first.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM schedules ORDER BY due_at_ms, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record).collect()
    }
}
