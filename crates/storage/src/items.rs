//! Flags, segments and id-keyed records (experiments, webhooks, rollouts, guards): the same
//! versioned, audited create/update/delete over several tables.
//!
//! A flag row has an `archived` bit that a segment row lacks; otherwise the two behave alike,
//! so one implementation serves both, driven by a [`Table`] of SQL statements.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::audit::{self, Change};
use crate::store::subject;
use crate::{Expect, FlagRecord, ItemRecord, Result, SegmentRecord, StoreError, Write};

/// The statements for one kind of item. The key column is selected as `key` for both.
pub(crate) struct Table {
    /// The audit `subject_kind` and the word used in error subjects.
    kind: &'static str,
    /// Whether rows carry `archived` (flags) and inserts/updates bind it as `$4`.
    has_archived: bool,
    select_all: &'static str,
    select_one: &'static str,
    /// `SELECT … FROM table` without a condition, and the key column's name.
    select_base: &'static str,
    key_column: &'static str,
    /// Binds `$1` key, `$2` definition, `$3` now, and for flags `$4` archived.
    insert: &'static str,
    /// Binds `$1` key, `$2` definition, `$3` now, for flags `$4` archived, then the new
    /// version (`$5` for flags, `$4` for segments).
    update: &'static str,
    /// Binds `$1` key.
    delete: &'static str,
}

pub(crate) const FLAGS: Table = Table {
    kind: "flag",
    has_archived: true,
    select_all: "SELECT key, version, definition, archived, created_at_ms, updated_at_ms \
                 FROM flags ORDER BY key",
    select_one: "SELECT key, version, definition, archived, created_at_ms, updated_at_ms \
                 FROM flags WHERE key = $1",
    select_base: "SELECT key, version, definition, archived, created_at_ms, updated_at_ms \
                  FROM flags",
    key_column: "key",
    insert: "INSERT INTO flags (key, version, definition, created_at_ms, updated_at_ms, archived) \
             VALUES ($1, 1, $2, $3, $3, $4)",
    update: "UPDATE flags SET definition = $2, updated_at_ms = $3, archived = $4, version = $5 \
             WHERE key = $1",
    delete: "DELETE FROM flags WHERE key = $1",
};

pub(crate) const SEGMENTS: Table = Table {
    kind: "segment",
    has_archived: false,
    select_all: "SELECT name AS key, version, definition, created_at_ms, updated_at_ms \
                 FROM segments ORDER BY name",
    select_one: "SELECT name AS key, version, definition, created_at_ms, updated_at_ms \
                 FROM segments WHERE name = $1",
    select_base: "SELECT name AS key, version, definition, created_at_ms, updated_at_ms \
                  FROM segments",
    key_column: "name",
    insert: "INSERT INTO segments (name, version, definition, created_at_ms, updated_at_ms) \
             VALUES ($1, 1, $2, $3, $3)",
    update: "UPDATE segments SET definition = $2, updated_at_ms = $3, version = $4 \
             WHERE name = $1",
    delete: "DELETE FROM segments WHERE name = $1",
};

/// A table of records keyed by `id` with a JSON definition (experiments, webhooks, rollouts,
/// guards): the same five columns, so one macro writes their statements.
macro_rules! id_table {
    ($table:literal, $kind:literal) => {
        Table {
            kind: $kind,
            has_archived: false,
            select_all: concat!(
                "SELECT id AS key, version, definition, created_at_ms, updated_at_ms FROM ",
                $table,
                " ORDER BY id"
            ),
            select_one: concat!(
                "SELECT id AS key, version, definition, created_at_ms, updated_at_ms FROM ",
                $table,
                " WHERE id = $1"
            ),
            select_base: concat!(
                "SELECT id AS key, version, definition, created_at_ms, updated_at_ms FROM ",
                $table
            ),
            key_column: "id",
            insert: concat!(
                "INSERT INTO ",
                $table,
                " (id, version, definition, created_at_ms, updated_at_ms) VALUES ($1, 1, $2, $3, $3)"
            ),
            update: concat!(
                "UPDATE ",
                $table,
                " SET definition = $2, updated_at_ms = $3, version = $4 WHERE id = $1"
            ),
            delete: concat!("DELETE FROM ", $table, " WHERE id = $1"),
        }
    };
}

pub(crate) const EXPERIMENTS: Table = id_table!("experiments", "experiment");
pub(crate) const WEBHOOKS: Table = id_table!("webhooks", "webhook");
pub(crate) const ROLLOUTS: Table = id_table!("rollouts", "rollout");
pub(crate) const GUARDS: Table = id_table!("guards", "guard");
pub(crate) const REQUESTS: Table = id_table!("change_requests", "request");

/// The kinds of [`ItemRecord`]: records keyed by id, versioned and audited like flags, that
/// are not in the change feed (what they serve changes through their flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// An experiment.
    Experiment,
    /// A webhook subscription.
    Webhook,
    /// A progressive rollout.
    Rollout,
    /// A guard (automatic kill switch).
    Guard,
    /// A change request waiting for (or decided by) someone's approval.
    Request,
}

impl ItemKind {
    pub(crate) fn table(self) -> &'static Table {
        match self {
            ItemKind::Experiment => &EXPERIMENTS,
            ItemKind::Webhook => &WEBHOOKS,
            ItemKind::Rollout => &ROLLOUTS,
            ItemKind::Guard => &GUARDS,
            ItemKind::Request => &REQUESTS,
        }
    }
}

/// A stored flag, segment or id-keyed record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    key: String,
    version: i64,
    definition: Value,
    archived: bool,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl Item {
    pub(crate) fn into_flag(self) -> FlagRecord {
        FlagRecord {
            key: self.key,
            version: self.version,
            definition: self.definition,
            archived: self.archived,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }

    /// An experiment or a webhook subscription.
    pub(crate) fn into_record(self) -> ItemRecord {
        ItemRecord {
            id: self.key,
            version: self.version,
            definition: self.definition,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }

    pub(crate) fn into_segment(self) -> SegmentRecord {
        SegmentRecord {
            name: self.key,
            version: self.version,
            definition: self.definition,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

fn item_from_row(table: &Table, row: &AnyRow) -> Result<Item> {
    let key: String = row.try_get("key")?;
    let text: String = row.try_get("definition")?;
    let definition = serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        subject: subject(table.kind, &key),
        reason: format!("the stored definition is not JSON: {err}"),
    })?;
    let archived = if table.has_archived {
        get_bool(row, "archived")?
    } else {
        false
    };
    Ok(Item {
        version: row.try_get("version")?,
        definition,
        archived,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        key,
    })
}

/// Reads a boolean column: PostgreSQL returns a `BOOLEAN`, SQLite (which has no boolean
/// storage class) the integer 0 or 1.
pub(crate) fn get_bool(row: &AnyRow, column: &str) -> Result<bool> {
    match row.try_get::<bool, _>(column) {
        Ok(value) => Ok(value),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

pub(crate) async fn list(pool: &AnyPool, table: &Table) -> Result<Vec<Item>> {
    let rows = sqlx::query(table.select_all).fetch_all(pool).await?;
    rows.iter().map(|row| item_from_row(table, row)).collect()
}

/// Every item, on one connection (inside a snapshot read).
pub(crate) async fn list_on(conn: &mut AnyConnection, table: &Table) -> Result<Vec<Item>> {
    let rows = sqlx::query(table.select_all).fetch_all(conn).await?;
    rows.iter().map(|row| item_from_row(table, row)).collect()
}

/// The items whose key is in `keys` (a subquery taking `$1` = `param`), by key.
pub(crate) async fn list_where(
    conn: &mut AnyConnection,
    table: &Table,
    keys: &str,
    param: i64,
) -> Result<Vec<Item>> {
    let sql = format!(
        "{} WHERE {} IN {keys} ORDER BY {}",
        table.select_base, table.key_column, table.key_column
    );
    let rows = sqlx::query(&sql).bind(param).fetch_all(conn).await?;
    rows.iter().map(|row| item_from_row(table, row)).collect()
}

pub(crate) async fn get(
    conn: &mut AnyConnection,
    table: &Table,
    key: &str,
) -> Result<Option<Item>> {
    let row = sqlx::query(table.select_one)
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.map(|row| item_from_row(table, &row)).transpose()
}

/// Applies one write inside a write transaction (see `Store::begin_write`): checks the
/// expectation, changes the row, appends the audit entry. On `Err` the caller must not commit.
pub(crate) async fn write(
    conn: &mut AnyConnection,
    table: &Table,
    write: &Write,
    now: i64,
) -> Result<Option<Item>> {
    let current = get(conn, table, &write.key).await?;
    let subject = || subject(table.kind, &write.key);
    match (write.expect, &current) {
        (Expect::Absent, Some(current)) => {
            return Err(StoreError::Conflict {
                subject: subject(),
                expected: None,
                actual: Some(current.version),
            })
        }
        (Expect::Exists | Expect::Version(_), None) => {
            return Err(StoreError::NotFound { subject: subject() })
        }
        (Expect::Version(expected), Some(current)) if current.version != expected => {
            return Err(StoreError::Conflict {
                subject: subject(),
                expected: Some(expected),
                actual: Some(current.version),
            })
        }
        _ => {}
    }

    let archived = table.has_archived && write.archived;
    let written = match (&write.definition, &current) {
        (Some(definition), None) => {
            let query = sqlx::query(table.insert)
                .bind(write.key.as_str())
                .bind(definition.to_string())
                .bind(now);
            let query = if table.has_archived {
                query.bind(archived)
            } else {
                query
            };
            query.execute(&mut *conn).await?;
            Some(Item {
                key: write.key.clone(),
                version: 1,
                definition: definition.clone(),
                archived,
                created_at_ms: now,
                updated_at_ms: now,
            })
        }
        (Some(definition), Some(current)) => {
            let version = current
                .version
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt {
                    subject: subject(),
                    reason: "the version cannot be increased any further".into(),
                })?;
            let query = sqlx::query(table.update)
                .bind(write.key.as_str())
                .bind(definition.to_string())
                .bind(now);
            let query = if table.has_archived {
                query.bind(archived)
            } else {
                query
            };
            query.bind(version).execute(&mut *conn).await?;
            Some(Item {
                key: write.key.clone(),
                version,
                definition: definition.clone(),
                archived,
                created_at_ms: current.created_at_ms,
                updated_at_ms: now,
            })
        }
        (None, Some(_)) => {
            sqlx::query(table.delete)
                .bind(write.key.as_str())
                .execute(&mut *conn)
                .await?;
            None
        }
        (None, None) => return Err(StoreError::NotFound { subject: subject() }),
    };

    audit::append(
        conn,
        now,
        Change {
            subject_kind: table.kind,
            subject: &write.key,
            info: &write.audit,
            before: current.as_ref().map(|item| &item.definition),
            after: write.definition.as_ref(),
        },
    )
    .await?;
    Ok(written)
}
