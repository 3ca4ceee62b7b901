//! Scheduled change bodies (`/api/v1/schedules`).

use serde::{Deserialize, Serialize};

/// `POST /api/v1/schedules` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSchedule {
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// `enable`, `disable`, `kill`, `release`, `rollout` or `archive`.
    pub action: String,
    /// For `rollout`: the percentage (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// For `rollout`: the variant rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// Why (recorded in the audit log, and in the change's when it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A schedule as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResource {
    /// Its id.
    pub id: String,
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// The operation (`{"op": "rollout", "percentage": 25}`).
    pub action: serde_json::Value,
    /// When it is due (RFC 3339).
    pub at: String,
    /// `pending`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Who set it up.
    pub created_by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it ran, failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What happened (`ran on time`, `ran late by 2 h …`, `failed: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// `GET /api/v1/schedules` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleList {
    /// Soonest first.
    pub schedules: Vec<ScheduleResource>,
}
