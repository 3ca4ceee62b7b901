//! The types that cross the network, shared by the server, the CLI and the SDK.
//!
//! Only serde: no HTTP framework, no database. The admin API's flag and segment bodies are the
//! engine's flag definition types ([`switchyard_engine::FlagDef`]), so a flag is written the
//! same way in a file, over the API and in an export.
//!
//! ```
//! use switchyard_api_types::ofrep::{EvaluationRequest, EvaluationSuccess};
//!
//! let req: EvaluationRequest = serde_json::from_str(r#"{"context": {"targetingKey": "u1"}}"#).unwrap();
//! assert_eq!(req.context.unwrap()["targetingKey"], "u1");
//! let ok = EvaluationSuccess { key: "f".into(), value: Some(true.into()), reason: "STATIC".into(),
//!                              variant: Some("on".into()), metadata: None };
//! assert_eq!(serde_json::to_value(&ok).unwrap()["variant"], "on");
//! ```

pub mod admin;
pub mod ofrep;

/// The one error body of the admin API: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorInfo {
    /// A stable machine-readable code (`not_found`, `conflict`, `validation_failed`, …).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Structured details: field-level problems, the current version on a conflict, ….
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// One field-level problem, from the engine's diagnostics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldProblem {
    /// Field path inside the submitted body (`rules[0].conditions[1].operator`).
    pub path: String,
    /// The flag the problem is in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Line in the submitted text, for file imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}
