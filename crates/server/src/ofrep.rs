//! OFREP: `POST /ofrep/v1/evaluate/flags/{key}` and `POST /ofrep/v1/evaluate/flags`, as in
//! `shared/specs/ofrep-openapi.yaml`, with the behaviour the real OpenFeature clients need:
//! JSON content type on every response, `variant` and a standard reason always, floats kept
//! floats, `key`/`errorCode`/`errorDetails` on every error body, strong ETag and 304 on bulk,
//! 429 with `Retry-After`. Evaluation reads the in-memory snapshot only; no database access.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_engine::{
    Context, ContextJsonError, ContextLimits, Detail, ErrorCode, Evaluation, Reason,
};

use crate::auth::{Caller, Denied};
use crate::listen::Limits;
use crate::state::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a> {
    key: &'a str,
    value: &'a Value,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure<'a> {
    key: &'a str,
    error_code: &'static str,
    error_details: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success(Success<'a>),
    Failure(Failure<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    metadata: SetMetadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_streams: Option<[switchyard_api_types::ofrep::EventStream; 1]>,
}

/// The flag set's metadata in a bulk response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SetMetadata {
    /// The ruleset revision the answers come from.
    revision: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkFailure<'a> {
    error_code: &'static str,
    error_details: &'a str,
}

/// Headers an OFREP answer's map ends up with: its own (type, ETag on bulk) and CORS's three
/// (hyper writes the length and the date straight to the wire).
const ANSWER_HEADERS: usize = 5;

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    // Sized once for the headers the answer will carry (a header map grows by copying).
    let mut headers = HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

fn failure(status: StatusCode, key: &str, code: &'static str, details: &str) -> Response {
    json(
        status,
        to_vec(&Failure {
            key,
            error_code: code,
            error_details: details,
            metadata: None,
        }),
    )
}

/// An OFREP error: with the key on the single-flag path, without it on the bulk path.
pub(crate) fn error_body(
    status: StatusCode,
    key: Option<&str>,
    code: &'static str,
    details: &str,
) -> Response {
    match key {
        Some(key) => failure(status, key, code, details),
        None => json(
            status,
            to_vec(&BulkFailure {
                error_code: code,
                error_details: details,
            }),
        ),
    }
}

/// The OFREP body for a caller the route guard turned away: single-flag failures carry the
/// key, bulk failures do not; 429 carries `Retry-After`.
pub(crate) fn refusal(denied: Denied, key: Option<&str>) -> Response {
    let details = denied.message();
    let mut response = error_body(denied.status(), key, "GENERAL", &details);
    if let Denied::RateLimited { retry_after_secs } = denied {
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// Parses the request body into a context; `Err` carries the OFREP error code and details.
/// The context is filed as the JSON is read (no JSON tree first), and one deeper or larger
/// than the configured limits is refused before it is built.
pub(crate) fn parse_context(
    body: &[u8],
    limits: &Limits,
) -> Result<Context, (&'static str, String)> {
    read_context(body, limits, Context::from_json)
}

/// `parse_context` by way of a JSON tree, as it was done before contexts were read
/// straight from the text: the reference the fuzz target and the tests hold it to.
pub fn parse_context_via_tree(
    body: &[u8],
    limits: &Limits,
) -> Result<Context, (&'static str, String)> {
    read_context(body, limits, Context::from_json_tree)
}

type Reader = fn(&[u8], &str, &str, ContextLimits) -> Result<Context, ContextJsonError>;

fn read_context(
    body: &[u8],
    limits: &Limits,
    read: Reader,
) -> Result<Context, (&'static str, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    read(body, "context", ENVELOPE, context_limits(limits)).map_err(|e| {
        let code = if e.is_syntax() {
            "PARSE_ERROR"
        } else {
            "INVALID_CONTEXT"
        };
        (code, e.to_string())
    })
}

fn context_limits(limits: &Limits) -> ContextLimits {
    ContextLimits {
        max_depth: limits.context_depth,
        max_values: limits.context_attributes,
    }
}

/// What an OFREP request body must be.
const ENVELOPE: &str = "the request body must be a JSON object `{\"context\": {...}}`";

/// Refuses a context nested deeper than `limits.context_depth` or with more than
/// `limits.context_attributes` values (leaves and array items), without recursing without
/// bound.
pub(crate) fn check_shape(ctx: &Value, limits: &Limits) -> Result<(), (&'static str, String)> {
    context_limits(limits)
        .check(ctx)
        .map_err(|e| ("INVALID_CONTEXT", e.to_string()))
}

/// Counts an evaluation. Keys that name no flag share one series: the key comes from the
/// URL (browser SDK keys are public), and a series per unknown key would let anyone grow the
/// server's memory and `/metrics` without bound.
fn record(state: &AppState, env: &str, now_secs: i64, key: &str, eval: &Evaluation<'_>) {
    let key = match &eval.error {
        Some(err) if err.code == ErrorCode::FlagNotFound => UNKNOWN_FLAG,
        _ => {
            state.evaluated.seen(env, key, now_secs);
            key
        }
    };
    state
        .metrics
        .evaluations
        .with_label_values(&[key, eval.variant.unwrap_or(""), eval.reason.as_str()])
        .inc();
}

/// Queues an exposure when a running experiment assigned the unit (see `recorder`).
fn expose(
    state: &AppState,
    env: &str,
    evaluator: &switchyard_engine::Evaluator<'_>,
    key: &str,
    ctx: &Context,
    eval: &Evaluation<'_>,
) {
    let Some(variant) = eval.variant else {
        return;
    };
    let (unit, experiment) = match eval.detail.as_ref().and_then(|d| d.experiment_id()) {
        Some(experiment) => {
            let unit = match evaluator.experiment_unit(key, ctx) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return,
            };
            (unit, experiment.to_owned())
        }
        // A progressive rollout's stage counts the units its fallthrough decided for — in the
        // rollout (a fallthrough hit, at any percentage up to 100) or not (a miss: the
        // default, no detail) — not those a target, rule or tenant sent elsewhere.
        None if eval.error.is_none()
            && (matches!(eval.detail, Some(Detail::Fallthrough))
                || (eval.detail.is_none() && eval.reason == Reason::Default)) =>
        {
            let Some(rollout) = state.control.rollout_exposures(env, key) else {
                return;
            };
            let unit = match evaluator.fallthrough_unit(key, ctx) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return,
            };
            (unit, rollout.to_string())
        }
        None => return,
    };
    let row = switchyard_storage::ExposureRow {
        environment: env.to_owned(),
        flag: key.to_owned(),
        unit,
        variant: variant.to_owned(),
        at_ms: crate::now_millis(),
        experiment: Some(experiment),
    };
    if !state.recorder.record(row) {
        state
            .metrics
            .events
            .with_label_values(&["exposure", "dropped"])
            .inc();
    }
}

/// The `flag` label of evaluations of keys that name no flag.
pub const UNKNOWN_FLAG: &str = "(unknown)";

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub async fn evaluate_flag(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let ctx = match parse_context(&body, &state.settings.limits) {
        Ok(ctx) => ctx,
        Err((code, details)) => return failure(StatusCode::BAD_REQUEST, &key, code, &details),
    };
    let snapshot = state.control.snapshot_guard();
    let env = principal.environment.as_deref().unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let evaluator = snapshot.ruleset.evaluator(env, now);
    let eval = evaluator.evaluate(&key, &ctx);
    record(&state, env, now.unix_timestamp(), &key, &eval);
    expose(&state, env, &evaluator, &key, &ctx, &eval);
    let status = match eval.error.as_deref().map(|e| e.code) {
        None => StatusCode::OK,
        Some(ErrorCode::FlagNotFound) => StatusCode::NOT_FOUND,
        Some(ErrorCode::General) => StatusCode::INTERNAL_SERVER_ERROR,
        Some(
            ErrorCode::TypeMismatch
            | ErrorCode::ParseError
            | ErrorCode::TargetingKeyMissing
            | ErrorCode::InvalidContext,
        ) => StatusCode::BAD_REQUEST,
    };
    json(
        status,
        to_vec(&item(&key, &eval, snapshot.client_metadata(&key))),
    )
}

/// One flag's answer, as the single-flag body and as an item of the bulk body.
fn item<'a>(
    key: &'a str,
    eval: &'a Evaluation<'_>,
    metadata: Option<&'a Map<String, Value>>,
) -> Item<'a> {
    match &eval.error {
        None => Item::Success(Success {
            key,
            value: eval.value,
            reason: eval.reason.as_str(),
            variant: eval.variant,
            metadata,
        }),
        Some(err) => Item::Failure(Failure {
            key,
            error_code: err.code.as_str(),
            error_details: &err.message,
            metadata,
        }),
    }
}

/// `POST /ofrep/v1/evaluate/flags` (bulk, strong ETag, 304 on `If-None-Match`).
pub async fn evaluate_all(
    State(state): State<AppState>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match parse_context(&body, &state.settings.limits) {
        Ok(ctx) => ctx,
        Err((code, details)) => {
            return json(
                StatusCode::BAD_REQUEST,
                to_vec(&BulkFailure {
                    error_code: code,
                    error_details: &details,
                }),
            )
        }
    };
    let snapshot = state.control.snapshot_guard();
    let env = principal.environment.as_deref().unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let evaluator = snapshot.ruleset.evaluator(env, now);
    let evals: Vec<(&str, Evaluation<'_>)> = evaluator.evaluate_all(&ctx).collect();
    for (key, eval) in &evals {
        record(&state, env, now.unix_timestamp(), key, eval);
        expose(&state, env, &evaluator, key, &ctx, eval);
    }
    let streams = crate::stream::advertised(&state, &principal.id).map(|s| [s]);
    let etag = bulk_etag(snapshot.ruleset_revision, &evals, streams.as_ref());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        // What the client has is current: nothing to render.
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let flags = evals
            .iter()
            .map(|(key, eval)| item(key, eval, snapshot.client_metadata(key)))
            .collect();
        json(
            StatusCode::OK,
            to_vec(&Bulk {
                flags,
                metadata: SetMetadata {
                    revision: snapshot.ruleset_revision,
                },
                event_streams: streams,
            }),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The strong ETag of a bulk answer, from what determines its body rather than from the
/// rendered body (so a 304 renders nothing): the ruleset revision (which fixes the flags, their
/// values, metadata and order), and per flag the variant, reason and error served, plus the
/// advertised event stream. Two answers with the same ETag have the same bytes.
fn bulk_etag(
    revision: i64,
    evals: &[(&str, Evaluation<'_>)],
    streams: Option<&[switchyard_api_types::ofrep::EventStream; 1]>,
) -> String {
    let mut h = Sha256::new();
    // The body's layout: a new one must not match an ETag of the old.
    h.update(b"ofrep-bulk-1\0");
    h.update(revision.to_le_bytes());
    for (key, eval) in evals {
        for part in [*key, eval.variant.unwrap_or(""), eval.reason.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        if let Some(err) = &eval.error {
            h.update(err.code.as_str().as_bytes());
            h.update([0]);
            h.update(err.message.as_bytes());
        }
        h.update([0xff]);
    }
    if let Some(streams) = streams {
        h.update(to_vec(streams));
    }
    format!("\"{}\"", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> Result<Context, (&'static str, String)> {
        parse_context(body, &Limits::default())
    }

    #[test]
    fn contexts_beyond_the_limits_are_refused_with_what_was_exceeded() {
        let limits = Limits {
            context_attributes: 3,
            context_depth: 2,
            ..Limits::default()
        };
        let ok = br#"{"context": {"targetingKey": "u", "a": {"b": 1}}}"#;
        assert!(parse_context(ok, &limits).is_ok());
        let deep = br#"{"context": {"a": {"b": {"c": 1}}}}"#;
        let (code, details) = parse_context(deep, &limits).unwrap_err();
        assert_eq!(code, "INVALID_CONTEXT");
        assert!(details.contains("more than 2 levels"), "{details}");
        let wide = br#"{"context": {"a": 1, "b": 2, "c": 3, "d": 4}}"#;
        let (_, details) = parse_context(wide, &limits).unwrap_err();
        assert!(details.contains("more than 3 values"), "{details}");
        // Deep arrays count as nesting too (serde_json's own limit is 128).
        let arrays = format!(
            r#"{{"context": {{"a": {}1{}}}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(parse(arrays.as_bytes()).is_err());
    }

    /// Arbitrary JSON: objects with keys that collide once flattened (`a.b` beside
    /// `{"a": {"b"}}`), arrays, every scalar, the targeting key in any type.
    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-c.]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec![
                            "targetingKey",
                            "a",
                            "b",
                            "a.b",
                            "a.a",
                            "b.a"
                        ])
                        .prop_map(str::to_owned),
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn reading_a_context_from_text_is_reading_it_through_a_tree(
            context in json(),
            depth in 0u16..6,
            attributes in 0usize..40,
        ) {
            let limits = Limits { context_attributes: attributes, context_depth: depth, ..Limits::default() };
            for body in [
                serde_json::json!({"context": context.clone(), "other": [1, 2]}).to_string(),
                context.to_string(),
            ] {
                let direct = parse_context(body.as_bytes(), &limits);
                let tree = parse_context_via_tree(body.as_bytes(), &limits);
                proptest::prop_assert_eq!(direct, tree, "{}", body);
            }
        }
    }

    #[test]
    fn nested_attributes_win_over_dotted_names_read_either_way() {
        for body in [
            br#"{"context": {"a.b": 1, "a": {"b": 2}}}"#.as_slice(),
            br#"{"context": {"a": {"b": 2}, "a.b": 1}}"#,
        ] {
            let ctx = parse(body).unwrap();
            assert_eq!(ctx.get("a.b"), Some(&serde_json::json!(2)));
            assert_eq!(
                ctx,
                parse_context_via_tree(body, &Limits::default()).unwrap()
            );
        }
    }

    #[test]
    fn text_a_full_parse_refuses_is_refused_wherever_it_is() {
        // serde_json skips an ignored string without checking its escapes; found by the
        // ofrep_request fuzz target (a lone surrogate in a member beside the context).
        for body in [
            br#"{"other": "\ud800", "context": {}}"#.as_slice(),
            br#"{"other": {"\udc00": 1}}"#,
            br#"{"other": [["\ud800x"]], "context": {"a": 1}}"#,
            br#"{"context": {"a": "\ud800"}}"#,
        ] {
            let direct = parse(body).unwrap_err();
            let tree = parse_context_via_tree(body, &Limits::default()).unwrap_err();
            assert_eq!(
                (direct.0, tree.0),
                ("PARSE_ERROR", "PARSE_ERROR"),
                "{direct:?}"
            );
        }
        assert!(parse(br#"{"other": "\ud83d\ude00", "context": {}}"#).is_ok());
    }

    #[test]
    fn context_parsing() {
        assert!(parse(b"").is_ok());
        assert!(parse(b"{}").is_ok());
        assert!(parse(br#"{"context": null}"#).is_ok());
        assert_eq!(
            parse(br#"{"context": {"targetingKey": "u"}}"#)
                .unwrap()
                .targeting_key(),
            Some("u")
        );
        assert_eq!(parse(b"{").unwrap_err().0, "PARSE_ERROR");
        assert_eq!(parse(b"[]").unwrap_err().0, "PARSE_ERROR");
        assert_eq!(
            parse(br#"{"context": 5}"#).unwrap_err().0,
            "INVALID_CONTEXT"
        );
        assert_eq!(
            parse(br#"{"context": {"targetingKey": 5}}"#).unwrap_err().0,
            "INVALID_CONTEXT"
        );
    }
}
