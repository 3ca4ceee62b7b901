//! Promotion and bulk changes (`/api/v1/flags/{key}/promote`, `/api/v1/bulk/flags`), and the
//! field-by-field difference of two definitions both show.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field that differs between two definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// Dotted path (`environments.production.fallthrough.percentage`).
    pub path: String,
    /// The value before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value after (absent: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The fields where two flag definitions differ (`before` absent: every field of `after`).
pub fn flag_changes(
    before: Option<&switchyard_engine::FlagDef>,
    after: &switchyard_engine::FlagDef,
) -> Vec<FieldChange> {
    let value = |d: &switchyard_engine::FlagDef| serde_json::to_value(d).unwrap_or(Value::Null);
    field_changes(&before.map(value).unwrap_or(Value::Null), &value(after))
}

/// The fields where `before` and `after` differ, by path (objects are compared key by key;
/// anything else as a whole).
pub fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<FieldChange>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), out);
                }
            }
            (a, b) if a == b => {}
            (a, b) => out.push(FieldChange {
                path: path.to_owned(),
                before: a.cloned(),
                after: b.cloned(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

/// `POST /api/v1/flags/{key}/promote` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteRequest {
    /// The environment copied from (`staging`).
    pub from: String,
    /// The environment copied to (`production`).
    pub to: String,
    /// Only show what would change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Why (audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a promotion changed (or, in a dry run, would change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PromoteResult {
    /// The flag.
    pub flag: String,
    /// Whether it was applied (false in a dry run, or when nothing differed).
    pub applied: bool,
    /// The fields of the flag that differ, target environment's block included.
    pub changes: Vec<FieldChange>,
    /// The flag's version after.
    pub version: i64,
}

/// `POST /api/v1/bulk/flags` body: one operation on many flags, in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkChange {
    /// The flags.
    pub flags: Vec<String>,
    /// `archive`, `unarchive`, `enable`, `disable`, `tag` or `untag`.
    pub op: String,
    /// For enable / disable: only in this environment (absent: the top level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// For tag / untag: the tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Why (audited, on every flag's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One flag of a bulk change's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BulkFlag {
    /// The flag.
    pub key: String,
    /// Its version after.
    pub version: i64,
}

/// `POST /api/v1/bulk/flags` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BulkResult {
    /// Whether anything changed.
    pub changed: bool,
    /// Every flag named, as it is now.
    pub flags: Vec<BulkFlag>,
}

#[cfg(test)]
mod tests {
    use super::field_changes;
    use serde_json::json;

    #[test]
    fn changes_name_each_differing_field() {
        let before =
            json!({"key": "f", "environments": {"production": {"fallthrough": {"percentage": 5}}}});
        let after = json!({"key": "f", "environments": {"production": {"fallthrough": {"percentage": 25}, "enabled": true}}});
        let c = field_changes(&before, &after);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, "environments.production.enabled");
        assert_eq!(
            (c[0].before.clone(), c[0].after.clone()),
            (None, Some(json!(true)))
        );
        assert_eq!(c[1].path, "environments.production.fallthrough.percentage");
        assert_eq!(
            (c[1].before.clone(), c[1].after.clone()),
            (Some(json!(5)), Some(json!(25)))
        );
    }
}

/// `POST /api/v1/flags/{key}/check`: a proposed definition (JSON, or YAML text), validated
/// as saving it would validate it and compared with the stored one; nothing is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FlagCheckResult {
    /// The flag's key.
    pub key: String,
    /// Whether the flag exists (saving replaces it) or not (saving creates it).
    pub exists: bool,
    /// The stored version compared against, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The proposed definition, parsed (what a save would send).
    pub definition: switchyard_engine::FlagDef,
    /// The proposed definition as YAML.
    pub yaml: String,
    /// Field by field, what saving would change (empty: nothing).
    pub changes: Vec<FieldChange>,
}

/// `POST /api/v1/flags/{key}/preview`: how a list of units would be served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreviewRequest {
    /// The environment evaluated in.
    pub environment: String,
    /// The units (ids), at most 100 000.
    pub units: Vec<String>,
    /// The attribute each id is (a dotted path; default `targetingKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// A proposed definition to preview instead of the served one (checked, not saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Value>,
}

/// How many of the previewed units each variant gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PreviewResult {
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// Units counted.
    pub total: u64,
    /// Per variant (`(none)`: the flag served no variant), most units first.
    pub variants: Vec<crate::admin::VariantUnits>,
}

/// A flag change asked with `?dryRun=true`: what it would change, not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChangePreview {
    /// The flag.
    pub flag: String,
    /// The version the change would apply to.
    pub version: i64,
    /// Field by field, what it would change (empty: nothing).
    pub changes: Vec<FieldChange>,
}
