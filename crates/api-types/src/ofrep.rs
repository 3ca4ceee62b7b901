//! OFREP (OpenFeature Remote Evaluation Protocol) bodies, as in `shared/specs/ofrep-openapi.yaml`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /ofrep/v1/evaluate/flags[/{key}]` request body. A missing `context` means `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EvaluationRequest {
    /// The evaluation context (`targetingKey` plus attributes).
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

/// A successful single evaluation (also an item of a bulk response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EvaluationSuccess {
    /// Flag key.
    pub key: String,
    /// The value; absent only for a deliberate code default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// OpenFeature reason.
    pub reason: String,
    /// Variant served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Flag metadata (scalars only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A failed evaluation: 400/404 bodies, bulk items and (as a superset of the spec) 500 bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EvaluationFailure {
    /// Flag key.
    pub key: String,
    /// OpenFeature error code.
    pub error_code: String,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
    /// Flag metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// One item of a bulk response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum BulkItem {
    /// Evaluated.
    Success(EvaluationSuccess),
    /// Failed.
    Failure(EvaluationFailure),
}

/// `POST /ofrep/v1/evaluate/flags` 200 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationSuccess {
    /// Every flag of the environment.
    pub flags: Vec<BulkItem>,
    /// Flag-set metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Change notification streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_streams: Option<Vec<EventStream>>,
}

/// A change-notification connection (`eventStreams` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventStream {
    /// Connection type; `sse`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Absolute URL of the stream (this or `endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The stream as origin + request URI (this or `url`); without `origin`, the client's
    /// OFREP base URL origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EventStreamEndpoint>,
    /// Seconds of client inactivity after which to disconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_delay_sec: Option<u32>,
}

/// `eventStreams[].endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventStreamEndpoint {
    /// Scheme, host and port; absent: the client's OFREP base URL origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Path and query, starting with `/`.
    pub request_uri: String,
}

/// The `data` of an OFREP event-stream message (`event: message`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StreamEventData {
    /// `refetchEvaluation`: the flag configuration changed; fetch the evaluations again.
    #[serde(rename = "type")]
    pub kind: String,
    /// The flag configuration's validation token (sent back as `?flagConfigEtag=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// When the configuration last changed, unix seconds (sent back as `?flagConfigLastModified=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
}

/// Whole-request failure of a bulk evaluation (400).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationFailure {
    /// OpenFeature error code.
    pub error_code: String,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
}
