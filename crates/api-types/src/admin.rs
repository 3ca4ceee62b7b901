//! Admin API bodies (`/api/v1/...`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_engine::document::{RuleDef, SegmentDef, TargetDef};
use switchyard_engine::FlagDef;

use crate::Role;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A flag as the admin API returns it: the definition plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FlagResource {
    /// Flag key.
    pub key: String,
    /// Version for optimistic concurrency (send it back in `If-Match`).
    pub version: i64,
    /// Archived flags are kept but not served.
    pub archived: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The flag definition, in the flag file format.
    pub definition: FlagDef,
    /// `true` when a write asked for what was already stored: nothing was written, versioned
    /// or audited (absent otherwise).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unchanged: bool,
}

/// `GET /api/v1/flags` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlagList {
    /// Matching flags, by key.
    pub flags: Vec<FlagResource>,
}

/// A segment as the admin API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SegmentResource {
    /// Segment name.
    pub name: String,
    /// Version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The segment definition.
    pub definition: SegmentDef,
    /// `true` when a write changed nothing (absent otherwise).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unchanged: bool,
}

/// `GET /api/v1/segments` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SegmentList {
    /// All segments, by name.
    pub segments: Vec<SegmentResource>,
}

/// An environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Name (`production`).
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether a person's flag change here waits for someone else's approval.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_approval: bool,
}

/// `POST /api/v1/environments` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    /// Name of the new environment.
    pub name: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `PUT .../environments/{env}/enabled` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetEnabled {
    /// On or off.
    pub enabled: bool,
    /// Why (goes to the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of calls that take only a reason: kill, release, archive, a rollout action, a
/// request's approval or rejection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (goes to the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `PUT .../environments/{env}/rollout` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRollout {
    /// Percentage (0–100, step 0.001) of units that get the fallthrough.
    pub percentage: f64,
    /// Variant rolled out; defaults to the fallthrough's current variant, or `on`.
    #[serde(default)]
    pub variant: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `PUT .../environments/{env}/targets` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetTargets {
    /// Replaces the environment's targets.
    pub targets: Vec<TargetDef>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `PUT .../environments/{env}/rules` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRules {
    /// Replaces the environment's rules.
    pub rules: Vec<RuleDef>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/import` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ImportResult {
    /// Flags created.
    pub created: Vec<String>,
    /// Flags updated.
    pub updated: Vec<String>,
    /// Flags left as they were (identical).
    pub unchanged: Vec<String>,
    /// Flags that differ from the file and were left as stored (imports at start only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted: Vec<String>,
    /// Segments written.
    pub segments: Vec<String>,
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Token id (the part before the secret).
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The environment an SDK key is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name people recognise (`checkout-service production`), unique among active tokens.
    pub name: String,
    /// `admin`, `editor`, `viewer` or `sdk`.
    pub role: Role,
    /// Required for `sdk`, refused otherwise.
    #[serde(default)]
    pub environment: Option<String>,
}

/// `POST /api/v1/tokens` result: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedToken {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Environment of an SDK key.
    pub environment: Option<String>,
    /// The token to send as `Authorization: Bearer …` (or `X-API-Key`).
    pub token: String,
    /// Token id.
    pub id: String,
}

/// `GET /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenList {
    /// All tokens, revoked included.
    pub tokens: Vec<TokenInfo>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing id (use it to page with `before`).
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who made the change: a stable id (`token:<id>`, `system`).
    pub actor: String,
    /// What the actor was called then (a token's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// What was done (`flag.create`, `flag.kill`, …).
    pub action: String,
    /// `flag`, `segment`, `environment` or `token`.
    pub subject_kind: String,
    /// Key or name of what changed.
    pub subject: String,
    /// Environment the change applies to, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// State before (`null` on create).
    pub before: Value,
    /// State after (`null` on delete).
    pub after: Value,
    /// Reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/audit` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditList {
    /// Entries, newest first.
    pub entries: Vec<AuditEntry>,
}

/// `PUT .../tenants/{tenant}` body: on, off, or a variant for one tenant (organization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetTenant {
    /// On or off for this tenant, whatever the flag's own `enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Serve this variant to the tenant instead.
    #[serde(default)]
    pub variant: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/flags/{key}/evaluate` body: evaluate a flag for one context and say why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The environment to evaluate in (it must exist).
    pub environment: String,
    /// The evaluation context, as OFREP takes it (`targetingKey` and any attributes).
    #[serde(default)]
    pub context: serde_json::Map<String, Value>,
}

/// `POST /api/v1/flags/{key}/evaluate` result: the evaluation and each step that led to it.
pub use switchyard_engine::explain::Explanation;

/// `GET /api/v1/exposures` result: units per variant, by their first exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExposureCounts {
    /// The environment.
    pub environment: String,
    /// The flag.
    pub flag: String,
    /// Variants with at least one exposed unit, by name.
    pub variants: Vec<VariantUnits>,
}

/// Units first exposed to one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VariantUnits {
    /// The variant.
    pub variant: String,
    /// Units.
    pub units: i64,
}

/// One flag of the stale-flag report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StaleFlag {
    /// The flag.
    pub key: String,
    /// Its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Days since it was created.
    pub age_days: i64,
    /// Why it is reported.
    pub reasons: Vec<String>,
}

/// `GET /api/v1/reports/stale-flags` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StaleReport {
    /// The age threshold used, days.
    pub days: i64,
    /// The stale flags, by key.
    pub flags: Vec<StaleFlag>,
}

/// One flag's last evaluation in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LastEvaluation {
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// When (RFC 3339; to within the servers' flush interval, a minute by default).
    pub last_evaluated_at: String,
}

/// `GET /api/v1/reports/evaluations` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// Since when evaluations are recorded (RFC 3339; absent: not yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_since: Option<String>,
    /// By flag, then environment.
    pub evaluations: Vec<LastEvaluation>,
}

/// `PUT /api/v1/environments/{name}` body: an environment's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentPolicy {
    /// Whether a person's change to a flag here waits for someone else's approval (the kill
    /// switch never waits).
    pub require_approval: bool,
    /// Why (audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/session`: who the caller is (the web UI shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    /// The token's id.
    pub token_id: String,
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `session` (signed in to the web UI) or `token` (a token on the request).
    pub via: String,
}
