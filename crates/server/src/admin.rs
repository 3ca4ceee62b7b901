//! The admin REST API (`/api/v1/...`). Handlers only extract, call one control-layer
//! operation (or read the served snapshot) and render: every change is validated, written
//! with its audit entry and published by `switchyard_control`, and the caller was already
//! authorized by the route table's guard before any body was read.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use switchyard_api_types::admin::{
    AuditEntry, AuditList, CreatedToken, Environment, ExplainRequest, Explanation, FlagList,
    FlagResource, ImportResult, NewEnvironment, NewToken, Reason, SegmentList, SegmentResource,
    SetEnabled, SetRollout, SetRules, SetTargets, SetTenant, TokenInfo, TokenList,
};
use switchyard_control::{
    ControlError, FlagChange, FlagMeta, ImportMode, ImportReport, NewTokenRequest, StoredFlag,
    TenantSetting, Written,
};
use switchyard_engine::document::SegmentDef;
use switchyard_engine::{Diagnostic, FieldPath, FlagDef, Format, PathSegment};
use switchyard_storage::AuditQuery;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState, EXAMPLE_FLAGS};

/// Parses a JSON body, naming the field on error.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let detail = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid request body: {detail}"))
        } else {
            ApiError::bad_request(format!("invalid request body at `{path}`: {detail}"))
                .with_details(serde_json::json!({ "field": path }))
        }
    })
}

/// `If-Match`: a version (`"3"`, from an ETag), or `*` to replace whatever is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    None,
    Version(i64),
    Any,
}

impl Precondition {
    /// The version insisted on (`None` for no `If-Match` or `*`).
    pub(crate) fn version(self) -> Option<i64> {
        match self {
            Precondition::Version(v) => Some(v),
            Precondition::None | Precondition::Any => None,
        }
    }
}

pub(crate) fn if_match(headers: &HeaderMap) -> ApiResult<Precondition> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Precondition::Any);
    }
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>().map(Precondition::Version).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match must be a version such as \"3\" (from the ETag), or *, not `{text}`"
        ))
    })
}

/// `?force=true` on a replacement: replace whatever is stored (like `If-Match: *`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    /// Replace whatever is stored, like `If-Match: *`.
    force: Option<bool>,
}

fn flag_resource(definition: &FlagDef, meta: &FlagMeta, unchanged: bool) -> FlagResource {
    FlagResource {
        key: definition.key.clone(),
        version: meta.version,
        archived: meta.archived,
        created_at: rfc3339(meta.created_at_ms),
        updated_at: rfc3339(meta.updated_at_ms),
        definition: definition.clone(),
        unchanged,
    }
}

pub(crate) fn with_etag(status: StatusCode, version: i64, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn written_flag(
    state: &AppState,
    status: StatusCode,
    written: Written<StoredFlag>,
    action: &str,
) -> Response {
    if written.changed {
        state
            .metrics
            .flag_changes
            .with_label_values(&[action])
            .inc();
    }
    let StoredFlag { definition, meta } = &written.value;
    with_etag(
        if written.changed {
            status
        } else {
            StatusCode::OK
        },
        meta.version,
        flag_resource(definition, meta, !written.changed),
    )
}

/// A validation error about the flag `key` the request submitted: paths relative to the
/// submitted definition (`rules[0].variant`), other flags' problems as they are.
pub(crate) fn about_flag(key: &str, err: ControlError) -> ApiError {
    match err {
        ControlError::Invalid { mut diagnostics } => {
            relative_to_flag(key, &mut diagnostics);
            ApiError::validation(&diagnostics)
        }
        other => ApiError::from(other),
    }
}

/// Makes the paths of problems inside flag `key` relative to its definition; whether each
/// diagnostic was such a problem.
pub(crate) fn relative_to_flag(key: &str, diagnostics: &mut [Diagnostic]) -> Vec<bool> {
    diagnostics
        .iter_mut()
        .map(|d| {
            let segments = d.path.segments();
            let own = matches!(
                segments,
                [PathSegment::Key(flags), PathSegment::Key(k), ..] if flags == "flags" && k == key
            );
            if own {
                d.path = FieldPath::from(segments[2..].to_vec());
            }
            own
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Flags

/// Filters of `GET /api/v1/flags`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagFilter {
    /// Only flags with this tag.
    tag: Option<String>,
    /// The environment whose state `state` looks at (it must exist).
    environment: Option<String>,
    /// `enabled`, `disabled`, `killed`, `archived` or `active` (not archived).
    #[schemars(regex(pattern = "^(enabled|disabled|killed|archived|active)$"))]
    state: Option<String>,
}

/// `GET /api/v1/flags`: from the served snapshot (no database access; GitOps files too).
pub async fn list_flags(
    State(state): State<AppState>,
    _caller: Caller,
    Query(filter): Query<FlagFilter>,
) -> ApiResult<Json<FlagList>> {
    if let Some(s) = &filter.state {
        if !["enabled", "disabled", "killed", "archived", "active"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown state `{s}`; use enabled, disabled, killed, archived or active"
            )));
        }
    }
    let snap = state.control.snapshot();
    if let Some(env) = &filter.environment {
        if snap.environment(env).is_none() {
            return Err(ApiError::from(ControlError::NotFound {
                what: format!("environment `{env}`"),
                hint: Some(snap.environment_names()),
            }));
        }
    }
    let mut flags = Vec::new();
    for view in snap.flags() {
        let def = view.definition;
        if filter.tag.as_ref().is_some_and(|t| !def.tags.contains(t)) {
            continue;
        }
        let archived = view.meta.archived;
        let (enabled, killed) = def.state_in(filter.environment.as_deref());
        let keep = match filter.state.as_deref() {
            None => true,
            Some("archived") => archived,
            Some("active") => !archived,
            Some("killed") => killed && !archived,
            Some("enabled") => enabled && !killed && !archived,
            Some(_) => (!enabled || killed) && !archived,
        };
        if keep {
            flags.push(flag_resource(def, view.meta, false));
        }
    }
    Ok(Json(FlagList { flags }))
}

/// `GET /api/v1/flags/{key}`.
pub async fn get_flag(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let snap = state.control.snapshot();
    let view = snap.flag_or_hint(&key)?;
    Ok(with_etag(
        StatusCode::OK,
        view.meta.version,
        flag_resource(view.definition, view.meta, false),
    ))
}

/// `POST /api/v1/flags/{key}/evaluate`: the "why does this unit see this?" answer, from the
/// served snapshot (no database access).
pub async fn explain_flag(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Explanation>> {
    let ExplainRequest {
        environment,
        context,
    } = parse_body(&body)?;
    let snap = state.control.snapshot();
    snap.flag_or_hint(&key)?;
    if snap.environment(&environment).is_none() {
        return Err(ApiError::from(ControlError::NotFound {
            what: format!("environment `{environment}`"),
            hint: Some(snap.environment_names()),
        }));
    }
    let context = Value::Object(context);
    crate::ofrep::check_shape(&context, &state.settings.limits)
        .map_err(|(_, message)| ApiError::bad_request(message))?;
    let context = switchyard_engine::Context::from_value(context)
        .map_err(|e| ApiError::bad_request(format!("invalid context: {e}")))?;
    let evaluator = snap
        .ruleset
        .evaluator(&environment, time::OffsetDateTime::now_utc());
    Ok(Json(evaluator.explain(&key, &context)))
}

/// Body of create/replace: the flag definition plus an optional `reason`.
/// A write's body: either the bare definition (plus an optional `reason`), or the resource
/// exactly as `GET` returned it (`{key, version, definition, ...}`, plus `reason`), so a
/// GET-edit-PUT round trip works. From the resource shape, `version` is returned and used as
/// the precondition when no `If-Match` header is sent.
struct WriteBody {
    definition: Value,
    reason: Option<String>,
    version: Option<i64>,
}

/// The fields of the resource shape that are the server's, not the definition's.
const RESOURCE_FIELDS: &[&str] = &[
    "key",
    "name",
    "version",
    "archived",
    "createdAt",
    "updatedAt",
    "environments",
    "unchanged",
];

/// Removes the optional `reason` (for the audit log) from beside a body's fields.
pub(crate) fn take_reason(
    fields: &mut serde_json::Map<String, Value>,
) -> ApiResult<Option<String>> {
    match fields.remove("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => Ok(Some(r)),
        Some(_) => Err(ApiError::bad_request("`reason` must be a string")),
    }
}

/// A body of `T`'s fields with an optional `reason` beside them; a wrong field is named by its
/// path (and no line or column: they would be the JSON's, not the file the person wrote).
pub(crate) fn parse_with_reason<T: DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> ApiResult<(T, Option<String>)> {
    let mut value: Value = parse_body(body)?;
    let Value::Object(fields) = &mut value else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object: the {what}'s fields"
        )));
    };
    let reason = take_reason(fields)?;
    let parsed = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let detail = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid {what}: {detail}"))
        } else {
            ApiError::bad_request(format!("invalid {what} at `{path}`: {detail}"))
                .with_details(serde_json::json!({ "field": path }))
        }
    })?;
    Ok((parsed, reason))
}

fn read_write_body(body: &[u8], what: &str) -> ApiResult<WriteBody> {
    let mut value: Value = parse_body(body)?;
    let Value::Object(fields) = &mut value else {
        return Err(ApiError::bad_request(format!(
            "the body must be a {what} object"
        )));
    };
    let reason = take_reason(fields)?;
    if !matches!(fields.get("definition"), Some(Value::Object(_))) {
        return Ok(WriteBody {
            definition: value,
            reason,
            version: None,
        });
    }
    let version = match fields.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "`version` must be the integer version the definition was read at",
            )
        })?),
    };
    if let Some(other) = fields
        .keys()
        .find(|k| *k != "definition" && !RESOURCE_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unexpected field `{other}` beside `definition`: send the {what} as GET returns it, or its bare definition"
        )));
    }
    let mut definition = fields.remove("definition").unwrap_or(Value::Null);
    // The key (flags) lives in the definition; the resource carries it beside it too.
    if let (Some(key), Some(def)) = (fields.get("key").cloned(), definition.as_object_mut()) {
        def.entry("key").or_insert(key);
    }
    Ok(WriteBody {
        definition,
        reason,
        version,
    })
}

pub(crate) fn read_flag(
    body: &[u8],
    key: Option<&str>,
) -> ApiResult<(FlagDef, Option<String>, Option<i64>)> {
    let WriteBody {
        definition: value,
        reason,
        version,
    } = read_write_body(body, "flag definition")?;
    let mut def = FlagDef::from_value_at(value, &FieldPath::root())
        .map_err(|d| ApiError::validation(&[d]))?;
    match key {
        Some(k) if def.key.is_empty() => def.key = k.to_owned(),
        Some(k) if def.key != k => {
            return Err(ApiError::bad_request(format!(
                "the body's key `{}` differs from the URL's `{k}`",
                def.key
            )))
        }
        _ => {}
    }
    if def.key.is_empty() {
        return Err(ApiError::validation(&[Diagnostic::error(
            FieldPath::root().key("key"),
            "missing `key`",
        )]));
    }
    Ok((def, reason, version))
}

/// `POST /api/v1/flags`.
pub async fn create_flag(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let (def, reason, _) = read_flag(&body, None)?;
    let key = def.key.clone();
    let written = match state
        .control
        .create_flag(def, &caller.actor(), reason)
        .await
    {
        Err(ControlError::ApprovalRequired { request }) => return Ok(pending(*request)),
        other => other.map_err(|e| about_flag(&key, e))?,
    };
    let mut response = written_flag(&state, StatusCode::CREATED, written, "flag.create");
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/flags/{key}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PUT /api/v1/flags/{key}`: replace the definition. Needs `If-Match` with the version
/// replaced (428 without), or `If-Match: *` / `?force=true` to replace whatever is stored.
pub async fn replace_flag(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    Query(force): Query<ForceQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (def, reason, read_at) = read_flag(&body, Some(&key))?;
    let precondition = match (if_match(&headers)?, read_at) {
        (Precondition::None, Some(v)) => Precondition::Version(v),
        (p, _) => p,
    };
    let force = force.force.unwrap_or(false) || precondition == Precondition::Any;
    let written = state
        .control
        .replace_flag(
            &key,
            def,
            precondition.version(),
            force,
            &caller.actor(),
            reason,
        )
        .await;
    let written = match written {
        Err(ControlError::ApprovalRequired { request }) => return Ok(pending(*request)),
        other => other.map_err(|e| about_flag(&key, e))?,
    };
    Ok(written_flag(&state, StatusCode::OK, written, "flag.update"))
}

/// `202 Accepted`: the change waits for approval as `request` (its URL in `Location`).
pub(crate) fn pending(request: switchyard_api_types::requests::ChangeRequest) -> Response {
    let body = switchyard_api_types::requests::PendingChange {
        message: format!(
            "{} requires approval: the change was not applied; it waits as request {} for someone else to approve (switchyard requests approve {})",
            request.environments.join(", "),
            request.id,
            request.id
        ),
        request,
    };
    let location = format!("/api/v1/requests/{}", body.request.id);
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `DELETE /api/v1/flags/{key}` (`If-Match` optional).
pub async fn delete_flag(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let precondition = if_match(&headers)?;
    let reason = optional_reason(&body)?;
    state
        .control
        .delete_flag(&key, precondition.version(), &caller.actor(), reason)
        .await?;
    state
        .metrics
        .flag_changes
        .with_label_values(&["flag.delete"])
        .inc();
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn optional_reason(body: &[u8]) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(parse_body::<Reason>(body)?.reason)
}

/// Runs one partial change and renders the flag.
async fn change(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    key: &str,
    change: FlagChange,
    reason: Option<String>,
    dry_run: bool,
) -> ApiResult<Response> {
    let precondition = if_match(headers)?;
    if dry_run {
        return dry_run_change(state, key, &change, precondition.version()).await;
    }
    let action = change.action();
    let kill = match &change {
        FlagChange::Kill {
            environment,
            on: true,
        } => Some(environment.clone().unwrap_or_else(|| "*".to_owned())),
        _ => None,
    };
    let written = state
        .control
        .change_flag(
            key,
            change,
            precondition.version(),
            &caller.0.actor(),
            reason,
        )
        .await;
    let written = match written {
        Err(ControlError::ApprovalRequired { request }) => return Ok(pending(*request)),
        other => other.map_err(|e| about_flag(key, e))?,
    };
    if let Some(env) = kill.filter(|_| written.changed) {
        state
            .metrics
            .kill_switches
            .with_label_values(&[key, env.as_str()])
            .inc();
        tracing::warn!(flag = %key, environment = %env, actor = %caller.0.name, "kill switch activated");
    }
    Ok(written_flag(state, StatusCode::OK, written, action))
}

/// `POST /api/v1/flags/{key}/promote`: copy one environment's configuration to another,
/// with the difference (only the difference with `dryRun`).
pub async fn promote_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let switchyard_api_types::changes::PromoteRequest {
        from,
        to,
        dry_run,
        reason,
    } = parse_body(&body)?;
    let change = FlagChange::Promote { from, to };
    let preview = state
        .control
        .preview_change(&key, &change, None)
        .map_err(|e| about_flag(&key, e))?;
    let changes = preview
        .as_ref()
        .map(|(before, after)| switchyard_api_types::changes::flag_changes(Some(before), after))
        .unwrap_or_default();
    let version = state
        .control
        .snapshot()
        .flag(&key)
        .map_or(0, |f| f.meta.version);
    if dry_run || preview.is_none() {
        return Ok(Json(switchyard_api_types::changes::PromoteResult {
            flag: key,
            applied: false,
            changes,
            version,
        })
        .into_response());
    }
    let written = state
        .control
        .change_flag(
            &key,
            change,
            if_match(&headers)?.version(),
            &caller.0.actor(),
            reason,
        )
        .await;
    let written = match written {
        Err(ControlError::ApprovalRequired { request }) => return Ok(pending(*request)),
        other => other.map_err(|e| about_flag(&key, e))?,
    };
    state
        .metrics
        .flag_changes
        .with_label_values(&["flag.promote"])
        .inc();
    Ok(Json(switchyard_api_types::changes::PromoteResult {
        flag: key,
        applied: written.changed,
        changes,
        version: written.value.meta.version,
    })
    .into_response())
}

/// `POST /api/v1/bulk/flags`: one operation on many flags, all in one transaction.
pub async fn bulk_flags(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<Json<switchyard_api_types::changes::BulkResult>> {
    let req: switchyard_api_types::changes::BulkChange = parse_body(&body)?;
    let field = |f: &str| serde_json::json!({ "field": f });
    let env = req.environment.clone();
    let change = match req.op.as_str() {
        "archive" => FlagChange::Archive(true),
        "unarchive" => FlagChange::Archive(false),
        "enable" | "disable" => FlagChange::Enabled {
            environment: env,
            enabled: req.op == "enable",
        },
        "tag" | "untag" if req.tags.is_empty() => {
            return Err(ApiError::bad_request(format!("`{}` needs `tags`", req.op))
                .with_details(field("tags")))
        }
        "tag" => FlagChange::Tags {
            add: req.tags.clone(),
            remove: Vec::new(),
        },
        "untag" => FlagChange::Tags {
            add: Vec::new(),
            remove: req.tags.clone(),
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown operation `{other}`: use archive, unarchive, enable, disable, tag or untag"
            ))
            .with_details(field("op")))
        }
    };
    if req.environment.is_some() && !matches!(change, FlagChange::Enabled { .. }) {
        return Err(ApiError::bad_request(format!(
            "`environment` goes with enable or disable, not {}",
            req.op
        ))
        .with_details(field("environment")));
    }
    let action = change.action();
    let written = state
        .control
        .bulk_change(&req.flags, change, &caller.actor(), req.reason)
        .await?;
    if written.changed {
        state
            .metrics
            .flag_changes
            .with_label_values(&[action])
            .inc_by(written.value.len() as u64);
    }
    Ok(Json(switchyard_api_types::changes::BulkResult {
        changed: written.changed,
        flags: written
            .value
            .iter()
            .map(|f| switchyard_api_types::changes::BulkFlag {
                key: f.definition.key.clone(),
                version: f.meta.version,
            })
            .collect(),
    }))
}

/// `POST /api/v1/flags/{key}/archive`.
pub async fn archive_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let reason = optional_reason(&body)?;
    change(
        &state,
        &caller,
        &headers,
        &key,
        FlagChange::Archive(true),
        reason,
        q.dry_run,
    )
    .await
}

/// `POST /api/v1/flags/{key}/unarchive`.
pub async fn unarchive_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let reason = optional_reason(&body)?;
    change(
        &state,
        &caller,
        &headers,
        &key,
        FlagChange::Archive(false),
        reason,
        q.dry_run,
    )
    .await
}

/// Reads one partial change from its body, for the environment of its route.
type ParseChange = fn(Option<String>, &[u8]) -> ApiResult<(FlagChange, Option<String>)>;

fn set_enabled(
    environment: Option<String>,
    body: &[u8],
) -> ApiResult<(FlagChange, Option<String>)> {
    let SetEnabled { enabled, reason } = parse_body(body)?;
    Ok((
        FlagChange::Enabled {
            environment,
            enabled,
        },
        reason,
    ))
}

fn kill(environment: Option<String>, body: &[u8]) -> ApiResult<(FlagChange, Option<String>)> {
    let reason = optional_reason(body)?;
    Ok((
        FlagChange::Kill {
            environment,
            on: true,
        },
        reason,
    ))
}

fn release(environment: Option<String>, body: &[u8]) -> ApiResult<(FlagChange, Option<String>)> {
    let reason = optional_reason(body)?;
    Ok((
        FlagChange::Kill {
            environment,
            on: false,
        },
        reason,
    ))
}

fn rollout(environment: Option<String>, body: &[u8]) -> ApiResult<(FlagChange, Option<String>)> {
    let SetRollout {
        percentage,
        variant,
        reason,
    } = parse_body(body)?;
    let change = FlagChange::Rollout {
        environment,
        percentage,
        variant,
    };
    Ok((change, reason))
}

fn targets(environment: Option<String>, body: &[u8]) -> ApiResult<(FlagChange, Option<String>)> {
    let SetTargets { targets, reason } = parse_body(body)?;
    Ok((
        FlagChange::Targets {
            environment,
            targets,
        },
        reason,
    ))
}

fn rules(environment: Option<String>, body: &[u8]) -> ApiResult<(FlagChange, Option<String>)> {
    let SetRules { rules, reason } = parse_body(body)?;
    Ok((FlagChange::Rules { environment, rules }, reason))
}

/// `?dryRun=true` on a flag change: only what it would change.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunQuery {
    /// Change nothing; answer what the change would change, field by field.
    #[serde(default)]
    dry_run: bool,
}

/// What `change` would change (the same preparation as the change itself, validated as
/// saving it would be), written nowhere.
async fn dry_run_change(
    state: &AppState,
    key: &str,
    change: &FlagChange,
    if_match: Option<i64>,
) -> ApiResult<Response> {
    let current = state.control.snapshot().flag_or_hint(key)?.meta.version;
    let preview = state
        .control
        .preview_change(key, change, if_match)
        .map_err(|e| about_flag(key, e))?;
    let changes = match preview {
        None => Vec::new(),
        Some((before, after)) => {
            let changes = switchyard_api_types::changes::flag_changes(Some(&before), &after);
            state
                .control
                .check_flag(after)
                .await
                .map_err(|e| about_flag(key, e))?;
            changes
        }
    };
    Ok(Json(switchyard_api_types::changes::ChangePreview {
        flag: key.to_owned(),
        version: current,
        changes,
    })
    .into_response())
}

/// Parses a body with `parse` and applies the change.
#[allow(clippy::too_many_arguments)]
async fn parse_and_change(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    key: &str,
    environment: Option<String>,
    body: &[u8],
    parse: ParseChange,
    dry_run: bool,
) -> ApiResult<Response> {
    let (c, reason) = parse(environment, body)?;
    change(state, caller, headers, key, c, reason, dry_run).await
}

/// Defines the top-level and the per-environment handler of one flag operation: the same
/// call, with the environment `None` or from the path.
macro_rules! top_and_env {
    ($top:ident, $top_doc:literal, $env_fn:ident, $env_doc:literal, $parse:path) => {
        #[doc = $top_doc]
        pub async fn $top(
            State(state): State<AppState>,
            caller: Caller,
            Path(key): Path<String>,
            Query(q): Query<DryRunQuery>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            parse_and_change(
                &state, &caller, &headers, &key, None, &body, $parse, q.dry_run,
            )
            .await
        }

        #[doc = $env_doc]
        pub async fn $env_fn(
            State(state): State<AppState>,
            caller: Caller,
            Path((key, env)): Path<(String, String)>,
            Query(q): Query<DryRunQuery>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            parse_and_change(
                &state,
                &caller,
                &headers,
                &key,
                Some(env),
                &body,
                $parse,
                q.dry_run,
            )
            .await
        }
    };
}

top_and_env!(
    set_enabled_top,
    "`PUT /api/v1/flags/{key}/enabled` (top level, every environment without an override).",
    set_enabled_env,
    "`PUT /api/v1/flags/{key}/environments/{env}/enabled`.",
    set_enabled
);
top_and_env!(
    kill_top,
    "`POST /api/v1/flags/{key}/kill`: kill everywhere.",
    kill_env,
    "`POST /api/v1/flags/{key}/environments/{env}/kill`.",
    kill
);
top_and_env!(
    release_top,
    "`DELETE /api/v1/flags/{key}/kill`: release the global kill switch.",
    release_env,
    "`DELETE /api/v1/flags/{key}/environments/{env}/kill`.",
    release
);
top_and_env!(
    rollout_top,
    "`PUT /api/v1/flags/{key}/rollout`.",
    rollout_env,
    "`PUT /api/v1/flags/{key}/environments/{env}/rollout`.",
    rollout
);
top_and_env!(
    targets_top,
    "`PUT /api/v1/flags/{key}/targets`.",
    targets_env,
    "`PUT /api/v1/flags/{key}/environments/{env}/targets`.",
    targets
);
top_and_env!(
    rules_top,
    "`PUT /api/v1/flags/{key}/rules`.",
    rules_env,
    "`PUT /api/v1/flags/{key}/environments/{env}/rules`.",
    rules
);

/// What a tenant route asks for: a `SetTenant` body, or (`None`: a `DELETE`) no override.
fn tenant_change(
    environment: Option<String>,
    tenant: String,
    body: Option<&[u8]>,
) -> ApiResult<(FlagChange, Option<String>)> {
    let (setting, reason) = match body {
        None => (TenantSetting::Clear, None),
        Some(body) => {
            let SetTenant {
                enabled,
                variant,
                reason,
            } = parse_body(body)?;
            let setting = match (enabled, variant) {
                (Some(true), None) => TenantSetting::On,
                (Some(false), None) => TenantSetting::Off,
                (None, Some(v)) => TenantSetting::Variant(v),
                _ => {
                    return Err(ApiError::bad_request(
                        "give `enabled` (true or false) or `variant`, not both",
                    ))
                }
            };
            (setting, reason)
        }
    };
    let change = FlagChange::Tenant {
        environment,
        tenant,
        setting,
    };
    Ok((change, reason))
}

/// Runs a tenant route: `set` with its body, or a clear (whose body may carry a reason).
async fn tenant(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    (key, environment, tenant): (String, Option<String>, String),
    body: Bytes,
    set: bool,
    dry_run: bool,
) -> ApiResult<Response> {
    let (c, reason) = if set {
        tenant_change(environment, tenant, Some(&body))?
    } else {
        let (c, _) = tenant_change(environment, tenant, None)?;
        (c, optional_reason(&body)?)
    };
    change(&state, &caller, &headers, &key, c, reason, dry_run).await
}

/// `PUT /api/v1/flags/{key}/tenants/{tenant}`: on, off or a variant for one tenant.
pub async fn set_tenant_top(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, id)): Path<(String, String)>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    tenant(
        state,
        caller,
        headers,
        (key, None, id),
        body,
        true,
        q.dry_run,
    )
    .await
}

/// `DELETE /api/v1/flags/{key}/tenants/{tenant}`: the tenant gets what everyone gets.
pub async fn clear_tenant_top(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, id)): Path<(String, String)>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    tenant(
        state,
        caller,
        headers,
        (key, None, id),
        body,
        false,
        q.dry_run,
    )
    .await
}

/// `PUT /api/v1/flags/{key}/environments/{env}/tenants/{tenant}`.
pub async fn set_tenant_env(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, env, id)): Path<(String, String, String)>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    tenant(
        state,
        caller,
        headers,
        (key, Some(env), id),
        body,
        true,
        q.dry_run,
    )
    .await
}

/// `DELETE /api/v1/flags/{key}/environments/{env}/tenants/{tenant}`.
pub async fn clear_tenant_env(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, env, id)): Path<(String, String, String)>,
    Query(q): Query<DryRunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    tenant(
        state,
        caller,
        headers,
        (key, Some(env), id),
        body,
        false,
        q.dry_run,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Segments

fn segment_resource(s: switchyard_control::SegmentView<'_>, unchanged: bool) -> SegmentResource {
    SegmentResource {
        name: s.name.to_owned(),
        version: s.meta.version,
        created_at: rfc3339(s.meta.created_at_ms),
        updated_at: rfc3339(s.meta.updated_at_ms),
        definition: s.definition.clone(),
        unchanged,
    }
}

/// `GET /api/v1/segments`.
pub async fn list_segments(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<SegmentList>> {
    let snap = state.control.snapshot();
    let segments = snap
        .segments()
        .map(|s| segment_resource(s, false))
        .collect();
    Ok(Json(SegmentList { segments }))
}

/// `GET /api/v1/segments/{name}`.
pub async fn get_segment(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = state.control.snapshot();
    let s = snap
        .segment(&name)
        .ok_or_else(|| ApiError::not_found(format!("segment `{name}`")))?;
    Ok(with_etag(
        StatusCode::OK,
        s.meta.version,
        segment_resource(s, false),
    ))
}

/// A segment write's body: the definition, the reason, and the version it was read at.
pub(crate) fn read_segment(body: &[u8]) -> ApiResult<(SegmentDef, Option<String>, Option<i64>)> {
    let WriteBody {
        definition: value,
        reason,
        version,
    } = read_write_body(body, "segment definition")?;
    let def: SegmentDef = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::validation(&[Diagnostic::error(
            path.split('.')
                .filter(|s| !s.is_empty())
                .fold(FieldPath::root(), |p, s| p.key(s.to_owned())),
            e.into_inner().to_string(),
        )])
    })?;
    Ok((def, reason, version))
}

/// `PUT /api/v1/segments/{name}`: create, or replace with `If-Match` (or `*`).
pub async fn put_segment(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Query(force): Query<ForceQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (def, reason, read_at) = read_segment(&body)?;
    let precondition = match (if_match(&headers)?, read_at) {
        (Precondition::None, Some(v)) => Precondition::Version(v),
        (p, _) => p,
    };
    let force = force.force.unwrap_or(false) || precondition == Precondition::Any;
    let written = state
        .control
        .put_segment(
            &name,
            def,
            precondition.version(),
            force,
            &caller.actor(),
            reason,
        )
        .await?;
    let snap = state.control.snapshot();
    let status = if written.changed && written.value.meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = match snap.segment(&name) {
        Some(s) => segment_resource(s, !written.changed),
        None => SegmentResource {
            name: written.value.name.clone(),
            version: written.value.meta.version,
            created_at: rfc3339(written.value.meta.created_at_ms),
            updated_at: rfc3339(written.value.meta.updated_at_ms),
            definition: written.value.definition.clone(),
            unchanged: !written.changed,
        },
    };
    Ok(with_etag(status, written.value.meta.version, body))
}

/// `DELETE /api/v1/segments/{name}` (refused, naming its users, while in use).
pub async fn delete_segment(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let precondition = if_match(&headers)?;
    let reason = optional_reason(&body)?;
    state
        .control
        .delete_segment(&name, precondition.version(), &caller.actor(), reason)
        .await
        .map_err(|e| match e {
            ControlError::Invalid { diagnostics } => {
                let users: Vec<String> = diagnostics
                    .iter()
                    .filter_map(|d| d.flag.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut err = ApiError::validation(&diagnostics);
                if !users.is_empty() {
                    err.message = format!(
                        "segment `{name}` is used by {}: {}",
                        if users.len() == 1 { "flag" } else { "flags" },
                        users.join(", ")
                    );
                }
                err
            }
            other => ApiError::from(other),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// Environments

/// `GET /api/v1/environments`.
pub async fn list_environments(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Vec<Environment>>> {
    let snap = state.control.snapshot();
    Ok(Json(snap.environments().map(environment).collect()))
}

fn environment(e: &switchyard_storage::EnvironmentRecord) -> Environment {
    Environment {
        name: e.name.clone(),
        created_at: rfc3339(e.created_at_ms),
        require_approval: e.require_approval,
    }
}

/// `PUT /api/v1/environments/{name}`: set an environment's approval policy (admin).
pub async fn set_environment_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Environment>> {
    let switchyard_api_types::admin::EnvironmentPolicy {
        require_approval,
        reason,
    } = parse_body(&body)?;
    let written = state
        .control
        .set_environment_policy(&name, require_approval, &caller.actor(), reason)
        .await?;
    Ok(Json(environment(&written.value)))
}

/// `POST /api/v1/environments`.
pub async fn create_environment(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let NewEnvironment { name, reason } = parse_body(&body)?;
    let written = state
        .control
        .create_environment(&name, &caller.actor(), reason)
        .await?;
    Ok((StatusCode::CREATED, Json(environment(&written.value))).into_response())
}

// ---------------------------------------------------------------------------------------
// Tokens

fn token_info(t: &switchyard_storage::TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        environment: t.environment.clone(),
        created_at: rfc3339(t.created_at_ms),
        revoked_at: t.revoked_at_ms.map(rfc3339),
    }
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<TokenList>> {
    let snap = state.control.snapshot();
    Ok(Json(TokenList {
        tokens: snap.tokens().map(token_info).collect(),
    }))
}

/// `POST /api/v1/tokens`: the secret is in this response only.
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let NewToken {
        name,
        role,
        environment,
    } = parse_body(&body)?;
    let written = state
        .control
        .create_token(
            NewTokenRequest {
                name,
                role,
                environment,
            },
            &caller.actor(),
        )
        .await?;
    let created = written.value;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: created.record.name,
            role: created.record.role,
            environment: created.record.environment,
            token: created.token,
            id: created.record.id,
        }),
    )
        .into_response())
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TokenInfo>> {
    let reason = optional_reason(&body)?;
    let written = state
        .control
        .revoke_token(&id, &caller.actor(), reason)
        .await?;
    Ok(Json(token_info(&written.value)))
}

// ---------------------------------------------------------------------------------------
// Audit

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only changes to this flag.
    flag: Option<String>,
    /// Only changes to this segment (ignored when `flag` is given).
    segment: Option<String>,
    /// Only changes by this actor (`token:<id>`, `system`).
    actor: Option<String>,
    /// Only changes at or after this RFC 3339 time.
    since: Option<String>,
    /// Only changes before this RFC 3339 time.
    until: Option<String>,
    /// Only entries with a smaller id (to page back).
    before: Option<i64>,
    /// At most this many entries (default 100).
    limit: Option<u32>,
}

fn parse_ms(field: &str, text: &str) -> ApiResult<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{field}` must be an RFC 3339 time such as 2026-01-31T09:00:00Z"
            ))
        })
}

/// `GET /api/v1/audit` (reads the store: 503 while it is down).
pub async fn audit_log(
    State(state): State<AppState>,
    _caller: Caller,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Json<AuditList>> {
    let (subject_kind, subject) = match (&f.flag, &f.segment) {
        (Some(flag), _) => (Some("flag".to_owned()), Some(flag.clone())),
        (None, Some(seg)) => (Some("segment".to_owned()), Some(seg.clone())),
        (None, None) => (None, None),
    };
    let query = AuditQuery {
        subject_kind,
        subject,
        actor: f.actor.clone(),
        since_ms: f
            .since
            .as_deref()
            .map(|s| parse_ms("since", s))
            .transpose()?,
        until_ms: f
            .until
            .as_deref()
            .map(|s| parse_ms("until", s))
            .transpose()?,
        before_id: f.before,
        limit: f.limit.unwrap_or(100),
    };
    let store = state.control.store().ok_or_else(|| {
        ApiError::from(ControlError::Unavailable {
            reason: "not connected yet".into(),
            source: None,
        })
    })?;
    let entries = store
        .audit(&query)
        .await?
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at: rfc3339(e.at_ms),
            actor: e.actor,
            actor_name: e.actor_name,
            action: e.action,
            subject_kind: e.subject_kind,
            subject: e.subject,
            environment: e.environment,
            before: e.before.unwrap_or_default(),
            after: e.after.unwrap_or_default(),
            reason: e.reason,
        })
        .collect();
    Ok(Json(AuditList { entries }))
}

// ---------------------------------------------------------------------------------------
// Import, export, seed

/// Query of import/export.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// `json` or `yaml` (imports also read the Content-Type).
    #[schemars(regex(pattern = "^(json|yaml|yml)$"))]
    format: Option<String>,
    /// Why (imports only; goes to the audit log).
    reason: Option<String>,
}

fn format_of(query: &FormatQuery, headers: &HeaderMap) -> ApiResult<Format> {
    let hint = query
        .format
        .clone()
        .or_else(|| {
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if hint.contains("yaml") || hint.contains("yml") {
        Ok(Format::Yaml)
    } else if hint.is_empty() || hint.contains("json") {
        Ok(Format::Json)
    } else {
        Err(ApiError::bad_request(format!(
            "unknown format `{hint}`; use json or yaml"
        )))
    }
}

fn import_result(report: ImportReport) -> ImportResult {
    ImportResult {
        created: report.created,
        updated: report.updated,
        unchanged: report.unchanged,
        drifted: report.drifted,
        segments: report.segments,
    }
}

/// `POST /api/v1/import` (body: a flag file, JSON or YAML by `Content-Type` or `?format=`):
/// creates new flags and segments, replaces changed ones, in one transaction.
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<FormatQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ImportResult>> {
    let format = format_of(&q, &headers)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body must be UTF-8 text"))?;
    let written = state
        .control
        .import(
            text,
            format,
            "request body",
            ImportMode::Merge,
            &caller.actor(),
            q.reason.clone(),
        )
        .await?;
    let changed = written.value.created.len() + written.value.updated.len();
    if changed > 0 {
        state
            .metrics
            .flag_changes
            .with_label_values(&["flag.import"])
            .inc_by(changed as u64);
    }
    Ok(Json(import_result(written.value)))
}

/// `POST /api/v1/seed` ("Initialize flags"): creates the flags and segments that do not
/// exist yet, from the files the server is configured to import (`import`, `--import`) when
/// there are some, else from the examples. Nothing that exists is changed.
pub async fn seed(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<ImportResult>> {
    let mut sources = Vec::new();
    for path in &state.settings.import {
        let text = tokio::fs::read_to_string(path).await.map_err(|e| {
            ApiError::bad_request(format!(
                "the configured flag file {} cannot be read: {e}",
                path.display()
            ))
        })?;
        let format = Format::from_path(path).unwrap_or(Format::Yaml);
        sources.push((text, format, path.display().to_string()));
    }
    if sources.is_empty() {
        sources.push((
            EXAMPLE_FLAGS.to_owned(),
            Format::Yaml,
            "examples/flags.yaml".to_owned(),
        ));
    }
    let mut result = ImportResult {
        created: Vec::new(),
        updated: Vec::new(),
        unchanged: Vec::new(),
        drifted: Vec::new(),
        segments: Vec::new(),
    };
    for (text, format, name) in sources {
        let written = state
            .control
            .import(
                &text,
                format,
                &name,
                ImportMode::MissingOnly,
                &caller.actor(),
                None,
            )
            .await?;
        let one = import_result(written.value);
        result.created.extend(one.created);
        result.updated.extend(one.updated);
        result.unchanged.extend(one.unchanged);
        result.drifted.extend(one.drifted);
        result.segments.extend(one.segments);
    }
    Ok(Json(result))
}

/// `GET /api/v1/export?format=json|yaml`: every flag and segment as a flag file (from the
/// served snapshot; in GitOps mode, the file's).
pub async fn export(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<FormatQuery>,
) -> ApiResult<Response> {
    let snap = state.control.snapshot();
    let mut doc = snap.to_document();
    for flag in &mut doc.flags {
        if let Some(view) = snap.flag(&flag.key) {
            flag.archived = view.meta.archived;
        }
    }
    let value = doc.to_value();
    let (text, content_type) = match q.format.as_deref() {
        Some("yaml") | Some("yml") => (
            switchyard_engine::source::to_yaml(&value),
            "application/yaml",
        ),
        None | Some("json") => (
            serde_json::to_string_pretty(&value).map_err(ApiError::internal)? + "\n",
            "application/json",
        ),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format `{other}`; use json or yaml"
            )))
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// `GET /api/v1/reports/evaluations` (viewer): when each flag was last evaluated where.
pub async fn evaluations(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<switchyard_api_types::admin::EvaluationReport>> {
    let e = state.control.evaluations().await?;
    let mut rows: Vec<switchyard_api_types::admin::LastEvaluation> = e
        .last
        .iter()
        .flat_map(|(flag, envs)| {
            envs.iter().map(
                move |(env, at)| switchyard_api_types::admin::LastEvaluation {
                    flag: flag.clone(),
                    environment: env.clone(),
                    last_evaluated_at: rfc3339(*at),
                },
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.flag, &a.environment).cmp(&(&b.flag, &b.environment)));
    Ok(Json(switchyard_api_types::admin::EvaluationReport {
        recorded_since: e.since_ms.map(rfc3339),
        evaluations: rows,
    }))
}

/// `?days=` of the stale-flag report.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaleQuery {
    /// Flags older than this many days that serve one variant everywhere (default 90).
    days: Option<i64>,
}

/// `GET /api/v1/reports/stale-flags` (viewer).
pub async fn stale_flags(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<StaleQuery>,
) -> ApiResult<Json<switchyard_api_types::admin::StaleReport>> {
    let days = q.days.unwrap_or(90);
    if !(0..=36_500).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "`days` must be between 0 and 36500, not {days}"
        )));
    }
    let flags = state
        .control
        .stale_flags(days, crate::now_millis())
        .await?
        .into_iter()
        .map(|f| switchyard_api_types::admin::StaleFlag {
            key: f.key,
            owner: f.owner,
            age_days: f.age_days,
            reasons: f.reasons,
        })
        .collect();
    Ok(Json(switchyard_api_types::admin::StaleReport {
        days,
        flags,
    }))
}
