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

/// A database created by version 1 of the schema (before the change feed) upgrades in place:
/// its data is kept, duplicate active token names are made unique, and the feed starts at the
/// current revision (a replica older than that reloads everything).
#[tokio::test]
async fn a_version_1_database_upgrades_to_the_change_feed() {
    use sqlx::{Connection, Executor, Row};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/v1.db", dir.path().display());
    {
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&format!(
            "sqlite://{}/v1.db?mode=rwc",
            dir.path().display()
        ))
        .await
        .expect("raw");
        raw.execute(include_str!("../../migrations/sqlite/0001_initial.sql"))
            .await
            .expect("v1 schema");
        raw.execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             UPDATE store_revision SET revision = 7;
             INSERT INTO flags (key, version, definition, created_at_ms, updated_at_ms) VALUES ('kept', 3, '{}', 0, 0);
             INSERT INTO tokens (id, name, role, secret_hash, created_at_ms) VALUES ('a', 'bootstrap-admin', 'admin', 'h', 0);
             INSERT INTO tokens (id, name, role, secret_hash, created_at_ms) VALUES ('b', 'bootstrap-admin', 'editor', 'h', 0);",
        )
        .await
        .expect("v1 data");
        raw.close().await.expect("close");
    }
    let store = Store::connect(&url).await.expect("upgrade");
    let flag = store.get_flag("kept").await.expect("get").expect("kept");
    assert_eq!(flag.version, 3);
    let tokens = store.list_tokens().await.expect("tokens");
    let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["bootstrap-admin", "bootstrap-admin-b"]);
    assert_eq!(store.revisions().await.expect("revisions"), (7, 7));
    assert!(store.changes_since(6).await.expect("changes").is_none());
    assert!(store.changes_since(7).await.expect("changes").is_some());
    let mut raw = sqlx::AnyConnection::connect(&url).await.expect("raw");
    let row = sqlx::query("SELECT COUNT(*) AS n FROM schema_migrations")
        .fetch_one(&mut raw)
        .await
        .expect("count");
    // Every migration since, the event tables' included.
    assert_eq!(row.get::<i64, _>("n"), 7);
}
