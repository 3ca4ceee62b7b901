//! The admin REST API (`/api/v1/...`): flags, per-environment operations, segments,
//! environments, tokens, audit log, import/export and re-seeding. Every change goes through
//! [`AppState::change_flag`] / [`AppState::change_segment`]: validated against the whole
//! ruleset, written atomically with its audit entry, and live in this replica's snapshot before
//! the response is sent.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use switchyard_api_types::admin::{
    AuditEntry, AuditList, CreatedToken, Environment, FlagList, FlagResource, ImportResult,
    NewEnvironment, NewToken, Reason, SegmentList, SegmentResource, SetEnabled, SetRollout,
    SetRules, SetTargets, TokenInfo, TokenList,
};
use switchyard_engine::document::{EnvironmentDef, SegmentDef, ServeDef};
use switchyard_engine::{is_valid_key, Document, FlagDef, Format};
use switchyard_storage::{AuditInfo, AuditQuery, Expect, FlagRecord, SegmentRecord, Write};

use crate::auth::{authorize, Principal, Role};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::{rfc3339, AppState, EXAMPLE_FLAGS};

/// Parses a JSON body, naming the field on error.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match must be a version such as \"3\" (from the ETag), not `{text}`"
        ))
    })
}

fn expect_from(headers: &HeaderMap) -> ApiResult<Expect> {
    Ok(match if_match(headers)? {
        Some(v) => Expect::Version(v),
        None => Expect::Exists,
    })
}

fn audit(
    principal: &Principal,
    action: &str,
    environment: Option<&str>,
    reason: Option<String>,
) -> AuditInfo {
    AuditInfo {
        actor_name: None,
        actor: principal.name.clone(),
        action: action.to_owned(),
        environment: environment.map(str::to_owned),
        reason: reason.filter(|r| !r.trim().is_empty()),
    }
}

fn flag_resource(record: &FlagRecord) -> ApiResult<FlagResource> {
    let mut definition: FlagDef =
        serde_json::from_value(record.definition.clone()).map_err(ApiError::internal)?;
    definition.key = record.key.clone();
    definition.archived = record.archived;
    Ok(FlagResource {
        key: record.key.clone(),
        version: record.version,
        archived: record.archived,
        created_at: rfc3339(record.created_at_ms),
        updated_at: rfc3339(record.updated_at_ms),
        definition,
    })
}

fn with_etag(status: StatusCode, version: i64, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn flag_response(status: StatusCode, record: Option<FlagRecord>) -> ApiResult<Response> {
    match record {
        Some(r) => Ok(with_etag(status, r.version, flag_resource(&r)?)),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn require_environment(state: &AppState, env: &str) -> ApiResult<()> {
    let envs = state.store.list_environments().await?;
    if envs.iter().any(|e| e.name == env) {
        Ok(())
    } else {
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "environment `{env}` does not exist; environments: {}",
                names.join(", ")
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Flags

/// Filters of `GET /api/v1/flags`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagFilter {
    tag: Option<String>,
    environment: Option<String>,
    state: Option<String>,
}

/// Effective `(enabled, killed)` of a flag in an environment (or at the top level).
fn effective(def: &FlagDef, env: Option<&str>) -> (bool, bool) {
    let e = env.and_then(|e| def.environments.get(e));
    let enabled = e
        .and_then(|e| e.enabled)
        .or(def.targeting.enabled)
        .unwrap_or(true);
    let killed = def.targeting.kill_switch.unwrap_or(false)
        || e.and_then(|e| e.kill_switch).unwrap_or(false);
    (enabled, killed)
}

/// `GET /api/v1/flags`.
pub async fn list_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<FlagFilter>,
) -> ApiResult<Json<FlagList>> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    if let Some(s) = &filter.state {
        if !["enabled", "disabled", "killed", "archived", "active"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown state `{s}`; use enabled, disabled, killed, archived or active"
            )));
        }
    }
    let mut flags = Vec::new();
    for record in state.store.list_flags().await? {
        let resource = flag_resource(&record)?;
        let def = &resource.definition;
        if filter.tag.as_ref().is_some_and(|t| !def.tags.contains(t)) {
            continue;
        }
        let (enabled, killed) = effective(def, filter.environment.as_deref());
        let keep = match filter.state.as_deref() {
            None => true,
            Some("archived") => record.archived,
            Some("active") => !record.archived,
            Some("killed") => killed && !record.archived,
            Some("enabled") => enabled && !killed && !record.archived,
            Some(_) => (!enabled || killed) && !record.archived,
        };
        if keep {
            flags.push(resource);
        }
    }
    Ok(Json(FlagList { flags }))
}

/// `GET /api/v1/flags/{key}`.
pub async fn get_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    match state.store.get_flag(&key).await? {
        Some(record) => flag_response(StatusCode::OK, Some(record)),
        None => Err(ApiError::not_found(format!("flag `{key}`"))),
    }
}

/// Body of create/replace: the flag definition plus an optional `reason`.
#[derive(Debug, Deserialize)]
struct FlagBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Reads a flag definition from a body, with field-level diagnostics.
fn read_flag(body: &[u8], key: Option<&str>) -> ApiResult<(FlagDef, Option<String>)> {
    let FlagBody { reason, rest } = parse_body(body)?;
    let value = serde_json::Value::Object(rest);
    let (doc, diagnostics) = Document::from_value(serde_json::json!({ "flags": [value] }));
    if diagnostics.iter().any(|d| d.is_error()) {
        return Err(ApiError::validation(&relative(diagnostics)));
    }
    let mut def = doc
        .flags
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("empty flag"))?;
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
        return Err(ApiError::validation(&[
            switchyard_engine::Diagnostic::error(
                switchyard_engine::FieldPath::root().key("key"),
                "missing `key`",
            ),
        ]));
    }
    Ok((def, reason))
}

/// Strips the `flags[0]` prefix so paths are relative to the submitted flag.
fn relative(diagnostics: Vec<switchyard_engine::Diagnostic>) -> Vec<switchyard_engine::Diagnostic> {
    diagnostics
        .into_iter()
        .map(|mut d| {
            let segs = d.path.segments();
            if segs.len() >= 2 {
                d.path = segs[2..].to_vec().into();
            }
            d
        })
        .collect()
}

/// `POST /api/v1/flags`.
pub async fn create_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    let (def, reason) = read_flag(&body, None)?;
    let key = def.key.clone();
    let record = state
        .change_flag(
            &key,
            Expect::Absent,
            audit(&principal, "flag.create", None, reason),
            |_| Ok(Some(def)),
        )
        .await?;
    let mut response = flag_response(StatusCode::CREATED, record)?;
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/flags/{key}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PUT /api/v1/flags/{key}`: replace the definition (`If-Match` for optimistic concurrency).
pub async fn replace_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    let (def, reason) = read_flag(&body, Some(&key))?;
    let expect = expect_from(&headers)?;
    let record = state
        .change_flag(
            &key,
            expect,
            audit(&principal, "flag.update", None, reason),
            |current| {
                let mut def = def;
                def.archived = current.is_some_and(|c| c.archived) && def.archived;
                Ok(Some(def))
            },
        )
        .await?;
    flag_response(StatusCode::OK, record)
}

/// `DELETE /api/v1/flags/{key}`.
pub async fn delete_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    let reason = optional_reason(&body)?;
    let expect = expect_from(&headers)?;
    state
        .change_flag(
            &key,
            expect,
            audit(&principal, "flag.delete", None, reason),
            |_| Ok(None),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn optional_reason(body: &[u8]) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(parse_body::<Reason>(body)?.reason)
}

async fn modify(
    state: &AppState,
    headers: &HeaderMap,
    key: &str,
    env: Option<&str>,
    action: &str,
    reason: Option<String>,
    f: impl FnOnce(&mut FlagDef) -> ApiResult<()>,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), headers, Role::Editor)?;
    if let Some(env) = env {
        require_environment(state, env).await?;
    }
    let expect = expect_from(headers)?;
    let record = state
        .change_flag(
            key,
            expect,
            audit(&principal, action, env, reason),
            |current| {
                let mut def =
                    current.ok_or_else(|| ApiError::not_found(format!("flag `{key}`")))?;
                f(&mut def)?;
                Ok(Some(def))
            },
        )
        .await?;
    flag_response(StatusCode::OK, record)
}

fn env_def<'a>(def: &'a mut FlagDef, env: &str) -> &'a mut EnvironmentDef {
    def.environments.entry(env.to_owned()).or_default()
}

/// `POST /api/v1/flags/{key}/archive`.
pub async fn archive_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let reason = optional_reason(&body)?;
    modify(&state, &headers, &key, None, "flag.archive", reason, |d| {
        d.archived = true;
        Ok(())
    })
    .await
}

/// `POST /api/v1/flags/{key}/unarchive`.
pub async fn unarchive_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let reason = optional_reason(&body)?;
    modify(
        &state,
        &headers,
        &key,
        None,
        "flag.unarchive",
        reason,
        |d| {
            d.archived = false;
            Ok(())
        },
    )
    .await
}

async fn set_enabled(
    state: AppState,
    headers: HeaderMap,
    key: String,
    env: Option<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let SetEnabled { enabled, reason } = parse_body(&body)?;
    let action = if enabled {
        "flag.enable"
    } else {
        "flag.disable"
    };
    let env_ref = env.as_deref();
    modify(&state, &headers, &key, env_ref, action, reason, |d| {
        match env_ref {
            Some(e) => env_def(d, e).enabled = Some(enabled),
            None => d.targeting.enabled = Some(enabled),
        }
        Ok(())
    })
    .await
}

async fn kill(
    state: AppState,
    headers: HeaderMap,
    key: String,
    env: Option<String>,
    body: Bytes,
    on: bool,
) -> ApiResult<Response> {
    let reason = optional_reason(&body)?;
    let action = if on { "flag.kill" } else { "flag.release" };
    let env_ref = env.as_deref();
    let response = modify(&state, &headers, &key, env_ref, action, reason, |d| {
        match env_ref {
            Some(e) => env_def(d, e).kill_switch = Some(on),
            None => d.targeting.kill_switch = Some(on),
        }
        Ok(())
    })
    .await?;
    if on {
        let env_label = env_ref.unwrap_or("*");
        state
            .metrics
            .kill_switches
            .with_label_values(&[key.as_str(), env_label])
            .inc();
        tracing::warn!(flag = %key, environment = env_label, "kill switch activated");
    }
    Ok(response)
}

fn apply_rollout(d: &mut FlagDef, env: Option<&str>, percentage: f64, variant: Option<String>) {
    let inherited = d.targeting.fallthrough.clone();
    let slot = match env {
        Some(e) => &mut env_def(d, e).fallthrough,
        None => &mut d.targeting.fallthrough,
    };
    let mut serve: ServeDef = slot.clone().or(inherited).unwrap_or_default();
    if let Some(v) = variant {
        serve.variant = Some(v);
        serve.value = None;
        serve.split = None;
    } else if serve.variant.is_none() && serve.value.is_none() && serve.split.is_none() {
        serve.variant = Some("on".to_owned());
    }
    serve.percentage = Some(percentage);
    *slot = Some(serve);
}

async fn rollout(
    state: AppState,
    headers: HeaderMap,
    key: String,
    env: Option<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let SetRollout {
        percentage,
        variant,
        reason,
    } = parse_body(&body)?;
    let env_ref = env.as_deref();
    modify(
        &state,
        &headers,
        &key,
        env_ref,
        "flag.rollout",
        reason,
        |d| {
            apply_rollout(d, env_ref, percentage, variant);
            Ok(())
        },
    )
    .await
}

/// Defines the top-level and the per-environment handler of one flag operation: the same
/// call, with `env` `None` or the environment from the path.
macro_rules! top_and_env {
    ($top:ident, $top_doc:literal, $env_fn:ident, $env_doc:literal, $op:ident $(, $extra:expr)?) => {
        #[doc = $top_doc]
        pub async fn $top(
            State(state): State<AppState>,
            headers: HeaderMap,
            Path(key): Path<String>,
            body: Bytes,
        ) -> ApiResult<Response> {
            $op(state, headers, key, None, body $(, $extra)?).await
        }

        #[doc = $env_doc]
        pub async fn $env_fn(
            State(state): State<AppState>,
            headers: HeaderMap,
            Path((key, env)): Path<(String, String)>,
            body: Bytes,
        ) -> ApiResult<Response> {
            $op(state, headers, key, Some(env), body $(, $extra)?).await
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
    kill,
    true
);
top_and_env!(
    release_top,
    "`DELETE /api/v1/flags/{key}/kill`: release the global kill switch.",
    release_env,
    "`DELETE /api/v1/flags/{key}/environments/{env}/kill`.",
    kill,
    false
);
top_and_env!(
    rollout_top,
    "`PUT /api/v1/flags/{key}/rollout`.",
    rollout_env,
    "`PUT /api/v1/flags/{key}/environments/{env}/rollout`.",
    rollout
);

/// `PUT /api/v1/flags/{key}/environments/{env}/targets`.
pub async fn set_targets(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((key, env)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let SetTargets { targets, reason } = parse_body(&body)?;
    modify(
        &state,
        &headers,
        &key,
        Some(&env),
        "flag.targets",
        reason,
        |d| {
            env_def(d, &env).targets = Some(targets);
            Ok(())
        },
    )
    .await
}

/// `PUT /api/v1/flags/{key}/environments/{env}/rules`.
pub async fn set_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((key, env)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let SetRules { rules, reason } = parse_body(&body)?;
    modify(
        &state,
        &headers,
        &key,
        Some(&env),
        "flag.rules",
        reason,
        |d| {
            env_def(d, &env).rules = Some(rules);
            Ok(())
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Segments

fn segment_resource(r: &SegmentRecord) -> ApiResult<SegmentResource> {
    Ok(SegmentResource {
        name: r.name.clone(),
        version: r.version,
        created_at: rfc3339(r.created_at_ms),
        updated_at: rfc3339(r.updated_at_ms),
        definition: serde_json::from_value(r.definition.clone()).map_err(ApiError::internal)?,
    })
}

/// `GET /api/v1/segments`.
pub async fn list_segments(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<SegmentList>> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    let segments = state
        .store
        .list_segments()
        .await?
        .iter()
        .map(segment_resource)
        .collect::<ApiResult<_>>()?;
    Ok(Json(SegmentList { segments }))
}

/// `GET /api/v1/segments/{name}`.
pub async fn get_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    let r = state
        .store
        .get_segment(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("segment `{name}`")))?;
    Ok(with_etag(StatusCode::OK, r.version, segment_resource(&r)?))
}

/// `PUT /api/v1/segments/{name}`: create or replace (`If-Match` to guard a replace).
pub async fn put_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    if !is_valid_key(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid segment name `{name}`"
        )));
    }
    let def: SegmentDef = parse_body(&body)?;
    let expect = match if_match(&headers)? {
        Some(v) => Expect::Version(v),
        None => Expect::Any,
    };
    let record = state
        .change_segment(
            &name,
            expect,
            audit(&principal, "segment.put", None, None),
            Some(def),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("segment `{name}`")))?;
    Ok(with_etag(
        StatusCode::OK,
        record.version,
        segment_resource(&record)?,
    ))
}

/// `DELETE /api/v1/segments/{name}` (refused while a flag uses it).
pub async fn delete_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    let expect = expect_from(&headers)?;
    state
        .change_segment(
            &name,
            expect,
            audit(&principal, "segment.delete", None, None),
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// Environments

/// `GET /api/v1/environments`.
pub async fn list_environments(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Environment>>> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    let envs = state.store.list_environments().await?;
    Ok(Json(
        envs.into_iter()
            .map(|e| Environment {
                name: e.name,
                created_at: rfc3339(e.created_at_ms),
            })
            .collect(),
    ))
}

/// `POST /api/v1/environments`.
pub async fn create_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Admin)?;
    let NewEnvironment { name, reason } = parse_body(&body)?;
    if !is_valid_key(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid environment name `{name}`: use 1–128 letters, digits, `.`, `_` or `-`"
        )));
    }
    let e = state
        .store
        .create_environment(
            &name,
            &audit(&principal, "environment.create", Some(&name), reason),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Environment {
            name: e.name,
            created_at: rfc3339(e.created_at_ms),
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Tokens

fn token_info(t: &switchyard_storage::TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.as_str().to_owned(),
        environment: t.environment.clone(),
        created_at: rfc3339(t.created_at_ms),
        revoked_at: t.revoked_at_ms.map(rfc3339),
    }
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<TokenList>> {
    authorize(&state.tokens.load(), &headers, Role::Admin)?;
    let tokens = state
        .store
        .list_tokens()
        .await?
        .iter()
        .map(token_info)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// `POST /api/v1/tokens`: the secret is in this response only.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Admin)?;
    let NewToken {
        name,
        role,
        environment,
    } = parse_body(&body)?;
    let parsed = Role::parse(&role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role `{role}`; use admin, editor, viewer or sdk"
        ))
    })?;
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("`name` must not be empty"));
    }
    match (parsed, &environment) {
        (Role::Sdk, None) => {
            return Err(ApiError::bad_request("an sdk key needs an `environment`"))
        }
        (Role::Sdk, Some(env)) => require_environment(&state, env).await?,
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "only sdk keys are bound to an environment",
            ))
        }
        (_, None) => {}
    }
    let token = issue_token(&state, &name, parsed, environment.clone(), &principal.name).await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

/// Generates, stores and activates a token.
pub async fn issue_token(
    state: &AppState,
    name: &str,
    role: Role,
    environment: Option<String>,
    actor: &str,
) -> ApiResult<CreatedToken> {
    let (id, token, secret_hash) = crate::auth::generate()
        .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))?;
    state
        .store
        .create_token(
            &switchyard_storage::NewToken {
                id: id.clone(),
                name: name.to_owned(),
                role: switchyard_storage::Role::parse(role.as_str())
                    .unwrap_or(switchyard_storage::Role::Viewer),
                environment: environment.clone(),
                secret_hash,
            },
            &AuditInfo {
                actor_name: None,
                actor: actor.to_owned(),
                action: "token.create".into(),
                environment: environment.clone(),
                reason: None,
            },
        )
        .await?;
    state.reload_tokens().await?;
    Ok(CreatedToken {
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        environment,
        token,
        id,
    })
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Admin)?;
    let tokens = state.store.list_tokens().await?;
    let Some(target) = tokens.iter().find(|t| t.id == id) else {
        return Err(ApiError::not_found(format!("token `{id}`")));
    };
    if target.revoked_at_ms.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("token `{id}` is already revoked"),
        ));
    }
    let admins = tokens
        .iter()
        .filter(|t| t.role == switchyard_storage::Role::Admin && t.revoked_at_ms.is_none())
        .count();
    if target.role == switchyard_storage::Role::Admin && admins <= 1 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this is the last admin token; create another admin token before revoking it",
        ));
    }
    let record = state
        .store
        .revoke_token(
            &id,
            &AuditInfo {
                actor_name: None,
                actor: principal.name.clone(),
                action: "token.revoke".into(),
                environment: None,
                reason: None,
            },
        )
        .await?;
    state.reload_tokens().await?;
    Ok(Json(token_info(&record)))
}

// ---------------------------------------------------------------------------------------
// Audit

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    flag: Option<String>,
    segment: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
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

/// `GET /api/v1/audit`.
pub async fn audit_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Json<AuditList>> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
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
    let entries = state
        .store
        .audit(&query)
        .await?
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at: rfc3339(e.at_ms),
            actor: e.actor,
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    format: Option<String>,
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

/// Imports flags and segments from flag-file text: new flags are created, existing ones
/// replaced, identical ones left alone; all in one transaction. `only_missing` keeps existing
/// flags and segments untouched (re-seeding).
pub async fn import_text(
    state: &AppState,
    text: &str,
    format: Format,
    source: &str,
    actor: &str,
    reason: Option<String>,
    only_missing: bool,
) -> ApiResult<ImportResult> {
    state.ensure_writable()?;
    let (ruleset, diagnostics) = switchyard_engine::check_str(text, format, Some(source));
    if ruleset.is_none() {
        return Err(ApiError::validation(&diagnostics));
    }
    let imported = ruleset.map(|r| r.to_document()).unwrap_or_default();
    let _guard = state.write_lock.lock().await;
    let (records, seg_records, mut doc) = state.stored_document().await?;
    let mut result = ImportResult {
        created: vec![],
        updated: vec![],
        unchanged: vec![],
        segments: vec![],
    };
    let mut flag_writes = Vec::new();
    let mut segment_writes = Vec::new();
    let action = if only_missing {
        "flag.seed"
    } else {
        "flag.import"
    };
    let info = |env: Option<&str>| AuditInfo {
        actor_name: None,
        actor: actor.to_owned(),
        action: action.to_owned(),
        environment: env.map(str::to_owned),
        reason: reason.clone(),
    };
    for (name, seg) in &imported.segments {
        let existing = seg_records.iter().find(|s| &s.name == name);
        let value = serde_json::to_value(seg).map_err(ApiError::internal)?;
        if existing.is_some_and(|e| only_missing || e.definition == value) {
            continue;
        }
        doc.segments.insert(name.clone(), seg.clone());
        segment_writes.push(Write {
            key: name.clone(),
            expect: Expect::Any,
            definition: Some(value),
            archived: false,
            audit: info(None),
        });
        result.segments.push(name.clone());
    }
    for flag in &imported.flags {
        let mut clean = flag.clone();
        clean.origin = switchyard_engine::FieldPath::root();
        let value = serde_json::to_value(&clean).map_err(ApiError::internal)?;
        let existing = records.iter().find(|r| r.key == flag.key);
        match existing {
            Some(e) if only_missing || e.definition == value => {
                result.unchanged.push(flag.key.clone());
                continue;
            }
            Some(_) => result.updated.push(flag.key.clone()),
            None => result.created.push(flag.key.clone()),
        }
        match doc.flags.iter().position(|f| f.key == flag.key) {
            Some(i) => doc.flags[i] = flag.clone(),
            None => doc.flags.push(flag.clone()),
        }
        flag_writes.push(Write {
            key: flag.key.clone(),
            expect: if existing.is_some() {
                Expect::Exists
            } else {
                Expect::Absent
            },
            definition: Some(value),
            archived: flag.archived,
            audit: info(None),
        });
    }
    state.validate(&doc)?;
    if !flag_writes.is_empty() || !segment_writes.is_empty() {
        state
            .store
            .write_document(&segment_writes, &flag_writes)
            .await?;
        state
            .metrics
            .flag_changes
            .with_label_values(&[action])
            .inc_by(flag_writes.len() as u64);
        drop(_guard);
        state.after_write().await;
    }
    Ok(result)
}

/// `POST /api/v1/import` (body: a flag file, JSON or YAML by `Content-Type` or `?format=`).
pub async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FormatQuery>,
    body: Bytes,
) -> ApiResult<Json<ImportResult>> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    let format = format_of(&q, &headers)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body must be UTF-8 text"))?;
    Ok(Json(
        import_text(
            &state,
            text,
            format,
            "request body",
            &principal.name,
            q.reason.clone(),
            false,
        )
        .await?,
    ))
}

/// `POST /api/v1/seed`: creates the example flags that do not exist yet.
pub async fn seed(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<ImportResult>> {
    let principal = authorize(&state.tokens.load(), &headers, Role::Editor)?;
    Ok(Json(
        import_text(
            &state,
            EXAMPLE_FLAGS,
            Format::Yaml,
            "examples/flags.yaml",
            &principal.name,
            None,
            true,
        )
        .await?,
    ))
}

/// `GET /api/v1/export?format=json|yaml`: every flag and segment as a flag file.
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FormatQuery>,
) -> ApiResult<Response> {
    authorize(&state.tokens.load(), &headers, Role::Viewer)?;
    let (_, _, doc) = state.stored_document().await?;
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
