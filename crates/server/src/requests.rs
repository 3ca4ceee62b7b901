//! `/api/v1/requests`: flag changes waiting for approval (four-eyes), approved or rejected by
//! someone other than their author through the control layer.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use switchyard_api_types::requests::{ChangeRequest, ChangeRequestList};

use crate::admin::optional_reason;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// `?status=&flag=` of the list.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status (`pending`, `applied`, `rejected`, `stale`).
    status: Option<String>,
    /// Only this flag.
    flag: Option<String>,
}

/// `GET /api/v1/requests` (viewer).
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ChangeRequestList>> {
    let requests = state
        .control
        .requests()
        .await?
        .into_iter()
        .filter(|r| q.status.as_ref().is_none_or(|s| *s == r.status))
        .filter(|r| q.flag.as_ref().is_none_or(|f| *f == r.flag))
        .collect();
    Ok(Json(ChangeRequestList { requests }))
}

/// `GET /api/v1/requests/{id}` (viewer).
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ChangeRequest>> {
    Ok(Json(state.control.request(&id).await?))
}

/// `POST /api/v1/requests/{id}/approve` (editor; never the author).
pub async fn approve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeRequest>> {
    let written = state
        .control
        .approve_request(&id, &caller.actor(), optional_reason(&body)?)
        .await?;
    Ok(Json(written.value))
}

/// `POST /api/v1/requests/{id}/reject` (editor).
pub async fn reject(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ChangeRequest>> {
    let written = state
        .control
        .reject_request(&id, &caller.actor(), optional_reason(&body)?)
        .await?;
    Ok(Json(written.value))
}
