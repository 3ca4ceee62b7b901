//! Webhook bodies (`/api/v1/webhooks/...`).

use serde::{Deserialize, Serialize};

/// The events a subscription can ask for (`*` is every one).
pub const EVENTS: &[&str] = &[
    "flag.changed",
    "flag.killed",
    "flag.released",
    "experiment.started",
    "experiment.paused",
    "experiment.resumed",
    "experiment.completed",
    "experiment.cancelled",
    "experiment.stopped",
    "schedule.ran",
    "schedule.failed",
    "rollout.started",
    "rollout.advanced",
    "rollout.awaiting_approval",
    "rollout.paused",
    "rollout.resumed",
    "rollout.rolled_back",
    "rollout.aborted",
    "rollout.completed",
    "guard.tripped",
    "request.created",
    "request.approved",
    "request.rejected",
    "request.stale",
];

/// The body a subscription receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON, signed (`Switchyard-Signature`).
    #[default]
    Generic,
    /// `{"text": …}` for a Slack incoming webhook.
    Slack,
    /// A PagerDuty Events API v2 event (`trigger`, and `resolve` on a release).
    Pagerduty,
}

/// A subscription as people write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Unique id.
    pub id: String,
    /// Where to POST (http or https).
    pub url: String,
    /// The body's shape.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The events wanted (see `EVENTS`); `["*"]` (the default) is all of them.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// Only events in this environment (absent: every environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The PagerDuty integration's routing key (`pagerduty` format only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn all_events() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A subscription as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookResource {
    /// What was written.
    #[serde(flatten)]
    pub spec: WebhookSpec,
    /// Version.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// The signing secret: returned once, by the create that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/v1/webhooks` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookList {
    /// Every subscription, by id.
    pub webhooks: Vec<WebhookResource>,
}

/// One delivery of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResource {
    /// Delivery id (also the `Switchyard-Delivery` header).
    pub id: i64,
    /// The event.
    pub event: String,
    /// `pending`, `delivered` or `dead` (gave up after the last attempt).
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When queued (RFC 3339).
    pub created_at: String,
    /// When the next attempt is due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The last answer's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The event (the generic body).
    pub payload: serde_json::Value,
}

/// `GET /api/v1/webhooks/{id}/deliveries` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryResource>,
}
