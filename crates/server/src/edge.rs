//! The edge of the HTTP app: every error the server can produce is JSON, in the shape of the
//! API it is on, whoever produced it (a handler, the router, a body limit, an extractor's
//! rejection, a timeout); request targets and headers beyond their limits get a JSON 414 /
//! 431 here, well below hyper's own backstop.
//!
//! OFREP paths answer in OFREP's error shape (`{"errorCode", "errorDetails"}`, plus `key` on
//! the single-flag path); everything else in the admin API's (`{"error": {"code",
//! "message"}}`).

use std::time::Instant;

use axum::body::to_bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest request target (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How tower-http's body timeout error reads.
const BODY_TIMED_OUT: &str = "data was not received within the designated timeout";

/// How much of a non-JSON error body is kept as the message.
const MESSAGE_BYTES: usize = 4096;

/// The router's fallback: no route has this path.
pub async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    error_for(
        path,
        StatusCode::NOT_FOUND,
        &format!("no route {path} (the routes are listed at /api/v1/openapi.json)"),
    )
}

/// The route exists, with other methods.
pub async fn method_not_allowed(request: Request) -> Response {
    let path = request.uri().path();
    let method = request.method();
    error_for(
        path,
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed on {path} (see /api/v1/openapi.json)"),
    )
}

/// The edge of every route, as one layer (each layer costs a clone of the services below it
/// and a boxed future per request): the limits on the request head (414 / 431), then the
/// route's guard (`auth::guard`, with the access the route table gives it) and the request,
/// then any error that is not JSON made JSON (`json_error`), then the request's latency
/// recorded by route and status.
pub async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(refusal) = head_refusal(&request) {
        return refusal;
    }
    let start = Instant::now();
    let method = request.method().clone();
    // MatchedPath and Uri are shared strings: cloning them does not allocate.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let uri = request.uri().clone();
    let access = route
        .as_ref()
        .and_then(|r| crate::access_of(&method, r.as_str()));
    let response = match access {
        Some(access) => crate::auth::guard(state.clone(), access, request, next).await,
        None => next.run(request).await,
    };
    let response = json_error(&uri, response).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .http
        .with_label_values(&[method.as_str(), route, response.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// 414 / 431 for request targets and headers beyond their limits.
fn head_refusal(request: &Request) -> Option<Response> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(error_for(
            request.uri().path(),
            StatusCode::URI_TOO_LONG,
            &format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are accepted"),
        ));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Some(error_for(
            request.uri().path(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request headers are {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        ));
    }
    None
}

/// Rewrites an error response that is not JSON (an extractor's `text/plain` rejection, a
/// body limit's 413, an empty 405 or 408) into the JSON error of its API.
async fn json_error(uri: &Uri, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    // The web UI's pages (a failed sign-in is a page saying why) stay pages.
    if uri.path().starts_with("/ui/") && is_html(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = to_bytes(body, MESSAGE_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        default_message(status)
    } else {
        text
    };
    // The body timeout surfaces as the body extractor's 400 with tower-http's `TimedOut`
    // message; it is the client's slowness, so 408 (pinned by a test with the real binary).
    let status = if status == StatusCode::BAD_REQUEST && message.ends_with(BODY_TIMED_OUT) {
        StatusCode::REQUEST_TIMEOUT
    } else {
        status
    };
    let mut fixed = error_for(uri.path(), status, &message);
    // Keep what the original said about retrying or allowed methods.
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::REQUEST_TIMEOUT => "the request was not received in time".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route accepts".to_owned()
        }
        StatusCode::SERVICE_UNAVAILABLE => "the server did not answer in time; retry".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
    }
}

/// The JSON error for `path`'s API.
pub fn error_for(path: &str, status: StatusCode, message: &str) -> Response {
    if let Some(rest) = path.strip_prefix("/ofrep/") {
        let code = match status {
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE => "PARSE_ERROR",
            StatusCode::NOT_FOUND if rest.starts_with("v1/evaluate/flags/") => "FLAG_NOT_FOUND",
            _ => "GENERAL",
        };
        let key = rest
            .strip_prefix("v1/evaluate/flags/")
            .filter(|k| !k.is_empty())
            .map(percent_decoded);
        return crate::ofrep::error_body(status, key.as_deref(), code, message);
    }
    let mut response = ApiError::new(ErrorCode::for_status(status), message).into_response();
    // The code's own status may differ (a 4xx without its own code is `bad_request`); the
    // status produced is the one kept.
    *response.status_mut() = status;
    response
}

/// The flag key as the client meant it (`%2F` → `/`), lossy on invalid UTF-8.
fn percent_decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ofrep_errors_take_the_ofrep_shape_with_the_key() {
        let r = error_for(
            "/ofrep/v1/evaluate/flags/a%2Fb",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too big",
        );
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorCode"], "PARSE_ERROR");
        assert_eq!(v["key"], "a/b");
        assert_eq!(v["errorDetails"], "too big");
    }

    #[tokio::test]
    async fn admin_errors_keep_their_status_and_name_it() {
        let r = error_for("/api/v1/flags", StatusCode::URI_TOO_LONG, "long");
        assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
        let body = to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4", "not escapes: kept");
        assert_eq!(percent_decoded("caf%C3%A9"), "café");
    }
}
