//! `POST /sdk/v1/events` (SDK key): exposures and metric events, in batches.
//!
//! The batch must be `{"events": [...]}`; each event is then read and checked on its own, so
//! one malformed event is refused (with its index, id and what is wrong) without losing the
//! others. Valid events are appended through the control layer in one transaction, outside
//! the flag write path. The environment is the SDK key's.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use switchyard_api_types::sdk::{Exposure, IngestResult, Metric, RejectedEvent, SdkEvent};
use switchyard_storage::{ExposureRow, MetricRow};

use crate::admin::parse_body;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most events one batch may carry.
pub const MAX_BATCH: usize = 10_000;
/// Longest id, unit, flag, variant or event name.
const MAX_TEXT: usize = 512;
/// Events dated more than this after the server's clock are refused (a wrong clock).
const FUTURE_SLACK_MS: i64 = 24 * 3600 * 1000;
/// 2000-01-01: anything earlier is a unit mistake (seconds for milliseconds).
const EARLIEST_MS: i64 = 946_684_800_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    events: Vec<Value>,
}

fn text(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(format!(
            "`{field}` is {} bytes long; at most {MAX_TEXT}",
            value.len()
        ));
    }
    Ok(())
}

fn timestamp(at_ms: i64, now_ms: i64) -> Result<(), String> {
    if at_ms < EARLIEST_MS {
        return Err(format!(
            "`timestampMs` {at_ms} is before 2000: send unix milliseconds, not seconds"
        ));
    }
    if at_ms > now_ms + FUTURE_SLACK_MS {
        return Err(format!(
            "`timestampMs` {at_ms} is more than a day ahead of the server's clock"
        ));
    }
    Ok(())
}

fn check_exposure(e: &Exposure, now_ms: i64) -> Result<(), String> {
    text("id", &e.id)?;
    text("flag", &e.flag)?;
    text("variant", &e.variant)?;
    text("unit", &e.unit)?;
    timestamp(e.timestamp_ms, now_ms)
}

fn check_metric(m: &Metric, now_ms: i64) -> Result<(), String> {
    text("id", &m.id)?;
    text("event", &m.event)?;
    text("unit", &m.unit)?;
    if let Some(v) = m.value {
        if !v.is_finite() {
            return Err(format!("`value` must be a finite number, not {v}"));
        }
    }
    timestamp(m.timestamp_ms, now_ms)
}

/// One event, read by its `type` so a wrong field is named (`value`: invalid type: …).
fn read_event(raw: Value) -> Result<SdkEvent, String> {
    fn read<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T, String> {
        serde_path_to_error::deserialize(raw).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("`{path}`: {}", e.into_inner())
            }
        })
    }
    match raw.get("type").map(|t| t.as_str()) {
        _ if !raw.is_object() => Err("an event is an object with a `type`".to_owned()),
        None => Err("`type` is missing; use exposure or metric".to_owned()),
        Some(Some("exposure")) => read(raw).map(SdkEvent::Exposure),
        Some(Some("metric")) => read(raw).map(SdkEvent::Metric),
        Some(Some(other)) => Err(format!("unknown `type` `{other}`; use exposure or metric")),
        Some(None) => Err("`type` must be the string exposure or metric".to_owned()),
    }
}

/// `POST /sdk/v1/events`.
pub async fn ingest(
    State(state): State<AppState>,
    Caller(principal): Caller,
    body: Bytes,
) -> ApiResult<Json<IngestResult>> {
    let RawBatch { events } = parse_body(&body)?;
    if events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "{} events in one batch; send at most {MAX_BATCH}",
            events.len()
        )));
    }
    let environment = principal.environment.clone().unwrap_or_default();
    let now_ms = crate::now_secs().saturating_mul(1000);
    let snapshot = state.control.snapshot();
    let mut exposures = Vec::new();
    let mut metrics = Vec::new();
    let mut rejected = Vec::new();
    let mut rejected_exposures = 0u64;
    for (index, raw) in events.into_iter().enumerate() {
        let id = raw.get("id").and_then(Value::as_str).map(str::to_owned);
        let is_exposure = raw.get("type").and_then(Value::as_str) == Some("exposure");
        let event = read_event(raw);
        let checked = event.and_then(|event| match event {
            SdkEvent::Exposure(e) => check_exposure(&e, now_ms).map(|()| {
                // Counted for an experiment only while it runs on that flag here; otherwise
                // for the stage of a progressive rollout of the flag, if one runs.
                let experiment = e
                    .experiment
                    .filter(|id| {
                        switchyard_control::running_experiment(&snapshot, &environment, &e.flag)
                            == Some(id.as_str())
                    })
                    .or_else(|| {
                        state
                            .control
                            .rollout_exposures(&environment, &e.flag)
                            .map(|k| k.to_string())
                    });
                // An SDK evaluates locally: its exposures say when a flag was evaluated.
                if snapshot.flag(&e.flag).is_some() {
                    state
                        .evaluated
                        .seen(&environment, &e.flag, e.timestamp_ms.min(now_ms) / 1000);
                }
                exposures.push(ExposureRow {
                    environment: environment.clone(),
                    flag: e.flag,
                    unit: e.unit,
                    variant: e.variant,
                    at_ms: e.timestamp_ms,
                    experiment,
                });
            }),
            SdkEvent::Metric(m) => check_metric(&m, now_ms).map(|()| {
                metrics.push(MetricRow {
                    environment: environment.clone(),
                    id: m.id,
                    unit: m.unit,
                    event: m.event,
                    value: m.value,
                    at_ms: m.timestamp_ms,
                });
            }),
        });
        if let Err(message) = checked {
            rejected_exposures += u64::from(is_exposure);
            rejected.push(RejectedEvent { index, id, message });
        }
    }
    let appended = state.control.append_events(&exposures, &metrics).await?;
    let counter = |kind: &str, outcome: &str, n: u64| {
        state
            .metrics
            .events
            .with_label_values(&[kind, outcome])
            .inc_by(n);
    };
    let (ne, nm) = (exposures.len() as u64, metrics.len() as u64);
    counter("exposure", "stored", appended.exposures);
    counter(
        "exposure",
        "duplicate",
        ne.saturating_sub(appended.exposures),
    );
    counter("metric", "stored", appended.metrics);
    counter("metric", "duplicate", nm.saturating_sub(appended.metrics));
    counter("exposure", "rejected", rejected_exposures);
    counter(
        "metric",
        "rejected",
        (rejected.len() as u64).saturating_sub(rejected_exposures),
    );
    Ok(Json(IngestResult {
        accepted: ne + nm,
        duplicates: (ne + nm).saturating_sub(appended.exposures + appended.metrics),
        rejected,
    }))
}

/// `?environment=&flag=` of `GET /api/v1/exposures`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposureQuery {
    /// The environment.
    environment: String,
    /// The flag.
    flag: String,
}

/// `GET /api/v1/exposures?environment=&flag=` (viewer): units per variant, first exposures.
pub async fn exposures(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ExposureQuery>,
) -> ApiResult<Json<switchyard_api_types::admin::ExposureCounts>> {
    let snap = state.control.snapshot();
    if snap.environment(&q.environment).is_none() {
        return Err(ApiError::from(switchyard_control::ControlError::NotFound {
            what: format!("environment `{}`", q.environment),
            hint: Some(snap.environment_names()),
        }));
    }
    let counts = state
        .control
        .exposure_counts(&q.environment, &q.flag)
        .await?;
    Ok(Json(switchyard_api_types::admin::ExposureCounts {
        environment: q.environment,
        flag: q.flag,
        variants: counts
            .into_iter()
            .map(|c| switchyard_api_types::admin::VariantUnits {
                variant: c.variant,
                units: c.units,
            })
            .collect(),
    }))
}
