//! The SDK endpoints' bodies: the ruleset (`GET /sdk/v1/ruleset`) and the change stream's
//! events (`GET /sdk/v1/stream`, server-sent events), shared by the server and the Rust SDK so
//! they cannot drift.
//!
//! The stream sends, as SSE event names:
//!
//! - `put`: a [`Ruleset`] — everything, on connect (or when a resume is not possible);
//! - `patch`: a [`Patch`] — one flag or segment created or changed;
//! - `delete`: a [`Delete`] — one flag or segment removed.
//!
//! Event ids are store revisions (the ruleset revision reached once that event is applied);
//! only the last event of a batch carries one, so a client that loses the connection mid-batch
//! resumes (`Last-Event-ID`) before the batch and gets all of it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_engine::document::SegmentDef;
use switchyard_engine::FlagDef;

/// The format name of a [`Ruleset`].
pub const RULESET_FORMAT: &str = "switchyard-ruleset";
/// The version of the [`Ruleset`] format this build writes and reads.
pub const RULESET_VERSION: u32 = 1;

/// Every flag and segment an SDK key's environment serves: the flag definitions (each with
/// only that environment's overrides) in the flag format, and the revision they are at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Ruleset {
    /// Always [`RULESET_FORMAT`].
    pub format: String,
    /// [`RULESET_VERSION`].
    pub version: u32,
    /// The ruleset revision (a store revision): it only increases.
    pub revision: i64,
    /// The environment (the SDK key's).
    pub environment: String,
    /// The flag definitions, by key; archived flags are left out.
    pub flags: Vec<FlagDef>,
    /// The segments, by name.
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentDef>,
}

/// What a [`Patch`] or [`Delete`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A flag (by key).
    Flag,
    /// A segment (by name).
    Segment,
}

/// A `patch` event: one flag or segment created or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Patch {
    /// Flag or segment.
    pub kind: Kind,
    /// Its key or name.
    pub key: String,
    /// The ruleset revision this state is from.
    pub revision: i64,
    /// The flag definition (only this environment's overrides) or the segment definition,
    /// in the flag format.
    pub definition: serde_json::Value,
}

/// A `delete` event: one flag or segment removed (or, for a flag, archived).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Delete {
    /// Flag or segment.
    pub kind: Kind,
    /// Its key or name.
    pub key: String,
    /// The ruleset revision it was removed at.
    pub revision: i64,
}

/// `POST /sdk/v1/events` body: events an SDK batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventBatch {
    /// The events, oldest first.
    pub events: Vec<SdkEvent>,
}

/// One event an SDK sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SdkEvent {
    /// A unit was served a variant of a flag (the first time, per SDK instance).
    Exposure(Exposure),
    /// The application recorded something a unit did (`track`).
    Metric(Metric),
}

/// An exposure: `unit` saw `variant` of `flag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Client-chosen id; the server ignores an event it already has.
    pub id: String,
    /// The flag key.
    pub flag: String,
    /// The variant served.
    pub variant: String,
    /// The bucketing unit (the targeting key).
    pub unit: String,
    /// When, unix milliseconds.
    pub timestamp_ms: i64,
    /// The running experiment that assigned the unit (an evaluation whose detail was
    /// `EXPERIMENT`), so the exposure counts for it; absent for other evaluations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// A metric event: `unit` did `event`, with an optional numeric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Client-chosen id; the server ignores an event it already has.
    pub id: String,
    /// The event name (`purchase`, `checkout_error`).
    pub event: String,
    /// The unit (the targeting key) that did it.
    pub unit: String,
    /// A value (revenue, latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When, unix milliseconds.
    pub timestamp_ms: i64,
}

/// `POST /sdk/v1/events` answer: what was stored, what was already there, what was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IngestResult {
    /// Valid events in the batch.
    pub accepted: u64,
    /// Of those, events the server already had (the same metric event id, or a unit already
    /// exposed to the flag): nothing new was stored for them.
    pub duplicates: u64,
    /// Events refused, each with why; the others were stored.
    pub rejected: Vec<RejectedEvent>,
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RejectedEvent {
    /// Its position in `events`.
    pub index: usize,
    /// Its id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What is wrong with it, naming the field.
    pub message: String,
}
