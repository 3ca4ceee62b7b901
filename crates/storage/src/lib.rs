//! Switchyard's storage: flags, segments, environments, API tokens and an append-only audit
//! log, in SQLite (the single-node default) or PostgreSQL (several nodes, one store), behind
//! one [`Store`] whose backend the URL picks.
//!
//! Guarantees, on both backends:
//!
//! - **Versioned schema.** [`Store::connect`] applies the migrations in `migrations/` in
//!   order, each in its own transaction, and refuses a database from a newer build.
//! - **Transactional, durable writes.** Every change is one transaction; once a call returns
//!   `Ok`, the change survives a crash. SQLite runs in WAL mode with `synchronous=FULL`,
//!   `busy_timeout` and `foreign_keys=ON` on every connection.
//! - **Audited.** Every change appends an [`AuditEntry`] (who, when, what, environment,
//!   before/after, reason) in the same transaction; entries are never rewritten.
//! - **Optimistic concurrency.** Flags and segments carry a version (1, 2, 3, ...); a
//!   [`Write`] states what it [`Expect`]s, and a stale expectation is a
//!   [`StoreError::Conflict`] that changes nothing.
//! - **A revision counter** ([`Store::revision`]) bumped by every write transaction, so a
//!   replica can tell cheaply whether anything changed.
//!
//! ```
//! use serde_json::json;
//! use switchyard_storage::{AuditInfo, AuditQuery, Expect, Store, StoreError, Write};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store = Store::connect("sqlite::memory:").await?;
//!
//! let create = Write {
//!     key: "new-checkout".into(),
//!     expect: Expect::Absent,
//!     definition: Some(json!({ "variants": { "on": true, "off": false }, "default": "off" })),
//!     archived: false,
//!     audit: AuditInfo::new("alice", "flag.create"),
//! };
//! let flag = store.write_flag(&create).await?.expect("created");
//! assert_eq!(flag.version, 1);
//!
//! // Someone else's update, made against version 1, loses once version 2 exists.
//! let update = Write { expect: Expect::Version(1), audit: AuditInfo::new("bob", "flag.update"), ..create };
//! assert_eq!(store.write_flag(&update).await?.map(|f| f.version), Some(2));
//! assert!(matches!(store.write_flag(&update).await, Err(StoreError::Conflict { .. })));
//!
//! let log = store.audit(&AuditQuery::default()).await?;
//! assert_eq!(log.len(), 2);
//! assert_eq!(log[0].actor, "bob"); // newest first
//! # store.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Design: one SQL implementation over sqlx's `Any` driver
//!
//! All SQL is written once and runs on both databases through `sqlx::AnyPool`: SQLite accepts
//! PostgreSQL's `$1` placeholders, `ON CONFLICT ... DO UPDATE`, and every statement used here,
//! so the two backends differ only in their migration files, the per-connection SQLite
//! pragmas, and one advisory lock in the migration runner. The alternative, a backend enum
//! over `SqlitePool` and `PgPool`, would need every query either written twice or wrapped in
//! generic code with heavy sqlx trait bounds. The price of `Any` is a small type vocabulary
//! (integers, text, booleans, nulls): JSON is stored as `TEXT` on both sides, SQLite booleans
//! are read back from integers, and SQLite pragmas are set by an `after_connect` hook rather
//! than typed options. Write transactions begin by bumping the revision row, which serializes
//! writers on both databases, so version checks and audit ids need no retries.

mod analysis;
mod audit;
mod error;
mod evaluations;
mod events;
mod feed;
mod gates;
mod items;
mod migrate;
mod model;
mod notify;
mod outbox;
mod schedules;
mod sessions;
mod store;
mod tx;
mod url;

pub use analysis::{
    Aggregate, MetricQuery, SummaryMetric, SummaryQuery, SummaryRow, UnitHistory, CLOCK_SKEW_MS,
    DAY_MS,
};
pub use error::{Result, StoreError};
pub use events::{Appended, ExposureRow, MetricRow, VariantUnits};
pub use feed::{Changes, FeedEntry, FeedKind, FeedOp, StoreState};
pub use gates::{Arm, ValuesQuery};
pub use items::ItemKind;
pub use model::{
    AuditEntry, AuditInfo, AuditQuery, EnvironmentRecord, Expect, FlagRecord, ItemRecord, NewToken,
    Role, SegmentRecord, TokenRecord, Write,
};
pub use notify::ListenerState;
pub use outbox::{Attempt, Delivery};
pub use schedules::ScheduleRecord;
pub use sessions::SessionRecord;
pub use store::{Backend, Store, StoreOptions};
pub use tx::{Committed, WriteTx, FEED_RETENTION};
pub use url::redact as redact_url;
