//! [`Store`]: connecting (pool, pragmas, migrations), the write-transaction discipline, and
//! every operation but the flag/segment writes (in `items`) and audit reads (in `audit`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use tokio::sync::watch;

use crate::audit;
use crate::feed::{self, Changes, StoreState};
use crate::items::{self, ItemKind, FLAGS, SEGMENTS};
use crate::notify::{ListenerState, Signal};
use crate::tx::WriteTx;
use crate::url::{self, Location};
use crate::{
    AuditEntry, AuditInfo, AuditQuery, EnvironmentRecord, FlagRecord, ItemRecord, NewToken, Result,
    Role, SegmentRecord, StoreError, TokenRecord, Write,
};

/// Which database a [`Store`] talks to; chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (`sqlite://PATH`, `sqlite::memory:`): the single-node default.
    Sqlite,
    /// PostgreSQL (`postgres://...`): for several server nodes sharing one store.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// Set on every SQLite connection. `journal_mode` is persistent (a no-op once the file is in
/// WAL mode); the others are per connection. WAL + `synchronous=FULL` makes every
/// acknowledged commit durable across a crash or power loss.
/// `busy_timeout` comes first: switching a new file to WAL takes a lock, and several
/// processes (or pools) opening one new file at once must wait for it, not fail.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON;";

/// How long [`sqlite_pragmas`] keeps retrying a refused switch to WAL (the `busy_timeout`).
const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(5);

/// Runs [`SQLITE_PRAGMAS`] on `conn`, retrying while SQLite answers "database is locked".
///
/// Connections opening a new file at once all switch it to WAL, and SQLite refuses a lock
/// upgrade where waiting for it could deadlock (one connection holds a shared lock and wants
/// more while another does the same) with `SQLITE_BUSY` at once, without waiting for the
/// busy timeout. Several replicas or pools starting together on a new file then failed to
/// start (one start in ten of three replicas, in a test). Every statement of the script is
/// idempotent: a retry after the winner's switch finds the file in WAL mode already.
async fn sqlite_pragmas(conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match conn.execute(SQLITE_PRAGMAS).await {
            Err(sqlx::Error::Database(err))
                if is_sqlite_busy(err.code().as_deref())
                    && started.elapsed() < SQLITE_BUSY_WAIT =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Whether a SQLite result code is `SQLITE_BUSY` or one of its extended codes.
fn is_sqlite_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// Tuning for [`Store::connect_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long an operation waits for a database connection before failing with an error
    /// that [`StoreError::is_unavailable`] recognizes. Keep it short on servers: while the
    /// database is down, every call fails after this long instead of queueing.
    pub acquire_timeout: Duration,
    /// An experiment summary ([`Store::experiment_summary`]) cuts the exposed units into
    /// ranges summed concurrently, none smaller than this many units (default 100 000: below
    /// that one statement is quick, and the cuts cost more than they save).
    pub summary_units_per_range: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            acquire_timeout: Duration::from_secs(10),
            summary_units_per_range: 100_000,
        }
    }
}

/// Flags, segments, environments, tokens and the audit log in SQLite or PostgreSQL.
///
/// Cheap to clone (clones share one connection pool and one change signal) and safe to share
/// between tasks.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    shared: Arc<Shared>,
}

struct Shared {
    signal: Arc<Signal>,
    /// The `NOTIFY` channel of this database and schema (PostgreSQL).
    channel: String,
    /// The URL the listener connects with (PostgreSQL).
    listen_url: Option<String>,
    /// [`StoreOptions::summary_units_per_range`].
    pub(crate) summary_units_per_range: i64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("connections", &self.pool.size())
            .finish()
    }
}

/// Unix time in milliseconds from the system clock (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Creates the parent directory of a SQLite file and returns the file's absolute path.
fn prepare_sqlite_file(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the SQLite path {} names no file", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    Ok(std::fs::canonicalize(parent)?.join(name))
}

impl Store {
    /// Connects to the database `url` names (see below), creating a SQLite file and its
    /// directory if missing, and brings the schema up to date.
    ///
    /// - `sqlite://PATH`: a SQLite file (relative to the working directory unless `PATH`
    ///   starts with `/`, as in `sqlite:///var/lib/switchyard/db.sqlite`).
    /// - `sqlite::memory:`: a private in-memory database on one connection (tests, demos).
    /// - `postgres://...` / `postgresql://...`: PostgreSQL; objects go in the first schema of
    ///   the search path (`?options=-c%20search_path%3DNAME` picks one).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidUrl`], [`StoreError::Connect`] (with the driver's error as
    /// source), [`StoreError::Migrate`] or [`StoreError::SchemaTooNew`].
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with options.
    ///
    /// # Errors
    ///
    /// As [`Store::connect`].
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store> {
        let location = url::parse(url)?;
        let backend = location.backend();
        let connect_error = move |source| StoreError::Connect { backend, source };
        sqlx::any::install_default_drivers();

        let (driver_url, pool_options) = match &location {
            // Every connection the driver opens for `sqlite::memory:` is a new, empty
            // database, so the pool keeps exactly one and never retires it.
            Location::SqliteMemory => (
                "sqlite::memory:".to_owned(),
                AnyPoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
            ),
            Location::SqliteFile(path) => {
                let absolute =
                    prepare_sqlite_file(path).map_err(|err| connect_error(sqlx::Error::Io(err)))?;
                (
                    url::sqlite_driver_url(&absolute),
                    AnyPoolOptions::new().max_connections(4),
                )
            }
            Location::Postgres(url) => (url.clone(), AnyPoolOptions::new().max_connections(10)),
        };
        let pool_options = pool_options.acquire_timeout(options.acquire_timeout);
        let pool_options = match backend {
            Backend::Sqlite => pool_options
                .after_connect(|conn, _meta| Box::pin(async move { sqlite_pragmas(conn).await })),
            Backend::Postgres => pool_options,
        };
        let connect_options: AnyConnectOptions =
            driver_url
                .parse()
                .map_err(|err: sqlx::Error| StoreError::InvalidUrl {
                    url: url::redact(url),
                    reason: err.to_string(),
                })?;

        // The pool retries refused connections until its timeout and then reports only that
        // it timed out; one direct connection first surfaces the real cause at once.
        if location != Location::SqliteMemory {
            let mut probe = AnyConnection::connect_with(&connect_options)
                .await
                .map_err(connect_error)?;
            if backend == Backend::Sqlite {
                sqlite_pragmas(&mut probe).await.map_err(connect_error)?;
            }
            probe.close().await.map_err(connect_error)?;
        }
        let pool = pool_options
            .connect_with(connect_options)
            .await
            .map_err(connect_error)?;

        crate::migrate::run(&pool, backend, now_ms()).await?;
        let (channel, listen_url) = match &location {
            Location::Postgres(url) => {
                let schema: String = sqlx::query_scalar("SELECT CAST(current_schema() AS TEXT)")
                    .fetch_one(&pool)
                    .await
                    .map_err(connect_error)?;
                // One channel per database schema, so stores in other schemas are not woken.
                let mut channel = format!("switchyard_changes.{schema}");
                channel.truncate(63);
                (channel, Some(url.clone()))
            }
            _ => (String::new(), None),
        };
        let store = Store {
            pool,
            backend,
            shared: Arc::new(Shared {
                signal: Arc::new(Signal::new()),
                channel,
                listen_url,
                summary_units_per_range: options.summary_units_per_range.max(1),
            }),
        };
        let (revision, _, _) = read_revisions(&mut *store.pool.acquire().await?).await?;
        store.shared.signal.raise(revision);
        Ok(store)
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection and stops the listener; later calls on this store (or its
    /// clones) fail.
    pub async fn close(&self) {
        self.shared.signal.stop();
        self.pool.close().await;
    }

    /// Monotonic counter bumped by every write transaction (lets replicas detect changes cheaply).
    pub async fn revision(&self) -> Result<i64> {
        Ok(self.revisions().await?.0)
    }

    /// `(store revision, ruleset revision)`: the ruleset revision is the last revision that
    /// changed a flag or segment (token and environment changes do not change what is served).
    pub async fn revisions(&self) -> Result<(i64, i64)> {
        let (revision, ruleset, _) = read_revisions(&mut *self.pool.acquire().await?).await?;
        Ok((revision, ruleset))
    }

    /// Starts a write transaction holding the global write lock: it bumps the revision first,
    /// which takes the database's write lock (SQLite) or the revision row's lock (PostgreSQL),
    /// so writers on every node are serialized and whatever the transaction reads stays true
    /// until it commits. Dropping it rolls everything back, the revision bump included.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        let mut tx = self.pool.begin().await?;
        let revision: i64 = sqlx::query_scalar(
            "UPDATE store_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(WriteTx::new(tx, self.clone(), revision, now_ms()))
    }

    /// Everything a replica serves, read in one consistent snapshot.
    pub async fn state(&self) -> Result<StoreState> {
        let mut tx = self.begin_read().await?;
        let state = read_state(&mut tx).await?;
        tx.rollback().await?;
        Ok(state)
    }

    /// What changed after revision `since`, with the current rows of what changed, read in
    /// one consistent snapshot; `None` when the feed no longer reaches back to `since` (call
    /// [`Store::state`] instead).
    pub async fn changes_since(&self, since: i64) -> Result<Option<Changes>> {
        let mut tx = self.begin_read().await?;
        let changes = feed::since(&mut tx, since).await?;
        tx.rollback().await?;
        Ok(changes)
    }

    /// A read transaction whose reads all see one snapshot (REPEATABLE READ on PostgreSQL;
    /// a SQLite transaction in WAL mode reads one snapshot by itself).
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// A receiver that changes whenever a change may have been committed, by this process or
    /// (PostgreSQL) any other; its value is the newest revision heard of. Starts the
    /// PostgreSQL listener on first use (needs a tokio runtime).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        if let Some(url) = &self.shared.listen_url {
            self.shared.signal.listen(url, &self.shared.channel);
        }
        self.shared.signal.subscribe()
    }

    /// The state of the PostgreSQL change listener.
    pub fn listener_state(&self) -> ListenerState {
        self.shared.signal.state()
    }

    pub(crate) fn channel(&self) -> &str {
        &self.shared.channel
    }

    pub(crate) fn signal_local(&self, revision: i64) {
        self.shared.signal.raise(revision);
    }

    /// Every environment, by name.
    pub async fn list_environments(&self) -> Result<Vec<EnvironmentRecord>> {
        fetch_environments(&mut *self.pool.acquire().await?).await
    }

    /// Creates an environment; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_environment(
        &self,
        name: &str,
        audit: &AuditInfo,
    ) -> Result<EnvironmentRecord> {
        let mut tx = self.begin_write().await?;
        let record = tx.create_environment(name, audit).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every flag, ordered by key (code point order on both backends).
    pub async fn list_flags(&self) -> Result<Vec<FlagRecord>> {
        let items = items::list(&self.pool, &FLAGS).await?;
        Ok(items.into_iter().map(items::Item::into_flag).collect())
    }

    /// The flag `key`, if it exists.
    pub async fn get_flag(&self, key: &str) -> Result<Option<FlagRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(items::get(&mut conn, &FLAGS, key)
            .await?
            .map(items::Item::into_flag))
    }

    /// Creates, updates or deletes one flag as `write` says, after checking `write.expect`.
    /// Returns the stored flag, or `None` after a delete.
    pub async fn write_flag(&self, write: &Write) -> Result<Option<FlagRecord>> {
        let mut written = self.write_flags(std::slice::from_ref(write)).await?;
        Ok(written.pop().flatten())
    }

    /// All-or-nothing batch (imports); audited per item.
    ///
    /// Writes apply in order, so a later write sees an earlier one to the same key. The first
    /// failing write fails the batch, and nothing of it is stored or audited.
    pub async fn write_flags(&self, writes: &[Write]) -> Result<Vec<Option<FlagRecord>>> {
        let mut tx = self.begin_write().await?;
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            written.push(tx.write_flag(write).await?);
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Every segment, ordered by name (code point order on both backends).
    pub async fn list_segments(&self) -> Result<Vec<SegmentRecord>> {
        let items = items::list(&self.pool, &SEGMENTS).await?;
        Ok(items.into_iter().map(items::Item::into_segment).collect())
    }

    /// The segment `name`, if it exists.
    pub async fn get_segment(&self, name: &str) -> Result<Option<SegmentRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(items::get(&mut conn, &SEGMENTS, name)
            .await?
            .map(items::Item::into_segment))
    }

    /// Every record of `kind`, by id.
    pub async fn list_items(&self, kind: ItemKind) -> Result<Vec<ItemRecord>> {
        Ok(items::list(&self.pool, kind.table())
            .await?
            .into_iter()
            .map(items::Item::into_record)
            .collect())
    }

    /// The record `id` of `kind`, if it exists.
    pub async fn get_item(&self, kind: ItemKind, id: &str) -> Result<Option<ItemRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(items::get(&mut conn, kind.table(), id)
            .await?
            .map(items::Item::into_record))
    }

    /// Creates, updates or deletes one segment as `write` says (`write.archived` is ignored).
    /// Returns the stored segment, or `None` after a delete.
    pub async fn write_segment(&self, write: &Write) -> Result<Option<SegmentRecord>> {
        let mut tx = self.begin_write().await?;
        let written = tx.write_segment(write).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Flags and segments in one all-or-nothing transaction (imports carry both).
    ///
    /// Segments are written first, then flags, each list in order; each write is audited.
    pub async fn write_document(&self, segments: &[Write], flags: &[Write]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for write in segments {
            tx.write_segment(write).await?;
        }
        for write in flags {
            tx.write_flag(write).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries matching `query`, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        audit::query(&self.pool, query).await
    }

    /// Stores a new token; [`StoreError::Conflict`] if its id, or an active token's name, is
    /// taken. The audit entry records id, name, role and environment, never the secret hash.
    pub async fn create_token(&self, token: &NewToken, audit: &AuditInfo) -> Result<TokenRecord> {
        let mut tx = self.begin_write().await?;
        let record = tx.create_token(token, audit).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every token, revoked ones included, ordered by id.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!("{TOKEN_SELECT} ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// The token `id`, revoked or not, if it exists.
    pub async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch_token(&mut conn, id).await
    }

    /// Marks the token revoked. [`StoreError::NotFound`] if there is no such token;
    /// [`StoreError::Conflict`] if it is already revoked.
    pub async fn revoke_token(&self, id: &str, audit: &AuditInfo) -> Result<TokenRecord> {
        let mut tx = self.begin_write().await?;
        let record = tx.revoke_token(id, audit).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// How many tokens are not revoked, of `role` if given.
    pub async fn count_active_tokens(&self, role: Option<Role>) -> Result<i64> {
        let row =
            match role {
                Some(role) => sqlx::query(
                    "SELECT COUNT(*) AS n FROM tokens WHERE revoked_at_ms IS NULL AND role = $1",
                )
                .bind(role.as_str())
                .fetch_one(&self.pool)
                .await?,
                None => {
                    sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE revoked_at_ms IS NULL")
                        .fetch_one(&self.pool)
                        .await?
                }
            };
        Ok(row.try_get("n")?)
    }

    /// The metadata value stored under `key`, if any.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    /// Stores `value` under `key`, replacing any previous value. Not audited; like every
    /// write, it bumps the [revision](Store::revision).
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.set_meta(key, value).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pool, for this crate's modules (events) and tests.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// [`StoreOptions::summary_units_per_range`].
    pub(crate) fn summary_units_per_range(&self) -> i64 {
        self.shared.summary_units_per_range
    }
}

/// How errors name a subject: `flag "checkout"`.
pub(crate) fn subject(kind: &str, key: &str) -> String {
    format!("{kind} {key:?}")
}

const TOKEN_SELECT: &str =
    "SELECT id, name, role, environment, secret_hash, created_at_ms, revoked_at_ms FROM tokens";

/// `(revision, ruleset revision, feed floor)`.
pub(crate) async fn read_revisions(conn: &mut AnyConnection) -> Result<(i64, i64, i64)> {
    let row = sqlx::query(
        "SELECT revision, ruleset_revision, feed_floor FROM store_revision WHERE id = 1",
    )
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get("revision")?,
        row.try_get("ruleset_revision")?,
        row.try_get("feed_floor")?,
    ))
}

/// Everything, on one connection (inside a snapshot read or the write lock).
pub(crate) async fn read_state(conn: &mut AnyConnection) -> Result<StoreState> {
    let (revision, ruleset_revision, _) = read_revisions(conn).await?;
    let flags = items::list_on(conn, &FLAGS).await?;
    let segments = items::list_on(conn, &SEGMENTS).await?;
    let environments = fetch_environments(conn).await?;
    let rows = sqlx::query(&format!("{TOKEN_SELECT} ORDER BY id"))
        .fetch_all(&mut *conn)
        .await?;
    let tokens = rows.iter().map(token_from_row).collect::<Result<_>>()?;
    Ok(StoreState {
        revision,
        ruleset_revision,
        flags: flags.into_iter().map(items::Item::into_flag).collect(),
        segments: segments
            .into_iter()
            .map(items::Item::into_segment)
            .collect(),
        environments,
        tokens,
    })
}

pub(crate) async fn fetch_environments(conn: &mut AnyConnection) -> Result<Vec<EnvironmentRecord>> {
    let rows =
        sqlx::query("SELECT name, created_at_ms, require_approval FROM environments ORDER BY name")
            .fetch_all(conn)
            .await?;
    rows.iter().map(environment_from_row).collect()
}

pub(crate) fn environment_from_row(row: &sqlx::any::AnyRow) -> Result<EnvironmentRecord> {
    Ok(EnvironmentRecord {
        name: row.try_get("name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        require_approval: crate::items::get_bool(row, "require_approval")?,
    })
}

/// The tokens whose id is in `ids` (a subquery taking `$1` = `param`).
pub(crate) async fn fetch_tokens_where(
    conn: &mut AnyConnection,
    ids: &str,
    param: i64,
) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!("{TOKEN_SELECT} WHERE id IN {ids} ORDER BY id"))
        .bind(param)
        .fetch_all(conn)
        .await?;
    rows.iter().map(token_from_row).collect()
}

pub(crate) async fn fetch_token(conn: &mut AnyConnection, id: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(token_from_row).transpose()
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
        subject: subject("token", &id),
        reason: format!("unknown role `{role}`"),
    })?;
    Ok(TokenRecord {
        id,
        name: row.try_get("name")?,
        role,
        environment: row.try_get("environment")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

/// What the audit log records of a token: everything but the secret hash.
pub(crate) fn token_audit_json(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "environment": token.environment,
        "revoked_at_ms": token.revoked_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durability is a per-connection setting: check it on several distinct pool connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_sqlite_connection_is_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}/created/on/demand/store.db",
            dir.path().display()
        );
        let store = Store::connect(&url).await.expect("connect");
        assert!(dir.path().join("created/on/demand/store.db").is_file());

        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.pool().acquire().await.expect("connection"));
        }
        for conn in &mut held {
            let pragma = |name: &'static str| format!("PRAGMA {name}");
            let synchronous: i64 = sqlx::query_scalar(&pragma("synchronous"))
                .fetch_one(&mut **conn)
                .await
                .expect("synchronous");
            assert_eq!(synchronous, 2, "synchronous=FULL");
            let journal_mode: String = sqlx::query_scalar(&pragma("journal_mode"))
                .fetch_one(&mut **conn)
                .await
                .expect("journal_mode");
            assert_eq!(journal_mode, "wal");
            let busy_timeout: i64 = sqlx::query_scalar(&pragma("busy_timeout"))
                .fetch_one(&mut **conn)
                .await
                .expect("busy_timeout");
            assert_eq!(busy_timeout, 5000);
            let foreign_keys: i64 = sqlx::query_scalar(&pragma("foreign_keys"))
                .fetch_one(&mut **conn)
                .await
                .expect("foreign_keys");
            assert_eq!(foreign_keys, 1);
        }
        drop(held);
        store.close().await;
    }

    /// Stores opening one new file at once all start: the switch to WAL that each of them
    /// makes is refused to all but one at a time, and retried (without it, about one start in
    /// ten of three replicas failed with "database is locked").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opening_a_new_file_together_all_start() {
        for round in 0..30 {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/store.db", dir.path().display());
            // As replicas start: connect, then read and write at once.
            let start = |n: usize| {
                let url = url.clone();
                async move {
                    let store = Store::connect(&url).await?;
                    store.set_meta(&format!("replica-{n}"), "up").await?;
                    Ok::<_, StoreError>(store)
                }
            };
            let started = futures_util::future::join_all((0..3).map(start)).await;
            for store in started {
                let store = store.unwrap_or_else(|err| panic!("round {round}: {err}"));
                store.close().await;
            }
        }
    }

    #[test]
    fn busy_is_recognised_by_its_primary_code() {
        assert!(is_sqlite_busy(Some("5")));
        assert!(is_sqlite_busy(Some("517")), "SQLITE_BUSY_SNAPSHOT");
        assert!(!is_sqlite_busy(Some("6")), "SQLITE_LOCKED is another error");
        assert!(!is_sqlite_busy(Some("23505")));
        assert!(!is_sqlite_busy(None));
    }

    #[tokio::test]
    async fn relative_sqlite_paths_resolve_against_the_working_directory() {
        let path = prepare_sqlite_file(Path::new("store.db")).expect("prepare");
        assert!(path.is_absolute());
        assert_eq!(path.file_name(), Some(std::ffi::OsStr::new("store.db")));
        assert!(prepare_sqlite_file(Path::new("a/..")).is_err());
    }

    #[tokio::test]
    async fn in_memory_store_keeps_its_data_across_calls() {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        store.set_meta("k", "v").await.expect("set");
        assert_eq!(
            store.get_meta("k").await.expect("get").as_deref(),
            Some("v")
        );
        assert_eq!(store.backend(), Backend::Sqlite);
    }

    /// Every operation's future is `Send`, so servers can run them on any task (this is a compile
    /// check: a `Send` regression fails to build the crate's tests).
    #[test]
    fn store_is_cheap_to_share() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Store>();
        fn error_for_anyhow<T: std::error::Error + Send + Sync + 'static>() {}
        error_for_anyhow::<StoreError>();
    }

    #[allow(dead_code)]
    fn futures_are_send(
        store: &Store,
        write: &Write,
        info: &AuditInfo,
        query: &AuditQuery,
        token: &NewToken,
    ) {
        fn send<T: Send>(_: T) {}
        send(Store::connect("sqlite::memory:"));
        send(store.ping());
        send(store.close());
        send(store.revision());
        send(store.list_environments());
        send(store.create_environment("e", info));
        send(store.list_flags());
        send(store.get_flag("k"));
        send(store.write_flag(write));
        send(store.write_flags(std::slice::from_ref(write)));
        send(store.list_segments());
        send(store.get_segment("k"));
        send(store.write_segment(write));
        send(store.write_document(std::slice::from_ref(write), std::slice::from_ref(write)));
        send(store.audit(query));
        send(store.create_token(token, info));
        send(store.list_tokens());
        send(store.find_token("t"));
        send(store.revoke_token("t", info));
        send(store.count_active_tokens(Some(Role::Admin)));
        send(store.begin_write());
        send(store.state());
        send(store.changes_since(0));
        send(store.get_meta("k"));
        send(store.set_meta("k", "v"));
    }
}
