//! Evaluation of a compiled [`Ruleset`]: OpenFeature reasons and error codes, never a panic.
//!
//! Order (PRODUCT.md §4): archived → kill switch → tenant override → disabled → static
//! environment value → prerequisites → individual targets → rules in order → a running
//! experiment → fallthrough → default. Results borrow from the ruleset, so the common cases allocate nothing.

use std::fmt;
use std::sync::Arc;

use crate::strmap::{StrMap, StrSet};
use rustc_hash::FxHashMap;
use serde_json::Value;
use time::OffsetDateTime;

use crate::bucket::{Bucketer, IntText, BUCKETS};
use crate::compile::{FlagSlot, SegmentSlot};
use crate::condition::{with_id_text, Cond, Env, Segment};
use crate::context::{AttrPath, Context};
use crate::document::{Document, FlagDef, FlagType, SegmentDef};
use crate::experiment::{assign, Experiment, Outcome};

/// Why a value was served (OpenFeature resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no targeting: everyone gets the same value.
    Static,
    /// A target, tenant override or rule selected the value.
    TargetingMatch,
    /// A percentage or weighted split selected the value.
    Split,
    /// The flag is off (disabled or killed).
    Disabled,
    /// Nothing applied; the configured default was served.
    Default,
    /// Evaluation failed; see the error.
    Error,
}

impl Reason {
    /// The OpenFeature spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why evaluation failed (OpenFeature error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with that key (or it is archived).
    FlagNotFound,
    /// The flag's value is not of the requested type.
    TypeMismatch,
    /// The request could not be parsed.
    ParseError,
    /// The flag needs a bucketing unit and the context has none.
    TargetingKeyMissing,
    /// The context is malformed.
    InvalidContext,
    /// Anything else.
    General,
}

impl ErrorCode {
    /// The OpenFeature spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An evaluation error: code plus a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// OpenFeature error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

/// What decided the result, beyond the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail<'r> {
    /// The rule with this id matched.
    Rule(&'r str),
    /// An individual target matched.
    Target,
    /// A tenant override applied.
    Tenant,
    /// The kill switch is on.
    KillSwitch,
    /// This prerequisite flag did not serve a required variant.
    PrerequisiteFailed(&'r str),
    /// The fallthrough served.
    Fallthrough,
    /// The running experiment with this id assigned the unit (an exposure).
    Experiment(&'r str),
    /// The unit opted out of the running experiment with this id: control, no exposure.
    ExperimentOptOut(&'r str),
    /// The experiment with this id would assign the unit but is paused: control, no exposure.
    ExperimentPaused(&'r str),
}

impl Detail<'_> {
    /// The rule id, when a rule decided.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            Detail::Rule(id) => Some(id),
            _ => None,
        }
    }

    /// The experiment id, when a running experiment assigned the unit (not when it opted
    /// out): what records an exposure.
    pub fn experiment_id(&self) -> Option<&str> {
        match self {
            Detail::Experiment(id) => Some(id),
            _ => None,
        }
    }

    /// A short machine-readable tag (`RULE`, `TARGET`, `TENANT`, `KILL_SWITCH`,
    /// `PREREQUISITE_FAILED`, `FALLTHROUGH`, `EXPERIMENT`, `EXPERIMENT_OPT_OUT`,
    /// `EXPERIMENT_PAUSED`).
    pub fn tag(&self) -> &'static str {
        match self {
            Detail::Rule(_) => "RULE",
            Detail::Target => "TARGET",
            Detail::Tenant => "TENANT",
            Detail::KillSwitch => "KILL_SWITCH",
            Detail::PrerequisiteFailed(_) => "PREREQUISITE_FAILED",
            Detail::Fallthrough => "FALLTHROUGH",
            Detail::Experiment(_) => "EXPERIMENT",
            Detail::ExperimentOptOut(_) => "EXPERIMENT_OPT_OUT",
            Detail::ExperimentPaused(_) => "EXPERIMENT_PAUSED",
        }
    }
}

static NULL: Value = Value::Null;

/// The result of evaluating one flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'r> {
    /// The value served (`null` only when the flag does not exist).
    pub value: &'r Value,
    /// The variant served (`None` only when the flag does not exist).
    pub variant: Option<&'r str>,
    /// Why.
    pub reason: Reason,
    /// What decided, when more than the reason says.
    pub detail: Option<Detail<'r>>,
    /// Set when `reason` is [`Reason::Error`] (boxed: errors are rare, results stay small).
    pub error: Option<Box<EvalError>>,
    /// The flag's declared type (`None` when not found).
    pub flag_type: Option<FlagType>,
}

impl<'r> Evaluation<'r> {
    #[cold]
    #[inline(never)]
    fn not_found(message: String) -> Self {
        Self {
            value: &NULL,
            variant: None,
            reason: Reason::Error,
            detail: None,
            error: Some(Box::new(EvalError {
                code: ErrorCode::FlagNotFound,
                message,
            })),
            flag_type: None,
        }
    }

    /// The rule id that matched, if a rule decided.
    pub fn rule_id(&self) -> Option<&'r str> {
        match self.detail {
            Some(Detail::Rule(id)) => Some(id),
            _ => None,
        }
    }
}

/// A typed result: the value as `T`, or the caller's default with an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed<'r, T> {
    /// The value, or the caller's default on error.
    pub value: T,
    /// The variant served, when no error.
    pub variant: Option<&'r str>,
    /// Why.
    pub reason: Reason,
    /// What decided.
    pub detail: Option<Detail<'r>>,
    /// Set on error (including [`ErrorCode::TypeMismatch`]).
    pub error: Option<Box<EvalError>>,
}

/// A Rust type a flag value can be read as, without coercion.
pub trait FromFlagValue<'r>: Sized {
    /// Name of the type, for mismatch messages.
    const NAME: &'static str;
    /// The value as `Self`, or `None` when its JSON type differs.
    fn from_flag_value(value: &'r Value) -> Option<Self>;
}

impl<'r> FromFlagValue<'r> for bool {
    const NAME: &'static str = "boolean";
    fn from_flag_value(value: &'r Value) -> Option<Self> {
        value.as_bool()
    }
}

impl<'r> FromFlagValue<'r> for &'r str {
    const NAME: &'static str = "string";
    fn from_flag_value(value: &'r Value) -> Option<Self> {
        value.as_str()
    }
}

impl<'r> FromFlagValue<'r> for i64 {
    const NAME: &'static str = "integer";
    fn from_flag_value(value: &'r Value) -> Option<Self> {
        value.as_i64()
    }
}

impl<'r> FromFlagValue<'r> for f64 {
    const NAME: &'static str = "number";
    fn from_flag_value(value: &'r Value) -> Option<Self> {
        value.as_f64()
    }
}

impl<'r> FromFlagValue<'r> for &'r serde_json::Map<String, Value> {
    const NAME: &'static str = "object";
    fn from_flag_value(value: &'r Value) -> Option<Self> {
        value.as_object()
    }
}

/// A compiled, immutable set of flags and segments, ready to evaluate.
///
/// Cheap to clone: compiled flags, segments and definitions are shared, so
/// [`Ruleset::apply`] builds the next version without copying what did not change.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    /// Compiled flags by slot; `None` for a flag that does not compile (or a removed one).
    /// Shared: a change copies this vector once (a pointer per flag), not the flags.
    pub(crate) flags: Arc<Vec<Option<Arc<Flag>>>>,
    /// Definitions, variant tables and dependencies by slot; `None` once removed.
    pub(crate) slots: Arc<Vec<Option<Arc<FlagSlot>>>>,
    /// Key → slot, for every flag present (compiled or not). Shared until a key comes or goes.
    pub(crate) index: Arc<StrMap<u32>>,
    /// Slots of the flags present, in document order. Shared until a key comes or goes.
    pub(crate) order: Arc<Vec<u32>>,
    /// Compiled segments by slot.
    pub(crate) segments: Arc<Vec<Option<Arc<Segment>>>>,
    /// Segment definitions by slot.
    pub(crate) segment_slots: Arc<Vec<Option<SegmentSlot>>>,
    /// Segment name → slot.
    pub(crate) segment_index: Arc<FxHashMap<String, u32>>,
    /// Environment names some flag configures, by the slot flags' `by_env` refers to.
    pub(crate) environments: Arc<Vec<Box<str>>>,
    /// Format version of the definitions.
    pub(crate) version: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Flag {
    pub key: Box<str>,
    pub flag_type: FlagType,
    pub variants: Vec<(Box<str>, Value)>,
    pub archived: bool,
    pub targetings: Vec<Targeting>,
    /// Index into `targetings` per ruleset environment; absent environments use 0.
    pub by_env: Vec<u16>,
    /// What clients are shown about the flag (see [`Ruleset::client_metadata`]).
    pub client_metadata: Option<Box<serde_json::Map<String, Value>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Targeting {
    pub enabled: bool,
    pub killed: bool,
    pub default_variant: u16,
    pub static_variant: Option<u16>,
    pub tenant_attr: AttrPath,
    pub tenants: StrMap<TenantAction>,
    pub prerequisites: Box<[Prereq]>,
    pub targets: Box<[Target]>,
    pub rules: Box<[Rule]>,
    pub fallthrough: Option<Serve>,
    /// A running experiment (after the rules, in place of the fallthrough for its units).
    pub experiment: Option<Box<Experiment>>,
    /// No targeting at all: a fixed fallthrough is reported as STATIC.
    pub is_static: bool,
    /// What this targeting serves whatever the context, when that is so (a kill switch, a
    /// flag that is off, on for everyone or serving one value): evaluation answers it without
    /// looking at the context. Set by [`Targeting::with_fixed_answer`].
    pub fixed: Option<Fixed>,
}

/// An answer that does not depend on the context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fixed {
    variant: u16,
    reason: Reason,
    detail: Option<Detail<'static>>,
}

impl Targeting {
    /// This targeting with [`Targeting::fixed`] worked out: the answer of the full evaluation
    /// path, taken only where no step of that path can look at the context (the unit tests
    /// check the two agree).
    pub(crate) fn with_fixed_answer(mut self) -> Self {
        self.fixed = self.fixed_answer();
        self
    }

    fn fixed_answer(&self) -> Option<Fixed> {
        let fixed = |variant, reason, detail| {
            Some(Fixed {
                variant,
                reason,
                detail,
            })
        };
        if self.killed {
            return fixed(
                self.default_variant,
                Reason::Disabled,
                Some(Detail::KillSwitch),
            );
        }
        if !self.tenants.is_empty() {
            return None;
        }
        if !self.enabled {
            return fixed(self.default_variant, Reason::Disabled, None);
        }
        if let Some(v) = self.static_variant {
            return fixed(v, Reason::Static, None);
        }
        if !self.prerequisites.is_empty()
            || !self.targets.is_empty()
            || !self.rules.is_empty()
            || self.experiment.is_some()
        {
            return None;
        }
        let Some(serve) = &self.fallthrough else {
            return fixed(self.default_variant, Reason::Default, None);
        };
        match serve.fixed() {
            // Nothing but the fallthrough here: the targeting is static.
            Some(Served::Hit { variant, .. }) => {
                fixed(variant, Reason::Static, Some(Detail::Fallthrough))
            }
            Some(Served::Miss) => fixed(self.default_variant, Reason::Default, None),
            Some(Served::NoUnit) | None => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantAction {
    Off,
    On,
    Serve(u16),
}

#[derive(Debug, Clone)]
pub(crate) struct Prereq {
    pub flag: u32,
    pub variants: Box<[u16]>,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub attr: AttrPath,
    pub ids: StrSet,
    pub variant: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: Box<str>,
    pub cond: Cond,
    pub serve: Serve,
}

#[derive(Debug, Clone)]
pub(crate) struct Serve {
    /// In thousandths of a percent; `None` means everyone.
    pub percentage: Option<u32>,
    pub action: ServeAction,
    pub unit: Box<[AttrPath]>,
    pub rollout: Bucketer,
    pub split: Bucketer,
}

#[derive(Debug, Clone)]
pub(crate) enum ServeAction {
    Variant(u16),
    /// Cumulative upper bounds (exclusive, in buckets) and variants, ascending.
    Split(Box<[(u32, u16)]>),
}

pub(crate) enum Served {
    Hit { variant: u16, randomized: bool },
    Miss,
    NoUnit,
}

impl Serve {
    /// What [`apply`] gives whatever the context, when it needs no unit (no percentage
    /// strictly between 0 and 100 %, no split of more than one variant).
    fn fixed(&self) -> Option<Served> {
        let needs_rollout = matches!(self.percentage, Some(p) if p > 0 && p < BUCKETS);
        let needs_split = matches!(&self.action, ServeAction::Split(ranges) if ranges.len() > 1);
        if self.percentage == Some(0) {
            return Some(Served::Miss);
        }
        if needs_rollout || needs_split {
            return None;
        }
        let variant = match &self.action {
            ServeAction::Variant(v) => *v,
            ServeAction::Split(ranges) => match ranges.first() {
                Some((_, v)) => *v,
                None => return Some(Served::Miss),
            },
        };
        Some(Served::Hit {
            variant,
            randomized: false,
        })
    }
}

/// Nesting bound for prerequisite chains (cycles are rejected when compiling).
pub(crate) const MAX_PREREQ_DEPTH: usize = 64;

impl Ruleset {
    /// An evaluator for environment `env` at time `now` (used by `before`/`after` and `$now`).
    ///
    /// Environments the ruleset never mentions evaluate with the flags' top-level targeting.
    pub fn evaluator(&self, env: &str, now: OffsetDateTime) -> Evaluator<'_> {
        self.evaluator_in(self.environment(env), now)
    }

    /// Looks up an environment once, for [`Ruleset::evaluator_in`] (a caller evaluating many
    /// times in one environment skips the lookup).
    pub fn environment(&self, env: &str) -> Environment {
        Environment(
            self.environments
                .iter()
                .position(|e| **e == *env)
                .and_then(|i| u16::try_from(i).ok()),
        )
    }

    /// An evaluator for an environment looked up with [`Ruleset::environment`] on this
    /// ruleset.
    pub fn evaluator_in(&self, env: Environment, now: OffsetDateTime) -> Evaluator<'_> {
        Evaluator {
            ruleset: self,
            env: env.0,
            now,
        }
    }

    /// The type of the served flag `key`.
    pub fn flag_type(&self, key: &str) -> Option<FlagType> {
        let slot = *self.index.get(key)?;
        Some(self.flag(slot)?.flag_type)
    }

    /// Keys of the flags served (compiled), in document order (archived flags included).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.order
            .iter()
            .filter_map(|&s| self.flags[s as usize].as_deref())
            .map(|f| &*f.key)
    }

    /// Number of flags served (compiled; archived included).
    pub fn len(&self) -> usize {
        self.order
            .iter()
            .filter(|&&s| self.flags[s as usize].is_some())
            .count()
    }

    /// Segment names by their compiled index (for explanations).
    pub(crate) fn segment_names(&self) -> Vec<&str> {
        let mut names = vec![""; self.segments.len()];
        for (name, &i) in self.segment_index.iter() {
            if let Some(slot) = names.get_mut(i as usize) {
                *slot = name;
            }
        }
        names
    }

    /// Whether no flag is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether flag `key` is present and compiled.
    pub fn is_served(&self, key: &str) -> bool {
        self.index
            .get(key)
            .is_some_and(|&s| self.flags[s as usize].is_some())
    }

    /// The definition of flag `key` as written, whether or not it compiles.
    pub fn definition(&self, key: &str) -> Option<&FlagDef> {
        let slot = *self.index.get(key)?;
        self.slots[slot as usize].as_ref().map(|s| &*s.def)
    }

    /// Every flag definition as written, in document order (including flags that do not
    /// compile).
    pub fn definitions(&self) -> impl Iterator<Item = &FlagDef> {
        self.order
            .iter()
            .filter_map(|&s| self.slots[s as usize].as_ref())
            .map(|s| &*s.def)
    }

    /// The definition of segment `name`.
    pub fn segment(&self, name: &str) -> Option<&SegmentDef> {
        let slot = *self.segment_index.get(name)?;
        self.segment_slots[slot as usize].as_ref().map(|s| &*s.def)
    }

    /// Every segment `(name, definition)`, by name.
    pub fn segment_definitions(&self) -> Vec<(&str, &SegmentDef)> {
        let mut out: Vec<(&str, &SegmentDef)> = self
            .segment_slots
            .iter()
            .flatten()
            .map(|s| (&*s.name, &*s.def))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The definitions as a document (flags in document order, segments by name).
    pub fn to_document(&self) -> Document {
        Document {
            version: self.version.max(1),
            segments: self
                .segment_definitions()
                .into_iter()
                .map(|(n, d)| (n.to_owned(), d.clone()))
                .collect(),
            flags: self.definitions().cloned().collect(),
        }
    }

    /// The environment names that some flag configures explicitly.
    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.environments.iter().map(|e| &**e)
    }

    /// The one variant flag `key` serves to every context in `env`, if it serves only one
    /// (killed, off without tenant overrides, a static value, or a fallthrough that is neither
    /// a partial rollout nor a split, with no prerequisites, tenants, targets, rules or
    /// experiment): what a stale-flag report calls fully rolled out or fully off.
    pub fn uniform_variant(&self, key: &str, env: &str) -> Option<&str> {
        let flag = self.flag(*self.index.get(key)?)?;
        let t = self
            .evaluator(env, time::OffsetDateTime::UNIX_EPOCH)
            .targeting_of(flag)?;
        let name = |v: u16| flag.variants.get(v as usize).map(|(k, _)| &**k);
        if t.killed || (!t.enabled && t.tenants.is_empty()) {
            return name(t.default_variant);
        }
        if !t.enabled {
            return None;
        }
        if let Some(v) = t.static_variant.filter(|_| t.tenants.is_empty()) {
            return name(v);
        }
        if !(t.prerequisites.is_empty()
            && t.tenants.is_empty()
            && t.targets.is_empty()
            && t.rules.is_empty()
            && t.experiment.is_none())
        {
            return None;
        }
        match &t.fallthrough {
            None => name(t.default_variant),
            Some(serve) => match (serve.percentage, &serve.action) {
                (Some(0), _) => name(t.default_variant),
                (None, ServeAction::Variant(v)) => name(*v),
                (Some(p), ServeAction::Variant(v)) if p >= BUCKETS => name(*v),
                (None, ServeAction::Split(r)) if r.len() == 1 => name(r[0].1),
                (Some(p), ServeAction::Split(r)) if p >= BUCKETS && r.len() == 1 => name(r[0].1),
                _ => None,
            },
        }
    }

    /// What clients are shown about the served flag `key` (OFREP's flag `metadata`): its
    /// `metadata` values, plus `owner` unless `metadata` sets one. `None` when there is none.
    pub fn client_metadata(&self, key: &str) -> Option<&serde_json::Map<String, Value>> {
        let slot = *self.index.get(key)?;
        self.flag(slot)?.client_metadata.as_deref()
    }

    pub(crate) fn flag(&self, slot: u32) -> Option<&Flag> {
        self.flags.get(slot as usize)?.as_deref()
    }
}

/// An environment of one [`Ruleset`], looked up once ([`Ruleset::environment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Environment(Option<u16>);

/// Evaluates flags of one [`Ruleset`] for one environment at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Evaluator<'r> {
    pub(crate) ruleset: &'r Ruleset,
    env: Option<u16>,
    pub(crate) now: OffsetDateTime,
}

impl<'r> Evaluator<'r> {
    /// Evaluates flag `key` for `ctx`.
    pub fn evaluate(&self, key: &str, ctx: &Context) -> Evaluation<'r> {
        match self.ruleset.index.get(key) {
            Some(&i) => match self.ruleset.flag(i) {
                Some(flag) => self.evaluate_flag(flag, ctx, 0),
                None => Evaluation::not_found(format!(
                    "flag `{key}` has errors in its definition and is not served"
                )),
            },
            None => Evaluation::not_found(format!("flag `{key}` was not found")),
        }
    }

    /// Evaluates flag `key` and reads its value as `T`; a value of another type is a
    /// [`ErrorCode::TypeMismatch`] and yields `default`, never a coerced value.
    pub fn evaluate_as<T: FromFlagValue<'r>>(
        &self,
        key: &str,
        ctx: &Context,
        default: T,
    ) -> Typed<'r, T> {
        let eval = self.evaluate(key, ctx);
        if let Some(error) = eval.error {
            return Typed {
                value: default,
                variant: None,
                reason: Reason::Error,
                detail: eval.detail,
                error: Some(error),
            };
        }
        match T::from_flag_value(eval.value) {
            Some(value) => Typed {
                value,
                variant: eval.variant,
                reason: eval.reason,
                detail: eval.detail,
                error: None,
            },
            None => Typed {
                value: default,
                variant: None,
                reason: Reason::Error,
                detail: None,
                error: Some(Box::new(EvalError {
                    code: ErrorCode::TypeMismatch,
                    message: format!(
                        "flag `{key}` is of type {} and served {}, not {} {}",
                        eval.flag_type.map_or("unknown", FlagType::as_str),
                        eval.value,
                        article(T::NAME),
                        T::NAME
                    ),
                })),
            },
        }
    }

    /// Evaluates every served (non-archived) flag, in document order.
    pub fn evaluate_all<'c>(
        &self,
        ctx: &'c Context,
    ) -> impl Iterator<Item = (&'r str, Evaluation<'r>)> + use<'r, 'c> {
        let this = *self;
        let ruleset = self.ruleset;
        ruleset
            .order
            .iter()
            .filter_map(move |&s| Some((s, ruleset.flag(s)?)))
            .filter(|(_, f)| !f.archived)
            .map(move |(_, f)| (&*f.key, this.evaluate_flag(f, ctx, 0)))
    }

    /// The unit a running experiment on flag `key` buckets `ctx` by (its first bucketing
    /// attribute present), when the flag has one here: what an exposure is recorded for.
    pub fn experiment_unit<'c>(&self, key: &str, ctx: &'c Context) -> Option<&'c Value> {
        let flag = self.flag_by_key(key)?;
        self.targeting_of(flag)?.experiment.as_deref()?.unit_of(ctx)
    }

    /// The unit flag `key`'s fallthrough buckets `ctx` by here (its first bucketing attribute
    /// present): what a progressive rollout's exposure is recorded for.
    pub fn fallthrough_unit<'c>(&self, key: &str, ctx: &'c Context) -> Option<&'c Value> {
        let flag = self.flag_by_key(key)?;
        let serve = self.targeting_of(flag)?.fallthrough.as_ref()?;
        serve
            .unit
            .iter()
            .find_map(|attr| ctx.lookup(attr).filter(|v| is_unit(v)))
    }

    /// The served flag `key`, if there is one.
    pub(crate) fn flag_by_key(&self, key: &str) -> Option<&'r Flag> {
        self.ruleset.flag(*self.ruleset.index.get(key)?)
    }

    /// The targeting `flag` has in this evaluator's environment.
    pub(crate) fn targeting_of(&self, flag: &'r Flag) -> Option<&'r Targeting> {
        let t_index = self
            .env
            .and_then(|e| flag.by_env.get(e as usize))
            .copied()
            .unwrap_or(0);
        flag.targetings.get(t_index as usize)
    }

    fn evaluate_index(&self, index: u32, ctx: &Context, depth: usize) -> Evaluation<'r> {
        match self.ruleset.flag(index) {
            Some(flag) => self.evaluate_flag(flag, ctx, depth),
            None => Evaluation::not_found(format!("flag #{index} was not found")),
        }
    }

    fn evaluate_flag(&self, flag: &'r Flag, ctx: &Context, depth: usize) -> Evaluation<'r> {
        if flag.archived {
            return Evaluation::not_found(format!("flag `{}` is archived", flag.key));
        }
        let Some(t) = self.targeting_of(flag) else {
            return general(flag, "internal: missing targeting");
        };
        if let Some(f) = t.fixed {
            return serve_variant(flag, f.variant, f.reason, f.detail);
        }
        self.evaluate_targeting(flag, t, ctx, depth)
    }

    /// The key of the first prerequisite of `t` that does not serve a required variant (out
    /// of line: the evaluation of a flag without prerequisites stays small).
    #[inline(never)]
    fn failed_prerequisite(&self, t: &Targeting, ctx: &Context, depth: usize) -> Option<&'r str> {
        let failed = t.prerequisites.iter().find(|prereq| {
            let ok = depth < MAX_PREREQ_DEPTH && {
                let result = self.evaluate_index(prereq.flag, ctx, depth + 1);
                result.error.is_none()
                    && result.variant.is_some_and(|served| {
                        self.ruleset.flag(prereq.flag).is_some_and(|other| {
                            prereq.variants.iter().any(|&v| {
                                other
                                    .variants
                                    .get(v as usize)
                                    .is_some_and(|(k, _)| **k == *served)
                            })
                        })
                    })
            };
            !ok
        })?;
        Some(self.ruleset.flag(failed.flag).map_or("", |f| &*f.key))
    }

    /// The full evaluation of `flag`'s targeting `t` (what [`Targeting::fixed`] short-cuts).
    /// Out of line, so that a fixed answer is served without its stack frame.
    #[inline(never)]
    fn evaluate_targeting(
        &self,
        flag: &'r Flag,
        t: &'r Targeting,
        ctx: &Context,
        depth: usize,
    ) -> Evaluation<'r> {
        let served = |variant: u16, reason: Reason, detail: Option<Detail<'r>>| {
            serve_variant(flag, variant, reason, detail)
        };

        if t.killed {
            return served(
                t.default_variant,
                Reason::Disabled,
                Some(Detail::KillSwitch),
            );
        }
        let mut enabled = t.enabled;
        // The flag is off here and on for this tenant only: what it then serves by default
        // (static value, fallthrough) is served because of the tenant, and says so.
        let mut tenant_enabled = false;
        if !t.tenants.is_empty() {
            let action = ctx
                .lookup(&t.tenant_attr)
                .and_then(|id| tenant_action(&t.tenants, id));
            match action {
                Some(TenantAction::Off) => {
                    return served(t.default_variant, Reason::Disabled, Some(Detail::Tenant))
                }
                Some(TenantAction::Serve(v)) => {
                    return served(v, Reason::TargetingMatch, Some(Detail::Tenant))
                }
                Some(TenantAction::On) => {
                    tenant_enabled = !enabled;
                    enabled = true;
                }
                None => {}
            }
        }
        if !enabled {
            return served(t.default_variant, Reason::Disabled, None);
        }
        if let Some(v) = t.static_variant {
            if tenant_enabled {
                return served(v, Reason::TargetingMatch, Some(Detail::Tenant));
            }
            return served(v, Reason::Static, None);
        }
        if !t.prerequisites.is_empty() {
            if let Some(failed) = self.failed_prerequisite(t, ctx, depth) {
                return served(
                    t.default_variant,
                    Reason::Default,
                    Some(Detail::PrerequisiteFailed(failed)),
                );
            }
        }
        for target in t.targets.iter() {
            if let Some(id) = ctx.lookup(&target.attr) {
                if with_id_text(id, |text| target.ids.contains(text)) {
                    return served(target.variant, Reason::TargetingMatch, Some(Detail::Target));
                }
            }
        }
        let env = Env {
            ctx,
            now: self.now,
            segments: &self.ruleset.segments,
            segment_depth: std::cell::Cell::new(0),
        };
        for rule in t.rules.iter() {
            if !rule.cond.matches(&env) {
                continue;
            }
            match apply(&rule.serve, ctx) {
                Served::Hit {
                    variant,
                    randomized,
                } => {
                    let reason = if randomized {
                        Reason::Split
                    } else {
                        Reason::TargetingMatch
                    };
                    return served(variant, reason, Some(Detail::Rule(&rule.id)));
                }
                Served::Miss => {}
                Served::NoUnit => return missing_unit(flag, t, &rule.serve),
            }
        }
        if let Some(exp) = &t.experiment {
            match assign(exp, &env, &mut ()) {
                Outcome::Assigned { variant, .. } => {
                    return served(variant, Reason::Split, Some(Detail::Experiment(&exp.id)))
                }
                Outcome::OptedOut => {
                    return served(
                        exp.control,
                        Reason::TargetingMatch,
                        Some(Detail::ExperimentOptOut(&exp.id)),
                    )
                }
                Outcome::Paused => {
                    return served(
                        exp.control,
                        Reason::TargetingMatch,
                        Some(Detail::ExperimentPaused(&exp.id)),
                    )
                }
                Outcome::NotInAudience
                | Outcome::NoUnit
                | Outcome::HeldOut(_)
                | Outcome::NotAllocated(_) => {}
            }
        }
        match &t.fallthrough {
            None => served(t.default_variant, Reason::Default, None),
            Some(serve) => match apply(serve, ctx) {
                Served::Hit {
                    variant,
                    randomized,
                } => {
                    let reason = match (randomized, t.is_static) {
                        (true, _) => Reason::Split,
                        (false, _) if tenant_enabled => {
                            return served(variant, Reason::TargetingMatch, Some(Detail::Tenant))
                        }
                        (false, true) => Reason::Static,
                        (false, false) => Reason::Default,
                    };
                    served(variant, reason, Some(Detail::Fallthrough))
                }
                Served::Miss => served(t.default_variant, Reason::Default, None),
                Served::NoUnit => missing_unit(flag, t, serve),
            },
        }
    }
}

fn article(name: &str) -> &'static str {
    if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

pub(crate) fn tenant_action(tenants: &StrMap<TenantAction>, id: &Value) -> Option<TenantAction> {
    let mut found = None;
    with_id_text(id, |text| {
        found = tenants.get(text).copied();
        found.is_some()
    });
    found
}

#[inline]
fn serve_variant<'r>(
    flag: &'r Flag,
    variant: u16,
    reason: Reason,
    detail: Option<Detail<'r>>,
) -> Evaluation<'r> {
    match flag.variants.get(variant as usize) {
        Some((key, value)) => Evaluation {
            value,
            variant: Some(key),
            reason,
            detail,
            error: None,
            flag_type: Some(flag.flag_type),
        },
        None => general(flag, "internal: variant index out of range"),
    }
}

#[cold]
#[inline(never)]
fn general<'r>(flag: &'r Flag, message: &str) -> Evaluation<'r> {
    Evaluation {
        value: &NULL,
        variant: None,
        reason: Reason::Error,
        detail: None,
        error: Some(Box::new(EvalError {
            code: ErrorCode::General,
            message: format!("flag `{}`: {message}", flag.key),
        })),
        flag_type: Some(flag.flag_type),
    }
}

fn missing_unit<'r>(flag: &'r Flag, t: &'r Targeting, serve: &Serve) -> Evaluation<'r> {
    let mut eval = serve_variant(flag, t.default_variant, Reason::Error, None);
    let names: Vec<&str> = serve.unit.iter().map(AttrPath::as_str).collect();
    eval.error = Some(Box::new(EvalError {
        code: ErrorCode::TargetingKeyMissing,
        message: format!(
            "flag `{}` buckets by {} and the context has {}",
            flag.key,
            names.join(", then "),
            if names.len() == 1 {
                "none"
            } else {
                "none of them"
            }
        ),
    }));
    eval
}

/// What [`apply_probed`] looked at on its way, for explanations. Evaluation passes `()`,
/// whose methods do nothing and compile away.
pub(crate) trait ServeProbe {
    /// The serve needed a bucketing unit; this is what the context had (`None`: none of the
    /// attributes).
    fn unit(&mut self, _unit: Option<&Value>) {}
    /// The unit's rollout bucket and the rollout's threshold (in when `bucket < threshold`).
    fn rollout(&mut self, _bucket: u32, _threshold: u32) {}
    /// The unit's split bucket.
    fn split(&mut self, _bucket: u32) {}
}

impl ServeProbe for () {}

/// Runs a serve for `ctx`: percentage first, then the variant or split.
fn apply(serve: &Serve, ctx: &Context) -> Served {
    apply_probed(serve, ctx, &mut ())
}

/// [`apply`], telling `probe` the unit and buckets it used.
pub(crate) fn apply_probed(serve: &Serve, ctx: &Context, probe: &mut impl ServeProbe) -> Served {
    // 0 % serves nobody; 100 % rollouts and one-variant splits randomize nobody.
    if let Some(served) = serve.fixed() {
        return served;
    }
    let needs_rollout = matches!(serve.percentage, Some(p) if p > 0 && p < BUCKETS);
    let unit = serve
        .unit
        .iter()
        .find_map(|attr| ctx.lookup(attr).filter(|v| is_unit(v)));
    probe.unit(unit);
    let Some(unit) = unit else {
        return Served::NoUnit;
    };
    if let Some(p) = serve.percentage.filter(|_| needs_rollout) {
        let b = bucket_of(&serve.rollout, unit);
        probe.rollout(b, p);
        if b >= p {
            return Served::Miss;
        }
    }
    let variant = match &serve.action {
        ServeAction::Variant(v) => *v,
        ServeAction::Split(ranges) => {
            let b = bucket_of(&serve.split, unit);
            probe.split(b);
            match ranges.iter().find(|(end, _)| b < *end).or(ranges.last()) {
                Some((_, v)) => *v,
                None => return Served::Miss,
            }
        }
    };
    Served::Hit {
        variant,
        randomized: true,
    }
}

pub(crate) fn is_unit(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

pub(crate) fn bucket_of(bucketer: &Bucketer, unit: &Value) -> u32 {
    match unit {
        Value::String(s) => bucketer.bucket(s.as_bytes()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                bucketer.bucket(IntText::unsigned(u).as_bytes())
            } else {
                IntText::signed(n.as_i64().unwrap_or(0)).bucket(bucketer)
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{load_str, Context, Format};

    /// Every shape of flag whose answer can be fixed, and some whose answer cannot, in two
    /// environments: the fixed answer is the full path's answer for every context.
    #[test]
    fn fixed_answers_are_what_the_full_evaluation_serves() {
        let doc = json!({"flags": [
            {"key": "on"},
            {"key": "off", "enabled": false},
            {"key": "killed", "killSwitch": true, "fallthrough": {"percentage": 50, "variant": "on"}},
            {"key": "static", "type": "string", "variants": {"a": "A", "b": "B"},
             "defaultVariant": "a", "variant": "b"},
            {"key": "all-in", "fallthrough": {"percentage": 100, "variant": "on"}},
            {"key": "none-in", "fallthrough": {"percentage": 0, "variant": "on"}},
            {"key": "one-split", "type": "string", "variants": {"a": "A", "b": "B"},
             "defaultVariant": "a", "fallthrough": {"split": {"b": 100}}},
            {"key": "half", "fallthrough": {"percentage": 50, "variant": "on"}},
            {"key": "ruled", "rules": [{"id": "r", "conditions": [
                {"attribute": "plan", "operator": "equals", "value": "pro"}], "variant": "off"}]},
            {"key": "tenanted", "tenants": {"t1": {"enabled": false}}},
            {"key": "envs", "environments": {
                "production": {"killSwitch": true},
                "staging": {"fallthrough": {"percentage": 30, "variant": "on"}}}},
        ]})
        .to_string();
        let ruleset = load_str(&doc, Format::Json, None).expect("compiles");
        let contexts = [
            Context::new(),
            Context::from_value(json!({"targetingKey": "u1", "plan": "pro", "tenant": "t1"}))
                .unwrap(),
            Context::from_value(json!({"targetingKey": "u2", "plan": "free"})).unwrap(),
        ];
        let mut fixed = 0;
        let mut not_fixed = 0;
        for env in ["production", "staging", "elsewhere"] {
            let eval = ruleset.evaluator(env, time::OffsetDateTime::UNIX_EPOCH);
            for key in ruleset.keys() {
                let flag = eval.flag_by_key(key).expect("served");
                let t = eval.targeting_of(flag).expect("targeting");
                if t.fixed.is_some() {
                    fixed += 1;
                } else {
                    not_fixed += 1;
                }
                for ctx in &contexts {
                    assert_eq!(
                        eval.evaluate(key, ctx),
                        eval.evaluate_targeting(flag, t, ctx, 0),
                        "{key} in {env}"
                    );
                }
            }
        }
        // Seven flags in every environment, and `envs` where killed and where top-level.
        assert_eq!(
            fixed,
            7 * 3 + 2,
            "on, off, killed, static, all-in, none-in, one-split"
        );
        assert!(
            not_fixed >= 3 * 3,
            "half, ruled and tenanted are never fixed"
        );
    }
}
