//! `/api/v1/webhooks` and the deliverer: every replica claims due outbox rows (a lease, so a
//! row is tried by one replica at a time), POSTs each in its subscription's format, and records
//! the attempt — delivered on a 2xx, else retried with exponential backoff, dead after the
//! configured number of attempts.
//!
//! Generic bodies are signed: `Switchyard-Signature: t=<unix seconds>,v1=<hex>` where `<hex>`
//! is HMAC-SHA256 of `<t>.<body>` with the subscription's secret (docs/webhooks.md shows how a
//! receiver checks it and rejects replays).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_api_types::webhooks::{
    DeliveryList, DeliveryResource, WebhookFormat, WebhookList, WebhookResource, WebhookSpec,
};
use switchyard_control::Webhook;
use switchyard_storage::{Attempt, Delivery};

use crate::admin::parse_with_reason;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::{rfc3339, AppState};

fn resource(w: &Webhook, secret: Option<String>) -> WebhookResource {
    WebhookResource {
        spec: w.spec.clone(),
        version: w.version,
        created_at: rfc3339(w.created_at_ms),
        secret,
    }
}

/// `POST /api/v1/webhooks` (admin): the answer carries the signing secret, once.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WebhookResource>)> {
    let (spec, reason) = parse_with_reason::<WebhookSpec>(&body, "webhook")?;
    let (written, secret) = state
        .control
        .create_webhook(spec, &caller.actor(), reason)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(resource(&written.value, Some(secret))),
    ))
}

/// `GET /api/v1/webhooks` (admin).
pub async fn list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<WebhookList>> {
    let webhooks = state
        .control
        .webhooks()
        .await?
        .iter()
        .map(|w| resource(w, None))
        .collect();
    Ok(Json(WebhookList { webhooks }))
}

/// `?reason=` of a delete (webhooks, guards).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Why (recorded in the audit log).
    pub(crate) reason: Option<String>,
}

/// `DELETE /api/v1/webhooks/{id}` (admin).
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    state
        .control
        .delete_webhook(&id, &caller.actor(), q.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit=` of the delivery log.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /api/v1/webhooks/{id}/deliveries` (admin).
pub async fn deliveries(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let list = state
        .control
        .deliveries(&id, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(DeliveryList {
        deliveries: list
            .into_iter()
            .map(|d| DeliveryResource {
                id: d.id,
                event: d.event,
                next_attempt_at: (d.state == "pending").then(|| rfc3339(d.next_at_ms)),
                state: d.state,
                attempts: d.attempts,
                created_at: rfc3339(d.created_at_ms),
                delivered_at: d.delivered_at_ms.map(rfc3339),
                last_status: d.last_status,
                last_error: d.last_error,
                payload: d.payload,
            })
            .collect(),
    }))
}

/// One line for people: what happened, where, by whom, why.
fn summary(d: &Delivery) -> String {
    let p = &d.payload;
    let kind = p["subject"]["kind"].as_str().unwrap_or("");
    let key = p["subject"]["key"].as_str().unwrap_or("");
    let what = d.event.rsplit('.').next().unwrap_or(&d.event);
    let env = p["environment"]
        .as_str()
        .map(|e| format!(" in {e}"))
        .unwrap_or_default();
    let who = p["actorName"]
        .as_str()
        .or_else(|| p["actor"].as_str())
        .unwrap_or("someone");
    let why = p["reason"]
        .as_str()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    format!("{kind} `{key}` {what}{env} by {who}{why}")
}

/// The body `spec`'s format wants for `d`.
pub fn body(spec: &WebhookSpec, d: &Delivery) -> Value {
    match spec.format {
        WebhookFormat::Generic => {
            let mut p = d.payload.clone();
            if let Some(o) = p.as_object_mut() {
                o.insert("deliveryId".into(), json!(d.id));
            }
            p
        }
        WebhookFormat::Slack => json!({ "text": format!("Switchyard: {}", summary(d)) }),
        WebhookFormat::Pagerduty => {
            let p = &d.payload;
            let key = p["subject"]["key"].as_str().unwrap_or("");
            let env = p["environment"].as_str().unwrap_or("-");
            // A kill and its release share a dedup key: the release resolves the incident.
            let (action, dedup) = match d.event.as_str() {
                "flag.killed" => ("trigger", format!("switchyard/{env}/{key}/kill")),
                "flag.released" => ("resolve", format!("switchyard/{env}/{key}/kill")),
                other => (
                    "trigger",
                    format!("switchyard/{env}/{key}/{other}/{}", d.id),
                ),
            };
            let severity = match d.event.as_str() {
                "flag.killed" | "experiment.stopped" => "critical",
                _ => "info",
            };
            json!({
                "routing_key": spec.routing_key,
                "event_action": action,
                "dedup_key": dedup,
                "payload": {
                    "summary": summary(d),
                    "source": "switchyard",
                    "severity": severity,
                    "custom_details": p,
                },
            })
        }
    }
}

/// `t=<secs>,v1=<hex of HMAC-SHA256(secret, "<secs>.<body>")>`.
pub fn signature(secret: &str, unix_secs: i64, body: &str) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{unix_secs}.{body}").as_bytes());
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Result<u16, String> {
    let mut req = agent.post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    req.send(body.as_bytes())
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// A subscription with its signing secret, read once per batch of deliveries.
struct Target {
    spec: WebhookSpec,
    secret: String,
}

/// The subscriptions `due` goes to, each read once.
async fn targets(state: &AppState, due: &[Delivery]) -> Option<HashMap<String, Target>> {
    let hooks = state.control.webhooks().await.ok()?;
    let mut out = HashMap::new();
    for hook in hooks {
        if !due.iter().any(|d| d.webhook == hook.spec.id) {
            continue;
        }
        let secret = state
            .control
            .webhook_secret(&hook.spec.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        out.insert(
            hook.spec.id.clone(),
            Target {
                spec: hook.spec,
                secret,
            },
        );
    }
    Some(out)
}

async fn attempt_one(
    state: &AppState,
    agent: &ureq::Agent,
    targets: &HashMap<String, Target>,
    d: &Delivery,
) -> Attempt {
    let settings = &state.settings;
    let retry = || {
        let attempts = d.attempts + 1;
        (attempts < i64::from(settings.webhook_max_attempts)).then(|| {
            let factor = 1i64 << attempts.clamp(0, 20);
            crate::now_millis()
                + (settings.webhook_retry_base_ms as i64)
                    .saturating_mul(factor)
                    .min(3_600_000)
        })
    };
    let Some(target) = targets.get(&d.webhook) else {
        return Attempt::Failed {
            status: None,
            error: "the webhook was deleted".into(),
            retry_at_ms: None,
        };
    };
    let body = body(&target.spec, d).to_string();
    let headers = vec![
        ("Switchyard-Event", d.event.clone()),
        ("Switchyard-Delivery", d.id.to_string()),
        (
            "Switchyard-Signature",
            signature(&target.secret, crate::now_secs(), &body),
        ),
        (
            "User-Agent",
            format!("switchyard/{}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    let url = target.spec.url.clone();
    let agent = agent.clone();
    let sent = tokio::task::spawn_blocking(move || post(&agent, &url, &body, &headers)).await;
    match sent {
        Ok(Ok(status)) if (200..300).contains(&status) => Attempt::Delivered {
            status: i64::from(status),
        },
        Ok(Ok(status)) => Attempt::Failed {
            status: Some(i64::from(status)),
            error: format!("the receiver answered {status}"),
            retry_at_ms: retry(),
        },
        Ok(Err(error)) => Attempt::Failed {
            status: None,
            error,
            retry_at_ms: retry(),
        },
        Err(e) => Attempt::Failed {
            status: None,
            error: format!("the delivery task failed: {e}"),
            retry_at_ms: retry(),
        },
    }
}

/// Delivers due outbox rows until `stop`.
pub async fn deliver(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut tick = crate::ticker(Duration::from_millis(500));
    let mut last_prune = tokio::time::Instant::now();
    while crate::tick_or_stop(&mut tick, &mut stop).await {
        if !crate::store_is_up(&state) {
            continue;
        }
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = tokio::time::Instant::now();
            if let Err(err) = state
                .control
                .prune_deliveries(crate::now_millis(), 30)
                .await
            {
                tracing::warn!(error = %err, "old webhook deliveries were not pruned");
            }
        }
        let Ok(due) = state
            .control
            .claim_deliveries(crate::now_millis(), 60_000)
            .await
        else {
            continue;
        };
        if due.is_empty() {
            continue;
        }
        let Some(targets) = targets(&state, &due).await else {
            continue;
        };
        for d in &due {
            let attempt = attempt_one(&state, &agent, &targets, d).await;
            let outcome = match &attempt {
                Attempt::Delivered { .. } => "delivered",
                Attempt::Failed {
                    retry_at_ms: Some(_),
                    ..
                } => "failed",
                Attempt::Failed { .. } => "dead",
            };
            state
                .metrics
                .webhook_deliveries
                .with_label_values(&[outcome])
                .inc();
            if let Attempt::Failed { error, .. } = &attempt {
                tracing::warn!(webhook = %d.webhook, delivery = d.id, event = %d.event, %error, outcome, "a webhook delivery failed");
            }
            if let Err(err) = state
                .control
                .record_attempt(d.id, crate::now_millis(), &attempt)
                .await
            {
                tracing::warn!(error = %err, "a webhook attempt was not recorded (it will be retried)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(event: &str) -> Delivery {
        Delivery {
            id: 7,
            webhook: "w".into(),
            event: event.into(),
            payload: json!({"event": event, "actor": "token:a", "actorName": "ops",
                            "subject": {"kind": "flag", "key": "checkout"},
                            "environment": "production", "reason": "payments failing"}),
            created_at_ms: 0,
            state: "pending".into(),
            attempts: 0,
            next_at_ms: 0,
            last_status: None,
            last_error: None,
            delivered_at_ms: None,
        }
    }

    fn spec(format: WebhookFormat) -> WebhookSpec {
        WebhookSpec {
            id: "w".into(),
            url: "http://127.0.0.1:1/".into(),
            format,
            events: vec!["*".into()],
            environment: None,
            routing_key: Some("rk".into()),
            description: None,
        }
    }

    #[test]
    fn each_format_has_its_body() {
        let d = delivery("flag.killed");
        let generic = body(&spec(WebhookFormat::Generic), &d);
        assert_eq!(
            (generic["event"].as_str(), generic["deliveryId"].as_i64()),
            (Some("flag.killed"), Some(7))
        );
        let slack = body(&spec(WebhookFormat::Slack), &d);
        assert_eq!(
            slack["text"],
            "Switchyard: flag `checkout` killed in production by ops: payments failing"
        );
        let pd = body(&spec(WebhookFormat::Pagerduty), &d);
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "switchyard/production/checkout/kill");
        let resolved = body(&spec(WebhookFormat::Pagerduty), &delivery("flag.released"));
        assert_eq!(
            (
                resolved["event_action"].as_str(),
                resolved["dedup_key"].as_str()
            ),
            (Some("resolve"), Some("switchyard/production/checkout/kill"))
        );
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = signature("s3cret", 1_700_000_000, "{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_ne!(a, signature("s3cret", 1_700_000_001, "{}"));
        assert_ne!(a, signature("s3cret", 1_700_000_000, "{ }"));
        assert_ne!(a, signature("other", 1_700_000_000, "{}"));
    }
}
