//! A running experiment, compiled: who enters it and which variant each unit gets.
//!
//! The draws, in order, each with bucketing v1 in its own salt (docs/bucketing.md §
//! Experiments) so that none predicts another:
//!
//! 1. opted out (`experimentOptOut: true` in the context): control, not in the experiment;
//! 2. the audience conditions must hold;
//! 3. the unit (first of the bucketing attributes present) must exist;
//! 4. holdout: rollout bucket under salt `holdout:<name>` below the holdout's percentage →
//!    out (the same units for every experiment naming that holdout);
//! 5. allocation: with a layer, the rollout bucket under salt `layer:<name>` must fall in the
//!    experiment's slice (slices of one layer never overlap, so a unit is in at most one of its
//!    experiments); without one, the rollout bucket under salt `experiment:<id>` must be below
//!    the allocation;
//! 6. the variant: split bucket under salt `experiment:<id>` over the weights — or, while the
//!    experiment is paused, the control, unrecorded.
//!
//! It runs after the flag's rules, in place of the fallthrough: targets and rules (staff get
//! the new thing, enterprise never does) keep deciding for the units they match, and the
//! experiment takes the rest. Units it does not assign get the fallthrough.

use serde_json::Value;

use crate::bucket::{Bucketer, BUCKETS};
use crate::condition::{Cond, Env};
use crate::context::{AttrPath, Context};

/// The context attribute with which a unit opts out of experiments.
pub const OPT_OUT_ATTRIBUTE: &str = "experimentOptOut";

/// A compiled [`ExperimentDef`](crate::document::ExperimentDef).
#[derive(Debug, Clone)]
pub(crate) struct Experiment {
    pub id: Box<str>,
    pub control: u16,
    pub audience: Cond,
    pub has_audience: bool,
    pub unit: Box<[AttrPath]>,
    pub opt_out: AttrPath,
    pub holdout: Option<Gate>,
    pub allocation: Allocation,
    pub split: Bucketer,
    /// Paused: assigned units get the control, unrecorded.
    pub paused: bool,
    /// Cumulative upper bounds (exclusive, in buckets) and variants, ascending.
    pub ranges: Box<[(u32, u16)]>,
}

impl Experiment {
    /// The unit `ctx` is bucketed by: the first of the bucketing attributes present.
    pub(crate) fn unit_of<'c>(&self, ctx: &'c Context) -> Option<&'c Value> {
        self.unit
            .iter()
            .find_map(|attr| ctx.lookup(attr).filter(|v| crate::eval::is_unit(v)))
    }
}

/// A rollout-domain draw: in when `from ≤ bucket < to`.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub bucketer: Bucketer,
    pub from: u32,
    pub to: u32,
}

impl Gate {
    fn draw(&self, unit: &Value) -> (u32, bool) {
        let b = crate::eval::bucket_of(&self.bucketer, unit);
        (b, self.from <= b && b < self.to)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Allocation {
    /// Everyone in the audience (100 %).
    All,
    /// The experiment's own percentage, or its slice of a layer.
    Gate(Gate),
}

/// What an experiment did with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The unit opted out: it gets control and is not exposed.
    OptedOut,
    /// The audience conditions do not hold.
    NotInAudience,
    /// None of the bucketing attributes is in the context.
    NoUnit,
    /// The holdout took it (bucket).
    HeldOut(u32),
    /// Outside the allocation or the layer slice (bucket).
    NotAllocated(u32),
    /// In the experiment with this variant (split bucket).
    Assigned { variant: u16, bucket: u32 },
    /// Would be in it, but it is paused: control, not recorded.
    Paused,
}

/// What [`assign`] looked at, for explanations; evaluation passes `()`.
pub(crate) trait Probe {
    fn unit(&mut self, _unit: Option<&Value>) {}
    fn holdout(&mut self, _bucket: u32) {}
    fn allocation(&mut self, _bucket: u32) {}
}

impl Probe for () {}

/// Runs `exp`'s draws for the context in `env` (see the module docs).
pub(crate) fn assign(exp: &Experiment, env: &Env<'_>, probe: &mut impl Probe) -> Outcome {
    let ctx: &Context = env.ctx;
    if ctx
        .lookup(&exp.opt_out)
        .is_some_and(|v| *v == Value::Bool(true))
    {
        return Outcome::OptedOut;
    }
    if exp.has_audience && !exp.audience.matches(env) {
        return Outcome::NotInAudience;
    }
    let unit = exp.unit_of(ctx);
    probe.unit(unit);
    let Some(unit) = unit else {
        return Outcome::NoUnit;
    };
    if let Some(holdout) = &exp.holdout {
        let (b, held) = holdout.draw(unit);
        probe.holdout(b);
        if held {
            return Outcome::HeldOut(b);
        }
    }
    if let Allocation::Gate(gate) = &exp.allocation {
        let (b, inside) = gate.draw(unit);
        probe.allocation(b);
        if !inside {
            return Outcome::NotAllocated(b);
        }
    }
    if exp.paused {
        return Outcome::Paused;
    }
    let b = crate::eval::bucket_of(&exp.split, unit);
    let variant = exp
        .ranges
        .iter()
        .find(|(end, _)| b < *end)
        .or(exp.ranges.last())
        .map_or(exp.control, |(_, v)| *v);
    Outcome::Assigned { variant, bucket: b }
}

/// The salt of an experiment's own allocation and split draws.
pub(crate) fn experiment_salt(id: &str) -> String {
    format!("experiment:{id}")
}

/// The salt of a layer's draw.
pub(crate) fn layer_salt(name: &str) -> String {
    format!("layer:{name}")
}

/// The salt of a holdout's draw.
pub(crate) fn holdout_salt(name: &str) -> String {
    format!("holdout:{name}")
}

/// Whether `[from, to)` (buckets) is a non-empty range within `0..=BUCKETS`.
pub(crate) fn valid_range(from: u32, to: u32) -> bool {
    from < to && to <= BUCKETS
}
