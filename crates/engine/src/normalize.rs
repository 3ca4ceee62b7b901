//! The normalize pass: older and compact layouts → the canonical layout, before (and apart
//! from) the semantic compile.
//!
//! Three layouts load: the canonical one, the "list of flags with `defaultValue`,
//! `variants[].weight` and `fallthrough`" layout, and the compact
//! `{"enabled", "percentage", "user_ids"}` layout. [`normalize()`] rewrites a flag so that
//! everything the older layouts imply is written out:
//!
//! - compact `percentage: P` → `fallthrough: {percentage: P, value: true}`;
//! - compact `user_ids: [..]` → one more `targets` entry serving `true`;
//! - variant weights → `fallthrough: {split: {variant: weight}}`, the weights dropped;
//! - a plain boolean toggle (no rules, no targets, no fallthrough, no default) → an explicit
//!   `fallthrough: {variant: "on"}`, so adding a rule later cannot silently turn it off for
//!   everyone else.
//!
//! Normalizing never changes what a flag serves (the conformance fixtures are evaluated both
//! ways), is idempotent, and leaves a canonical flag as it is except for the explicit toggle
//! fallthrough. Every operation that edits a flag (the server's rollout, targets, rules...)
//! works on the normalized form, so it works whatever layout the flag was written in.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, FieldPath};
use crate::document::{describe, FlagDef, FlagType, ServeDef, TargetDef, TargetingDef, Variants};

/// Rewrites `flag` in the canonical layout; the diagnostics are the problems of the older
/// layouts' fields (e.g. `percentage` together with `fallthrough`), at the paths written.
pub fn normalize(flag: &FlagDef) -> (FlagDef, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let (normalized, _) = normalize_with_table(flag, &mut diagnostics);
    (normalized, diagnostics)
}

/// [`normalize()`], also returning the flag's variant table (`None` when the flag cannot be
/// compiled at all); every problem found goes to `diagnostics`.
pub(crate) fn normalize_with_table(
    flag: &FlagDef,
    diagnostics: &mut Vec<Diagnostic>,
) -> (FlagDef, Option<VariantTable>) {
    let mut report = |path: FieldPath, message: String| {
        diagnostics.push(Diagnostic::error(path, message).in_flag(flag.key.clone()));
    };
    let p = &flag.origin;
    let table = VariantTable::build(flag, &mut report);
    let mut out = flag.clone();
    let Some(table) = table else {
        return (out, None);
    };
    let t = &flag.targeting;
    let compact = flag.percentage.is_some() || flag.user_ids.is_some();
    let boolean = table.flag_type == FlagType::Boolean;
    if compact && !boolean {
        report(
            p.key("percentage"),
            format!(
                "`percentage` and `user_ids` are for boolean flags; this flag is {}",
                table.flag_type
            ),
        );
        // Not rewritten: the flag does not compile, and its fields stay where they were written.
        return (out, Some(table));
    }

    let explicit_default = t.default_variant.is_some() || t.default_value.is_some();
    let weighted = table.weights.iter().any(Option::is_some);
    if weighted && flag.percentage.is_some() {
        report(
            p.key("percentage"),
            "variant weights already define who gets what; `percentage` would be ignored".into(),
        );
    }
    if weighted {
        if t.fallthrough.is_some() {
            report(
                p.key("fallthrough"),
                "variant weights already define the fallthrough split; move the weights into `fallthrough.split` or drop `fallthrough`".into(),
            );
        } else {
            let split: BTreeMap<String, f64> = table
                .keys
                .iter()
                .zip(&table.weights)
                .filter_map(|(k, w)| w.map(|w| (k.clone(), w)))
                .collect();
            out.targeting.fallthrough = Some(ServeDef {
                split: Some(split),
                ..ServeDef::default()
            });
            out.provenance.fallthrough = Some(p.key("variants"));
        }
    } else if let Some(percentage) = flag.percentage {
        if t.fallthrough.is_some() {
            report(
                p.key("percentage"),
                "`percentage` is the compact form of `fallthrough: {percentage, value: true}`; use one or the other".into(),
            );
        } else {
            out.targeting.fallthrough = Some(ServeDef {
                percentage: Some(percentage),
                value: Some(Value::Bool(true)),
                ..ServeDef::default()
            });
            out.provenance.fallthrough = Some(p.key("percentage"));
        }
    } else if t.fallthrough.is_none()
        && boolean
        && !explicit_default
        && t.rules.is_none()
        && t.targets.is_none()
        && table.by_key("on").is_some()
    {
        // A plain boolean toggle (no rules or targets to decide who is in): enabled means on.
        out.targeting.fallthrough = Some(ServeDef {
            variant: Some("on".to_owned()),
            ..ServeDef::default()
        });
    }
    if let Some(ids) = &flag.user_ids {
        if t.targets.is_none() {
            out.provenance.targets = Some(p.key("user_ids"));
        }
        out.targeting
            .targets
            .get_or_insert_with(Vec::new)
            .push(TargetDef {
                variant: None,
                value: Some(Value::Bool(true)),
                values: ids.clone(),
                attribute: None,
            });
    }
    out.percentage = None;
    out.user_ids = None;
    if let Some(Variants::List(items)) = &mut out.variants {
        for item in items {
            item.weight = None;
        }
    }
    (out, Some(table))
}

/// A flag's variants: declared ones first, then implicit ones created for bare values.
#[derive(Debug, Clone)]
pub(crate) struct VariantTable {
    pub flag_type: FlagType,
    pub keys: Vec<String>,
    pub values: Vec<Value>,
    pub weights: Vec<Option<f64>>,
    /// Declared variants rejected for a wrong-typed value (already reported).
    pub rejected: Vec<String>,
}

impl VariantTable {
    /// Decides the type and builds the table; `None` if the flag cannot be compiled.
    fn build(flag: &FlagDef, report: &mut impl FnMut(FieldPath, String)) -> Option<VariantTable> {
        let p = &flag.origin;
        let sites = value_sites(flag);
        let declared: Vec<(&str, &Value, Option<f64>)> = flag
            .variants
            .as_ref()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let flag_type = match flag.flag_type {
            Some(t) => t,
            None => declared
                .iter()
                .map(|(_, v, _)| *v)
                .chain(sites.iter().map(|(v, _)| *v))
                .find_map(FlagType::of_value)
                .unwrap_or(FlagType::Boolean),
        };
        let mut table = VariantTable {
            flag_type,
            keys: Vec::new(),
            values: Vec::new(),
            weights: Vec::new(),
            rejected: Vec::new(),
        };
        let variants_path = p.key("variants");
        for (i, (key, value, weight)) in declared.iter().enumerate() {
            let vp = match flag.variants {
                Some(Variants::List(_)) => variants_path.index(i),
                _ => variants_path.key((*key).to_owned()),
            };
            if key.is_empty() || key.len() > 256 {
                report(
                    vp.key("key"),
                    "a variant key must be 1–256 characters".into(),
                );
                continue;
            }
            if table.keys.iter().any(|k| k == key) {
                report(vp.key("key"), format!("duplicate variant `{key}`"));
                continue;
            }
            if !flag_type.accepts(value) {
                table.rejected.push((*key).to_owned());
                report(
                    vp.key("value"),
                    format!(
                        "variant `{key}` has {} value but the flag is {flag_type}",
                        describe(value)
                    ),
                );
                continue;
            }
            table.keys.push((*key).to_owned());
            table.values.push((*value).clone());
            table.weights.push(*weight);
        }
        if flag_type == FlagType::Boolean && declared.is_empty() {
            for (k, v) in [("on", true), ("off", false)] {
                table.keys.push(k.to_owned());
                table.values.push(Value::Bool(v));
                table.weights.push(None);
            }
        }
        for (value, path) in sites {
            if !flag_type.accepts(value) {
                report(
                    path,
                    format!(
                        "{} is not a {flag_type} value, but the flag is {flag_type}",
                        describe(value)
                    ),
                );
                continue;
            }
            if table.by_value(value).is_none() {
                let name = table.implicit_name(value);
                table.keys.push(name);
                table.values.push(value.clone());
                table.weights.push(None);
            }
        }
        if table.keys.len() > usize::from(u16::MAX) {
            report(variants_path, "more than 65535 variants".into());
            return None;
        }
        Some(table)
    }

    pub(crate) fn by_key(&self, key: &str) -> Option<u16> {
        self.keys.iter().position(|k| k == key).map(|i| i as u16)
    }

    pub(crate) fn by_value(&self, value: &Value) -> Option<u16> {
        self.values
            .iter()
            .position(|v| same_value(v, value))
            .map(|i| i as u16)
    }

    pub(crate) fn listing(&self) -> String {
        if self.keys.is_empty() {
            "the flag has no valid variants".to_owned()
        } else {
            format!("the flag's variants are: {}", self.keys.join(", "))
        }
    }

    fn implicit_name(&self, value: &Value) -> String {
        let base = match value {
            Value::Bool(true) => "on".to_owned(),
            Value::Bool(false) => "off".to_owned(),
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::String(_) => "empty".to_owned(),
            Value::Number(n) => n.to_string(),
            _ => format!("value-{}", self.keys.len() + 1),
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.keys.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Every place a bare value may appear, with its path, in the order implicit variants are
/// named: the top-level default first, then each targeting's rules, fallthrough, targets,
/// tenants and static value (and, in environments, their default last).
fn value_sites(flag: &FlagDef) -> Vec<(&Value, FieldPath)> {
    let p = &flag.origin;
    let mut sites = Vec::new();
    if let Some(v) = &flag.targeting.default_value {
        sites.push((v, p.key("defaultValue")));
    }
    targeting_sites(&mut sites, p, &flag.targeting);
    for (name, env) in &flag.environments {
        let ep = p.key("environments").key(name.clone());
        targeting_sites(&mut sites, &ep, env);
        if let Some(v) = &env.default_value {
            sites.push((v, ep.key("defaultValue")));
        }
    }
    sites
}

fn targeting_sites<'a>(
    sites: &mut Vec<(&'a Value, FieldPath)>,
    prefix: &FieldPath,
    t: &'a TargetingDef,
) {
    for (i, rule) in t.rules.iter().flatten().enumerate() {
        if let Some(v) = &rule.value {
            sites.push((v, prefix.key("rules").index(i).key("value")));
        }
    }
    if let Some(v) = t.fallthrough.as_ref().and_then(|ft| ft.value.as_ref()) {
        sites.push((v, prefix.key("fallthrough").key("value")));
    }
    for (i, target) in t.targets.iter().flatten().enumerate() {
        if let Some(v) = &target.value {
            sites.push((v, prefix.key("targets").index(i).key("value")));
        }
    }
    for (id, tenant) in t.tenants.iter().flatten() {
        if let Some(v) = &tenant.value {
            sites.push((v, prefix.key("tenants").key(id.clone()).key("value")));
        }
    }
    if let Some(v) = &t.value {
        sites.push((v, prefix.key("value")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(value: Value) -> FlagDef {
        FlagDef::from_value_at(value, &FieldPath::root()).expect("flag shape")
    }

    #[test]
    fn compact_layout_becomes_a_fallthrough_and_targets() {
        let (n, d) = normalize(&flag(
            json!({"key": "f", "enabled": true, "percentage": 25, "user_ids": ["a", 7]}),
        ));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(n.percentage, None);
        assert_eq!(n.user_ids, None);
        let ft = n.targeting.fallthrough.as_ref().expect("fallthrough");
        assert_eq!(ft.percentage, Some(25.0));
        assert_eq!(ft.value, Some(json!(true)));
        let targets = n.targeting.targets.as_ref().expect("targets");
        assert_eq!(targets[0].values, vec![json!("a"), json!(7)]);
        assert_eq!(
            n.provenance.fallthrough,
            Some(FieldPath::root().key("percentage"))
        );
        assert_eq!(
            n.provenance.targets,
            Some(FieldPath::root().key("user_ids"))
        );
    }

    #[test]
    fn weights_become_a_split() {
        let (n, d) = normalize(&flag(json!({
            "key": "f",
            "variants": [{"key": "a", "value": "A", "weight": 60}, {"key": "b", "value": "B", "weight": 40}],
            "defaultVariant": "a"
        })));
        assert!(d.is_empty(), "{d:?}");
        let split = n.targeting.fallthrough.unwrap().split.unwrap();
        assert_eq!(split.get("a"), Some(&60.0));
        assert_eq!(split.get("b"), Some(&40.0));
        let Some(Variants::List(items)) = &n.variants else {
            panic!("list variants")
        };
        assert!(items.iter().all(|v| v.weight.is_none()));
    }

    #[test]
    fn a_plain_toggle_gets_an_explicit_fallthrough() {
        let (n, _) = normalize(&flag(json!({"key": "f", "enabled": false})));
        assert_eq!(
            n.targeting.fallthrough.unwrap().variant.as_deref(),
            Some("on")
        );
        // With rules, nothing is implied.
        let (n, _) = normalize(&flag(json!({"key": "f", "rules": [{"variant": "on"}]})));
        assert!(n.targeting.fallthrough.is_none());
    }

    #[test]
    fn normalizing_is_idempotent() {
        for value in [
            json!({"key": "f", "percentage": 10, "user_ids": ["x"]}),
            json!({"key": "f", "variants": [{"key": "a", "value": 1, "weight": 100}], "defaultVariant": "a"}),
            json!({"key": "f"}),
            json!({"key": "f", "defaultValue": "x", "rules": [{"value": "y"}]}),
        ] {
            let (once, _) = normalize(&flag(value));
            let (twice, d) = normalize(&once);
            assert!(d.is_empty(), "{d:?}");
            assert_eq!(once.targeting, twice.targeting);
            assert_eq!(once.variants, twice.variants);
        }
    }

    #[test]
    fn conflicting_layouts_are_reported_where_written() {
        let (_, d) = normalize(&flag(
            json!({"key": "f", "percentage": 5, "fallthrough": {"variant": "on"}}),
        ));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, FieldPath::root().key("percentage"));
        let (_, d) = normalize(&flag(
            json!({"key": "f", "type": "string", "percentage": 5}),
        ));
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("for boolean flags"),
            "{}",
            d[0].message
        );
    }
}
