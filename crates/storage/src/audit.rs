//! The append-only audit log: appending inside a write transaction, and filtered reads.
//!
//! Rows are only ever inserted; both schemas also refuse `UPDATE` and `DELETE` with triggers.

use std::fmt::Write as _;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::{AuditEntry, AuditInfo, AuditQuery, Result, StoreError};

/// What a write appends to the log, besides the time.
pub(crate) struct Change<'a> {
    /// `flag`, `segment`, `environment` or `token`.
    pub(crate) subject_kind: &'static str,
    /// The key, name or id of the subject.
    pub(crate) subject: &'a str,
    /// Who and why.
    pub(crate) info: &'a AuditInfo,
    /// State before; `None` for a create.
    pub(crate) before: Option<&'a Value>,
    /// State after; `None` for a delete.
    pub(crate) after: Option<&'a Value>,
}

/// Appends one entry; call inside the transaction that makes the change.
pub(crate) async fn append(conn: &mut AnyConnection, at_ms: i64, change: Change<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log \
         (at_ms, actor, action, subject_kind, subject, environment, before_json, after_json, reason, actor_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(at_ms)
    .bind(change.info.actor.as_str())
    .bind(change.info.action.as_str())
    .bind(change.subject_kind)
    .bind(change.subject)
    .bind(change.info.environment.as_deref())
    .bind(change.before.map(Value::to_string))
    .bind(change.after.map(Value::to_string))
    .bind(change.info.reason.as_deref())
    .bind(change.info.actor_name.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// Appends ` AND {condition} $n` to `sql`, `$n` being `param`'s place in `params`.
fn filter<'a>(sql: &mut String, params: &mut Vec<Param<'a>>, condition: &str, param: Param<'a>) {
    params.push(param);
    // Writing to a String cannot fail.
    let _ = write!(sql, " AND {condition} ${}", params.len());
}

/// Entries matching `query`, newest first.
pub(crate) async fn query(pool: &AnyPool, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut sql = String::from(
        "SELECT id, at_ms, actor, action, subject_kind, subject, environment, \
         before_json, after_json, reason, actor_name FROM audit_log WHERE 1 = 1",
    );
    let mut params = Vec::new();
    if let Some(kind) = &query.subject_kind {
        filter(&mut sql, &mut params, "subject_kind =", Param::Text(kind));
    }
    if let Some(subject) = &query.subject {
        filter(&mut sql, &mut params, "subject =", Param::Text(subject));
    }
    if let Some(actor) = &query.actor {
        params.push(Param::Text(actor));
        let n = params.len();
        let _ = write!(sql, " AND (actor = ${n} OR actor_name = ${n})");
    }
    if let Some(since) = query.since_ms {
        filter(&mut sql, &mut params, "at_ms >=", Param::Int(since));
    }
    if let Some(until) = query.until_ms {
        filter(&mut sql, &mut params, "at_ms <", Param::Int(until));
    }
    if let Some(before) = query.before_id {
        filter(&mut sql, &mut params, "id <", Param::Int(before));
    }
    params.push(Param::Int(i64::from(query.effective_limit())));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", params.len());

    let mut select = sqlx::query(&sql);
    for param in params {
        select = match param {
            Param::Text(text) => select.bind(text),
            Param::Int(int) => select.bind(int),
        };
    }
    let rows = select.fetch_all(pool).await?;
    rows.iter().map(entry_from_row).collect()
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
    let id: i64 = row.try_get("id")?;
    let json = |column: &str| -> Result<Option<Value>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
                subject: format!("audit entry {id}"),
                reason: format!("{column} is not JSON: {err}"),
            })
        })
        .transpose()
    };
    Ok(AuditEntry {
        id,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        subject_kind: row.try_get("subject_kind")?,
        subject: row.try_get("subject")?,
        environment: row.try_get("environment")?,
        before: json("before_json")?,
        after: json("after_json")?,
        reason: row.try_get("reason")?,
    })
}
