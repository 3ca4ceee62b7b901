//! Change requests (`/api/v1/requests`): a person's flag change in an environment that
//! requires approval, waiting for someone else.

use serde::{Deserialize, Serialize};

/// A change request as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    /// Its id.
    pub id: String,
    /// The flag.
    pub flag: String,
    /// The environments whose policy made it wait.
    pub environments: Vec<String>,
    /// What the change does (`flag.rollout`, `flag.update`, …).
    pub action: String,
    /// `pending`, `applied`, `rejected` or `stale` (the flag changed before it was approved).
    pub status: String,
    /// The flag's version the change was made against.
    pub base_version: i64,
    /// The definition before (as stored when it was asked for).
    pub before: serde_json::Value,
    /// The definition it would store.
    pub after: serde_json::Value,
    /// Who asked (`token:<id>`).
    pub author: String,
    /// Their name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// Why they asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// What they said, or why it went stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /api/v1/requests` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChangeRequestList {
    /// Newest first.
    pub requests: Vec<ChangeRequest>,
}

/// What a change answers when it must wait for approval (`202 Accepted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    /// What happened, for people.
    pub message: String,
    /// The request.
    pub request: ChangeRequest,
}
