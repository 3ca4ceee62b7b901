//! Fresh stores for the suite, one per test and backend, and the crash-test child process.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sqlx::{AnyConnection, Connection, Executor};
use switchyard_storage::{AuditInfo, Expect, Store, Write};
use tempfile::TempDir;

/// The PostgreSQL the suite runs against unless `SWITCHYARD_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which backend a test instance runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// What a suite function gets: a connected store, and the URL to open more connections.
pub struct Ctx {
    pub store: Store,
    pub url: String,
    pub kind: Kind,
    _dir: Option<TempDir>,
}

impl Ctx {
    /// A second, independent store on the same database (runs the migrations again).
    pub async fn reconnect(&self) -> Store {
        Store::connect(&self.url).await.expect("reconnect")
    }

    /// A raw driver connection to the same database, bypassing the store.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

/// The PostgreSQL URL from the environment or the default.
pub fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

/// `err` and all its causes, one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs one suite function on a fresh store of `kind`, cleaning up even if it panics.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/nested/dir/switchyard.db", dir.path().display());
            let store = Store::connect(&url)
                .await
                .unwrap_or_else(|err| panic!("cannot open {url}: {}", chain(&err)));
            let ctx = Ctx {
                store,
                url,
                kind,
                _dir: Some(dir),
            };
            test(ctx).await;
        }
        Kind::Postgres => {
            let base = postgres_url();
            sqlx::any::install_default_drivers();
            let mut admin = AnyConnection::connect(&base).await.unwrap_or_else(|err| {
                panic!(
                    "the storage suite needs PostgreSQL at {} (set SWITCHYARD_TEST_POSTGRES_URL \
                     to use another); it is unreachable: {}",
                    switchyard_storage::redact_url(&base),
                    chain(&err)
                )
            });
            let schema = format!("sy_test_{}", unique_suffix());
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("create schema");
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
            let outcome = match Store::connect(&url).await {
                Ok(store) => {
                    let ctx = Ctx {
                        store,
                        url,
                        kind,
                        _dir: None,
                    };
                    Ok(tokio::spawn(test(ctx)).await)
                }
                Err(err) => Err(format!("cannot open schema {schema}: {}", chain(&err))),
            };
            admin
                .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .expect("drop schema");
            admin.close().await.ok();
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
                Err(message) => panic!("{message}"),
            }
        }
    }
}

/// Environment variable that makes `crash_child` write.
pub const CRASH_URL_VAR: &str = "SWITCHYARD_STORAGE_CRASH_URL";

/// Writes flags `crash-0`, `crash-1`, ... and prints `acked N` after each write returns,
/// until killed (or after 100,000 writes).
pub fn crash_child() {
    let Ok(url) = std::env::var(CRASH_URL_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        use std::io::Write as _;
        let store = Store::connect(&url).await.expect("child connect");
        for i in 0..100_000 {
            let write = Write {
                key: format!("crash-{i}"),
                expect: Expect::Absent,
                definition: Some(json!({ "n": i })),
                archived: false,
                audit: AuditInfo::new("crash-child", "flag.create"),
            };
            store.write_flag(&write).await.expect("child write");
            let mut out = std::io::stdout().lock();
            writeln!(out, "acked {i}").expect("stdout");
            out.flush().expect("flush");
        }
    });
}
