//! Connection errors: bad URLs and unreachable databases fail fast with the real cause.

use std::time::{Duration, Instant};

use switchyard_storage::{Backend, Store, StoreError};

use crate::harness::chain;

#[tokio::test]
async fn bad_urls_are_invalid_url_errors() {
    for url in [
        "mysql://root:pw@localhost/db",
        "switchyard.db",
        "sqlite:x.db",
        "sqlite://",
    ] {
        match Store::connect(url).await {
            Err(err @ StoreError::InvalidUrl { .. }) => {
                assert!(!err.to_string().contains(":pw@"), "{err}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unreachable_postgres_fails_fast_with_the_cause() {
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = Store::connect("postgres://postgres:hunter2@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Postgres,
                ..
            }
        ),
        "{err:?}"
    );
    let text = chain(&err);
    assert!(
        text.starts_with("cannot connect to the PostgreSQL database"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unopenable_sqlite_file_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the database file should be.
    std::fs::create_dir(dir.path().join("db")).expect("mkdir");
    let err = Store::connect(&format!("sqlite://{}/db", dir.path().display()))
        .await
        .expect_err("a directory is not a database");
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Sqlite,
                ..
            }
        ),
        "{err:?}"
    );
}
