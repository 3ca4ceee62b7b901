//! One database per test (a SQLite file, or a PostgreSQL schema dropped afterwards even when
//! the test panics), and as many replicas — control layers with their own store pool — on it
//! as a test wants.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Executor};
use switchyard_control::{AdminToken, BootstrapPlan, Control, Settings, Source};
use switchyard_storage::{Store, StoreOptions};

/// The PostgreSQL the tests run against unless `SWITCHYARD_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database the test's replicas share.
pub struct Db {
    pub url: String,
    #[allow(dead_code)]
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
}

/// Fast settings for tests.
pub fn settings() -> Settings {
    Settings {
        sync_interval: Duration::from_millis(100),
        ..Settings::default()
    }
}

impl Db {
    /// A new replica: its own store (pool) and control layer, loaded, not yet syncing.
    pub async fn replica(&self) -> Control {
        let store = Store::connect_with(
            &self.url,
            &StoreOptions {
                acquire_timeout: Duration::from_secs(5),
                // Experiments here have hundreds to thousands of units: summed in ranges, as
                // the large ones are in production.
                summary_units_per_range: 150,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e:?}", self.url));
        let control = Control::new(Source::Store, settings());
        control.attach(store).await.expect("attach");
        control
    }

    /// A replica that keeps itself current (its sync loop runs until the test ends).
    pub async fn syncing_replica(&self) -> Control {
        let control = self.replica().await;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let runner = control.clone();
        tokio::spawn(async move {
            runner.run(rx).await;
            drop(tx);
        });
        control
    }
}

/// The plan of a plain first start: the three environments and a generated admin token.
/// A person acting through an API token named `name`.
pub fn person(name: &str) -> switchyard_control::Actor {
    switchyard_control::Actor {
        id: format!("token:{name}"),
        name: Some(name.into()),
    }
}

pub fn plan() -> BootstrapPlan {
    BootstrapPlan {
        environments: vec!["development".into(), "staging".into(), "production".into()],
        admin_token: AdminToken::GenerateIfNone,
        seed: None,
        imports: vec![],
        overwrite_imports: false,
    }
}

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `test` on a fresh database of `kind`, cleaning up even if it panics.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/switchyard.db", dir.path().display());
            test(Db {
                url,
                kind,
                _dir: Some(dir),
            })
            .await;
        }
        Kind::Postgres => {
            let base = postgres_url();
            sqlx::any::install_default_drivers();
            let mut admin = AnyConnection::connect(&base).await.unwrap_or_else(|err| {
                panic!(
                    "these tests need PostgreSQL at {base} (SWITCHYARD_TEST_POSTGRES_URL): {err}"
                )
            });
            let schema = format!("sy_ctl_{}", unique());
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("create schema");
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
            let outcome = tokio::spawn(test(Db {
                url,
                kind,
                _dir: None,
            }))
            .await;
            admin
                .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .expect("drop schema");
            admin.close().await.ok();
            if let Err(join) = outcome {
                std::panic::resume_unwind(join.into_panic());
            }
        }
    }
}

/// Waits until `check` holds (polling), failing after `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
