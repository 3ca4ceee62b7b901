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
pub mod changes;
pub mod experiments;
pub mod ofrep;
pub mod requests;
pub mod rollouts;
pub mod schedules;
pub mod sdk;
pub mod webhooks;

/// The one error body of the admin API: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// What a token may do: the admin API's roles and the SDK key. Used on the wire (token
/// bodies), in storage (the token's role) and in the server's route table.
///
/// `viewer < editor < admin` is a hierarchy; `sdk` stands apart (it only evaluates flags of
/// its one environment and sends events, and no admin role may use the SDK endpoints).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Evaluate flags of one environment (OFREP, the SDK endpoints) and send events.
    Sdk,
    /// Read the admin API.
    Viewer,
    /// Also change flags, segments and environments.
    Editor,
    /// Also manage tokens and environments.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Sdk, Role::Viewer, Role::Editor, Role::Admin];

    /// The role's name (`admin`, `editor`, `viewer`, `sdk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Sdk => "sdk",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether a token of this role may use something that needs `needed`.
    pub fn satisfies(self, needed: Role) -> bool {
        match needed {
            Role::Sdk => self == Role::Sdk,
            _ => self != Role::Sdk && self >= needed,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_form_a_hierarchy_and_sdk_stands_apart() {
        assert!(Role::Admin.satisfies(Role::Viewer));
        assert!(Role::Editor.satisfies(Role::Editor));
        assert!(!Role::Viewer.satisfies(Role::Editor));
        assert!(!Role::Admin.satisfies(Role::Sdk));
        assert!(Role::Sdk.satisfies(Role::Sdk));
        assert!(!Role::Sdk.satisfies(Role::Viewer));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!(Role::parse("root"), None);
    }
}
