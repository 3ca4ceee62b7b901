//! Environment-variable overrides (seed 002's convention): `ENABLE_<FLAG>=true|false` for
//! boolean flags and `<FLAG>=<value>` for any flag, `<FLAG>` being the key upper-cased with
//! every other character as `_` (`new-trust-algorithm` → `NEW_TRUST_ALGORITHM`). A key that
//! already starts with `enable_` is not prefixed twice (`enable_self_healing` →
//! `ENABLE_SELF_HEALING`). Values are read by the flag's type; one that does not read is
//! ignored with a warning.

use std::collections::HashMap;

use serde_json::Value;
use switchyard_engine::{FlagType, Ruleset};

/// The variable names that may override `key`, most specific first.
pub(crate) fn names(key: &str, flag_type: FlagType) -> Vec<String> {
    let upper: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut names = Vec::with_capacity(2);
    if flag_type == FlagType::Boolean && !upper.starts_with("ENABLE_") {
        names.push(format!("ENABLE_{upper}"));
    }
    names.push(upper);
    names
}

/// Reads a variable's text as a value of `flag_type`.
pub(crate) fn parse(text: &str, flag_type: FlagType) -> Option<Value> {
    let t = text.trim();
    match flag_type {
        FlagType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Some(Value::Bool(false)),
            _ => None,
        },
        FlagType::Number => serde_json::from_str::<serde_json::Number>(t)
            .ok()
            .map(Value::Number),
        FlagType::String => Some(Value::String(text.to_owned())),
        FlagType::Json => serde_json::from_str::<Value>(t)
            .ok()
            .filter(|v| v.is_object() || v.is_array()),
    }
}

/// The override the environment sets for `key` in `ruleset`, if any.
pub(crate) fn resolve_key(
    ruleset: &Ruleset,
    key: &str,
    env: &HashMap<String, String>,
) -> Option<Value> {
    let flag_type = ruleset.flag_type(key)?;
    for name in names(key, flag_type) {
        let Some(text) = env.get(&name) else { continue };
        match parse(text, flag_type) {
            Some(value) => return Some(value),
            None => tracing::warn!(
                variable = %name,
                flag = key,
                "switchyard: ignoring an override that is not a {flag_type} value"
            ),
        }
    }
    None
}

/// The overrides the environment sets for the flags of `ruleset`.
pub(crate) fn resolve(ruleset: &Ruleset, env: &HashMap<String, String>) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    if env.is_empty() {
        return out;
    }
    for key in ruleset.keys() {
        if let Some(value) = resolve_key(ruleset, key, env) {
            out.insert(key.to_owned(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seed_convention() {
        assert_eq!(
            names("new_trust_algorithm", FlagType::Boolean),
            vec!["ENABLE_NEW_TRUST_ALGORITHM", "NEW_TRUST_ALGORITHM"]
        );
        assert_eq!(
            names("enable_self_healing", FlagType::Boolean),
            vec!["ENABLE_SELF_HEALING"]
        );
        assert_eq!(
            names("max-retry-attempts", FlagType::Number),
            vec!["MAX_RETRY_ATTEMPTS"]
        );
    }

    #[test]
    fn values_read_by_type() {
        assert_eq!(parse("TRUE", FlagType::Boolean), Some(Value::Bool(true)));
        assert_eq!(parse("off", FlagType::Boolean), Some(Value::Bool(false)));
        assert_eq!(parse("maybe", FlagType::Boolean), None);
        assert_eq!(parse("3", FlagType::Number), Some(serde_json::json!(3)));
        assert_eq!(parse("2.5", FlagType::Number), Some(serde_json::json!(2.5)));
        assert_eq!(parse("x", FlagType::Number), None);
        assert_eq!(
            parse(" a b ", FlagType::String),
            Some(serde_json::json!(" a b "))
        );
        assert_eq!(
            parse("{\"a\": 1}", FlagType::Json),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(parse("1", FlagType::Json), None);
    }
}
