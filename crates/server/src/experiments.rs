//! `/api/v1/experiments`: drafts, status changes and results; `DELETE /api/v1/units/{unit}/
//! events` (a privacy erasure). Each handler reads its input, calls one control operation and
//! renders it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use switchyard_api_types::experiments::{
    ExperimentList, ExperimentResults, ExperimentSpec, ExperimentStatus, TransitionRequest,
};
use switchyard_control::{Experiment, ExperimentAction, Written};

use crate::admin::{if_match, parse_body, parse_with_reason, with_etag};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `?environment=&flag=&status=` of `GET /api/v1/experiments`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only experiments in this environment.
    environment: Option<String>,
    /// Only experiments on this flag.
    flag: Option<String>,
    /// Only experiments in this status (`draft`, `running`, `paused`, `completed`,
    /// `cancelled`).
    status: Option<ExperimentStatus>,
}

fn resource(status: StatusCode, written: &Written<Experiment>) -> Response {
    let exp = &written.value;
    let status = if written.changed {
        status
    } else {
        StatusCode::OK
    };
    with_etag(status, exp.version, exp.to_resource())
}

/// `GET /api/v1/experiments`.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ExperimentList>> {
    let experiments = state
        .control
        .experiments()
        .await?
        .into_iter()
        .filter(|e| {
            q.environment
                .as_ref()
                .is_none_or(|v| *v == e.spec.environment)
        })
        .filter(|e| q.flag.as_ref().is_none_or(|v| *v == e.spec.flag))
        .filter(|e| q.status.is_none_or(|s| s == e.status))
        .map(|e| e.to_resource())
        .collect();
    Ok(Json(ExperimentList { experiments }))
}

/// `POST /api/v1/experiments`: a draft.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let (spec, reason) = parse_with_reason::<ExperimentSpec>(&body, "experiment")?;
    let id = spec.id.clone();
    let written = state
        .control
        .create_experiment(spec, &caller.actor(), reason)
        .await?;
    let mut response = resource(StatusCode::CREATED, &written);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/experiments/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /api/v1/experiments/{id}`.
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let exp = state.control.experiment(&id).await?;
    Ok(resource(
        StatusCode::OK,
        &Written {
            value: exp,
            changed: false,
            revision: 0,
        },
    ))
}

/// `PUT /api/v1/experiments/{id}`: replace a draft's definition.
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (spec, reason) = parse_with_reason::<ExperimentSpec>(&body, "experiment")?;
    let written = state
        .control
        .update_experiment(
            &id,
            spec,
            if_match(&headers)?.version(),
            &caller.actor(),
            reason,
        )
        .await?;
    Ok(resource(StatusCode::OK, &written))
}

async fn transition(
    state: AppState,
    caller: Caller,
    id: String,
    body: Bytes,
    action: impl FnOnce(&TransitionRequest) -> ApiResult<ExperimentAction>,
) -> ApiResult<Response> {
    let request: TransitionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TransitionRequest::default()
    } else {
        parse_body(&body)?
    };
    let action = action(&request)?;
    let written = state
        .control
        .transition_experiment(&id, action, &caller.0.actor(), request.reason)
        .await?;
    Ok(resource(StatusCode::OK, &written))
}

fn no_ship(request: &TransitionRequest, what: &str) -> ApiResult<()> {
    match request.ship {
        Some(_) => Err(ApiError::bad_request(format!(
            "`ship` goes with complete, not {what}"
        ))),
        None => Ok(()),
    }
}

/// `POST /api/v1/experiments/{id}/start`.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    transition(state, caller, id, body, |r| {
        no_ship(r, "start")?;
        Ok(ExperimentAction::Start)
    })
    .await
}

/// `POST /api/v1/experiments/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    transition(state, caller, id, body, |r| {
        no_ship(r, "pause")?;
        Ok(ExperimentAction::Pause)
    })
    .await
}

/// `POST /api/v1/experiments/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    transition(state, caller, id, body, |r| {
        no_ship(r, "resume")?;
        Ok(ExperimentAction::Resume)
    })
    .await
}

/// `POST /api/v1/experiments/{id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    transition(state, caller, id, body, |r| {
        Ok(ExperimentAction::Complete {
            ship: r.ship.clone(),
        })
    })
    .await
}

/// `POST /api/v1/experiments/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    transition(state, caller, id, body, |r| {
        no_ship(r, "cancel")?;
        Ok(ExperimentAction::Cancel)
    })
    .await
}

/// `GET /api/v1/experiments/{id}/results`.
pub async fn results(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ExperimentResults>> {
    Ok(Json(
        state
            .control
            .experiment_results(&id, crate::now_millis())
            .await?,
    ))
}

/// `?environment=` of the erasure.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseQuery {
    /// The environment whose events to erase.
    environment: String,
}

/// `DELETE /api/v1/units/{unit}/events?environment=` (admin): erase every exposure and
/// metric event of one unit.
pub async fn erase_unit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(unit): Path<String>,
    Query(q): Query<EraseQuery>,
) -> ApiResult<Json<switchyard_api_types::experiments::Erased>> {
    let erased = state
        .control
        .erase_unit(&q.environment, &unit, &caller.actor())
        .await?;
    Ok(Json(switchyard_api_types::experiments::Erased {
        environment: q.environment,
        unit,
        rows: erased,
    }))
}

/// Checks running experiments every `experiment_check_secs` until `stop` (see
/// `Control::check_experiments`); every replica runs it, the pauses are idempotent.
pub async fn monitor(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(state.settings.experiment_check_secs);
    let mut tick = crate::ticker(every);
    tick.reset(); // the first check one interval after start, not at once
    while crate::tick_or_stop(&mut tick, &mut stop).await {
        if !crate::store_is_up(&state) {
            continue;
        }
        match state.control.check_experiments(crate::now_millis()).await {
            Ok(stopped) => {
                for s in stopped {
                    state
                        .metrics
                        .experiment_stops
                        .with_label_values(&[s.kind])
                        .inc();
                }
            }
            Err(err) => tracing::warn!(error = %err, "the experiment check failed"),
        }
    }
}
