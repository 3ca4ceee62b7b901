//! The compiler: [`Document`] → [`Ruleset`], with every problem reported as a [`Diagnostic`].
//!
//! Everything that can be decided ahead of evaluation is decided here: values are resolved to
//! variants, environments are merged with the top-level targeting, regexes, versions, sets and
//! timestamps are parsed, percentages become bucket counts, and the bucketing hash state of each
//! salt is precomputed. A document with any error diagnostic must not be served; the returned
//! ruleset then holds only the flags that compiled, for tools that want to inspect them.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::bucket::{percent_to_units, Bucketer, Domain, BUCKETS};
use crate::condition::{id_text, Cond, CondCompiler, Segment};
use crate::context::{AttrPath, TARGETING_KEY};
use crate::diagnostic::{Diagnostic, FieldPath};
use crate::document::{
    describe, AttributeList, Document, EnvironmentDef, FlagDef, FlagType, PrerequisiteDef, RuleDef,
    ServeDef, TargetDef, TenantDef,
};
use crate::eval::{
    Flag, Prereq, Rule, Ruleset, Serve, ServeAction, Target, Targeting, TenantAction,
};

/// Longest flag key, segment name or environment name.
pub const MAX_KEY_LEN: usize = 128;

/// Default attribute for tenant overrides.
pub const DEFAULT_TENANT_ATTRIBUTE: &str = "tenant.id";

/// Whether `key` is a valid flag key, segment name or environment name:
/// 1–128 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn key_problem(what: &str, key: &str) -> String {
    format!(
        "invalid {what} `{key}`: use 1–{MAX_KEY_LEN} letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )
}

/// Compiles `doc`. The ruleset is complete only when no diagnostic is an error.
pub fn compile(doc: &Document) -> (Ruleset, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let root = FieldPath::root();

    // Segments: index first so segments and flags can reference any of them.
    let segment_names: Vec<&String> = doc.segments.keys().collect();
    let segment_index: FxHashMap<String, u32> = segment_names
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).clone(), i as u32))
        .collect();
    let mut segments = Vec::with_capacity(doc.segments.len());
    let mut segment_edges: Vec<Vec<u32>> = Vec::with_capacity(doc.segments.len());
    for (name, def) in &doc.segments {
        let path = root.key("segments").key(name.clone());
        if !is_valid_key(name) {
            diagnostics.push(Diagnostic::error(
                path.clone(),
                key_problem("segment name", name),
            ));
        }
        let mut cc = CondCompiler {
            segment_index: &segment_index,
            diagnostics: &mut diagnostics,
            flag: None,
            referenced: Vec::new(),
        };
        let cond = (!def.conditions.is_empty())
            .then(|| cc.compile_all(&def.conditions, &path.key("conditions")));
        segment_edges.push(std::mem::take(&mut cc.referenced));
        if let Some(a) = def.attribute.as_deref() {
            if a.is_empty() || a.split('.').any(str::is_empty) {
                diagnostics.push(Diagnostic::error(
                    path.key("attribute"),
                    format!("`{a}` is not a valid attribute path"),
                ));
            }
        }
        let included = id_set(&def.included, &path.key("included"), &mut diagnostics, None);
        let excluded = id_set(&def.excluded, &path.key("excluded"), &mut diagnostics, None);
        segments.push(Segment {
            attr: AttrPath::new(def.attribute.as_deref().unwrap_or(TARGETING_KEY)),
            included,
            excluded,
            cond,
        });
    }
    if let Some(cycle) = find_cycle(&segment_edges) {
        let names: Vec<&str> = cycle
            .iter()
            .map(|&i| segment_names[i as usize].as_str())
            .collect();
        diagnostics.push(Diagnostic::error(
            root.key("segments").key(names[0].to_owned()),
            format!(
                "segments reference each other in a cycle: {}",
                names.join(" → ")
            ),
        ));
    }

    // Flags: keys and variant tables first, so prerequisites can refer to any flag's variants.
    let mut index: FxHashMap<Box<str>, u32> = FxHashMap::default();
    let mut tables: Vec<Option<VariantTable>> = Vec::with_capacity(doc.flags.len());
    for (i, flag) in doc.flags.iter().enumerate() {
        let path = &flag.origin;
        if !is_valid_key(&flag.key) {
            diagnostics.push(
                Diagnostic::error(path.key("key"), key_problem("flag key", &flag.key))
                    .in_flag(flag.key.clone()),
            );
        }
        if index.insert(flag.key.as_str().into(), i as u32).is_some() {
            diagnostics.push(
                Diagnostic::error(
                    path.key("key"),
                    format!(
                        "duplicate flag key `{}`: every flag needs its own key",
                        flag.key
                    ),
                )
                .in_flag(flag.key.clone()),
            );
        }
        let mut fc = FlagCompiler::new(flag, &mut diagnostics);
        tables.push(fc.variant_table());
    }

    let mut environments: Vec<Box<str>> = Vec::new();
    for flag in &doc.flags {
        for env in flag.environments.keys() {
            if !environments.iter().any(|e| **e == **env) {
                environments.push(env.as_str().into());
            }
        }
    }

    let mut flags = Vec::with_capacity(doc.flags.len());
    let mut prereq_edges: Vec<Vec<u32>> = vec![Vec::new(); doc.flags.len()];
    for (i, flag) in doc.flags.iter().enumerate() {
        let Some(table) = &tables[i] else { continue };
        let mut fc = FlagCompiler::new(flag, &mut diagnostics);
        let shared = Shared {
            segment_index: &segment_index,
            flag_index: &index,
            tables: &tables,
            doc,
        };
        if let Some(compiled) = fc.compile(table, &shared, &environments, &mut prereq_edges[i]) {
            flags.push((i, compiled));
        }
    }
    if let Some(cycle) = find_cycle(&prereq_edges) {
        let keys: Vec<&str> = cycle
            .iter()
            .map(|&i| doc.flags[i as usize].key.as_str())
            .collect();
        let first = &doc.flags[cycle[0] as usize];
        diagnostics.push(
            Diagnostic::error(
                first.origin.key("prerequisites"),
                format!("prerequisites form a cycle: {}", keys.join(" → ")),
            )
            .in_flag(first.key.clone()),
        );
    }

    // Prerequisites were resolved to document positions. When some flags did not compile (a
    // tool inspecting a bad file, or the server serving what still compiles after an engine
    // change), drop the flags that require them too, then renumber to compacted positions.
    let flags = compact(flags, doc, &mut diagnostics);
    let index = flags
        .iter()
        .enumerate()
        .map(|(i, f): (usize, &Flag)| (f.key.clone(), i as u32))
        .collect();
    let mut document = doc.clone();
    if flags.len() != doc.flags.len() {
        document
            .flags
            .retain(|f| flags.iter().any(|c: &Flag| *c.key == *f.key));
    }
    // Environments inherit top-level targeting, so its problems would repeat per environment.
    let mut seen = FxHashSet::default();
    diagnostics.retain(|d| seen.insert((d.flag.clone(), d.path.clone(), d.message.clone())));
    let ruleset = Ruleset {
        flags,
        index,
        segments,
        environments,
        document,
    };
    (ruleset, diagnostics)
}

/// Keeps the compiled flags whose prerequisites all compiled, renumbering prerequisites from
/// document positions to positions in the returned vector.
fn compact(
    mut flags: Vec<(usize, Flag)>,
    doc: &Document,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Flag> {
    let mut compiled = vec![false; doc.flags.len()];
    for (i, _) in &flags {
        compiled[*i] = true;
    }
    loop {
        let before = flags.len();
        flags.retain(|(i, flag)| {
            let missing = flag
                .targetings
                .iter()
                .flat_map(|t| t.prerequisites.iter())
                .find(|p| !compiled.get(p.flag as usize).copied().unwrap_or(false));
            let Some(missing) = missing else { return true };
            let def = &doc.flags[*i];
            let other = doc.flags.get(missing.flag as usize).map_or("?", |f| f.key.as_str());
            diagnostics.push(
                Diagnostic::error(
                    def.origin.key("prerequisites"),
                    format!("prerequisite flag `{other}` does not compile, so this flag is not served either"),
                )
                .in_flag(def.key.clone()),
            );
            compiled[*i] = false;
            false
        });
        if flags.len() == before {
            break;
        }
    }
    let mut position = vec![u32::MAX; doc.flags.len()];
    for (new, (old, _)) in flags.iter().enumerate() {
        position[*old] = new as u32;
    }
    flags
        .into_iter()
        .map(|(_, mut flag)| {
            for t in &mut flag.targetings {
                for p in t.prerequisites.iter_mut() {
                    p.flag = position[p.flag as usize];
                }
            }
            flag
        })
        .collect()
}

struct Shared<'a> {
    segment_index: &'a FxHashMap<String, u32>,
    flag_index: &'a FxHashMap<Box<str>, u32>,
    tables: &'a [Option<VariantTable>],
    doc: &'a Document,
}

/// A flag's variants: declared ones first, then implicit ones created for bare values.
#[derive(Debug, Clone)]
struct VariantTable {
    flag_type: FlagType,
    keys: Vec<String>,
    values: Vec<Value>,
    weights: Vec<Option<f64>>,
    /// Declared variants rejected for a wrong-typed value (already reported).
    rejected: Vec<String>,
}

impl VariantTable {
    fn by_key(&self, key: &str) -> Option<u16> {
        self.keys.iter().position(|k| k == key).map(|i| i as u16)
    }

    fn by_value(&self, value: &Value) -> Option<u16> {
        self.values
            .iter()
            .position(|v| same_value(v, value))
            .map(|i| i as u16)
    }

    fn listing(&self) -> String {
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
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

struct FlagCompiler<'a> {
    flag: &'a FlagDef,
    diagnostics: &'a mut Vec<Diagnostic>,
    errors: usize,
}

/// The targeting fields after merging an environment over the top level.
struct Merged<'a> {
    path: FieldPath,
    top: FieldPath,
    enabled: bool,
    kill_switch: bool,
    default_variant: Option<(&'a String, FieldPath)>,
    default_value: Option<(&'a Value, FieldPath)>,
    static_variant: Option<(&'a String, FieldPath)>,
    static_value: Option<(&'a Value, FieldPath)>,
    prerequisites: Option<(&'a [PrerequisiteDef], FieldPath)>,
    tenants: Option<(&'a BTreeMap<String, TenantDef>, FieldPath)>,
    targets: Option<(&'a [TargetDef], FieldPath)>,
    rules: Option<(&'a [RuleDef], FieldPath)>,
    fallthrough: Option<(&'a ServeDef, FieldPath)>,
}

impl<'a> FlagCompiler<'a> {
    fn new(flag: &'a FlagDef, diagnostics: &'a mut Vec<Diagnostic>) -> Self {
        Self {
            flag,
            diagnostics,
            errors: 0,
        }
    }

    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics
            .push(Diagnostic::error(path, message).in_flag(self.flag.key.clone()));
    }

    fn path(&self) -> &FieldPath {
        &self.flag.origin
    }

    /// Every place a bare value may appear, with its path.
    fn value_sites(&self) -> Vec<(&'a Value, FieldPath)> {
        let f = self.flag;
        let p = f.origin.clone();
        let mut sites = Vec::new();
        if let Some(v) = &f.default_value {
            sites.push((v, p.key("defaultValue")));
        }
        fn targeting_sites<'a>(
            sites: &mut Vec<(&'a Value, FieldPath)>,
            prefix: &FieldPath,
            rules: &'a Option<Vec<RuleDef>>,
            fallthrough: &'a Option<ServeDef>,
            targets: &'a Option<Vec<TargetDef>>,
            tenants: &'a Option<BTreeMap<String, TenantDef>>,
        ) {
            for (i, rule) in rules.iter().flatten().enumerate() {
                if let Some(v) = &rule.value {
                    sites.push((v, prefix.key("rules").index(i).key("value")));
                }
            }
            if let Some(v) = fallthrough.as_ref().and_then(|ft| ft.value.as_ref()) {
                sites.push((v, prefix.key("fallthrough").key("value")));
            }
            for (i, target) in targets.iter().flatten().enumerate() {
                if let Some(v) = &target.value {
                    sites.push((v, prefix.key("targets").index(i).key("value")));
                }
            }
            for (id, tenant) in tenants.iter().flatten() {
                if let Some(v) = &tenant.value {
                    sites.push((v, prefix.key("tenants").key(id.clone()).key("value")));
                }
            }
        }
        targeting_sites(
            &mut sites,
            &p,
            &f.rules,
            &f.fallthrough,
            &f.targets,
            &f.tenants,
        );
        for (name, env) in &f.environments {
            let ep = p.key("environments").key(name.clone());
            targeting_sites(
                &mut sites,
                &ep,
                &env.rules,
                &env.fallthrough,
                &env.targets,
                &env.tenants,
            );
            if let Some(v) = &env.value {
                sites.push((v, ep.key("value")));
            }
            if let Some(v) = &env.default_value {
                sites.push((v, ep.key("defaultValue")));
            }
        }
        sites
    }

    /// Decides the type and builds the variant table; `None` if the flag cannot be compiled.
    fn variant_table(&mut self) -> Option<VariantTable> {
        let f = self.flag;
        let p = self.path().clone();
        let sites = self.value_sites();
        let declared: Vec<(&str, &Value, Option<f64>)> = f
            .variants
            .as_ref()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let compact = f.percentage.is_some() || f.user_ids.is_some();
        let flag_type = match f.flag_type {
            Some(t) => t,
            None => declared
                .iter()
                .map(|(_, v, _)| *v)
                .chain(sites.iter().map(|(v, _)| *v))
                .find_map(FlagType::of_value)
                .unwrap_or(FlagType::Boolean),
        };
        if compact && flag_type != FlagType::Boolean {
            self.error(
                p.key("percentage"),
                format!(
                    "`percentage` and `user_ids` are for boolean flags; this flag is {flag_type}"
                ),
            );
        }
        let mut table = VariantTable {
            flag_type,
            keys: Vec::new(),
            values: Vec::new(),
            weights: Vec::new(),
            rejected: Vec::new(),
        };
        let variants_path = p.key("variants");
        for (i, (key, value, weight)) in declared.iter().enumerate() {
            let vp = match f.variants {
                Some(crate::document::Variants::List(_)) => variants_path.index(i),
                _ => variants_path.key((*key).to_owned()),
            };
            if key.is_empty() || key.len() > 256 {
                self.error(vp.key("key"), "a variant key must be 1–256 characters");
                continue;
            }
            if table.keys.iter().any(|k| k == key) {
                self.error(vp.key("key"), format!("duplicate variant `{key}`"));
                continue;
            }
            if !flag_type.accepts(value) {
                table.rejected.push((*key).to_owned());
                self.error(
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
                self.error(
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
            self.error(variants_path, "more than 65535 variants");
            return None;
        }
        Some(table)
    }

    fn compile(
        &mut self,
        table: &VariantTable,
        shared: &Shared<'_>,
        environments: &[Box<str>],
        prereq_edges: &mut Vec<u32>,
    ) -> Option<Flag> {
        let errors_before = self.errors;
        let f = self.flag;
        let p = self.path().clone();
        self.check_metadata();

        let salt = f.salt.as_deref().unwrap_or(&f.key);
        let unit = self.unit_chain(f.bucket_by.as_ref(), &p.key("bucketBy"));
        if let Some(attr) = &f.tenant_attribute {
            self.check_attribute(attr, p.key("tenantAttribute"));
        }
        let tenant_attr = AttrPath::new(
            f.tenant_attribute
                .as_deref()
                .unwrap_or(DEFAULT_TENANT_ATTRIBUTE),
        );

        // Implied top-level parts of the older layouts.
        let explicit_default = f.default_variant.is_some() || f.default_value.is_some();
        let weighted = table.weights.iter().any(Option::is_some);
        let mut implied_fallthrough: Option<ServeDef> = None;
        if f.default_variant.is_some() && f.default_value.is_some() {
            self.error(
                p.key("defaultValue"),
                "give `defaultVariant` or `defaultValue`, not both",
            );
        }
        if weighted && f.percentage.is_some() {
            self.error(
                p.key("percentage"),
                "variant weights already define who gets what; `percentage` would be ignored",
            );
        }
        if weighted {
            if f.fallthrough.is_some() {
                self.error(
                    p.key("fallthrough"),
                    "variant weights already define the fallthrough split; move the weights into `fallthrough.split` or drop `fallthrough`",
                );
            }
            let split: BTreeMap<String, f64> = table
                .keys
                .iter()
                .zip(&table.weights)
                .filter_map(|(k, w)| w.map(|w| (k.clone(), w)))
                .collect();
            implied_fallthrough = Some(ServeDef {
                split: Some(split),
                ..ServeDef::default()
            });
        } else if let Some(percentage) = f.percentage {
            if f.fallthrough.is_some() {
                self.error(
                    p.key("percentage"),
                    "`percentage` is the compact form of `fallthrough: {percentage, value: true}`; use one or the other",
                );
            }
            implied_fallthrough = Some(ServeDef {
                percentage: Some(percentage),
                value: Some(Value::Bool(true)),
                ..ServeDef::default()
            });
        } else if f.fallthrough.is_none()
            && table.flag_type == FlagType::Boolean
            && !explicit_default
            && f.rules.is_none()
            && f.targets.is_none()
            && table.by_key("on").is_some()
        {
            // A plain boolean toggle (no rules or targets to decide who is in): enabled means on.
            implied_fallthrough = Some(ServeDef {
                variant: Some("on".to_owned()),
                ..ServeDef::default()
            });
        }
        let mut implied_targets: Vec<TargetDef> = f.targets.clone().unwrap_or_default();
        if let Some(ids) = &f.user_ids {
            implied_targets.push(TargetDef {
                variant: None,
                value: Some(Value::Bool(true)),
                values: ids.clone(),
                attribute: None,
            });
        }
        let top_fallthrough = f.fallthrough.as_ref().or(implied_fallthrough.as_ref());
        let top_fallthrough_path = if f.fallthrough.is_some() || implied_fallthrough.is_none() {
            p.key("fallthrough")
        } else if weighted {
            p.key("variants")
        } else if f.percentage.is_some() {
            p.key("percentage")
        } else {
            p.key("fallthrough")
        };
        let top_targets: Option<&[TargetDef]> =
            (!implied_targets.is_empty()).then_some(implied_targets.as_slice());
        let top_targets_path = if f.targets.is_some() {
            p.key("targets")
        } else {
            p.key("user_ids")
        };

        let base = Merged {
            path: p.clone(),
            top: p.clone(),
            enabled: f.enabled.unwrap_or(true),
            kill_switch: f.kill_switch.unwrap_or(false),
            default_variant: f
                .default_variant
                .as_ref()
                .map(|v| (v, p.key("defaultVariant"))),
            default_value: f.default_value.as_ref().map(|v| (v, p.key("defaultValue"))),
            static_variant: None,
            static_value: None,
            prerequisites: f
                .prerequisites
                .as_deref()
                .map(|v| (v, p.key("prerequisites"))),
            tenants: f.tenants.as_ref().map(|v| (v, p.key("tenants"))),
            targets: top_targets.map(|v| (v, top_targets_path.clone())),
            rules: f.rules.as_deref().map(|v| (v, p.key("rules"))),
            fallthrough: top_fallthrough.map(|v| (v, top_fallthrough_path.clone())),
        };

        let mut targetings = Vec::with_capacity(1 + f.environments.len());
        let mut by_env = vec![0u16; environments.len()];
        let ctx = TargetingCtx {
            table,
            shared,
            salt,
            unit: &unit,
            tenant_attr: &tenant_attr,
        };
        let compiled_base = self.targeting(&base, &ctx, prereq_edges);
        targetings.push(compiled_base);
        for (name, env) in &f.environments {
            let ep = p.key("environments").key(name.clone());
            if !is_valid_key(name) {
                self.error(ep.clone(), key_problem("environment name", name));
            }
            let merged = merge(&base, env, &ep);
            let compiled = self.targeting(&merged, &ctx, prereq_edges);
            if let Some(slot) = environments.iter().position(|e| **e == **name) {
                by_env[slot] = targetings.len() as u16;
            }
            targetings.push(compiled);
        }

        if self.errors > errors_before {
            return None;
        }
        let targetings: Option<Vec<Targeting>> = targetings.into_iter().collect();
        Some(Flag {
            key: f.key.as_str().into(),
            flag_type: table.flag_type,
            variants: table
                .keys
                .iter()
                .zip(&table.values)
                .map(|(k, v)| (k.as_str().into(), v.clone()))
                .collect(),
            archived: f.archived,
            targetings: targetings?,
            by_env,
        })
    }

    fn check_metadata(&mut self) {
        let f = self.flag;
        let p = self.path().clone();
        for (k, v) in &f.metadata {
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                self.error(
                    p.key("metadata").key(k.clone()),
                    format!(
                        "metadata values must be strings, numbers or booleans, found {}",
                        describe(v)
                    ),
                );
            }
        }
        for (i, tag) in f.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                self.error(p.key("tags").index(i), "empty tag");
            }
        }
        for (field, value) in [("createdAt", &f.created_at), ("updatedAt", &f.updated_at)] {
            if let Some(text) = value {
                if crate::condition::parse_time(&Value::String(text.clone())).is_none() {
                    self.error(
                        p.key(field),
                        format!("`{text}` is not an RFC 3339 timestamp"),
                    );
                }
            }
        }
        if let Some(removal) = f
            .lifecycle
            .as_ref()
            .and_then(|l| l.expected_removal.as_ref())
        {
            let date_format = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(removal, &date_format).is_err()
                && crate::condition::parse_time(&Value::String(removal.clone())).is_none()
            {
                self.error(
                    p.key("lifecycle").key("expectedRemoval"),
                    format!("`{removal}` is not a date (YYYY-MM-DD)"),
                );
            }
        }
    }

    fn check_attribute(&mut self, attribute: &str, path: FieldPath) {
        if attribute.is_empty() || attribute.split('.').any(str::is_empty) {
            self.error(path, format!("`{attribute}` is not a valid attribute path"));
        }
    }

    fn unit_chain(&mut self, list: Option<&AttributeList>, path: &FieldPath) -> Vec<AttrPath> {
        match list {
            None => vec![AttrPath::new(TARGETING_KEY)],
            Some(list) => {
                if list.as_slice().is_empty() {
                    self.error(path.clone(), "`bucketBy` needs at least one attribute");
                }
                for (i, a) in list.as_slice().iter().enumerate() {
                    if a.is_empty() || a.split('.').any(str::is_empty) {
                        self.error(
                            path.index(i),
                            format!("`{a}` is not a valid attribute path"),
                        );
                    }
                }
                list.as_slice().iter().map(|a| AttrPath::new(a)).collect()
            }
        }
    }

    fn variant_ref(
        &mut self,
        table: &VariantTable,
        variant: Option<&String>,
        value: Option<&Value>,
        path: &FieldPath,
        what: &str,
    ) -> Option<u16> {
        match (variant, value) {
            (Some(_), Some(_)) => {
                self.error(
                    path.clone(),
                    format!("{what}: give `variant` or `value`, not both"),
                );
                None
            }
            (Some(key), None) => self.variant_key(table, key, &path.key("variant")),
            // Written values got variants when the table was built; implied ones may not have.
            (None, Some(v)) => {
                let found = table.by_value(v);
                // A value of the wrong type was already reported when the table was built.
                if found.is_none() && table.flag_type.accepts(v) {
                    self.error(
                        path.clone(),
                        format!("{what}: no variant has the value {v}; {}", table.listing()),
                    );
                }
                found
            }
            (None, None) => {
                self.error(
                    path.clone(),
                    format!("{what}: say what to serve with `variant` or `value`"),
                );
                None
            }
        }
    }

    /// Resolves a variant key written at `path`.
    fn variant_key(&mut self, table: &VariantTable, key: &str, path: &FieldPath) -> Option<u16> {
        if let Some(i) = table.by_key(key) {
            return Some(i);
        }
        // A declared variant that was rejected (wrong type) was already reported.
        if !table.rejected.iter().any(|r| r == key) {
            self.error(
                path.clone(),
                format!("unknown variant `{key}`; {}", table.listing()),
            );
        }
        None
    }

    fn targeting(
        &mut self,
        m: &Merged<'_>,
        ctx: &TargetingCtx<'_>,
        prereq_edges: &mut Vec<u32>,
    ) -> Option<Targeting> {
        let errors_before = self.errors;
        let table = ctx.table;
        let flag_key = self.flag.key.clone();

        let default_variant = match (&m.default_variant, &m.default_value) {
            (Some((key, path)), _) => self.variant_key(table, key, path),
            (None, Some((value, path))) => {
                self.variant_ref(table, None, Some(value), path, "default")
            }
            (None, None) => match table
                .by_key("off")
                .filter(|_| table.flag_type == FlagType::Boolean)
            {
                Some(off) => Some(off),
                None => {
                    self.error(
                        m.top.key("defaultVariant"),
                        "the flag needs a default: set `defaultVariant` (or `defaultValue`)",
                    );
                    None
                }
            },
        };

        let static_variant = match (&m.static_variant, &m.static_value) {
            (None, None) => None,
            (v, val) => self.variant_ref(
                table,
                v.as_ref().map(|(k, _)| *k),
                val.as_ref().map(|(v, _)| *v),
                &m.path,
                "environment value",
            ),
        };

        let mut prerequisites = Vec::new();
        if let Some((list, path)) = &m.prerequisites {
            for (i, pre) in list.iter().enumerate() {
                if let Some(prereq) = self.prerequisite(pre, &path.index(i), ctx.shared, &flag_key)
                {
                    prereq_edges.push(prereq.flag);
                    prerequisites.push(prereq);
                }
            }
        }

        let mut tenants = FxHashMap::default();
        if let Some((map, path)) = &m.tenants {
            for (id, def) in map.iter() {
                let tp = path.key(id.clone());
                let action = match (def.enabled, def.variant.is_some() || def.value.is_some()) {
                    (Some(false), true) => {
                        self.error(
                            tp.clone(),
                            "a tenant override cannot be disabled and serve a variant",
                        );
                        None
                    }
                    (Some(false), false) => Some(TenantAction::Off),
                    (_, true) => self
                        .variant_ref(
                            table,
                            def.variant.as_ref(),
                            def.value.as_ref(),
                            &tp,
                            "tenant override",
                        )
                        .map(TenantAction::Serve),
                    (Some(true), false) => Some(TenantAction::On),
                    (None, false) => {
                        self.error(
                            tp.clone(),
                            "empty tenant override: set `enabled`, `variant` or `value`",
                        );
                        None
                    }
                };
                if let Some(action) = action {
                    tenants.insert(id.as_str().into(), action);
                }
            }
        }

        let mut targets = Vec::new();
        if let Some((list, path)) = &m.targets {
            for (i, def) in list.iter().enumerate() {
                let tp = path.index(i);
                let variant = self.variant_ref(
                    table,
                    def.variant.as_ref(),
                    def.value.as_ref(),
                    &tp,
                    "target",
                );
                let ids = id_set(
                    &def.values,
                    &tp.key("values"),
                    self.diagnostics,
                    Some(&flag_key),
                );
                if let Some(a) = &def.attribute {
                    self.check_attribute(a, tp.key("attribute"));
                }
                let attr = AttrPath::new(def.attribute.as_deref().unwrap_or(TARGETING_KEY));
                if let Some(variant) = variant {
                    targets.push(Target { attr, ids, variant });
                }
            }
        }

        let mut rules = Vec::new();
        if let Some((list, path)) = &m.rules {
            let mut seen: FxHashSet<String> = FxHashSet::default();
            for (i, def) in list.iter().enumerate() {
                let rp = path.index(i);
                let id = def.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
                if id.is_empty() {
                    self.error(rp.key("id"), "empty rule id");
                }
                if !seen.insert(id.clone()) {
                    self.error(rp.key("id"), format!("duplicate rule id `{id}`"));
                }
                let mut cc = CondCompiler {
                    segment_index: ctx.shared.segment_index,
                    diagnostics: self.diagnostics,
                    flag: Some(&flag_key),
                    referenced: Vec::new(),
                };
                let before = cc.diagnostics.len();
                let cond: Cond = cc.compile_all(&def.conditions, &rp.key("conditions"));
                let cond_errors = cc.diagnostics.len() - before;
                self.errors += cond_errors;
                if let Some(serve) = self.serve(&def.serve(), &rp, ctx, "rule") {
                    rules.push(Rule {
                        id: id.into(),
                        cond,
                        serve,
                    });
                }
            }
        }

        let fallthrough = match &m.fallthrough {
            Some((def, path)) => self.serve(def, path, ctx, "fallthrough"),
            None => None,
        };

        if self.errors > errors_before {
            return None;
        }
        let is_static = prerequisites.is_empty()
            && tenants.is_empty()
            && targets.is_empty()
            && rules.is_empty();
        Some(Targeting {
            enabled: m.enabled,
            killed: m.kill_switch,
            default_variant: default_variant?,
            static_variant,
            tenant_attr: ctx.tenant_attr.clone(),
            tenants,
            prerequisites: prerequisites.into_boxed_slice(),
            targets: targets.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
            fallthrough,
            is_static,
        })
    }

    fn prerequisite(
        &mut self,
        def: &PrerequisiteDef,
        path: &FieldPath,
        shared: &Shared<'_>,
        own_key: &str,
    ) -> Option<Prereq> {
        if def.flag == own_key {
            self.error(path.key("flag"), "a flag cannot be its own prerequisite");
            return None;
        }
        let Some(&other) = shared.flag_index.get(def.flag.as_str()) else {
            self.error(
                path.key("flag"),
                format!("unknown prerequisite flag `{}`", def.flag),
            );
            return None;
        };
        let other_def = &shared.doc.flags[other as usize];
        if other_def.archived {
            self.error(
                path.key("flag"),
                format!(
                    "prerequisite flag `{}` is archived and never served",
                    def.flag
                ),
            );
        }
        // The other flag's own errors are reported on that flag.
        let table = shared.tables.get(other as usize)?.as_ref()?;
        let mut variants = Vec::new();
        let mut named = 0;
        if let Some(v) = &def.variant {
            named += 1;
            self.prereq_variant(table, v, &path.key("variant"), &def.flag, &mut variants);
        }
        for (i, v) in def.variants.iter().flatten().enumerate() {
            named += 1;
            self.prereq_variant(
                table,
                v,
                &path.key("variants").index(i),
                &def.flag,
                &mut variants,
            );
        }
        if let Some(value) = &def.value {
            named += 1;
            match table.by_value(value) {
                Some(i) => variants.push(i),
                None => self.error(
                    path.key("value"),
                    format!("flag `{}` never serves {value}", def.flag),
                ),
            }
        }
        if named == 0 {
            self.error(
                path.clone(),
                format!(
                    "say which variant of `{}` is required with `variant`, `variants` or `value`",
                    def.flag
                ),
            );
        }
        Some(Prereq {
            flag: other,
            variants: variants.into_boxed_slice(),
        })
    }

    fn prereq_variant(
        &mut self,
        table: &VariantTable,
        key: &str,
        path: &FieldPath,
        flag: &str,
        out: &mut Vec<u16>,
    ) {
        match table.by_key(key) {
            Some(i) => out.push(i),
            None => self.error(
                path.clone(),
                format!("flag `{flag}` has no variant `{key}`; {}", table.listing()),
            ),
        }
    }

    fn serve(
        &mut self,
        def: &ServeDef,
        path: &FieldPath,
        ctx: &TargetingCtx<'_>,
        what: &str,
    ) -> Option<Serve> {
        let table = ctx.table;
        let errors_before = self.errors;
        let percentage = match def.percentage {
            None => None,
            Some(p) => {
                match percent_to_units(p) {
                    Some(units) => Some(units),
                    None => {
                        self.error(
                        path.key("percentage"),
                        format!("percentage {p} must be between 0 and 100 in steps of at most 0.001"),
                    );
                        None
                    }
                }
            }
        };
        let action = match (&def.split, def.variant.is_some() || def.value.is_some()) {
            (Some(_), true) => {
                self.error(
                    path.clone(),
                    format!("{what}: give `split` or a `variant`/`value`, not both"),
                );
                None
            }
            (Some(split), false) => self.split(split, &path.key("split"), table),
            (None, _) => self
                .variant_ref(table, def.variant.as_ref(), def.value.as_ref(), path, what)
                .map(ServeAction::Variant),
        };
        let unit = match &def.bucket_by {
            Some(list) => self.unit_chain(Some(list), &path.key("bucketBy")),
            None => ctx.unit.to_vec(),
        };
        let salt = def.salt.as_deref().unwrap_or(ctx.salt);
        if self.errors > errors_before {
            return None;
        }
        Some(Serve {
            percentage,
            action: action?,
            unit: unit.into_boxed_slice(),
            rollout: Bucketer::new(Domain::Rollout, salt),
            split: Bucketer::new(Domain::Split, salt),
        })
    }

    fn split(
        &mut self,
        split: &BTreeMap<String, f64>,
        path: &FieldPath,
        table: &VariantTable,
    ) -> Option<ServeAction> {
        let mut ok = true;
        let mut units_by_variant: Vec<(u16, u32)> = Vec::new();
        for (key, weight) in split {
            let Some(index) = table.by_key(key) else {
                self.error(
                    path.key(key.clone()),
                    format!("unknown variant `{key}` in split; {}", table.listing()),
                );
                ok = false;
                continue;
            };
            match percent_to_units(*weight) {
                Some(units) => units_by_variant.push((index, units)),
                None => {
                    self.error(
                        path.key(key.clone()),
                        format!(
                            "weight {weight} must be between 0 and 100 in steps of at most 0.001"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let total: u64 = units_by_variant.iter().map(|(_, u)| u64::from(*u)).sum();
        if total != u64::from(BUCKETS) {
            self.error(
                path.clone(),
                format!("split weights add up to {}, not 100", format_units(total)),
            );
            return None;
        }
        // Lay ranges out in variant declaration order, so reordering the map changes nothing.
        units_by_variant.sort_by_key(|(index, _)| *index);
        let mut end = 0u32;
        let ranges: Vec<(u32, u16)> = units_by_variant
            .into_iter()
            .filter(|(_, units)| *units > 0)
            .map(|(index, units)| {
                end += units;
                (end, index)
            })
            .collect();
        Some(ServeAction::Split(ranges.into_boxed_slice()))
    }
}

fn format_units(units: u64) -> String {
    let whole = units / 1000;
    let frac = units % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

struct TargetingCtx<'a> {
    table: &'a VariantTable,
    shared: &'a Shared<'a>,
    salt: &'a str,
    unit: &'a [AttrPath],
    tenant_attr: &'a AttrPath,
}

fn merge<'a>(base: &Merged<'a>, env: &'a EnvironmentDef, ep: &FieldPath) -> Merged<'a> {
    fn pick<'a, T: ?Sized>(
        env: Option<&'a T>,
        ep: &FieldPath,
        field: &str,
        base: &Option<(&'a T, FieldPath)>,
    ) -> Option<(&'a T, FieldPath)> {
        match env {
            Some(v) => Some((v, ep.key(field))),
            None => base.clone(),
        }
    }
    let env_default_given = env.default_variant.is_some() || env.default_value.is_some();
    Merged {
        path: ep.clone(),
        top: base.top.clone(),
        enabled: env.enabled.unwrap_or(base.enabled),
        // A top-level kill switch wins everywhere.
        kill_switch: base.kill_switch || env.kill_switch.unwrap_or(false),
        default_variant: if env_default_given {
            env.default_variant
                .as_ref()
                .map(|v| (v, ep.key("defaultVariant")))
        } else {
            base.default_variant.clone()
        },
        default_value: if env_default_given {
            env.default_value
                .as_ref()
                .map(|v| (v, ep.key("defaultValue")))
        } else {
            base.default_value.clone()
        },
        static_variant: env.variant.as_ref().map(|v| (v, ep.key("variant"))),
        static_value: env.value.as_ref().map(|v| (v, ep.key("value"))),
        prerequisites: pick(
            env.prerequisites.as_deref(),
            ep,
            "prerequisites",
            &base.prerequisites,
        ),
        tenants: pick(env.tenants.as_ref(), ep, "tenants", &base.tenants),
        targets: pick(env.targets.as_deref(), ep, "targets", &base.targets),
        rules: pick(env.rules.as_deref(), ep, "rules", &base.rules),
        fallthrough: pick(
            env.fallthrough.as_ref(),
            ep,
            "fallthrough",
            &base.fallthrough,
        ),
    }
}

fn id_set(
    values: &[Value],
    path: &FieldPath,
    diagnostics: &mut Vec<Diagnostic>,
    flag: Option<&str>,
) -> FxHashSet<Box<str>> {
    let mut set = FxHashSet::default();
    for (i, value) in values.iter().enumerate() {
        match id_text(value) {
            Some(text) => {
                set.insert(text);
            }
            None => {
                let mut d = Diagnostic::error(
                    path.index(i),
                    format!("ids must be strings or integers, found {}", describe(value)),
                );
                d.flag = flag.map(str::to_owned);
                diagnostics.push(d);
            }
        }
    }
    set
}

/// Finds one cycle in a directed graph given as adjacency lists, if any.
fn find_cycle(edges: &[Vec<u32>]) -> Option<Vec<u32>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for start in 0..edges.len() as u32 {
        if marks[start as usize] != Mark::New {
            continue;
        }
        stack.push((start, 0));
        marks[start as usize] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let out = &edges[node as usize];
            if *next < out.len() {
                let child = out[*next];
                *next += 1;
                match marks.get(child as usize) {
                    Some(Mark::New) => {
                        marks[child as usize] = Mark::Active;
                        stack.push((child, 0));
                    }
                    Some(Mark::Active) => {
                        let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                        let mut cycle: Vec<u32> = stack[from..].iter().map(|(n, _)| *n).collect();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                marks[node as usize] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "new-checkout", "dexter_react_agent", "v2.1", "9lives"] {
            assert!(is_valid_key(good), "{good}");
        }
        for bad in ["", "-x", "has space", "a/b", "é", &"x".repeat(129)] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn cycles() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2, 0])
        );
        assert_eq!(find_cycle(&[vec![], vec![1]]), Some(vec![1, 1]));
    }

    #[test]
    fn unit_formatting() {
        assert_eq!(format_units(100_000), "100");
        assert_eq!(format_units(99_500), "99.5");
        assert_eq!(format_units(33_333), "33.333");
    }
}
