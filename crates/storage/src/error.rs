//! The storage error type: one enum for every failure, each keeping its cause as `source`.

use crate::Backend;

/// `Result` with [`StoreError`].
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything a [`Store`](crate::Store) operation can fail with.
///
/// Messages never repeat their cause: print the whole `source()` chain to see it. They never
/// contain a password either (URLs are redacted before they are stored here).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage URL is malformed or names an unsupported scheme. `url` is redacted.
    #[error("invalid storage URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to the {backend} database")]
    Connect {
        /// Which backend the URL selected.
        backend: Backend,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying a schema migration failed; the migration was rolled back.
    #[error("schema migration {version} failed")]
    Migrate {
        /// The migration being applied (0: creating the migrations table itself).
        version: i64,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer Switchyard than this one.
    #[error(
        "the database schema is at version {found}, newer than this build supports \
         (up to {supported}); upgrade Switchyard or point it at another database"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: i64,
        /// The newest migration this build knows.
        supported: i64,
    },
    /// The stored state is not what the caller expected (stale version, already exists,
    /// already revoked). Nothing was changed.
    #[error("conflict: {}", conflict_message(subject, *expected, *actual))]
    Conflict {
        /// What conflicted, e.g. `flag "checkout"`.
        subject: String,
        /// The version the caller expected (`None`: expected it to be absent).
        expected: Option<i64>,
        /// The version actually stored (`None`: no version applies).
        actual: Option<i64>,
    },
    /// The subject does not exist. Nothing was changed.
    #[error("{subject} not found")]
    NotFound {
        /// What was missing, e.g. `segment "beta"`.
        subject: String,
    },
    /// Any other database failure.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be read back (e.g. a JSON column that does not parse).
    #[error("corrupt data in {subject}: {reason}")]
    Corrupt {
        /// Where the bad data is, e.g. `flag "checkout"`.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn conflict_message(subject: &str, expected: Option<i64>, actual: Option<i64>) -> String {
    match (expected, actual) {
        (Some(expected), Some(actual)) => {
            format!("{subject} is at version {actual}, not the expected version {expected}")
        }
        (None, Some(actual)) => format!("{subject} already exists (version {actual})"),
        (Some(expected), None) => {
            format!("{subject} was expected at version {expected} but has none")
        }
        (None, None) => format!("{subject} already exists"),
    }
}

impl StoreError {
    /// Whether the database could not be reached (refused or dropped connections, a pool
    /// timeout, a server shutting down): the caller may retry later, and nothing it asked for
    /// is known to have happened. Other errors are bugs or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            // SQLite is a local file: failing to open it is a configuration problem, not an
            // outage to wait out.
            StoreError::Connect {
                backend: Backend::Postgres,
                source,
            }
            | StoreError::Migrate { source, .. } => is_unavailable(source),
            StoreError::Database(err) => is_unavailable(err),
            _ => false,
        }
    }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now, and the connection
        // exception class (08...).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(&*code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_messages_name_both_versions() {
        let stale = StoreError::Conflict {
            subject: "flag \"a\"".into(),
            expected: Some(1),
            actual: Some(3),
        };
        assert_eq!(
            stale.to_string(),
            "conflict: flag \"a\" is at version 3, not the expected version 1"
        );
        let exists = StoreError::Conflict {
            subject: "flag \"a\"".into(),
            expected: None,
            actual: Some(2),
        };
        assert_eq!(
            exists.to_string(),
            "conflict: flag \"a\" already exists (version 2)"
        );
    }
}
