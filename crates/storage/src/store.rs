//! [`Store`]: connecting (pool, pragmas, migrations), the write-transaction discipline, and
//! every operation but the flag/segment writes (in `items`) and audit reads (in `audit`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};

use crate::audit::{self, Change};
use crate::items::{self, FLAGS, SEGMENTS};
use crate::url::{self, Location};
use crate::{
    AuditEntry, AuditInfo, AuditQuery, EnvironmentRecord, FlagRecord, NewToken, Result,
    SegmentRecord, StoreError, TokenRecord, Write,
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
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 5000; \
     PRAGMA foreign_keys = ON;";

/// Flags, segments, environments, tokens and the audit log in SQLite or PostgreSQL.
///
/// Cheap to clone (clones share one connection pool) and safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
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
        let pool_options = pool_options.acquire_timeout(Duration::from_secs(10));
        let pool_options = match backend {
            Backend::Sqlite => pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            }),
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
                probe.execute(SQLITE_PRAGMAS).await.map_err(connect_error)?;
            }
            probe.close().await.map_err(connect_error)?;
        }
        let pool = pool_options
            .connect_with(connect_options)
            .await
            .map_err(connect_error)?;

        crate::migrate::run(&pool, backend, now_ms()).await?;
        Ok(Store { pool, backend })
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

    /// Closes every connection; later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Monotonic counter bumped by every write transaction (lets replicas detect changes cheaply).
    pub async fn revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("revision")?)
    }

    /// Starts a write transaction: bumps the revision first, which takes the database's write
    /// lock (SQLite) or the revision row's lock (PostgreSQL). Writers are thereby serialized,
    /// so an expectation checked inside the transaction still holds at commit. Returns the
    /// transaction and the commit timestamp to record. Dropping the transaction rolls back
    /// everything, the revision bump included.
    pub(crate) async fn begin_write(&self) -> Result<(Transaction<'static, Any>, i64)> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE store_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok((tx, now_ms()))
    }

    /// Every environment, by name.
    pub async fn list_environments(&self) -> Result<Vec<EnvironmentRecord>> {
        let rows = sqlx::query("SELECT name, created_at_ms FROM environments ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(EnvironmentRecord {
                    name: row.try_get("name")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Creates an environment; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_environment(
        &self,
        name: &str,
        audit: &AuditInfo,
    ) -> Result<EnvironmentRecord> {
        let (mut tx, now) = self.begin_write().await?;
        let existing = sqlx::query("SELECT name FROM environments WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            return Err(StoreError::Conflict {
                subject: subject("environment", name),
                expected: None,
                actual: None,
            });
        }
        sqlx::query("INSERT INTO environments (name, created_at_ms) VALUES ($1, $2)")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let after = json!({ "name": name });
        audit::append(
            &mut tx,
            now,
            Change {
                subject_kind: "environment",
                subject: name,
                info: audit,
                before: None,
                after: Some(&after),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(EnvironmentRecord {
            name: name.to_owned(),
            created_at_ms: now,
        })
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
        let (mut tx, now) = self.begin_write().await?;
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            let item = items::write(&mut tx, &FLAGS, write, now).await?;
            written.push(item.map(items::Item::into_flag));
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

    /// Creates, updates or deletes one segment as `write` says (`write.archived` is ignored).
    /// Returns the stored segment, or `None` after a delete.
    pub async fn write_segment(&self, write: &Write) -> Result<Option<SegmentRecord>> {
        let (mut tx, now) = self.begin_write().await?;
        let item = items::write(&mut tx, &SEGMENTS, write, now).await?;
        tx.commit().await?;
        Ok(item.map(items::Item::into_segment))
    }

    /// Flags and segments in one all-or-nothing transaction (imports carry both).
    ///
    /// Segments are written first, then flags, each list in order; each write is audited.
    pub async fn write_document(&self, segments: &[Write], flags: &[Write]) -> Result<()> {
        let (mut tx, now) = self.begin_write().await?;
        for write in segments {
            items::write(&mut tx, &SEGMENTS, write, now).await?;
        }
        for write in flags {
            items::write(&mut tx, &FLAGS, write, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries matching `query`, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        audit::query(&self.pool, query).await
    }

    /// Stores a new token; [`StoreError::Conflict`] if its id is taken. The audit entry
    /// records id, name, role and environment, never the secret hash.
    pub async fn create_token(&self, token: &NewToken, audit: &AuditInfo) -> Result<TokenRecord> {
        let (mut tx, now) = self.begin_write().await?;
        if fetch_token(&mut tx, &token.id).await?.is_some() {
            return Err(StoreError::Conflict {
                subject: subject("token", &token.id),
                expected: None,
                actual: None,
            });
        }
        sqlx::query(
            "INSERT INTO tokens (id, name, role, environment, secret_hash, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.as_str())
        .bind(token.name.as_str())
        .bind(token.role.as_str())
        .bind(token.environment.as_deref())
        .bind(token.secret_hash.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let record = TokenRecord {
            id: token.id.clone(),
            name: token.name.clone(),
            role: token.role.clone(),
            environment: token.environment.clone(),
            secret_hash: token.secret_hash.clone(),
            created_at_ms: now,
            revoked_at_ms: None,
        };
        let after = token_audit_json(&record);
        audit::append(
            &mut tx,
            now,
            Change {
                subject_kind: "token",
                subject: &record.id,
                info: audit,
                before: None,
                after: Some(&after),
            },
        )
        .await?;
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
        let (mut tx, now) = self.begin_write().await?;
        let Some(before) = fetch_token(&mut tx, id).await? else {
            return Err(StoreError::NotFound {
                subject: subject("token", id),
            });
        };
        if before.revoked_at_ms.is_some() {
            return Err(StoreError::Conflict {
                subject: format!("revocation of {}", subject("token", id)),
                expected: None,
                actual: None,
            });
        }
        sqlx::query("UPDATE tokens SET revoked_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let after = TokenRecord {
            revoked_at_ms: Some(now),
            ..before.clone()
        };
        audit::append(
            &mut tx,
            now,
            Change {
                subject_kind: "token",
                subject: id,
                info: audit,
                before: Some(&token_audit_json(&before)),
                after: Some(&token_audit_json(&after)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// How many tokens are not revoked, of `role` if given.
    pub async fn count_active_tokens(&self, role: Option<&str>) -> Result<i64> {
        let row =
            match role {
                Some(role) => sqlx::query(
                    "SELECT COUNT(*) AS n FROM tokens WHERE revoked_at_ms IS NULL AND role = $1",
                )
                .bind(role)
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
        let (mut tx, _now) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pool, for this crate's own tests.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// How errors name a subject: `flag "checkout"`.
pub(crate) fn subject(kind: &str, key: &str) -> String {
    format!("{kind} {key:?}")
}

const TOKEN_SELECT: &str =
    "SELECT id, name, role, environment, secret_hash, created_at_ms, revoked_at_ms FROM tokens";

async fn fetch_token(conn: &mut AnyConnection, id: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(token_from_row).transpose()
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        environment: row.try_get("environment")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

/// What the audit log records of a token: everything but the secret hash.
fn token_audit_json(token: &TokenRecord) -> Value {
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
        send(store.count_active_tokens(Some("r")));
        send(store.get_meta("k"));
        send(store.set_meta("k", "v"));
    }
}
