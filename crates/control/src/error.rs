//! The control layer's error: what went wrong with an operation, in terms a caller can act on
//! (the server maps each variant to one HTTP status in one exhaustive `match`).

use switchyard_engine::Diagnostic;
use switchyard_storage::StoreError;

/// `Result` with [`ControlError`].
pub type Result<T> = std::result::Result<T, ControlError>;

/// Why an operation did not happen. Whatever the variant, nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The flag, segment, environment or token does not exist.
    #[error("{what} was not found")]
    NotFound {
        /// What was missing, e.g. ``flag `checkout` ``.
        what: String,
        /// A hint (the names that do exist, a close match), when there is one.
        hint: Option<String>,
    },
    /// It already exists (a create of something present).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What, e.g. ``flag `checkout` ``.
        what: String,
    },
    /// The caller's `If-Match` version is not the stored one: someone changed it since.
    #[error(
        "{what} is at version {current}, not {expected}: it changed since you read it; fetch it again and retry"
    )]
    Stale {
        /// What, e.g. ``flag `checkout` ``.
        what: String,
        /// The version the caller sent.
        expected: i64,
        /// The version stored.
        current: i64,
    },
    /// A full replacement without the version it replaces (`If-Match`), which would silently
    /// discard a concurrent change.
    #[error(
        "replacing {what} needs the version you read in If-Match (its ETag, now \"{current}\"), so a concurrent change is not lost; or force the replacement"
    )]
    PreconditionRequired {
        /// What, e.g. ``flag `checkout` ``.
        what: String,
        /// The version stored now.
        current: i64,
    },
    /// The result would not compile; every problem, with its path (and line, for files).
    #[error("{}", summary(.diagnostics))]
    Invalid {
        /// The engine's diagnostics (errors only).
        diagnostics: Vec<Diagnostic>,
    },
    /// The request itself is malformed (a bad name, a missing field), with the field it is about.
    #[error("{message}")]
    BadRequest {
        /// The field or parameter at fault, if one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The operation conflicts with a rule of the system (the last admin token, a token
    /// already revoked); the message says which.
    #[error("{message}")]
    Refused {
        /// What rule, in a sentence.
        message: String,
    },
    /// Flags are served read-only from a file (GitOps mode).
    #[error("flags are served read-only from {path}; change that file instead")]
    ReadOnly {
        /// The flag file.
        path: String,
    },
    /// The store cannot be reached (or is not connected yet); evaluations still work from
    /// memory. Retry later.
    #[error("the store is unavailable: {reason}")]
    Unavailable {
        /// Why, for people.
        reason: String,
        /// The store's error, when there is one.
        #[source]
        source: Option<StoreError>,
    },
    /// The store failed in a way that is not an outage (a bug or corrupt data); logged.
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// An internal failure (a panicked compile task); logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// The change was not applied: the environment requires approval, and it now waits as
    /// this change request for someone else to approve.
    #[error("flag `{}` in {} requires approval: the change waits as request {}", .request.flag, .request.environments.join(", "), .request.id)]
    ApprovalRequired {
        /// The request written.
        request: Box<switchyard_api_types::requests::ChangeRequest>,
    },
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    match diagnostics {
        [one] if one.path.is_root() => one.message.clone(),
        [one] => format!("{}: {}", one.path, one.message),
        many => format!("{} problems; see details", many.len()),
    }
}

impl ControlError {
    /// A not-found error without a hint.
    pub fn not_found(what: impl Into<String>) -> Self {
        ControlError::NotFound {
            what: what.into(),
            hint: None,
        }
    }

    /// A bad-request error about `field`.
    pub fn bad_request(field: Option<&str>, message: impl Into<String>) -> Self {
        ControlError::BadRequest {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The validation error for `diagnostics` (warnings are dropped).
    pub fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        ControlError::Invalid {
            diagnostics: diagnostics
                .into_iter()
                .filter(Diagnostic::is_error)
                .collect(),
        }
    }
}

impl From<StoreError> for ControlError {
    fn from(err: StoreError) -> Self {
        match err {
            err if err.is_unavailable() => ControlError::Unavailable {
                reason: unavailable_reason(&err),
                source: Some(err),
            },
            StoreError::NotFound { subject } => ControlError::not_found(subject),
            StoreError::Conflict {
                subject,
                expected: Some(expected),
                actual: Some(current),
            } => ControlError::Stale {
                what: subject,
                expected,
                current,
            },
            StoreError::Conflict { subject, .. } => ControlError::AlreadyExists { what: subject },
            err => ControlError::Store(err),
        }
    }
}

/// The cause of an outage in one line (the whole error chain).
pub(crate) fn unavailable_reason(err: &StoreError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
