//! `/api/v1/schedules` and the loop that runs due schedules on every replica (each run is one
//! locked control operation, so a schedule runs once however many replicas try).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use switchyard_api_types::schedules::{NewSchedule, ScheduleList, ScheduleResource};
use switchyard_control::{Schedule, ScheduledOp};

use crate::admin::parse_body;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

fn resource(s: &Schedule) -> ScheduleResource {
    let r = &s.record;
    ScheduleResource {
        id: r.id.clone(),
        flag: r.flag.clone(),
        environment: r.environment.clone(),
        action: r.action.clone(),
        at: rfc3339(r.due_at_ms),
        state: r.state.clone(),
        created_by: r
            .created_by_name
            .clone()
            .unwrap_or_else(|| r.created_by.clone()),
        reason: r.reason.clone(),
        finished_at: r.finished_at_ms.map(rfc3339),
        outcome: r.outcome.clone(),
    }
}

/// `POST /api/v1/schedules` (editor).
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ScheduleResource>)> {
    let req: NewSchedule = parse_body(&body)?;
    let op = match (req.action.as_str(), req.percentage) {
        ("enable", None) => ScheduledOp::Enable,
        ("disable", None) => ScheduledOp::Disable,
        ("kill", None) => ScheduledOp::Kill,
        ("release", None) => ScheduledOp::Release,
        ("archive", None) => ScheduledOp::Archive,
        ("rollout", Some(percentage)) => ScheduledOp::Rollout {
            percentage,
            variant: req.variant.clone(),
        },
        ("rollout", None) => {
            return Err(ApiError::bad_request("a rollout needs `percentage`")
                .with_details(serde_json::json!({"field": "percentage"})))
        }
        (a, Some(_)) if a != "rollout" => {
            return Err(ApiError::bad_request(format!(
                "`percentage` goes with rollout, not {a}"
            )))
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "unknown action `{other}`: use enable, disable, kill, release, rollout or archive"
            ))
            .with_details(serde_json::json!({"field": "action"})))
        }
    };
    let due = switchyard_control::parse_date(&req.at).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`at` must be an RFC 3339 time such as 2026-12-24T09:00:00Z, not `{}`",
            req.at
        ))
        .with_details(serde_json::json!({"field": "at"}))
    })?;
    let written = state
        .control
        .create_schedule(
            &req.flag,
            &req.environment,
            op,
            due,
            &caller.actor(),
            req.reason,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(resource(&written.value))))
}

/// `?state=&flag=` of the list.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this state (`pending`, `done`, `failed`, `cancelled`).
    state: Option<String>,
    /// Only this flag.
    flag: Option<String>,
}

/// `GET /api/v1/schedules` (viewer).
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ScheduleList>> {
    let schedules = state
        .control
        .schedules()
        .await?
        .iter()
        .filter(|s| q.state.as_ref().is_none_or(|v| *v == s.record.state))
        .filter(|s| q.flag.as_ref().is_none_or(|v| *v == s.record.flag))
        .map(resource)
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// `?reason=` of a cancel.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    /// Why (recorded in the audit log).
    reason: Option<String>,
}

/// `DELETE /api/v1/schedules/{id}` (editor): cancel a pending schedule.
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(q): Query<CancelQuery>,
) -> ApiResult<Json<ScheduleResource>> {
    let written = state
        .control
        .cancel_schedule(&id, &caller.actor(), q.reason)
        .await?;
    Ok(Json(resource(&written.value)))
}

/// Runs due schedules every second until `stop` (and at once after a start, so a schedule
/// missed while every server was down runs as soon as one is up).
pub async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = crate::ticker(std::time::Duration::from_secs(1));
    while crate::tick_or_stop(&mut tick, &mut stop).await {
        if !crate::store_is_up(&state)
            || !matches!(state.control.source(), switchyard_control::Source::Store)
        {
            continue;
        }
        match state.control.run_due_schedules(crate::now_millis()).await {
            Ok(runs) => {
                for r in runs {
                    state
                        .metrics
                        .schedule_runs
                        .with_label_values(&[r.state.as_str()])
                        .inc();
                    tracing::info!(schedule = %r.id, state = %r.state, outcome = %r.outcome, "a scheduled change ran");
                }
            }
            Err(err) => tracing::warn!(error = %err, "the scheduler could not run"),
        }
    }
}
