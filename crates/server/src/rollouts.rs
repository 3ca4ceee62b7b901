//! `/api/v1/rollouts`, `/api/v1/guards`, the probes their gates use (a Prometheus server, a
//! health URL) and the loop that checks them on every replica (each step is one locked,
//! version-checked control operation, so a stage advances once however many replicas check).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use switchyard_api_types::rollouts::{
    GuardList, GuardResource, GuardSpec, RolloutList, RolloutPlan, RolloutResource,
};
use switchyard_control::{Guard, Probe, Rollout, RolloutAction};

use crate::admin::{optional_reason, parse_with_reason};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

fn resource(r: &Rollout) -> RolloutResource {
    let s = &r.state;
    RolloutResource {
        id: s.id().to_owned(),
        flag: s.plan.flag.clone(),
        environment: s.plan.environment.clone(),
        variant: s.variant().to_owned(),
        status: s.status.as_str().to_owned(),
        stage: s.stage,
        percentage: s.percentage,
        stage_started_at: rfc3339(s.stage_started_at_ms),
        hold_until: rfc3339(s.stage_started_at_ms + s.hold_ms(s.stage)),
        stages: s.stages().to_vec(),
        gates: s.plan.gates.clone(),
        on_red: s.plan.on_red,
        min_sample: s.min_sample(),
        readings: r.readings.clone(),
        readings_at: r.readings_at_ms.map(rfc3339),
        history: s.history.clone(),
        created_by: s
            .created_by_name
            .clone()
            .unwrap_or_else(|| s.created_by.clone()),
        version: r.version,
    }
}

/// `POST /api/v1/rollouts` (editor): start a progressive rollout.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RolloutResource>)> {
    let (plan, reason): (RolloutPlan, _) = parse_with_reason(&body, "rollout plan")?;
    let written = state
        .control
        .start_rollout(plan, &caller.actor(), reason)
        .await?;
    Ok((StatusCode::CREATED, Json(resource(&written.value))))
}

/// `?status=&flag=` of the list.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status (`running`, `awaiting_approval`, `paused`, `completed`,
    /// `rolled_back`, `aborted`).
    status: Option<String>,
    /// Only this flag.
    flag: Option<String>,
}

/// `GET /api/v1/rollouts` (viewer).
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RolloutList>> {
    let rollouts = state
        .control
        .rollouts()
        .await?
        .iter()
        .filter(|r| {
            q.status
                .as_ref()
                .is_none_or(|v| v == r.state.status.as_str())
        })
        .filter(|r| q.flag.as_ref().is_none_or(|v| *v == r.state.plan.flag))
        .map(resource)
        .collect();
    Ok(Json(RolloutList { rollouts }))
}

/// `GET /api/v1/rollouts/{id}` (viewer): state, stage history, the latest gate readings.
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutResource>> {
    Ok(Json(resource(&state.control.rollout(&id).await?)))
}

/// `POST /api/v1/rollouts/{id}/{action}` (editor): pause, resume, advance (approve), abort.
pub async fn act(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<RolloutResource>> {
    let action = match action.as_str() {
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        "advance" | "approve" => RolloutAction::Advance,
        "abort" => RolloutAction::Abort,
        other => {
            return Err(ApiError::not_found(format!(
                "no rollout action `{other}`: use pause, resume, advance or abort"
            )))
        }
    };
    let reason = optional_reason(&body)?;
    let written = state
        .control
        .rollout_action(&id, action, &caller.actor(), reason)
        .await?;
    Ok(Json(resource(&written.value)))
}

fn guard_resource(g: &Guard, now_ms: i64) -> GuardResource {
    let s = &g.state;
    GuardResource {
        id: s.id().to_owned(),
        // The id is said once, at the top.
        spec: GuardSpec {
            id: None,
            ..s.spec.clone()
        },
        state: if s.cooling_down(now_ms) {
            "cooling_down"
        } else {
            "armed"
        }
        .into(),
        trips: s.trips,
        last_tripped_at: s.last_tripped_at_ms.map(rfc3339),
        reading: g.reading.clone(),
        created_by: s
            .created_by_name
            .clone()
            .unwrap_or_else(|| s.created_by.clone()),
        version: g.version,
    }
}

/// `POST /api/v1/guards` (editor).
pub async fn create_guard(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<GuardResource>)> {
    let (spec, reason): (GuardSpec, _) = parse_with_reason(&body, "guard")?;
    let written = state
        .control
        .create_guard(spec, &caller.actor(), reason)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(guard_resource(&written.value, crate::now_millis())),
    ))
}

/// `GET /api/v1/guards` (viewer).
pub async fn list_guards(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<GuardList>> {
    let now = crate::now_millis();
    let guards = state
        .control
        .guards()
        .await?
        .iter()
        .map(|g| guard_resource(g, now))
        .collect();
    Ok(Json(GuardList { guards }))
}

/// `DELETE /api/v1/guards/{id}` (editor).
pub async fn delete_guard(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(q): Query<crate::webhooks::DeleteQuery>,
) -> ApiResult<StatusCode> {
    state
        .control
        .delete_guard(&id, &caller.actor(), q.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The gates' HTTP: Prometheus instant queries and health checks, each bounded by a timeout.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    agent: ureq::Agent,
}

impl HttpProbe {
    /// A probe whose every request gives up after `timeout`.
    pub fn new(timeout: Duration) -> HttpProbe {
        HttpProbe {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into(),
        }
    }
}

/// The one number of a Prometheus `/api/v1/query` answer (`None`: no sample, or NaN).
pub fn prometheus_value(body: &Value) -> Result<Option<f64>, String> {
    if body.get("status").and_then(Value::as_str) != Some("success") {
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no `status: success`");
        return Err(format!("Prometheus answered: {error}"));
    }
    let data = body.get("data").ok_or("the answer has no `data`")?;
    let number = |pair: &Value| -> Result<Option<f64>, String> {
        let text = pair
            .get(1)
            .and_then(Value::as_str)
            .ok_or("a sample is not [time, \"value\"]")?;
        let v: f64 = text
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        Ok(v.is_finite().then_some(v))
    };
    match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => number(data.get("result").unwrap_or(&Value::Null)),
        Some("vector") => {
            let series = data
                .get("result")
                .and_then(Value::as_array)
                .ok_or("a vector answer without `result`")?;
            match series.as_slice() {
                [] => Ok(None),
                [one] => number(one.get("value").unwrap_or(&Value::Null)),
                many => Err(format!(
                    "the query returned {} series; aggregate it to one (sum, max, …)",
                    many.len()
                )),
            }
        }
        other => Err(format!(
            "the query returned a {}; a gate needs a scalar or a one-series vector",
            other.unwrap_or("nothing")
        )),
    }
}

impl Probe for HttpProbe {
    async fn prometheus(&self, url: &str, query: &str) -> Result<Option<f64>, String> {
        let agent = self.agent.clone();
        let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut response = agent
                .get(&endpoint)
                .query("query", &query)
                .call()
                .map_err(|e| format!("{endpoint}: {e}"))?;
            let status = response.status().as_u16();
            let body: Value = response
                .body_mut()
                .read_json()
                .map_err(|e| format!("{endpoint} answered {status} with no JSON: {e}"))?;
            prometheus_value(&body)
        })
        .await
        .map_err(|e| format!("the query task failed: {e}"))?
    }

    async fn http(&self, url: &str) -> Result<(), String> {
        let agent = self.agent.clone();
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let response = agent.get(&url).call().map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", status.as_u16()))
            }
        })
        .await
        .map_err(|e| format!("the check task failed: {e}"))?
    }
}

/// Checks every running rollout and every guard each interval until `stop`.
pub async fn monitor(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let probe = HttpProbe::new(Duration::from_millis(state.settings.probe_timeout_ms));
    let mut tick = crate::ticker(Duration::from_millis(state.settings.rollout_check_ms));
    while crate::tick_or_stop(&mut tick, &mut stop).await {
        if !crate::store_is_up(&state)
            || !matches!(state.control.source(), switchyard_control::Source::Store)
        {
            continue;
        }
        let now = crate::now_millis();
        match state.control.check_rollouts(now, &probe).await {
            Ok(steps) => {
                for s in steps {
                    state
                        .metrics
                        .rollout_steps
                        .with_label_values(&[s.action])
                        .inc();
                }
            }
            Err(err) => tracing::warn!(error = %err, "the rollout check failed"),
        }
        match state.control.check_guards(now, &probe).await {
            Ok(trips) => state.metrics.guard_trips.inc_by(trips.len() as u64),
            Err(err) => tracing::warn!(error = %err, "the guard check failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prometheus_value;
    use serde_json::json;

    #[test]
    fn prometheus_answers_read_as_one_number() {
        let vector = |result: serde_json::Value| json!({"status": "success", "data": {"resultType": "vector", "result": result}});
        assert_eq!(
            prometheus_value(&vector(json!([{"metric": {}, "value": [1.0, "0.25"]}]))),
            Ok(Some(0.25))
        );
        assert_eq!(prometheus_value(&vector(json!([]))), Ok(None));
        assert_eq!(
            prometheus_value(&vector(json!([{"value": [1.0, "NaN"]}]))),
            Ok(None)
        );
        assert!(
            prometheus_value(&vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}])))
                .unwrap_err()
                .contains("2 series")
        );
        assert_eq!(
            prometheus_value(
                &json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}})
            ),
            Ok(Some(3.0))
        );
        assert!(prometheus_value(
            &json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"})
        )
        .unwrap_err()
        .contains("parse error"));
    }
}
