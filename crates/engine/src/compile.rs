//! The compiler: [`Document`] → [`Ruleset`], with every problem reported as a [`Diagnostic`],
//! and [`Ruleset::apply`], which recompiles only what a change touches.
//!
//! Everything that can be decided ahead of evaluation is decided here: each flag is first
//! [normalized](crate::normalize()) (older layouts → canonical), then values are resolved to
//! variants, environments are merged with the top-level targeting, regexes, versions, sets and
//! timestamps are parsed, percentages become bucket counts, and the bucketing hash state of each
//! salt is precomputed. A document with any error diagnostic must not be served; the returned
//! ruleset then holds only the flags that compiled, for tools that want to inspect them.
//!
//! # Slots
//!
//! Flags and segments live in *slots* that never move while a ruleset evolves: a prerequisite
//! or an `in_segment` condition refers to its target by slot, so changing one flag leaves every
//! other compiled flag valid. [`Ruleset::apply`] therefore recompiles only the changed flags,
//! the flags whose prerequisites or segments changed, and flags that did not compile before;
//! then it checks cycles through the changed flags and drops flags whose prerequisites no
//! longer compile. A property test checks that the result evaluates exactly like a full
//! [`compile()`] of the same definitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::strmap::{StrMap, StrSet};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::bucket::{percent_to_units, Bucketer, Domain, BUCKETS};
use crate::condition::{id_text, Cond, CondCompiler, Segment};
use crate::context::{AttrPath, TARGETING_KEY};
use crate::diagnostic::{Diagnostic, FieldPath};
use crate::document::{
    describe, AttributeList, Document, ExperimentDef, FlagDef, FlagType, PrerequisiteDef, RuleDef,
    SegmentDef, ServeDef, TargetDef, TargetingDef, TenantDef,
};
use crate::eval::{
    Flag, Prereq, Rule, Ruleset, Serve, ServeAction, Target, Targeting, TenantAction,
};
use crate::experiment::{
    experiment_salt, holdout_salt, layer_salt, valid_range, Allocation, Experiment, Gate,
    OPT_OUT_ATTRIBUTE,
};
use crate::normalize::{normalize_with_table, VariantTable};

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

/// One change to a [`Ruleset`], for [`Ruleset::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Creates or replaces the flag with this definition's key.
    Flag(Box<FlagDef>),
    /// Removes the flag with this key (nothing if there is none).
    RemoveFlag(String),
    /// Creates or replaces the named segment.
    Segment(String, SegmentDef),
    /// Removes the named segment (nothing if there is none).
    RemoveSegment(String),
}

/// Everything kept about a flag besides its compiled form: cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct FlagSlot {
    /// The definition as written.
    pub def: Arc<FlagDef>,
    /// The normalized definition that was compiled (shares `def` when they are equal).
    pub normalized: Arc<FlagDef>,
    /// Its variants; `None` when the flag cannot be compiled at all.
    pub table: Option<Arc<VariantTable>>,
    /// What it refers to, so a change elsewhere knows to recompile it.
    pub deps: Arc<FlagDeps>,
    /// Problems normalizing found (reported each time the flag is compiled).
    pub normalize_problems: Arc<[Diagnostic]>,
}

/// The names a flag refers to.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlagDeps {
    /// Keys of prerequisite flags, in every environment.
    pub prereqs: Vec<Box<str>>,
    /// Names of segments used by conditions, in every environment.
    pub segments: Vec<Box<str>>,
}

/// A segment's definition and the segments it refers to.
#[derive(Debug, Clone)]
pub(crate) struct SegmentSlot {
    pub name: Arc<str>,
    pub def: Arc<SegmentDef>,
    pub deps: Arc<[Box<str>]>,
}

/// Compiles `doc`. The ruleset is complete only when no diagnostic is an error.
pub fn compile(doc: &Document) -> (Ruleset, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut ruleset = Ruleset {
        version: doc.version,
        ..Ruleset::default()
    };
    let root = FieldPath::root();

    // Segments: give every name a slot first, so segments and flags can reference any of them.
    for (name, def) in &doc.segments {
        ruleset.put_segment(name, def.clone());
    }
    let all_segments: Vec<u32> = (0..ruleset.segment_slots.len() as u32).collect();
    ruleset.compile_segments(&all_segments, &mut diagnostics);
    ruleset.check_segment_cycles(&root, &mut diagnostics);

    // Flags: every key and variant table first, so prerequisites can refer to any flag.
    let mut slots = Vec::with_capacity(doc.flags.len());
    for flag in &doc.flags {
        if ruleset.index.contains_key(flag.key.as_str()) {
            diagnostics.push(
                Diagnostic::error(
                    flag.origin.key("key"),
                    format!(
                        "duplicate flag key `{}`: every flag needs its own key",
                        flag.key
                    ),
                )
                .in_flag(flag.key.clone()),
            );
            continue;
        }
        let slot = ruleset.put_flag(Arc::new(flag.clone()), false);
        slots.push(slot);
    }
    for &slot in &slots {
        ruleset.compile_flag(slot, &mut diagnostics);
    }
    let mut edges = ruleset.prereq_edges();
    while let Some(cycle) = find_cycle(&edges) {
        ruleset.report_cycle(&cycle, &mut diagnostics);
        for &slot in &cycle {
            edges[slot as usize].clear();
        }
    }
    ruleset.drop_unservable(&mut diagnostics);
    dedupe(&mut diagnostics);
    (ruleset, diagnostics)
}

/// Environments inherit top-level targeting, so its problems would repeat per environment.
fn dedupe(diagnostics: &mut Vec<Diagnostic>) {
    let mut seen = FxHashSet::default();
    diagnostics.retain(|d| seen.insert((d.flag.clone(), d.path.clone(), d.message.clone())));
}

impl Ruleset {
    /// Applies `changes` (in order) and recompiles what they touch: the changed flags and
    /// segments, the flags that depend on them, and flags that did not compile before. The
    /// diagnostics are those of what was recompiled, so on a ruleset without errors they are
    /// exactly the problems the changes introduce; `self` is left as it was.
    ///
    /// The result evaluates like a full [`compile()`] of the changed definitions; the cost is
    /// proportional to what was recompiled plus one pass over the flags.
    pub fn apply(&self, changes: &[Change]) -> (Ruleset, Vec<Diagnostic>) {
        let mut next = self.clone();
        let mut diagnostics = Vec::new();
        let mut touched_segments: FxHashSet<Box<str>> = FxHashSet::default();
        let mut touched_flags: FxHashSet<Box<str>> = FxHashSet::default();

        for change in changes {
            match change {
                Change::Segment(name, def) => {
                    next.put_segment(name, def.clone());
                    touched_segments.insert(name.as_str().into());
                }
                Change::RemoveSegment(name) => {
                    if let Some(slot) = Arc::make_mut(&mut next.segment_index).remove(name.as_str())
                    {
                        Arc::make_mut(&mut next.segments)[slot as usize] = None;
                        Arc::make_mut(&mut next.segment_slots)[slot as usize] = None;
                    }
                    touched_segments.insert(name.as_str().into());
                }
                Change::Flag(_) | Change::RemoveFlag(_) => {}
            }
        }
        if !touched_segments.is_empty() {
            let recompile: Vec<u32> = next
                .segment_slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| {
                    let slot = slot.as_ref()?;
                    let hit = touched_segments.contains(&*slot.name)
                        || slot.deps.iter().any(|d| touched_segments.contains(d))
                        || next.segments[i].is_none();
                    hit.then_some(i as u32)
                })
                .collect();
            next.compile_segments(&recompile, &mut diagnostics);
            // Flags using a recompiled segment are recompiled too: it may have stopped
            // compiling (a segment it uses was removed).
            for &slot in &recompile {
                if let Some(s) = &next.segment_slots[slot as usize] {
                    touched_segments.insert(Box::from(&*s.name));
                }
            }
            let dropped = next.check_segment_cycles(&FieldPath::root(), &mut diagnostics);
            touched_segments.extend(dropped);
        }

        let mut unservable = false;
        for change in changes {
            match change {
                Change::Flag(def) => {
                    next.put_flag(Arc::new((**def).clone()), true);
                    touched_flags.insert(def.key.as_str().into());
                }
                Change::RemoveFlag(key) => {
                    unservable = true;
                    if next.index.contains_key(key.as_str()) {
                        if let Some(slot) = Arc::make_mut(&mut next.index).remove(key.as_str()) {
                            Arc::make_mut(&mut next.flags)[slot as usize] = None;
                            Arc::make_mut(&mut next.slots)[slot as usize] = None;
                            Arc::make_mut(&mut next.order).retain(|&s| s != slot);
                        }
                    }
                    touched_flags.insert(key.as_str().into());
                }
                Change::Segment(..) | Change::RemoveSegment(_) => {}
            }
        }

        let touched_slots: FxHashSet<u32> = touched_flags
            .iter()
            .filter_map(|k| next.index.get(k).copied())
            .collect();
        let recompile: Vec<u32> = next
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let slot = slot.as_ref()?;
                let deps = &slot.deps;
                let hit = touched_slots.contains(&(i as u32))
                    || next.flags[i].is_none()
                    || (!deps.prereqs.is_empty()
                        && deps.prereqs.iter().any(|k| touched_flags.contains(k)))
                    || (!deps.segments.is_empty()
                        && !touched_segments.is_empty()
                        && deps.segments.iter().any(|s| touched_segments.contains(s)));
                hit.then_some(i as u32)
            })
            .collect();
        for &slot in &recompile {
            next.compile_flag(slot, &mut diagnostics);
        }
        unservable |= recompile.iter().any(|&s| next.flags[s as usize].is_none());
        // A new cycle passes through something recompiled (the rest was acyclic before).
        let mut broken: FxHashSet<u32> = FxHashSet::default();
        for &slot in &recompile {
            let cycle = cycle_through(slot, |node| {
                if broken.contains(&node) {
                    return Vec::new();
                }
                next.slots[node as usize]
                    .iter()
                    .flat_map(|s| s.deps.prereqs.iter())
                    .filter_map(|k| next.index.get(k).copied())
                    .collect()
            });
            if let Some(cycle) = cycle {
                next.report_cycle(&cycle, &mut diagnostics);
                broken.extend(cycle);
                unservable = true;
            }
        }
        // Only a flag that stopped being served can make another unservable (everything
        // that was not served before was recompiled above).
        if unservable {
            next.drop_unservable(&mut diagnostics);
        }
        dedupe(&mut diagnostics);
        (next, diagnostics)
    }

    /// Puts a segment definition in its slot (a new one for a new name); not compiled yet.
    fn put_segment(&mut self, name: &str, def: SegmentDef) -> u32 {
        let slot = match self.segment_index.get(name) {
            Some(&slot) => slot,
            None => {
                let slot = self.segment_slots.len() as u32;
                Arc::make_mut(&mut self.segment_index).insert(name.to_owned(), slot);
                Arc::make_mut(&mut self.segment_slots).push(None);
                Arc::make_mut(&mut self.segments).push(None);
                slot
            }
        };
        Arc::make_mut(&mut self.segment_slots)[slot as usize] = Some(SegmentSlot {
            name: name.into(),
            def: Arc::new(def),
            deps: Arc::new([]),
        });
        slot
    }

    /// Compiles the segments in `slots`; a segment with an error is not served (it matches
    /// nobody, and flags that use it do not compile).
    fn compile_segments(&mut self, slots: &[u32], diagnostics: &mut Vec<Diagnostic>) {
        let root = FieldPath::root();
        let mut compiled = Vec::with_capacity(slots.len());
        for &slot in slots {
            let Some(entry) = self.segment_slots[slot as usize].clone() else {
                continue;
            };
            let before = diagnostics.len();
            let (segment, referenced) = compile_segment(
                &entry.name,
                &entry.def,
                &root,
                &self.segment_index,
                diagnostics,
            );
            let deps: Arc<[Box<str>]> = referenced
                .iter()
                .filter_map(|&i| self.segment_slots.get(i as usize)?.as_ref())
                .map(|s| Box::<str>::from(&*s.name))
                .collect();
            let ok = !diagnostics[before..].iter().any(Diagnostic::is_error);
            compiled.push((slot, ok.then(|| Arc::new(segment)), deps));
        }
        if compiled.is_empty() {
            return;
        }
        let segments = Arc::make_mut(&mut self.segments);
        let segment_slots = Arc::make_mut(&mut self.segment_slots);
        for (slot, segment, deps) in compiled {
            segments[slot as usize] = segment;
            if let Some(entry) = &mut segment_slots[slot as usize] {
                entry.deps = deps;
            }
        }
    }

    /// Reports every cycle between segments and stops serving the segments in one (a cycle
    /// has no meaning); returns their names, so the flags using them are recompiled.
    fn check_segment_cycles(
        &mut self,
        root: &FieldPath,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<Box<str>> {
        let mut edges: Vec<Vec<u32>> = self
            .segment_slots
            .iter()
            .map(|slot| {
                slot.iter()
                    .flat_map(|s| s.deps.iter())
                    .filter_map(|name| self.segment_index.get(&**name).copied())
                    .collect()
            })
            .collect();
        let mut dropped = Vec::new();
        while let Some(cycle) = find_cycle(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|&i| self.segment_slots[i as usize].as_ref())
                .map(|s| &*s.name)
                .collect();
            diagnostics.push(Diagnostic::error(
                root.key("segments").key(names[0].to_owned()),
                format!(
                    "segments reference each other in a cycle: {}",
                    names.join(" → ")
                ),
            ));
            for &i in &cycle {
                edges[i as usize].clear();
                if Arc::make_mut(&mut self.segments)[i as usize]
                    .take()
                    .is_some()
                {
                    if let Some(s) = &self.segment_slots[i as usize] {
                        dropped.push(Box::from(&*s.name));
                    }
                }
            }
        }
        dropped
    }

    /// Puts a flag definition in its slot (a new one for a new key, placed in `order` where a
    /// key-sorted document would have it), normalizes it and builds its variant table; the
    /// flag itself is compiled later.
    fn put_flag(&mut self, def: Arc<FlagDef>, sorted: bool) -> u32 {
        let slot = match self.index.get(def.key.as_str()) {
            Some(&slot) => slot,
            None => {
                let slot = self.slots.len() as u32;
                Arc::make_mut(&mut self.index).insert(def.key.as_str().into(), slot);
                Arc::make_mut(&mut self.slots).push(None);
                Arc::make_mut(&mut self.flags).push(None);
                let at = if sorted {
                    self.order.partition_point(|&s| {
                        self.slots[s as usize]
                            .as_ref()
                            .is_some_and(|other| other.def.key < def.key)
                    })
                } else {
                    self.order.len()
                };
                Arc::make_mut(&mut self.order).insert(at, slot);
                slot
            }
        };
        // Its problems are reported when it is compiled (a later change may replace it first).
        let mut problems = Vec::new();
        let (normalized, table) = normalize_with_table(&def, &mut problems);
        let normalized = if normalized == *def {
            Arc::clone(&def)
        } else {
            Arc::new(normalized)
        };
        Arc::make_mut(&mut self.slots)[slot as usize] = Some(Arc::new(FlagSlot {
            def,
            normalized,
            table: table.map(Arc::new),
            deps: Arc::new(FlagDeps::default()),
            normalize_problems: problems.into(),
        }));
        // Compiled by the caller; until then the flag is not served.
        Arc::make_mut(&mut self.flags)[slot as usize] = None;
        slot
    }

    /// Compiles the flag in `slot` against the current slots; it is served only when this
    /// produced no error (normalizing included).
    fn compile_flag(&mut self, slot: u32, diagnostics: &mut Vec<Diagnostic>) {
        let Some(entry) = self.slots[slot as usize].clone() else {
            return;
        };
        let before = diagnostics.len();
        diagnostics.extend(entry.normalize_problems.iter().cloned());
        let mut deps = FlagDeps::default();
        let compiled = match entry.table.as_deref() {
            Some(table) => {
                let shared = Shared {
                    segment_index: &self.segment_index,
                    segments: &self.segments,
                    segment_slots: &self.segment_slots,
                    flag_index: &self.index,
                    slots: &self.slots,
                };
                let mut fc = FlagCompiler {
                    flag: &entry.normalized,
                    diagnostics,
                    errors: 0,
                };
                fc.compile(table, &shared, &mut self.environments, &mut deps)
            }
            None => None,
        };
        let ok = !diagnostics[before..].iter().any(Diagnostic::is_error);
        Arc::make_mut(&mut self.flags)[slot as usize] = compiled.filter(|_| ok).map(Arc::new);
        if let Some(e) = &mut Arc::make_mut(&mut self.slots)[slot as usize] {
            Arc::make_mut(e).deps = Arc::new(deps);
        }
    }

    /// Prerequisite edges between slots (for cycle checks).
    fn prereq_edges(&self) -> Vec<Vec<u32>> {
        self.slots
            .iter()
            .map(|slot| {
                slot.iter()
                    .flat_map(|s| s.deps.prereqs.iter())
                    .filter_map(|k| self.index.get(k).copied())
                    .collect()
            })
            .collect()
    }

    /// Reports a prerequisite cycle and stops serving the flags in it (a cycle has no meaning).
    fn report_cycle(&mut self, cycle: &[u32], diagnostics: &mut Vec<Diagnostic>) {
        for &slot in cycle {
            Arc::make_mut(&mut self.flags)[slot as usize] = None;
        }
        let defs: Vec<&FlagDef> = cycle
            .iter()
            .filter_map(|&i| self.slots.get(i as usize)?.as_ref())
            .map(|s| &*s.def)
            .collect();
        let Some(first) = defs.first() else { return };
        let keys: Vec<&str> = defs.iter().map(|d| d.key.as_str()).collect();
        diagnostics.push(
            Diagnostic::error(
                first.origin.key("prerequisites"),
                format!("prerequisites form a cycle: {}", keys.join(" → ")),
            )
            .in_flag(first.key.clone()),
        );
    }

    /// Stops serving flags whose prerequisites are not served (until nothing changes).
    fn drop_unservable(&mut self, diagnostics: &mut Vec<Diagnostic>) {
        loop {
            let mut dropped = false;
            for i in 0..self.flags.len() {
                let Some(flag) = &self.flags[i] else { continue };
                let missing = flag
                    .targetings
                    .iter()
                    .flat_map(|t| t.prerequisites.iter())
                    .find(|p| self.flags.get(p.flag as usize).is_none_or(Option::is_none));
                let Some(missing) = missing else { continue };
                let other = self
                    .slots
                    .get(missing.flag as usize)
                    .and_then(Option::as_ref)
                    .map_or("?", |s| s.def.key.as_str());
                if let Some(def) = self.slots[i].as_ref().map(|s| &s.def) {
                    diagnostics.push(
                        Diagnostic::error(
                            def.origin.key("prerequisites"),
                            format!("prerequisite flag `{other}` does not compile, so this flag is not served either"),
                        )
                        .in_flag(def.key.clone()),
                    );
                }
                Arc::make_mut(&mut self.flags)[i] = None;
                dropped = true;
            }
            if !dropped {
                break;
            }
        }
    }
}

fn compile_segment(
    name: &str,
    def: &SegmentDef,
    root: &FieldPath,
    segment_index: &FxHashMap<String, u32>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Segment, Vec<u32>) {
    let path = root.key("segments").key(name.to_owned());
    if !is_valid_key(name) {
        diagnostics.push(Diagnostic::error(
            path.clone(),
            key_problem("segment name", name),
        ));
    }
    let mut cc = CondCompiler {
        segment_index,
        diagnostics,
        flag: None,
        referenced: Vec::new(),
    };
    let cond = (!def.conditions.is_empty())
        .then(|| cc.compile_all(&def.conditions, &path.key("conditions")));
    let referenced = std::mem::take(&mut cc.referenced);
    if let Some(a) = def.attribute.as_deref() {
        if a.is_empty() || a.split('.').any(str::is_empty) {
            diagnostics.push(Diagnostic::error(
                path.key("attribute"),
                format!("`{a}` is not a valid attribute path"),
            ));
        }
    }
    let included = id_set(&def.included, &path.key("included"), diagnostics, None);
    let excluded = id_set(&def.excluded, &path.key("excluded"), diagnostics, None);
    (
        Segment {
            attr: AttrPath::new(def.attribute.as_deref().unwrap_or(TARGETING_KEY)),
            included,
            excluded,
            cond,
        },
        referenced,
    )
}

/// What compiling one flag may look at besides the flag itself.
struct Shared<'a> {
    segment_index: &'a FxHashMap<String, u32>,
    segments: &'a [Option<Arc<Segment>>],
    segment_slots: &'a [Option<SegmentSlot>],
    flag_index: &'a StrMap<u32>,
    slots: &'a [Option<Arc<FlagSlot>>],
}

struct FlagCompiler<'a> {
    /// The normalized definition.
    flag: &'a FlagDef,
    diagnostics: &'a mut Vec<Diagnostic>,
    errors: usize,
}

/// The targeting fields after merging an environment over the top level, with the path each
/// came from.
#[derive(Clone)]
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
    experiment: Option<(&'a ExperimentDef, FieldPath)>,
}

impl<'a> Merged<'a> {
    /// The top-level targeting; `fallthrough` and `targets` point where they were written
    /// (an older layout's field when normalizing derived them).
    fn top(flag: &'a FlagDef) -> Merged<'a> {
        let p = &flag.origin;
        let t = &flag.targeting;
        let fallthrough_path = flag
            .provenance
            .fallthrough
            .clone()
            .unwrap_or_else(|| p.key("fallthrough"));
        let targets_path = flag
            .provenance
            .targets
            .clone()
            .unwrap_or_else(|| p.key("targets"));
        Merged {
            path: p.clone(),
            top: p.clone(),
            enabled: t.enabled.unwrap_or(true),
            kill_switch: t.kill_switch.unwrap_or(false),
            default_variant: t
                .default_variant
                .as_ref()
                .map(|v| (v, p.key("defaultVariant"))),
            default_value: t.default_value.as_ref().map(|v| (v, p.key("defaultValue"))),
            static_variant: t.variant.as_ref().map(|v| (v, p.key("variant"))),
            static_value: t.value.as_ref().map(|v| (v, p.key("value"))),
            prerequisites: t
                .prerequisites
                .as_deref()
                .map(|v| (v, p.key("prerequisites"))),
            tenants: t.tenants.as_ref().map(|v| (v, p.key("tenants"))),
            targets: t.targets.as_deref().map(|v| (v, targets_path)),
            rules: t.rules.as_deref().map(|v| (v, p.key("rules"))),
            fallthrough: t.fallthrough.as_ref().map(|v| (v, fallthrough_path)),
            experiment: t.experiment.as_deref().map(|v| (v, p.key("experiment"))),
        }
    }

    /// An environment over this targeting: every field it sets replaces the inherited one
    /// (a default or static serve as a pair); a kill switch on either side wins.
    fn overlay(&self, env: &'a TargetingDef, ep: &FieldPath) -> Merged<'a> {
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
        let own_default = env.default_variant.is_some() || env.default_value.is_some();
        let own_static = env.variant.is_some() || env.value.is_some();
        let (default_variant, default_value) = if own_default {
            (
                env.default_variant
                    .as_ref()
                    .map(|v| (v, ep.key("defaultVariant"))),
                env.default_value
                    .as_ref()
                    .map(|v| (v, ep.key("defaultValue"))),
            )
        } else {
            (self.default_variant.clone(), self.default_value.clone())
        };
        let (static_variant, static_value) = if own_static {
            (
                env.variant.as_ref().map(|v| (v, ep.key("variant"))),
                env.value.as_ref().map(|v| (v, ep.key("value"))),
            )
        } else {
            (self.static_variant.clone(), self.static_value.clone())
        };
        Merged {
            path: ep.clone(),
            top: self.top.clone(),
            enabled: env.enabled.unwrap_or(self.enabled),
            kill_switch: self.kill_switch || env.kill_switch.unwrap_or(false),
            default_variant,
            default_value,
            static_variant,
            static_value,
            prerequisites: pick(
                env.prerequisites.as_deref(),
                ep,
                "prerequisites",
                &self.prerequisites,
            ),
            tenants: pick(env.tenants.as_ref(), ep, "tenants", &self.tenants),
            targets: pick(env.targets.as_deref(), ep, "targets", &self.targets),
            rules: pick(env.rules.as_deref(), ep, "rules", &self.rules),
            fallthrough: pick(
                env.fallthrough.as_ref(),
                ep,
                "fallthrough",
                &self.fallthrough,
            ),
            experiment: pick(
                env.experiment.as_deref(),
                ep,
                "experiment",
                &self.experiment,
            ),
        }
    }
}

struct TargetingCtx<'a> {
    table: &'a VariantTable,
    shared: &'a Shared<'a>,
    salt: &'a str,
    unit: &'a [AttrPath],
    tenant_attr: &'a AttrPath,
}

impl<'a> FlagCompiler<'a> {
    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics
            .push(Diagnostic::error(path, message).in_flag(self.flag.key.clone()));
    }

    fn path(&self) -> &FieldPath {
        &self.flag.origin
    }

    fn compile(
        &mut self,
        table: &VariantTable,
        shared: &Shared<'_>,
        environments: &mut Arc<Vec<Box<str>>>,
        deps: &mut FlagDeps,
    ) -> Option<Flag> {
        let errors_before = self.errors;
        let f = self.flag;
        let p = self.path().clone();
        if !is_valid_key(&f.key) {
            self.error(p.key("key"), key_problem("flag key", &f.key));
        }
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
        let ctx = TargetingCtx {
            table,
            shared,
            salt,
            unit: &unit,
            tenant_attr: &tenant_attr,
        };

        let base = Merged::top(f);
        let mut targetings = Vec::with_capacity(1 + f.environments.len());
        let mut by_env = Vec::new();
        targetings.push(self.targeting(&base, &ctx, deps));
        for (name, env) in &f.environments {
            let ep = p.key("environments").key(name.clone());
            if !is_valid_key(name) {
                self.error(ep.clone(), key_problem("environment name", name));
            }
            let merged = base.overlay(env, &ep);
            let compiled = self.targeting(&merged, &ctx, deps);
            let slot = match environments.iter().position(|e| **e == **name) {
                Some(slot) => slot,
                None => {
                    Arc::make_mut(environments).push(name.as_str().into());
                    environments.len() - 1
                }
            };
            if by_env.len() <= slot {
                by_env.resize(slot + 1, 0u16);
            }
            by_env[slot] = targetings.len() as u16;
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
            client_metadata: client_metadata(f),
        })
    }

    /// Records a segment a condition uses; a segment that does not compile makes this flag an
    /// error too (it would otherwise silently match nobody).
    fn segment_used(
        &mut self,
        slot: u32,
        path: &FieldPath,
        shared: &Shared<'_>,
        deps: &mut FlagDeps,
    ) {
        let Some(entry) = shared
            .segment_slots
            .get(slot as usize)
            .and_then(Option::as_ref)
        else {
            return;
        };
        if !deps.segments.iter().any(|s| **s == *entry.name) {
            deps.segments.push(Box::from(&*entry.name));
        }
        if shared
            .segments
            .get(slot as usize)
            .is_none_or(Option::is_none)
        {
            self.error(
                path.clone(),
                format!(
                    "segment `{}` does not compile, so this flag is not served either",
                    entry.name
                ),
            );
        }
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
        deps: &mut FlagDeps,
    ) -> Option<Targeting> {
        let errors_before = self.errors;
        let table = ctx.table;
        let flag_key = self.flag.key.clone();
        if let (Some(_), Some((_, path))) = (&m.default_variant, &m.default_value) {
            self.error(
                path.clone(),
                "give `defaultVariant` or `defaultValue`, not both",
            );
        }

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
                if !deps.prereqs.iter().any(|k| **k == *pre.flag) {
                    deps.prereqs.push(pre.flag.as_str().into());
                }
                if let Some(prereq) = self.prerequisite(pre, &path.index(i), ctx.shared, &flag_key)
                {
                    prerequisites.push(prereq);
                }
            }
        }

        let mut tenants = StrMap::default();
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
                let referenced = std::mem::take(&mut cc.referenced);
                let cond_errors = cc.diagnostics.len() - before;
                self.errors += cond_errors;
                for slot in referenced {
                    self.segment_used(slot, &rp.key("conditions"), ctx.shared, deps);
                }
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

        let experiment = match &m.experiment {
            Some((def, path)) => {
                let static_path = (m.static_variant.as_ref().map(|(_, p)| p))
                    .or(m.static_value.as_ref().map(|(_, p)| p));
                if let Some(static_path) = static_path {
                    self.error(
                        static_path.clone(),
                        "this environment serves one value to everybody, so its experiment \
                         would never run; remove the static `variant`/`value`",
                    );
                }
                self.experiment(def, path, ctx, deps).map(Box::new)
            }
            None => None,
        };

        if self.errors > errors_before {
            return None;
        }
        let is_static = prerequisites.is_empty()
            && tenants.is_empty()
            && targets.is_empty()
            && rules.is_empty()
            && experiment.is_none();
        Some(
            Targeting {
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
                experiment,
                is_static,
                fixed: None,
            }
            .with_fixed_answer(),
        )
    }

    fn experiment(
        &mut self,
        def: &ExperimentDef,
        path: &FieldPath,
        ctx: &TargetingCtx<'_>,
        deps: &mut FlagDeps,
    ) -> Option<Experiment> {
        let errors_before = self.errors;
        let flag_key = self.flag.key.clone();
        if !is_valid_key(&def.id) {
            self.error(path.key("id"), key_problem("experiment id", &def.id));
        }
        let control = self.variant_key(ctx.table, &def.control, &path.key("control"));
        let ranges = match self.split(&def.split, &path.key("split"), ctx.table) {
            Some(ServeAction::Split(ranges)) => Some(ranges),
            _ => None,
        };
        if let (Some(c), Some(r)) = (control, &ranges) {
            if !r.iter().any(|(_, v)| *v == c) {
                self.error(
                    path.key("split"),
                    format!("the control `{}` has no weight in the split", def.control),
                );
            }
        }
        let mut cc = CondCompiler {
            segment_index: ctx.shared.segment_index,
            diagnostics: self.diagnostics,
            flag: Some(&flag_key),
            referenced: Vec::new(),
        };
        let before = cc.diagnostics.len();
        let audience: Cond = cc.compile_all(&def.audience, &path.key("audience"));
        let referenced = std::mem::take(&mut cc.referenced);
        self.errors += cc.diagnostics.len() - before;
        for slot in referenced {
            self.segment_used(slot, &path.key("audience"), ctx.shared, deps);
        }
        let unit = match &def.bucket_by {
            Some(list) => self.unit_chain(Some(list), &path.key("bucketBy")),
            None => ctx.unit.to_vec(),
        };
        let holdout = def.holdout.as_ref().and_then(|h| {
            let hp = path.key("holdout");
            if !is_valid_key(&h.name) {
                self.error(hp.key("name"), key_problem("holdout name", &h.name));
            }
            let to = self.percent(h.percentage, &hp.key("percentage"))?;
            Some(Gate {
                bucketer: Bucketer::new(Domain::Rollout, &holdout_salt(&h.name)),
                from: 0,
                to,
            })
        });
        let salt = experiment_salt(&def.id);
        let allocation = match (&def.layer, def.allocation) {
            (Some(layer), _) => {
                let lp = path.key("layer");
                if !is_valid_key(&layer.name) {
                    self.error(lp.key("name"), key_problem("layer name", &layer.name));
                }
                let from = self.percent(layer.from, &lp.key("from"));
                let to = self.percent(layer.to, &lp.key("to"));
                match (from, to) {
                    (Some(from), Some(to)) if valid_range(from, to) => Allocation::Gate(Gate {
                        bucketer: Bucketer::new(Domain::Rollout, &layer_salt(&layer.name)),
                        from,
                        to,
                    }),
                    (Some(_), Some(_)) => {
                        self.error(lp, "a layer slice needs `from` below `to`");
                        Allocation::All
                    }
                    _ => Allocation::All,
                }
            }
            (None, None) => Allocation::All,
            (None, Some(p)) => match self.percent(p, &path.key("allocation")) {
                Some(BUCKETS) | None => Allocation::All,
                Some(to) => Allocation::Gate(Gate {
                    bucketer: Bucketer::new(Domain::Rollout, &salt),
                    from: 0,
                    to,
                }),
            },
        };
        if self.errors > errors_before {
            return None;
        }
        Some(Experiment {
            id: def.id.as_str().into(),
            control: control?,
            has_audience: !def.audience.is_empty(),
            audience,
            unit: unit.into_boxed_slice(),
            opt_out: AttrPath::new(OPT_OUT_ATTRIBUTE),
            holdout,
            allocation,
            split: Bucketer::new(Domain::Split, &salt),
            paused: def.paused,
            ranges: ranges?,
        })
    }

    /// A percentage (0–100, step 0.001) in buckets, or an error at `path`.
    fn percent(&mut self, p: f64, path: &FieldPath) -> Option<u32> {
        let units = percent_to_units(p);
        if units.is_none() {
            self.error(
                path.clone(),
                format!("percentage {p} must be between 0 and 100 in steps of at most 0.001"),
            );
        }
        units
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
        let other_slot = shared.slots.get(other as usize).and_then(Option::as_ref)?;
        if other_slot.def.archived {
            self.error(
                path.key("flag"),
                format!(
                    "prerequisite flag `{}` is archived and never served",
                    def.flag
                ),
            );
        }
        // The other flag's own errors are reported on that flag.
        let table = other_slot.table.as_deref()?;
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

fn id_set(
    values: &[Value],
    path: &FieldPath,
    diagnostics: &mut Vec<Diagnostic>,
    flag: Option<&str>,
) -> StrSet {
    let mut set = StrSet::default();
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

/// A flag's `metadata` plus its `owner` (unless `metadata` sets one), as clients see it.
fn client_metadata(def: &FlagDef) -> Option<Box<serde_json::Map<String, Value>>> {
    let mut meta: serde_json::Map<String, Value> = def
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(owner) = &def.owner {
        meta.entry("owner")
            .or_insert_with(|| Value::from(owner.clone()));
    }
    (!meta.is_empty()).then(|| Box::new(meta))
}

/// A cycle that passes through `start`, if any (as `start, …, start`); `edges` gives a
/// node's successors.
fn cycle_through(start: u32, mut edges: impl FnMut(u32) -> Vec<u32>) -> Option<Vec<u32>> {
    let mut path = vec![start];
    let mut pending = vec![edges(start)];
    let mut seen: FxHashSet<u32> = FxHashSet::default();
    while let Some(out) = pending.last_mut() {
        let Some(child) = out.pop() else {
            path.pop();
            pending.pop();
            continue;
        };
        if child == start {
            path.push(start);
            return Some(path);
        }
        if seen.insert(child) {
            path.push(child);
            pending.push(edges(child));
        }
    }
    None
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
        let graph = |edges: &'static [&'static [u32]]| move |n: u32| edges[n as usize].to_vec();
        assert_eq!(
            cycle_through(1, graph(&[&[1], &[2], &[0]])),
            Some(vec![1, 2, 0, 1])
        );
        assert_eq!(cycle_through(0, graph(&[&[1], &[1], &[]])), None);
        assert_eq!(cycle_through(0, graph(&[&[0]])), Some(vec![0, 0]));
    }

    #[test]
    fn unit_formatting() {
        assert_eq!(format_units(100_000), "100");
        assert_eq!(format_units(99_500), "99.5");
        assert_eq!(format_units(33_333), "33.333");
    }
}
