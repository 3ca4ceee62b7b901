//! The records the store reads and writes, and the requests that change them.

use serde::Serialize;
use serde_json::Value;
pub use switchyard_api_types::Role;

/// A named environment (e.g. `production`). Flag definitions carry per-environment settings;
/// this table says which environments exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentRecord {
    /// Unique name.
    pub name: String,
    /// When it was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// Whether a person's change to a flag here waits for someone else's approval.
    pub require_approval: bool,
}

/// A stored flag: its definition (opaque JSON to the store) and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagRecord {
    /// Unique flag key.
    pub key: String,
    /// Starts at 1, increases by exactly 1 on every write.
    pub version: i64,
    /// The flag definition as the admin API accepted it.
    pub definition: Value,
    /// Archived flags are kept (and audited) but no longer served.
    pub archived: bool,
    /// When the flag was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// When the flag was last written, in unix milliseconds.
    pub updated_at_ms: i64,
}

/// A stored segment: a reusable set of conditions referenced by flags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRecord {
    /// Unique segment name.
    pub name: String,
    /// Starts at 1, increases by exactly 1 on every write.
    pub version: i64,
    /// The segment definition as the admin API accepted it.
    pub definition: Value,
    /// When the segment was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// When the segment was last written, in unix milliseconds.
    pub updated_at_ms: i64,
}

/// A stored experiment or webhook subscription: its definition (opaque JSON to the store) and
/// bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRecord {
    /// Unique id.
    pub id: String,
    /// Starts at 1, increases by exactly 1 on every write.
    pub version: i64,
    /// The definition as the control layer wrote it.
    pub definition: Value,
    /// When it was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// When it was last written, in unix milliseconds.
    pub updated_at_ms: i64,
}

/// A create, update or delete of one flag, segment or experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The flag key or segment name.
    pub key: String,
    /// What the caller believes is stored; checked before anything changes.
    pub expect: Expect,
    /// The new definition; `None` deletes.
    pub definition: Option<Value>,
    /// The new archived bit (flags only; ignored for segments and deletes).
    pub archived: bool,
    /// Who is writing and why; becomes the audit entry.
    pub audit: AuditInfo,
}

/// What a [`Write`] expects to find stored (optimistic concurrency).
///
/// A failed expectation changes nothing and writes no audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Must not exist (a create): `Conflict` if it does.
    Absent,
    /// Must exist, any version: `NotFound` otherwise.
    Exists,
    /// Must exist at exactly this version: `NotFound` if missing, `Conflict` (carrying the
    /// actual version) if it is at another.
    Version(i64),
    /// No expectation: creates or updates (an upsert). A delete still needs something to delete.
    Any,
}

/// Who made a change, what they called it, and why. Every write carries one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AuditInfo {
    /// The principal, as a stable id nobody can choose: `token:<id>`, `system`, `scheduler`.
    pub actor: String,
    /// What the principal was called when it acted (a token's name), for people.
    pub actor_name: Option<String>,
    /// What was done, in the caller's vocabulary (e.g. `flag.update`, `import`).
    pub action: String,
    /// The environment the change was made for, if any.
    pub environment: Option<String>,
    /// The reason the actor gave, if any.
    pub reason: Option<String>,
}

impl AuditInfo {
    /// An audit record with no environment and no reason.
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> AuditInfo {
        AuditInfo {
            actor: actor.into(),
            actor_name: None,
            action: action.into(),
            environment: None,
            reason: None,
        }
    }
}

/// A filter over the audit log. All filters are optional and combine with AND; results are
/// newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this kind of subject: `flag`, `segment`, `environment`, `token` or `experiment`.
    pub subject_kind: Option<String>,
    /// Only this subject (flag key, segment name, environment name or token id).
    pub subject: Option<String>,
    /// Only changes by this actor (its id, or the name it had).
    pub actor: Option<String>,
    /// Only entries at or after this time (unix milliseconds, inclusive).
    pub since_ms: Option<i64>,
    /// Only entries before this time (unix milliseconds, exclusive).
    pub until_ms: Option<i64>,
    /// Only entries with a smaller id: pass the last id of one page to get the next.
    pub before_id: Option<i64>,
    /// At most this many entries; clamped to `1..=1000`. The default is 100.
    pub limit: u32,
}

impl AuditQuery {
    /// The largest page [`Store::audit`](crate::Store::audit) returns.
    pub const MAX_LIMIT: u32 = 1000;
    /// The page size of [`AuditQuery::default`].
    pub const DEFAULT_LIMIT: u32 = 100;

    /// `limit` clamped to `1..=MAX_LIMIT`.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

impl Default for AuditQuery {
    fn default() -> AuditQuery {
        AuditQuery {
            subject_kind: None,
            subject: None,
            actor: None,
            since_ms: None,
            until_ms: None,
            before_id: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

/// One append-only audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Increases with every entry; entries are never rewritten or removed.
    pub id: i64,
    /// When the change was committed, in unix milliseconds.
    pub at_ms: i64,
    /// [`AuditInfo::actor`].
    pub actor: String,
    /// [`AuditInfo::actor_name`].
    pub actor_name: Option<String>,
    /// [`AuditInfo::action`].
    pub action: String,
    /// `flag`, `segment`, `environment` or `token`.
    pub subject_kind: String,
    /// The flag key, segment name, environment name or token id.
    pub subject: String,
    /// [`AuditInfo::environment`].
    pub environment: Option<String>,
    /// The stored state before the change (`None` for a create). For flags and segments,
    /// the definition; for tokens, everything but the secret hash.
    pub before: Option<Value>,
    /// The stored state after the change (`None` for a delete).
    pub after: Option<Value>,
    /// [`AuditInfo::reason`].
    pub reason: Option<String>,
}

/// An API token to store. The store keeps only the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Unique public id (shown in listings and the audit log).
    pub id: String,
    /// A human label.
    pub name: String,
    /// The role the token grants.
    pub role: Role,
    /// The environment the token is limited to, if any.
    pub environment: Option<String>,
    /// The hash of the secret; never written to the audit log.
    pub secret_hash: String,
}

/// A stored API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Unique public id.
    pub id: String,
    /// A human label.
    pub name: String,
    /// The role the token grants.
    pub role: Role,
    /// The environment the token is limited to, if any.
    pub environment: Option<String>,
    /// The hash of the secret (skipped when serialized).
    #[serde(skip_serializing)]
    pub secret_hash: String,
    /// When it was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}
