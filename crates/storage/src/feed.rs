//! The change feed: one row per change, written in the transaction that makes it, read by
//! replicas (and streams) to learn what changed after the revision they have.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::items::{self, FLAGS, SEGMENTS};
use crate::store::{fetch_tokens_where, read_revisions};
use crate::{EnvironmentRecord, FlagRecord, Result, SegmentRecord, StoreError, TokenRecord};

/// What kind of thing a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// A flag (key).
    Flag,
    /// A segment (name).
    Segment,
    /// An environment (name).
    Environment,
    /// An API token (id).
    Token,
}

impl FeedKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FeedKind::Flag => "flag",
            FeedKind::Segment => "segment",
            FeedKind::Environment => "environment",
            FeedKind::Token => "token",
        }
    }

    fn parse(text: &str) -> Option<FeedKind> {
        [
            FeedKind::Flag,
            FeedKind::Segment,
            FeedKind::Environment,
            FeedKind::Token,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// Whether a change of this kind changes what is evaluated (flags and segments do;
    /// environments and tokens do not).
    pub fn is_ruleset(self) -> bool {
        matches!(self, FeedKind::Flag | FeedKind::Segment)
    }
}

/// Whether the thing now exists or was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedOp {
    /// Created or changed.
    Put,
    /// Deleted.
    Delete,
}

/// One change in the feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedEntry {
    /// The store revision of the transaction that made it.
    pub revision: i64,
    /// Its place among the changes of that revision.
    pub seq: i64,
    /// What it touched.
    pub kind: FeedKind,
    /// The flag key, segment name, environment name or token id.
    pub key: String,
    /// The environment the change was made for, if any.
    pub environment: Option<String>,
    /// Put or delete.
    pub op: FeedOp,
    /// Commit time, unix milliseconds.
    pub at_ms: i64,
}

/// What changed after a revision, with the current state of everything that changed, read
/// in one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The store revision the read saw; apply everything up to it.
    pub revision: i64,
    /// The last revision that changed a flag or segment.
    pub ruleset_revision: i64,
    /// The changes, in order.
    pub entries: Vec<FeedEntry>,
    /// The current rows of the changed flags that still exist.
    pub flags: Vec<FlagRecord>,
    /// The current rows of the changed segments that still exist.
    pub segments: Vec<SegmentRecord>,
    /// The current rows of the changed tokens.
    pub tokens: Vec<TokenRecord>,
    /// The current rows of the changed environments.
    pub environments: Vec<EnvironmentRecord>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Everything the store holds that a replica serves, read in one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreState {
    /// The store revision the read saw.
    pub revision: i64,
    /// The last revision that changed a flag or segment.
    pub ruleset_revision: i64,
    /// Every flag, by key.
    pub flags: Vec<FlagRecord>,
    /// Every segment, by name.
    pub segments: Vec<SegmentRecord>,
    /// Every environment, by name.
    pub environments: Vec<EnvironmentRecord>,
    /// Every token (revoked ones included), by id.
    pub tokens: Vec<TokenRecord>,
}

/// A feed row to append.
pub(crate) struct NewEntry<'a> {
    pub revision: i64,
    pub seq: i64,
    pub kind: FeedKind,
    pub key: &'a str,
    pub environment: Option<&'a str>,
    pub op: FeedOp,
    pub at_ms: i64,
}

/// Appends one feed row.
pub(crate) async fn append(conn: &mut AnyConnection, entry: &NewEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO change_feed (revision, seq, kind, key, environment, op, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.revision)
    .bind(entry.seq)
    .bind(entry.kind.as_str())
    .bind(entry.key)
    .bind(entry.environment)
    .bind(match entry.op {
        FeedOp::Put => "put",
        FeedOp::Delete => "delete",
    })
    .bind(entry.at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<FeedEntry> {
    let revision: i64 = row.try_get("revision")?;
    let corrupt = |what: &str| StoreError::Corrupt {
        subject: format!("change feed revision {revision}"),
        reason: what.to_owned(),
    };
    let kind: String = row.try_get("kind")?;
    let op: String = row.try_get("op")?;
    Ok(FeedEntry {
        revision,
        seq: row.try_get("seq")?,
        kind: FeedKind::parse(&kind).ok_or_else(|| corrupt("unknown kind"))?,
        key: row.try_get("key")?,
        environment: row.try_get("environment")?,
        op: match op.as_str() {
            "put" => FeedOp::Put,
            "delete" => FeedOp::Delete,
            _ => return Err(corrupt("unknown op")),
        },
        at_ms: row.try_get("at_ms")?,
    })
}

/// The changes after `since`, on a connection whose reads are one snapshot (a read
/// transaction, or the write transaction that holds the lock). `None` when the feed no
/// longer reaches back to `since` (the caller must reload everything).
pub(crate) async fn since(conn: &mut AnyConnection, since: i64) -> Result<Option<Changes>> {
    let (revision, ruleset_revision, floor) = read_revisions(conn).await?;
    if since < floor {
        return Ok(None);
    }
    let mut changes = Changes {
        revision,
        ruleset_revision,
        ..Changes::default()
    };
    if since >= revision {
        return Ok(Some(changes));
    }
    let rows = sqlx::query(
        "SELECT revision, seq, kind, key, environment, op, at_ms FROM change_feed \
         WHERE revision > $1 ORDER BY revision, seq",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    changes.entries = rows.iter().map(entry_from_row).collect::<Result<_>>()?;
    let has = |kind: FeedKind| changes.entries.iter().any(|e| e.kind == kind);
    let changed = |kind: FeedKind| {
        format!(
            "(SELECT key FROM change_feed WHERE revision > $1 AND kind = '{}')",
            kind.as_str()
        )
    };
    if has(FeedKind::Flag) {
        changes.flags = items::list_where(conn, &FLAGS, &changed(FeedKind::Flag), since)
            .await?
            .into_iter()
            .map(items::Item::into_flag)
            .collect();
    }
    if has(FeedKind::Segment) {
        changes.segments = items::list_where(conn, &SEGMENTS, &changed(FeedKind::Segment), since)
            .await?
            .into_iter()
            .map(items::Item::into_segment)
            .collect();
    }
    if has(FeedKind::Token) {
        changes.tokens = fetch_tokens_where(conn, &changed(FeedKind::Token), since).await?;
    }
    if has(FeedKind::Environment) {
        let rows = sqlx::query(&format!(
            "SELECT name, created_at_ms, require_approval FROM environments WHERE name IN {} ORDER BY name",
            changed(FeedKind::Environment)
        ))
        .bind(since)
        .fetch_all(&mut *conn)
        .await?;
        changes.environments = rows
            .iter()
            .map(crate::store::environment_from_row)
            .collect::<Result<_>>()?;
    }
    Ok(Some(changes))
}
