//! The flag definition document: the versioned format people write in YAML or JSON.
//!
//! These types mirror the file format one to one (see `docs/flag-format.md`); they carry no
//! meaning beyond shape. [`crate::compile()`] turns a [`Document`] into an evaluable
//! [`crate::Ruleset`] and reports every semantic problem. Parsing here reports shape problems:
//! each flag is read on its own, so one malformed flag does not hide the problems of another.
//!
//! The format is a superset of two older layouts that load unchanged: the "list of flags with
//! `defaultValue`, `rules[].value` and `fallthrough`" layout, and the compact
//! `{"flags": {"name": {"enabled", "percentage", "user_ids"}}}` layout.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, FieldPath, PathSegment};

/// The newest format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A whole flag definition document: segments and flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Format version; absent means 1.
    pub version: u32,
    /// Reusable audiences, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, SegmentDef>,
    /// The flags, in file order.
    pub flags: Vec<FlagDef>,
}

/// Type of a flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    /// `true` / `false`.
    Boolean,
    /// Any string.
    String,
    /// Any JSON number; integers stay integers and floats stay floats.
    Number,
    /// A JSON object or array.
    Json,
}

impl FlagType {
    /// The name used in the format and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }

    /// Whether `value` is a valid value of this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Number => value.is_number(),
            FlagType::Json => value.is_object() || value.is_array(),
        }
    }

    /// The type a value would have as a flag value, if any.
    pub fn of_value(value: &Value) -> Option<FlagType> {
        match value {
            Value::Bool(_) => Some(FlagType::Boolean),
            Value::String(_) => Some(FlagType::String),
            Value::Number(_) => Some(FlagType::Number),
            Value::Object(_) | Value::Array(_) => Some(FlagType::Json),
            Value::Null => None,
        }
    }
}

impl fmt::Display for FlagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flag as written.
///
/// The targeting fields (who gets what) live in [`TargetingDef`], shared by the flag's top
/// level and each of its environments; they are flattened into the flag in the format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FlagDef {
    /// Stable identifier: letters, digits, `.`, `_`, `-`; starts with a letter or digit.
    #[serde(default)]
    pub key: String,
    /// Human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the flag is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Value type; inferred from the values when absent, `boolean` when there are none.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub flag_type: Option<FlagType>,
    /// Named variants: a list of `{key, value, name?, weight?}` or a map `key: value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Variants>,
    /// Team or person that owns the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Purpose, expected removal, rollout plan, rollback criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Extra scalar metadata about the flag (the server returns it as OFREP `metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Archived flags are validated but not served.
    #[serde(default, skip_serializing_if = "is_false")]
    pub archived: bool,
    /// Creation time (RFC 3339), kept for hygiene reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Last update time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Bucketing salt; defaults to the flag key. Change it to re-randomize who is in a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Attribute(s) whose value is the bucketing unit, first present wins. Default `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<AttributeList>,
    /// Attribute naming the tenant for `tenants` overrides. Default `tenant.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_attribute: Option<String>,

    /// Top-level targeting: applies in every environment that does not override a field.
    #[serde(flatten)]
    pub targeting: TargetingDef,
    /// Per-environment overrides of the top-level targeting, by environment name.
    // Boxed: a map's node holds eleven entries whatever it uses, and a `TargetingDef` is some
    // 400 bytes, so unboxed a flag with one override would allocate a node of kilobytes
    // (loading 10 000 flags spent a quarter of its time in the allocator for them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, Box<TargetingDef>>,

    /// Compact layout: percentage of units that get `true` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Compact layout: targeting keys that always get `true`.
    #[serde(
        default,
        rename = "user_ids",
        alias = "userIds",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_ids: Option<Vec<Value>>,

    /// Where this flag sits in its document (for diagnostics); not part of the format.
    #[serde(skip)]
    pub origin: FieldPath,
    /// Where fields that [`crate::normalize()`] derived from another layout were written
    /// (for diagnostics); not part of the format.
    #[serde(skip)]
    pub provenance: Provenance,
}

/// Where normalized fields came from, so diagnostics point at what the author wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The field the top-level `fallthrough` was derived from (`percentage`, `variants`).
    pub fallthrough: Option<FieldPath>,
    /// The field the top-level `targets` were derived from (`user_ids`), when none were written.
    pub targets: Option<FieldPath>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who gets what: the targeting fields of a flag's top level and of each environment.
///
/// At the top level they apply everywhere; in an environment every field present replaces
/// the top-level one (the kill switch is the exception: a top-level kill switch wins
/// everywhere). Adding a targeting field means adding it here, to [`TARGETING_FIELDS`] and
/// to the compiler's merge, nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetingDef {
    /// Whether the flag is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Kill switch: serve the default variant (a top-level kill switch wins everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_switch: Option<bool>,
    /// Variant served when off or unmatched.
    #[serde(default, alias = "offVariant", skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// Value served when off or unmatched (matched to its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// Serve this variant to everyone while enabled (no targeting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Serve this value to everyone while enabled (no targeting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Flags that must serve given variants for this flag to be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerequisites: Option<Vec<PrerequisiteDef>>,
    /// Per-tenant overrides, by tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<BTreeMap<String, TenantDef>>,
    /// Individual targets: ids that get a given variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetDef>>,
    /// Ordered rules; the first that matches (and whose percentage includes the unit) serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleDef>>,
    /// What an enabled flag serves when no target or rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<ServeDef>,
    /// A running experiment: the units no rule served and the experiment assigns get its
    /// variants (before the fallthrough). Written by the experiments API when an experiment starts
    /// and removed when it stops; see [`ExperimentDef`].
    // Boxed: only a flag under experiment has one, and inline it would add 216 bytes to every
    // targeting (each flag's, each environment override's, written and normalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Box<ExperimentDef>>,
}

/// A running experiment on a flag in an environment: who is in it and which variant each
/// unit gets. Every draw hashes with bucketing v1 in a domain of its own (docs/bucketing.md),
/// so the holdout, a layer's slices, the allocation and the variant split are independent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentDef {
    /// The experiment's id (the salt of its allocation and split).
    pub id: String,
    /// The control variant (what opted-out units get).
    pub control: String,
    /// Weights (percent, summing to 100) of the variants in the experiment.
    pub split: BTreeMap<String, f64>,
    /// Conditions a unit must meet to enter (an implicit `all`; `in_segment` for segments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<ConditionDef>,
    /// Percentage (0–100) of the audience that enters; 100 when absent. Ignored with a
    /// `layer`, whose slice is the allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<f64>,
    /// A mutually exclusive layer: the unit's layer bucket must fall in this slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerSliceDef>,
    /// Units held out of every experiment that names the same holdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutDef>,
    /// Bucketing unit attribute(s); defaults to the flag's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<AttributeList>,
    /// Paused (by a person, a guardrail or a sample-ratio mismatch): the units it would
    /// assign get the control, and nothing is recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
}

/// An experiment's slice of a layer: layer buckets `from ≤ b < to`, in percent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerSliceDef {
    /// The layer (its hash domain: experiments of one layer never share a unit).
    pub name: String,
    /// Start of the slice, percent.
    pub from: f64,
    /// End of the slice (exclusive), percent.
    pub to: f64,
}

/// A holdout: this percentage of units, by the holdout's own hash, enters no experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldoutDef {
    /// The holdout's name (its hash domain).
    pub name: String,
    /// Percentage of units held out.
    pub percentage: f64,
}

/// The per-environment overrides of a flag: the same fields as its top-level targeting.
pub type EnvironmentDef = TargetingDef;

/// The format's names of [`TargetingDef`]'s fields, aliases included.
pub const TARGETING_FIELDS: &[&str] = &[
    "enabled",
    "killSwitch",
    "defaultVariant",
    "offVariant",
    "defaultValue",
    "variant",
    "value",
    "prerequisites",
    "tenants",
    "targets",
    "rules",
    "fallthrough",
    "experiment",
];

/// The format's names of [`FlagDef`]'s own (non-targeting) fields, aliases included.
pub const FLAG_FIELDS: &[&str] = &[
    "key",
    "name",
    "description",
    "type",
    "variants",
    "owner",
    "tags",
    "lifecycle",
    "metadata",
    "archived",
    "createdAt",
    "updatedAt",
    "salt",
    "bucketBy",
    "tenantAttribute",
    "environments",
    "percentage",
    "user_ids",
    "userIds",
];

impl FlagDef {
    /// `(enabled, killed)` in `environment` (or at the top level) as written: an environment's
    /// `enabled` overrides the top level's (default on); a kill switch on either side wins.
    /// Tenant overrides aside.
    pub fn state_in(&self, environment: Option<&str>) -> (bool, bool) {
        let env = environment.and_then(|e| self.environments.get(e));
        let enabled = env
            .and_then(|e| e.enabled)
            .or(self.targeting.enabled)
            .unwrap_or(true);
        let killed = self.targeting.kill_switch.unwrap_or(false)
            || env.and_then(|e| e.kill_switch).unwrap_or(false);
        (enabled, killed)
    }

    /// Reads one flag from a JSON value, reporting its first shape problem at its exact path
    /// under `base` (the targeting fields are read on their own, so their paths are exact too).
    pub fn from_value_at(value: Value, base: &FieldPath) -> Result<FlagDef, Diagnostic> {
        let Value::Object(mut fields) = value else {
            return Err(Diagnostic::error(
                base.clone(),
                format!("expected a flag object, found {}", describe(&value)),
            ));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !FLAG_FIELDS.contains(&k.as_str()) && !TARGETING_FIELDS.contains(&k.as_str()))
        {
            let expected: Vec<String> = FLAG_FIELDS
                .iter()
                .chain(TARGETING_FIELDS)
                .filter(|f| !matches!(**f, "offVariant" | "userIds"))
                .map(|f| format!("`{f}`"))
                .collect();
            return Err(Diagnostic::error(
                base.key(unknown.clone()),
                format!(
                    "unknown field `{unknown}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        let mut targeting = Map::new();
        for field in TARGETING_FIELDS {
            if let Some((k, v)) = fields.remove_entry(*field) {
                targeting.insert(k, v);
            }
        }
        let targeting: TargetingDef = parse_at(Value::Object(targeting), base)?;
        let mut flag: FlagDef = parse_at(Value::Object(fields), base)?;
        flag.targeting = targeting;
        Ok(flag)
    }
}

/// Lifecycle metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// Why the flag exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    /// When the flag should be gone (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_removal: Option<String>,
    /// How the rollout is meant to go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_plan: Option<String>,
    /// When to roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_criteria: Option<String>,
}

/// Why a flag exists; stale-flag reports treat them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Temporary: ships a change, then goes.
    Release,
    /// Temporary: an A/B or multivariate test.
    Experiment,
    /// Long-lived operational control.
    Operational,
    /// Long-lived emergency off switch.
    KillSwitch,
    /// Long-lived entitlement.
    Permission,
}

/// A flag's variants: list form (`[{key, value, name?, weight?}]`) or map form (`key: value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Variants {
    /// `- {key, value, name, weight}` items, in order.
    List(Vec<VariantDef>),
    /// `key: value` pairs, in file order.
    Map(Vec<(String, Value)>),
}

impl Variants {
    /// The variants as `(key, value, weight)` in declaration order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Value, Option<f64>)> + '_> {
        match self {
            Variants::List(items) => {
                Box::new(items.iter().map(|v| (v.key.as_str(), &v.value, v.weight)))
            }
            Variants::Map(items) => Box::new(items.iter().map(|(k, v)| (k.as_str(), v, None))),
        }
    }
}

/// One variant in list form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantDef {
    /// Variant key, reported as `variant` in evaluations.
    pub key: String,
    /// Human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value served.
    pub value: Value,
    /// Weight (percent) in the flag's default split (older layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Variants {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Variants".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = generator.subschema_for::<VariantDef>();
        schemars::json_schema!({
            "description": "A list of `{key, value, name?, weight?}` variants, or a map of variant key to value.",
            "anyOf": [
                {"type": "array", "items": item},
                {"type": "object", "additionalProperties": true}
            ]
        })
    }
}

impl Serialize for Variants {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Variants::List(items) => items.serialize(serializer),
            Variants::Map(items) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(items.len()))?;
                for (k, v) in items {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Variants {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Variants;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of {key, value} variants or a map of variant key to value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Variants, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<VariantDef>()? {
                    items.push(item);
                }
                Ok(Variants::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Variants, A::Error> {
                let mut items = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    items.push((k, v));
                }
                Ok(Variants::Map(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One attribute name or a fallback chain of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum AttributeList {
    /// A single attribute.
    One(String),
    /// The first present attribute wins.
    Chain(Vec<String>),
}

impl AttributeList {
    /// The attributes in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            AttributeList::One(one) => std::slice::from_ref(one),
            AttributeList::Chain(chain) => chain,
        }
    }
}

/// A prerequisite: another flag must serve one of the given variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrerequisiteDef {
    /// Key of the required flag.
    pub flag: String,
    /// The variant it must serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Any of these variants will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
    /// The value it must serve (matched to its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// What one tenant gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantDef {
    /// On or off for this tenant, whatever the flag's own `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Serve this variant to the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Serve this value to the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Individual targets: these ids get this variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetDef {
    /// The variant served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The value served (matched to its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The ids (strings or integers).
    pub values: Vec<Value>,
    /// Attribute holding the id; default `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
}

/// A rule: conditions, then what to serve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDef {
    /// Stable id reported as `ruleId`; defaults to `rule-N` (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the rule is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// All must hold (an empty list always holds).
    #[serde(default)]
    pub conditions: Vec<ConditionDef>,
    // The serve fields repeat `ServeDef`'s instead of `#[serde(flatten)]`-ing it: serde ignores
    // `deny_unknown_fields` on flattened structs, and a typo in a rule must be an error.
    /// Serve this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Serve this value (matched to its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Split between variants by weight (percent, summing to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<BTreeMap<String, f64>>,
    /// Only this percentage (0–100, step 0.001) of matching units; the others fall through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Bucketing unit attribute(s) for this rule; defaults to the flag's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<AttributeList>,
    /// Bucketing salt for this rule; defaults to the flag's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

impl RuleDef {
    /// What the rule serves, in the same shape as a fallthrough.
    pub fn serve(&self) -> ServeDef {
        ServeDef {
            variant: self.variant.clone(),
            value: self.value.clone(),
            split: self.split.clone(),
            percentage: self.percentage,
            bucket_by: self.bucket_by.clone(),
            salt: self.salt.clone(),
        }
    }
}

/// What to serve: a variant, a value, or a weighted split, optionally to a percentage only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServeDef {
    /// Serve this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Serve this value (matched to its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Split between variants by weight (percent, summing to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<BTreeMap<String, f64>>,
    /// Only this percentage (0–100, step 0.001) of units; the others fall through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Bucketing unit attribute(s) for this serve; defaults to the flag's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<AttributeList>,
    /// Bucketing salt for this serve; defaults to the flag's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// A condition: a clause `{attribute, operator, value}` or a group `all` / `any` / `not`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionDef {
    /// Context attribute, dotted for nested objects (`tenant.settings.plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Operator name (`equals`, `in`, `semver_gt`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Operand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// All of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<ConditionDef>>,
    /// At least one of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<ConditionDef>>,
    /// This does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<ConditionDef>>,
}

/// A named audience: listed ids and/or conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentDef {
    /// Human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the audience is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Attribute holding the id matched against `included`/`excluded`; default `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Ids always in the segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<Value>,
    /// Ids never in the segment (wins over everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Value>,
    /// Units matching all of these are in the segment (an empty list matches nobody).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionDef>,
}

impl Document {
    /// Reads a document from a parsed JSON/YAML value, reporting every shape problem.
    ///
    /// Flags are read one by one, so a malformed flag is reported and skipped while the others
    /// are still read and later compiled (and reported on). Callers must treat any error
    /// diagnostic as a rejection of the whole document.
    pub fn from_value(value: Value) -> (Document, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let mut doc = Document {
            version: FORMAT_VERSION,
            ..Document::default()
        };
        let root = FieldPath::root();
        let Value::Object(mut top) = value else {
            let found = describe(&value);
            diagnostics.push(Diagnostic::error(
                root,
                format!("expected a document object with a `flags` field, found {found}"),
            ));
            return (doc, diagnostics);
        };

        if let Some(version) = top.remove("version") {
            match version.as_u64() {
                Some(v) if v >= 1 && v <= u64::from(FORMAT_VERSION) => doc.version = v as u32,
                _ => diagnostics.push(Diagnostic::error(
                    root.key("version"),
                    format!(
                        "unsupported format version {version}; this build reads version 1 to {FORMAT_VERSION}"
                    ),
                )),
            }
        }

        if let Some(segments) = top.remove("segments") {
            let path = root.key("segments");
            match segments {
                Value::Object(map) => {
                    for (name, seg) in map {
                        let seg_path = path.key(name.clone());
                        match parse_at::<SegmentDef>(seg, &seg_path) {
                            Ok(seg) => {
                                doc.segments.insert(name, seg);
                            }
                            Err(d) => diagnostics.push(d),
                        }
                    }
                }
                Value::Null => {}
                other => diagnostics.push(Diagnostic::error(
                    path,
                    format!(
                        "expected a map of segment name to segment, found {}",
                        describe(&other)
                    ),
                )),
            }
        }

        let flags_path = root.key("flags");
        match top.remove("flags") {
            Some(Value::Array(items)) => {
                doc.flags.reserve_exact(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let path = flags_path.index(i);
                    let key_hint = item.get("key").and_then(Value::as_str).map(str::to_owned);
                    match FlagDef::from_value_at(item, &path) {
                        Ok(mut flag) => {
                            flag.origin = path;
                            doc.flags.push(flag);
                        }
                        Err(mut d) => {
                            d.flag = key_hint;
                            diagnostics.push(d);
                        }
                    }
                }
            }
            Some(Value::Object(map)) => {
                doc.flags.reserve_exact(map.len());
                for (key, item) in map {
                    let path = flags_path.key(key.clone());
                    match FlagDef::from_value_at(item, &path) {
                        Ok(mut flag) => {
                            if flag.key.is_empty() {
                                flag.key = key;
                            } else if flag.key != key {
                                diagnostics.push(
                                    Diagnostic::error(
                                        path.key("key"),
                                        format!(
                                            "`key` is `{}` but the flag is listed under `{key}`; drop `key` or make them equal",
                                            flag.key
                                        ),
                                    )
                                    .in_flag(key),
                                );
                                continue;
                            }
                            flag.origin = path;
                            doc.flags.push(flag);
                        }
                        Err(d) => diagnostics.push(d.in_flag(key)),
                    }
                }
            }
            Some(Value::Null) | None => diagnostics.push(Diagnostic::error(
                flags_path,
                "missing `flags`: a list of flags or a map of flag key to flag",
            )),
            Some(other) => diagnostics.push(Diagnostic::error(
                flags_path,
                format!(
                    "expected a list of flags or a map of flag key to flag, found {}",
                    describe(&other)
                ),
            )),
        }

        for (unknown, _) in top {
            diagnostics.push(Diagnostic::error(
                root.key(unknown.clone()),
                format!(
                    "unknown field `{unknown}`; expected one of `version`, `segments`, `flags`"
                ),
            ));
        }
        (doc, diagnostics)
    }

    /// The document as a JSON value, in the canonical (list) layout.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Deserializes `value` as `T`, turning the first shape error into a diagnostic at its path.
fn parse_at<T: for<'de> Deserialize<'de>>(value: Value, base: &FieldPath) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let mut path = base.clone();
        for segment in err.path().iter() {
            path = match segment {
                serde_path_to_error::Segment::Seq { index } => path.index(*index),
                serde_path_to_error::Segment::Map { key } => path.key(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => path.key(variant.clone()),
                serde_path_to_error::Segment::Unknown => path,
            };
        }
        Diagnostic::error(path, err.into_inner().to_string())
    })
}

/// A short description of a JSON value's kind, for messages (`a string`, `a list`).
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Converts a field path to the segments of a JSON pointer-like path (used by tests).
#[allow(dead_code)]
pub(crate) fn path_keys(path: &FieldPath) -> Vec<String> {
    path.segments()
        .iter()
        .map(|s| match s {
            PathSegment::Key(k) => k.clone(),
            PathSegment::Index(i) => i.to_string(),
        })
        .collect()
}

#[allow(dead_code)]
fn _assert_de_error_is_used<E: de::Error>() {}
