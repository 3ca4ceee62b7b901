//! Versioned schema migrations: `migrations/{sqlite,postgres}/NNNN_name.sql`, compiled in.
//!
//! The runner keeps `schema_migrations(version, applied_at_ms)`. Each pending migration runs
//! in its own transaction that first inserts its `schema_migrations` row: that insert takes
//! the write lock (SQLite) or blocks on the primary key (PostgreSQL), so when two processes
//! start at once the second waits, fails the insert, and skips the migration. Running the
//! runner again applies nothing (idempotent). A database whose newest version is unknown to
//! this build is refused with [`StoreError::SchemaTooNew`] rather than used.

use sqlx::{AnyPool, Executor, Row};

use crate::{Backend, Result, StoreError};

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its number; migrations run in increasing order.
    pub(crate) version: i64,
    /// Its file name without the number and extension.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "documents the list; checked by a test")
    )]
    pub(crate) name: &'static str,
    /// The statements, run as one script.
    pub(crate) sql: &'static str,
}

/// SQLite migrations, oldest first. A test checks this list against the directory.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "change_feed",
        sql: include_str!("../migrations/sqlite/0002_change_feed.sql"),
    },
    Migration {
        version: 3,
        name: "events",
        sql: include_str!("../migrations/sqlite/0003_events.sql"),
    },
    Migration {
        version: 4,
        name: "experiments",
        sql: include_str!("../migrations/sqlite/0004_experiments.sql"),
    },
    Migration {
        version: 5,
        name: "automation",
        sql: include_str!("../migrations/sqlite/0005_automation.sql"),
    },
    Migration {
        version: 6,
        name: "rollouts",
        sql: include_str!("../migrations/sqlite/0006_rollouts.sql"),
    },
    Migration {
        version: 7,
        name: "sessions",
        sql: include_str!("../migrations/sqlite/0007_sessions.sql"),
    },
];

/// PostgreSQL migrations, oldest first; the same versions as [`SQLITE`].
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "change_feed",
        sql: include_str!("../migrations/postgres/0002_change_feed.sql"),
    },
    Migration {
        version: 3,
        name: "events",
        sql: include_str!("../migrations/postgres/0003_events.sql"),
    },
    Migration {
        version: 4,
        name: "experiments",
        sql: include_str!("../migrations/postgres/0004_experiments.sql"),
    },
    Migration {
        version: 5,
        name: "automation",
        sql: include_str!("../migrations/postgres/0005_automation.sql"),
    },
    Migration {
        version: 6,
        name: "rollouts",
        sql: include_str!("../migrations/postgres/0006_rollouts.sql"),
    },
    Migration {
        version: 7,
        name: "sessions",
        sql: include_str!("../migrations/postgres/0007_sessions.sql"),
    },
];

/// The migrations of one backend.
pub(crate) fn migrations(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The newest schema version this build knows.
pub(crate) fn latest(backend: Backend) -> i64 {
    migrations(backend).last().map_or(0, |m| m.version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
)";

/// Brings the schema up to date.
pub(crate) async fn run(pool: &AnyPool, backend: Backend, now_ms: i64) -> Result<()> {
    let bootstrap = |source| StoreError::Migrate { version: 0, source };

    let mut tx = pool.begin().await.map_err(bootstrap)?;
    if backend == Backend::Postgres {
        // `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent twin on PostgreSQL.
        sqlx::query("SELECT pg_advisory_xact_lock(7262431907)")
            .execute(&mut *tx)
            .await
            .map_err(bootstrap)?;
    }
    sqlx::query(CREATE_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(bootstrap)?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
        .map_err(bootstrap)?;
    tx.commit().await.map_err(bootstrap)?;

    let supported = latest(backend);
    if let Some(&found) = applied.iter().max() {
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
    }

    for migration in migrations(backend) {
        if applied.contains(&migration.version) {
            continue;
        }
        apply(pool, migration, now_ms).await?;
    }
    Ok(())
}

async fn apply(pool: &AnyPool, migration: &Migration, now_ms: i64) -> Result<()> {
    let failed = |source| StoreError::Migrate {
        version: migration.version,
        source,
    };
    let mut tx = pool.begin().await.map_err(failed)?;
    let claimed =
        sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(now_ms)
            .execute(&mut *tx)
            .await;
    match claimed {
        Ok(_) => {}
        // Another process applied it since we looked.
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => return Ok(()),
        Err(err) => return Err(failed(err)),
    }
    // A query without arguments runs as a script: PostgreSQL's simple-query protocol and
    // SQLite both execute every statement in it.
    tx.execute(migration.sql).await.map_err(failed)?;
    tx.commit().await.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in lists name exactly the files on disk, numbered 1, 2, 3, ...
    #[test]
    fn migration_lists_match_the_directories() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .expect("migrations directory")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            files.sort();
            let expected: Vec<String> = list
                .iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.name))
                .collect();
            assert_eq!(files, expected, "{path}");
            for (i, m) in list.iter().enumerate() {
                assert_eq!(
                    m.version,
                    i as i64 + 1,
                    "{dir} migrations are numbered 1, 2, 3, ..."
                );
                let on_disk =
                    std::fs::read_to_string(format!("{path}/{:04}_{}.sql", m.version, m.name))
                        .expect("migration file");
                assert_eq!(on_disk, m.sql);
            }
        }
        let versions = |list: &[Migration]| list.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            versions(SQLITE),
            versions(POSTGRES),
            "both backends share schema versions"
        );
    }
}
