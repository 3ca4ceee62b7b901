//! Storage URLs: which backend a URL selects, and how to print one without its password.
//!
//! Accepted forms:
//!
//! - `sqlite://PATH`: a SQLite database file; everything after `sqlite://` is the path, taken
//!   literally (relative to the working directory unless it starts with `/`, so
//!   `sqlite:///var/lib/switchyard/db.sqlite` is absolute). The file and its parent directory
//!   are created if missing.
//! - `sqlite::memory:`: a private in-memory SQLite database (tests, demos); gone on `close`.
//! - `postgres://...` or `postgresql://...`: a PostgreSQL connection URL, passed to the driver
//!   as is (so `?options=-c%20search_path%3Dmy_schema` selects a schema).

use std::path::PathBuf;

use crate::{Backend, Result, StoreError};

/// Where a storage URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `sqlite::memory:`.
    SqliteMemory,
    /// `sqlite://PATH`, with the path as written.
    SqliteFile(PathBuf),
    /// A PostgreSQL URL, unchanged.
    Postgres(String),
}

impl Location {
    /// The backend this location is served by.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Location::SqliteMemory | Location::SqliteFile(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Parses a storage URL (see the module docs for the accepted forms).
pub(crate) fn parse(url: &str) -> Result<Location> {
    let url = url.trim();
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: redact(url),
        reason,
    };
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(Location::SqliteMemory);
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(invalid(
                "the SQLite URL names no file: use `sqlite://PATH`".into(),
            ));
        }
        if path.contains('?') {
            return Err(invalid(
                "SQLite URLs take no query parameters: the store sets its own pragmas".into(),
            ));
        }
        return Ok(Location::SqliteFile(PathBuf::from(path)));
    }
    if url.starts_with("sqlite:") {
        return Err(invalid(
            "expected `sqlite://PATH` or `sqlite::memory:` after the `sqlite:` scheme".into(),
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Let the driver validate host, port and parameters now, so a typo is an URL error
        // rather than a connection failure. Its messages quote no part of the URL.
        return match url.parse::<sqlx::postgres::PgConnectOptions>() {
            Ok(_) => Ok(Location::Postgres(url.to_owned())),
            Err(err) => Err(invalid(format!("not a valid PostgreSQL URL: {err}"))),
        };
    }
    let reason = match url.split_once(':') {
        Some((scheme, _)) if !scheme.is_empty() => format!(
            "unsupported scheme `{scheme}`: use `sqlite://PATH`, `sqlite::memory:` or `postgres://...`"
        ),
        _ => "missing scheme: use `sqlite://PATH`, `sqlite::memory:` or `postgres://...`".into(),
    };
    Err(invalid(reason))
}

/// Returns `url` with the password in its user info and any `password`-like query parameter
/// replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);

    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }

    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (query, None),
        };
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    out.push_str(key);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

/// The URL handed to the SQLite driver for an absolute file path: every byte outside the
/// unreserved set and `/` is percent-encoded (the driver decodes it), and `mode=rwc` creates
/// the file if it is missing.
pub(crate) fn sqlite_driver_url(absolute: &std::path::Path) -> String {
    let mut out = String::from("sqlite://");
    for &byte in absolute.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out.push_str("?mode=rwc");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match parse(url) {
            Err(StoreError::InvalidUrl { reason, .. }) => reason,
            other => panic!("expected InvalidUrl for {url:?}, got {other:?}"),
        }
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(parse("sqlite::memory:").ok(), Some(Location::SqliteMemory));
        assert_eq!(
            parse("sqlite://:memory:").ok(),
            Some(Location::SqliteMemory)
        );
        assert_eq!(
            parse("sqlite://data/switchyard.db").ok(),
            Some(Location::SqliteFile("data/switchyard.db".into()))
        );
        assert_eq!(
            parse("sqlite:///var/lib/s y/ä.db").ok(),
            Some(Location::SqliteFile("/var/lib/s y/ä.db".into()))
        );
        assert_eq!(
            parse(" sqlite://x.db\n").ok().map(|l| l.backend()),
            Some(Backend::Sqlite)
        );
        assert!(reason("sqlite://").contains("names no file"));
        assert!(reason("sqlite://x.db?mode=ro").contains("no query parameters"));
        assert!(reason("sqlite:x.db").contains("sqlite://PATH"));
    }

    #[test]
    fn postgres_urls() {
        let url = "postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Ds1";
        assert_eq!(parse(url).ok(), Some(Location::Postgres(url.into())));
        let url = "postgresql://u:pw@db.internal/switchyard";
        assert_eq!(
            parse(url).ok().map(|l| l.backend()),
            Some(Backend::Postgres)
        );
        assert!(reason("postgres://u:secret@host:notaport/db").contains("PostgreSQL URL"));
    }

    #[test]
    fn unsupported_schemes_are_named() {
        assert!(reason("mysql://root@localhost/db").contains("unsupported scheme `mysql`"));
        assert!(reason("switchyard.db").contains("missing scheme"));
        assert!(reason("").contains("missing scheme"));
    }

    #[test]
    fn invalid_url_errors_never_contain_the_password() {
        for url in [
            "mysql://admin:hunter2@db/x",
            "postgres://admin:hunter2@db:99999999/x",
            "postgres://admin@db:port/x?password=hunter2&sslmode=require",
        ] {
            let err = parse(url).expect_err(url);
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgres://u:p@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://u:p:q@h"), "postgres://u:***@h");
        assert_eq!(redact("postgres://u:p@x@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=p&SSLPassword=q#f"),
            "postgres://h/db?sslmode=require&password=***&SSLPassword=***#f"
        );
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact("sqlite://data/db.sqlite"), "sqlite://data/db.sqlite");
    }

    #[test]
    fn sqlite_driver_urls_escape_everything_unusual() {
        assert_eq!(
            sqlite_driver_url(std::path::Path::new("/tmp/a b/c?#%ä.db")),
            "sqlite:///tmp/a%20b/c%3F%23%25%C3%A4.db?mode=rwc"
        );
    }
}
