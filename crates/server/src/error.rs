//! The admin API's errors: a closed set of codes, mapped to HTTP status and the one JSON body
//! shape (`{"error": {"code", "message", "details"}}`) in exactly one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use switchyard_api_types::{ErrorBody, ErrorInfo, FieldProblem};
use switchyard_control::ControlError;
use switchyard_engine::Diagnostic;
use switchyard_storage::StoreError;

/// What kind of failure; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No or bad credentials (401).
    Unauthorized,
    /// The token's role may not do this (403).
    Forbidden,
    /// No such resource (404).
    NotFound,
    /// Stale version or already exists (409).
    Conflict,
    /// A full replacement without `If-Match` (428).
    PreconditionRequired,
    /// The server serves flags read-only from a file (409).
    ReadOnly,
    /// The body or query is malformed (400).
    BadRequest,
    /// The definition is invalid; `details` lists every problem (422).
    ValidationFailed,
    /// Too many requests (429).
    RateLimited,
    /// The store is unreachable, or the server holds its maximum of connections (503).
    Unavailable,
    /// The route exists, not with this method (405).
    MethodNotAllowed,
    /// The client was too slow sending its request (408).
    RequestTimeout,
    /// The body is larger than the route accepts (413).
    PayloadTooLarge,
    /// The request target is too long (414).
    UriTooLong,
    /// The body is not JSON where JSON is required (415).
    UnsupportedMediaType,
    /// The request's headers are too large (431).
    HeadersTooLarge,
    /// Anything else; details are logged, not returned (500).
    Internal,
}

impl ErrorCode {
    /// The code for an HTTP error status produced outside the handlers (the router, a body
    /// limit, an extractor's rejection, a timeout).
    pub fn for_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PRECONDITION_REQUIRED => ErrorCode::PreconditionRequired,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::ValidationFailed,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }

    /// HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ErrorCode::ReadOnly => StatusCode::CONFLICT,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` string in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionRequired => "precondition_required",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An admin API error.
#[derive(Debug)]
pub struct ApiError {
    /// Kind.
    pub code: ErrorCode,
    /// Message for the client.
    pub message: String,
    /// Structured details for the client.
    pub details: Value,
    /// Internal cause: logged, never returned.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Null,
            source: None,
        }
    }

    /// With structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 404 for a named thing.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} was not found"))
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 500 with a logged cause.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: "internal error; see the server log".to_owned(),
            details: Value::Null,
            source: Some(Box::new(source)),
        }
    }

    /// 422 listing every diagnostic.
    pub fn validation(diagnostics: &[Diagnostic]) -> Self {
        let problems: Vec<FieldProblem> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| FieldProblem {
                path: if d.path.is_root() {
                    String::new()
                } else {
                    d.path.to_string()
                },
                flag: d.flag.clone(),
                line: d.line,
                message: d.message.clone(),
            })
            .collect();
        let summary = match problems.as_slice() {
            [one] if one.path.is_empty() => one.message.clone(),
            [one] => format!("{}: {}", one.path, one.message),
            many => format!("{} problems; see details", many.len()),
        };
        Self::new(ErrorCode::ValidationFailed, summary)
            .with_details(serde_json::json!({ "problems": problems }))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::from(ControlError::from(err))
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::NotFound { what, hint } => {
                let message = match &hint {
                    Some(hint) => format!("{what} was not found; {hint}"),
                    None => format!("{what} was not found"),
                };
                ApiError::new(ErrorCode::NotFound, message)
            }
            ControlError::AlreadyExists { what } => {
                ApiError::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            err @ ControlError::Stale {
                expected, current, ..
            } => ApiError::new(ErrorCode::Conflict, err.to_string()).with_details(
                serde_json::json!({ "expectedVersion": expected, "currentVersion": current }),
            ),
            err @ ControlError::PreconditionRequired { current, .. } => ApiError::new(
                ErrorCode::PreconditionRequired,
                format!("{err} (`If-Match: *` or `?force=true`)"),
            )
            .with_details(serde_json::json!({ "currentVersion": current })),
            ControlError::Invalid { diagnostics } => ApiError::validation(&diagnostics),
            ControlError::BadRequest { field, message } => {
                let error = ApiError::bad_request(message);
                match field {
                    Some(field) => error.with_details(serde_json::json!({ "field": field })),
                    None => error,
                }
            }
            ControlError::Refused { message } => ApiError::new(ErrorCode::Conflict, message),
            err @ ControlError::ReadOnly { .. } => {
                ApiError::new(ErrorCode::ReadOnly, err.to_string())
            }
            ControlError::Unavailable { reason, source } => {
                tracing::warn!(%reason, "request refused: the store is unavailable");
                Self {
                    code: ErrorCode::Unavailable,
                    message: format!(
                        "the store is unavailable ({reason}); evaluations continue, retry the change later"
                    ),
                    details: Value::Null,
                    source: source.map(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>),
                }
            }
            err @ (ControlError::Store(_) | ControlError::Internal(_)) => ApiError::internal(err),
            // The flag handlers answer 202 with the request; elsewhere it is still no success.
            err @ ControlError::ApprovalRequired { .. } => {
                let details = match &err {
                    ControlError::ApprovalRequired { request } => {
                        serde_json::json!({ "request": request })
                    }
                    _ => Value::Null,
                };
                ApiError::new(ErrorCode::Conflict, err.to_string()).with_details(details)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            if self.code == ErrorCode::Internal {
                tracing::error!(code = self.code.as_str(), error = %chain(source.as_ref()), "request failed");
            }
        }
        let retry = self.code == ErrorCode::Unavailable;
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code.as_str().to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        if retry {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// An error and all its causes, one line (for the log: the cause is never dropped).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Result of an admin handler.
pub type ApiResult<T> = Result<T, ApiError>;
