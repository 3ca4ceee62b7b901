//! "Why does this unit see this?": an evaluation with its trace.
//!
//! [`Evaluator::explain`] walks a flag in the evaluation order (PRODUCT.md §4) and records
//! every step it checks until one decides: the kill switch, tenant overrides, whether the flag
//! is on, prerequisites (with their own explanations), individual targets, each rule with each
//! condition and the value the context had, and for rollouts and splits the unit, its bucket
//! and the threshold. The result fields come from [`Evaluator::evaluate`] itself, and each
//! condition's outcome from the matcher's own answer, so the trace explains what evaluation
//! does rather than a second opinion of it; a property test checks the trace's conclusion
//! against evaluation over the shared fixtures.
//!
//! This path allocates freely; the evaluation hot path does not go through it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::condition::ConditionTrace;
use crate::condition::{with_id_text, Env};
use crate::context::Context;
use crate::eval::{
    apply_probed, tenant_action, Evaluator, Flag, Serve, ServeAction, ServeProbe, Served,
    TenantAction, MAX_PREREQ_DEPTH,
};
use crate::experiment::{assign, Outcome};

/// An evaluation and the steps that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The flag.
    pub flag: String,
    /// The value served (`null` when the flag does not exist).
    pub value: Value,
    /// The variant served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The OpenFeature reason (`TARGETING_MATCH`, `SPLIT`, `DEFAULT`, …).
    pub reason: String,
    /// What decided beyond the reason (`RULE`, `TARGET`, `TENANT`, `KILL_SWITCH`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The rule that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The OpenFeature error code, when the evaluation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// What was checked, in order; the last step decided.
    pub steps: Vec<Step>,
}

/// One step of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "step",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Step {
    /// The flag is archived: not served.
    Archived,
    /// The kill switch.
    KillSwitch {
        /// On: the flag serves its off variant.
        on: bool,
    },
    /// Per-tenant overrides.
    Tenant {
        /// The attribute naming the tenant.
        attribute: String,
        /// Its value in the context.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<Value>,
        /// `off`, `on`, `variant` or `none` (no override for this tenant).
        outcome: String,
        /// The variant an override serves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// Whether the flag is on here.
    Enabled {
        /// On or off (after any tenant override).
        enabled: bool,
    },
    /// The environment serves one value to everybody.
    Static {
        /// That value's variant.
        variant: String,
    },
    /// A prerequisite flag.
    Prerequisite {
        /// The prerequisite flag.
        flag: String,
        /// The variants it must serve.
        required: Vec<String>,
        /// The variant it served.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        served: Option<String>,
        /// Whether it served one of them.
        passed: bool,
        /// How the prerequisite was evaluated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<Box<Explanation>>,
    },
    /// A list of individual targets.
    Targets {
        /// The attribute holding the id.
        attribute: String,
        /// Its value in the context.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        /// The variant the list serves.
        variant: String,
        /// Whether the id is listed.
        matched: bool,
    },
    /// The running experiment.
    Experiment {
        /// Its id.
        id: String,
        /// `opted out` (control, no exposure), `not in audience`, `no unit`, `held out`,
        /// `not allocated` (outside the allocation or layer slice), `paused` (control, no
        /// exposure) or `assigned`.
        outcome: String,
        /// The unit's value, when the draws needed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<Value>,
        /// The unit's holdout bucket, when there is a holdout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holdout_bucket: Option<u32>,
        /// The unit's allocation (or layer) bucket, when not everyone is allocated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allocation_bucket: Option<u32>,
        /// The variant assigned (control when opted out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// A rule.
    Rule {
        /// Its id.
        id: String,
        /// Whether all its conditions held.
        matched: bool,
        /// Each condition.
        conditions: Vec<ConditionTrace>,
        /// What it served, when it matched.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serve: Option<ServeTrace>,
    },
    /// The fallthrough (what is served when no rule matched).
    Fallthrough {
        /// What it served; absent when the flag has none (the default variant is served).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serve: Option<ServeTrace>,
    },
}

/// What a serve (a rule's or the fallthrough) did for this unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServeTrace {
    /// `served`, `outside rollout` (falls through) or `no unit` (the bucketing attribute is
    /// missing: an error).
    pub outcome: String,
    /// The variant served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The attributes bucketing looks at, first present wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_by: Vec<String>,
    /// The unit's value, when bucketing was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Value>,
    /// The percentage rollout, when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutTrace>,
    /// The split, when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitTrace>,
}

/// A percentage rollout for one unit: in when `bucket < threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RolloutTrace {
    /// The unit's bucket, `0 ≤ bucket < 100000`.
    pub bucket: u32,
    /// The rollout's threshold in buckets (percentage × 1000).
    pub threshold: u32,
    /// The rollout percentage.
    pub percentage: f64,
    /// Whether the unit is in.
    pub inside: bool,
}

/// A weighted split for one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SplitTrace {
    /// The unit's split bucket, `0 ≤ bucket < 100000`.
    pub bucket: u32,
    /// Each variant's bucket range `[from, to)`.
    pub ranges: Vec<SplitRange>,
    /// The variant whose range holds the bucket.
    pub variant: String,
}

/// One variant's share of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SplitRange {
    /// The variant.
    pub variant: String,
    /// First bucket.
    pub from: u32,
    /// One past the last bucket.
    pub to: u32,
}

impl Evaluator<'_> {
    /// Evaluates flag `key` for `ctx` and says why: see the [module docs](self).
    pub fn explain(&self, key: &str, ctx: &Context) -> Explanation {
        self.explain_at(key, ctx, 0)
    }

    fn explain_at(&self, key: &str, ctx: &Context, depth: usize) -> Explanation {
        let eval = self.evaluate(key, ctx);
        let mut explanation = Explanation {
            flag: key.to_owned(),
            value: eval.value.clone(),
            variant: eval.variant.map(str::to_owned),
            reason: eval.reason.as_str().to_owned(),
            decided_by: eval.detail.map(|d| d.tag().to_owned()),
            rule_id: eval.rule_id().map(str::to_owned),
            error_code: eval.error.as_ref().map(|e| e.code.as_str().to_owned()),
            error_message: eval.error.as_ref().map(|e| e.message.clone()),
            steps: Vec::new(),
        };
        if let Some(flag) = self.flag_by_key(key) {
            explanation.steps = self.steps(flag, ctx, depth);
        }
        explanation
    }

    fn steps(&self, flag: &Flag, ctx: &Context, depth: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        if flag.archived {
            steps.push(Step::Archived);
            return steps;
        }
        let Some(t) = self.targeting_of(flag) else {
            return steps;
        };
        let variant_key = |v: u16| {
            flag.variants
                .get(v as usize)
                .map_or_else(String::new, |(k, _)| k.to_string())
        };
        steps.push(Step::KillSwitch { on: t.killed });
        if t.killed {
            return steps;
        }
        let mut enabled = t.enabled;
        if !t.tenants.is_empty() {
            let tenant = ctx.lookup(&t.tenant_attr);
            let action = tenant.and_then(|id| tenant_action(&t.tenants, id));
            let (outcome, variant) = match action {
                Some(TenantAction::Off) => ("off", None),
                Some(TenantAction::On) => ("on", None),
                Some(TenantAction::Serve(v)) => ("variant", Some(variant_key(v))),
                None => ("none", None),
            };
            steps.push(Step::Tenant {
                attribute: t.tenant_attr.as_str().to_owned(),
                tenant: tenant.cloned(),
                outcome: outcome.to_owned(),
                variant,
            });
            match action {
                Some(TenantAction::Off | TenantAction::Serve(_)) => return steps,
                Some(TenantAction::On) => enabled = true,
                None => {}
            }
        }
        steps.push(Step::Enabled { enabled });
        if !enabled {
            return steps;
        }
        if let Some(v) = t.static_variant {
            steps.push(Step::Static {
                variant: variant_key(v),
            });
            return steps;
        }
        for prereq in t.prerequisites.iter() {
            let other = self.ruleset.flag(prereq.flag);
            let other_key = other.map_or_else(String::new, |f| f.key.to_string());
            let required: Vec<String> = prereq
                .variants
                .iter()
                .filter_map(|&v| other?.variants.get(v as usize).map(|(k, _)| k.to_string()))
                .collect();
            let (explanation, passed) = if depth < MAX_PREREQ_DEPTH {
                let e = self.explain_at(&other_key, ctx, depth + 1);
                let passed = e.error_code.is_none()
                    && e.variant.as_ref().is_some_and(|v| required.contains(v));
                (Some(Box::new(e)), passed)
            } else {
                (None, false)
            };
            steps.push(Step::Prerequisite {
                flag: other_key,
                served: explanation.as_ref().and_then(|e| e.variant.clone()),
                required,
                passed,
                explanation,
            });
            if !passed {
                return steps;
            }
        }
        for target in t.targets.iter() {
            let value = ctx.lookup(&target.attr);
            let matched =
                value.is_some_and(|id| with_id_text(id, |text| target.ids.contains(text)));
            steps.push(Step::Targets {
                attribute: target.attr.as_str().to_owned(),
                value: value.cloned(),
                variant: variant_key(target.variant),
                matched,
            });
            if matched {
                return steps;
            }
        }
        let env = Env {
            ctx,
            now: self.now,
            segments: &self.ruleset.segments,
            segment_depth: std::cell::Cell::new(0),
        };
        let names = self.ruleset.segment_names();
        for rule in t.rules.iter() {
            let trace = rule.cond.trace(&env, &names);
            let matched = trace.holds;
            let serve = matched.then(|| serve_trace(flag, &rule.serve, ctx));
            let decided = serve
                .as_ref()
                .is_some_and(|s| s.outcome != "outside rollout");
            steps.push(Step::Rule {
                id: rule.id.to_string(),
                matched,
                // A rule's conditions are one `all` group; its members are the conditions.
                conditions: trace.children,
                serve,
            });
            if decided {
                return steps;
            }
        }
        if let Some(exp) = &t.experiment {
            let mut probe = ExperimentProbe::default();
            let outcome = assign(exp, &env, &mut probe);
            let (text, variant) = match outcome {
                Outcome::OptedOut => ("opted out", Some(variant_key(exp.control))),
                Outcome::Paused => ("paused", Some(variant_key(exp.control))),
                Outcome::NotInAudience => ("not in audience", None),
                Outcome::NoUnit => ("no unit", None),
                Outcome::HeldOut(_) => ("held out", None),
                Outcome::NotAllocated(_) => ("not allocated", None),
                Outcome::Assigned { variant, .. } => ("assigned", Some(variant_key(variant))),
            };
            steps.push(Step::Experiment {
                id: exp.id.to_string(),
                outcome: text.to_owned(),
                unit: probe.unit,
                holdout_bucket: probe.holdout,
                allocation_bucket: probe.allocation,
                variant,
            });
            if matches!(
                outcome,
                Outcome::OptedOut | Outcome::Paused | Outcome::Assigned { .. }
            ) {
                return steps;
            }
        }
        steps.push(Step::Fallthrough {
            serve: t.fallthrough.as_ref().map(|s| serve_trace(flag, s, ctx)),
        });
        steps
    }
}

/// What an experiment's draws looked at.
#[derive(Default)]
struct ExperimentProbe {
    unit: Option<Value>,
    holdout: Option<u32>,
    allocation: Option<u32>,
}

impl crate::experiment::Probe for ExperimentProbe {
    fn unit(&mut self, unit: Option<&Value>) {
        self.unit = unit.cloned();
    }
    fn holdout(&mut self, bucket: u32) {
        self.holdout = Some(bucket);
    }
    fn allocation(&mut self, bucket: u32) {
        self.allocation = Some(bucket);
    }
}

/// What [`apply_probed`] saw: the unit it looked up and the buckets it computed.
#[derive(Default)]
struct Probe {
    looked_up: bool,
    unit: Option<Value>,
    rollout: Option<(u32, u32)>,
    split: Option<u32>,
}

impl ServeProbe for Probe {
    fn unit(&mut self, unit: Option<&Value>) {
        self.looked_up = true;
        self.unit = unit.cloned();
    }
    fn rollout(&mut self, bucket: u32, threshold: u32) {
        self.rollout = Some((bucket, threshold));
    }
    fn split(&mut self, bucket: u32) {
        self.split = Some(bucket);
    }
}

/// What `serve` does for `ctx`: the evaluation's own `apply`, with what it looked at recorded.
fn serve_trace(flag: &Flag, serve: &Serve, ctx: &Context) -> ServeTrace {
    let key = |v: u16| flag.variants.get(v as usize).map(|(k, _)| k.to_string());
    let mut probe = Probe::default();
    let served = apply_probed(serve, ctx, &mut probe);
    let (outcome, variant) = match served {
        Served::Hit { variant, .. } => ("served", key(variant)),
        Served::Miss => ("outside rollout", None),
        Served::NoUnit => ("no unit", None),
    };
    let rollout = if serve.percentage == Some(0) {
        // A 0 % rollout serves nobody without looking at the unit.
        Some(RolloutTrace {
            bucket: 0,
            threshold: 0,
            percentage: 0.0,
            inside: false,
        })
    } else {
        probe.rollout.map(|(bucket, threshold)| RolloutTrace {
            bucket,
            threshold,
            percentage: f64::from(threshold) / 1000.0,
            inside: bucket < threshold,
        })
    };
    let split = probe.split.zip(match &serve.action {
        ServeAction::Split(ranges) => Some(ranges),
        ServeAction::Variant(_) => None,
    });
    let split = split.map(|(bucket, ranges)| {
        let mut from = 0;
        let ranges = ranges
            .iter()
            .map(|(end, v)| {
                let range = SplitRange {
                    variant: key(*v).unwrap_or_default(),
                    from,
                    to: *end,
                };
                from = *end;
                range
            })
            .collect();
        SplitTrace {
            bucket,
            ranges,
            variant: variant.clone().unwrap_or_default(),
        }
    });
    ServeTrace {
        outcome: outcome.to_owned(),
        variant,
        bucket_by: if probe.looked_up {
            serve.unit.iter().map(|a| a.as_str().to_owned()).collect()
        } else {
            Vec::new()
        },
        unit: probe.unit,
        rollout,
        split,
    }
}
