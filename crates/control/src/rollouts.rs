//! Progressive rollouts: a flag's fallthrough served to a growing share of units, stage by
//! stage (default 5 → 25 → 50 → 100 %), each stage held for a minimum time and gated on the
//! health of the units served the new variant.
//!
//! Every step is a control-layer operation: under the write lock the rollout is read again
//! (a step computed from readings of an older version is dropped — another replica or a
//! person acted first), the flag's percentage is changed as a person's change would be
//! (validated, versioned, audited as `rollout:<id>`, naming who set it up), and the rollout's
//! record (stage, status, history) is written with its own audit entry and webhook event, all
//! in one transaction. So two replicas never both advance a stage, and a rollback is never
//! half applied.
//!
//! Readings are taken outside the lock (they query the event tables, Prometheus, a health
//! URL) and kept in `gate_readings`, not audited: a reading changes nothing that is served.
//! A stage's gates read the units it exposed: OFREP evaluations and SDK exposures of the flag
//! while the rollout runs are recorded under `rollout:<id>:<stage>` (see
//! [`Control::rollout_exposures`]), and a unit's metric events count from its exposure at
//! that stage.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_api_types::rollouts::{
    Duration, GateReading, GateSpec, OnRed, RolloutPlan, StageEvent, StageSpec,
};
use switchyard_storage::{
    Aggregate, Arm, Expect, ItemKind, ItemRecord, SummaryMetric, SummaryQuery, ValuesQuery,
};

use crate::draft::{new_id, read_item};
use crate::flags::{audit, change_in, require_environment, require_flag};
use crate::tokens::Actor;
use crate::{Control, ControlError, FlagChange, Result, Written};

/// The stages of a plan that names none.
pub const DEFAULT_STAGES: [f64; 4] = [5.0, 25.0, 50.0, 100.0];
/// The hold of a stage that names none.
pub const DEFAULT_HOLD_MS: i64 = 600_000;
/// Units or values per arm a gate needs at a stage by default.
pub const DEFAULT_MIN_SAMPLE: u64 = 100;
/// The level of the always-valid intervals a gate is red on (gates are read at every check,
/// so a fixed-horizon test would be red by chance far more often than 5 %).
pub const GATE_ALPHA: f64 = 0.05;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Advancing on green.
    Running,
    /// Green, waiting for a person to approve the next stage.
    AwaitingApproval,
    /// Held by a person (the flag keeps its percentage; gates are not acted on).
    Paused,
    /// The last stage baked green.
    Completed,
    /// A gate was red; the flag was set back.
    RolledBack,
    /// Stopped by a person; the flag was set to 0 %.
    Aborted,
}

impl RolloutStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::AwaitingApproval => "awaiting_approval",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::RolledBack => "rolled_back",
            RolloutStatus::Aborted => "aborted",
        }
    }

    /// Whether it still owns its flag's percentage.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutStatus::Running | RolloutStatus::AwaitingApproval | RolloutStatus::Paused
        )
    }
}

/// A rollout's stored state: its plan (normalized: id, variant, stages with their holds in
/// seconds and the minimum sample all explicit) and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The plan.
    pub plan: RolloutPlan,
    /// Where it is.
    pub status: RolloutStatus,
    /// The current stage.
    pub stage: usize,
    /// The percentage the flag serves because of it.
    pub percentage: f64,
    /// When the current stage started (or resumed), unix ms.
    pub stage_started_at_ms: i64,
    /// The last stage whose gates were green when it was left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy: Option<usize>,
    /// Every step, oldest first.
    pub history: Vec<StageEvent>,
    /// Who started it.
    pub created_by: String,
    /// Their name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
}

impl RolloutState {
    /// The id.
    pub fn id(&self) -> &str {
        self.plan.id.as_deref().unwrap_or_default()
    }

    /// The stages.
    pub fn stages(&self) -> &[StageSpec] {
        self.plan.stages.as_deref().unwrap_or_default()
    }

    /// The variant rolled out.
    pub fn variant(&self) -> &str {
        self.plan.variant.as_deref().unwrap_or_default()
    }

    /// The minimum hold of stage `i`.
    pub fn hold_ms(&self, i: usize) -> i64 {
        self.stages()
            .get(i)
            .and_then(|s| s.hold.as_ref())
            .and_then(|h| h.to_ms().ok())
            .unwrap_or(DEFAULT_HOLD_MS)
    }

    /// The per-arm minimum sample.
    pub fn min_sample(&self) -> u64 {
        self.plan.min_sample.unwrap_or(DEFAULT_MIN_SAMPLE)
    }

    /// Where the current stage's exposures are recorded.
    pub fn exposure_key(&self) -> String {
        format!("rollout:{}:{}", self.id(), self.stage)
    }

    /// The actor of the rollout's own steps.
    fn actor(&self) -> Actor {
        let by = self.created_by_name.as_deref().unwrap_or(&self.created_by);
        Actor {
            id: format!("rollout:{}", self.id()),
            name: Some(format!("progressive rollout {}, set up by {by}", self.id())),
        }
    }
}

/// A rollout with its bookkeeping and latest readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The state.
    pub state: RolloutState,
    /// Version.
    pub version: i64,
    /// The latest gate readings.
    pub readings: Vec<GateReading>,
    /// When they were taken, unix ms.
    pub readings_at_ms: Option<i64>,
}

/// What a person does to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    /// Hold it where it is.
    Pause,
    /// Let it advance again (the stage's hold starts over).
    Resume,
    /// Enter the next stage now (approving it when it waits for approval), or complete it
    /// from the last.
    Advance,
    /// Stop it and serve the new variant to nobody.
    Abort,
}

/// Where the server's probes go: a Prometheus server and health URLs (the control layer
/// does no HTTP itself).
pub trait Probe: Sync {
    /// The value of an instant PromQL `query` at `url`: `None` when it returned no sample.
    fn prometheus(
        &self,
        url: &str,
        query: &str,
    ) -> impl Future<Output = std::result::Result<Option<f64>, String>> + Send;
    /// A health check: `Ok` on a 2xx answer.
    fn http(&self, url: &str) -> impl Future<Output = std::result::Result<(), String>> + Send;
}

/// What an automatic check did to one rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStep {
    /// The rollout.
    pub id: String,
    /// `advanced`, `awaiting_approval`, `completed` or `rolled_back`.
    pub action: &'static str,
    /// The percentage served after it.
    pub percentage: f64,
    /// Why.
    pub note: String,
}

/// The flag → exposure key map of the rollouts running in each environment.
pub(crate) type ExposureKeys = HashMap<String, HashMap<String, Arc<str>>>;

fn from_record(r: &ItemRecord) -> Result<(RolloutState, i64)> {
    Ok((read_item(r)?, r.version))
}

fn bad(field: &str, message: impl Into<String>) -> ControlError {
    ControlError::bad_request(Some(field), message)
}

fn duration_ms(d: &Duration, field: &str) -> Result<i64> {
    let ms = d.to_ms().map_err(|m| bad(field, m))?;
    if ms < 1000 {
        return Err(bad(field, "must be at least one second"));
    }
    Ok(ms)
}

/// Checks a plan and makes its defaults explicit.
fn normalize(mut plan: RolloutPlan) -> Result<RolloutPlan> {
    match &plan.id {
        Some(id) if !switchyard_engine::is_valid_key(id) => {
            return Err(bad("id", format!("invalid rollout id `{id}`")))
        }
        Some(_) => {}
        None => {
            plan.id = Some(new_id("ro_")?);
        }
    }
    let hold = match &plan.hold {
        Some(h) => duration_ms(h, "hold")?,
        None => DEFAULT_HOLD_MS,
    };
    plan.hold = Some(Duration::Seconds((hold / 1000) as u64));
    let mut stages = plan.stages.take().unwrap_or_else(|| {
        DEFAULT_STAGES
            .iter()
            .map(|&percentage| StageSpec {
                percentage,
                hold: None,
                approval: false,
            })
            .collect()
    });
    if stages.is_empty() {
        return Err(bad("stages", "a plan needs at least one stage"));
    }
    let mut previous = 0.0;
    for (i, stage) in stages.iter_mut().enumerate() {
        let field = format!("stages[{i}].percentage");
        if !(stage.percentage > 0.0 && stage.percentage <= 100.0) {
            return Err(bad(&field, "a stage serves more than 0 and at most 100 %"));
        }
        if stage.percentage <= previous {
            return Err(bad(
                &field,
                format!(
                    "stages must grow: {} % does not follow {previous} %",
                    stage.percentage
                ),
            ));
        }
        previous = stage.percentage;
        let ms = match &stage.hold {
            Some(h) => duration_ms(h, &format!("stages[{i}].hold"))?,
            None => hold,
        };
        stage.hold = Some(Duration::Seconds((ms / 1000) as u64));
    }
    plan.stages = Some(stages);
    match plan.min_sample {
        Some(0) => return Err(bad("minSample", "must be at least 1")),
        Some(_) => {}
        None => plan.min_sample = Some(DEFAULT_MIN_SAMPLE),
    }
    for (i, gate) in plan.gates.iter().enumerate() {
        check_gate(gate, &format!("gates[{i}]"))?;
    }
    Ok(plan)
}

fn check_url(url: &str, field: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("`{url}` is not an http:// or https:// URL"),
        ))
    }
}

fn check_gate(gate: &GateSpec, at: &str) -> Result<()> {
    let one_limit = |max: Option<f64>, margin: Option<f64>| match (max, margin) {
        (Some(_), Some(_)) | (None, None) => Err(bad(
            at,
            "give exactly one of `max` (an absolute limit) or `margin` (over the baseline)",
        )),
        _ => Ok(()),
    };
    match gate {
        GateSpec::ErrorRate { event, max, margin } => {
            if event.trim().is_empty() {
                return Err(bad(&format!("{at}.event"), "name the error event"));
            }
            one_limit(*max, *margin)?;
            for (name, v) in [("max", max), ("margin", margin)] {
                if let Some(v) = v {
                    if !(0.0..=1.0).contains(v) {
                        return Err(bad(
                            &format!("{at}.{name}"),
                            format!("an error rate is between 0 and 1, not {v}"),
                        ));
                    }
                }
            }
        }
        GateSpec::Latency {
            event,
            percentile,
            max,
            margin,
            margin_ms,
        } => {
            if event.trim().is_empty() {
                return Err(bad(&format!("{at}.event"), "name the latency event"));
            }
            if [max, margin, margin_ms]
                .iter()
                .filter(|v| v.is_some())
                .count()
                != 1
            {
                return Err(bad(
                    at,
                    "give exactly one of `max` (an absolute limit), `margin` (a ratio over the baseline) or `marginMs` (the baseline plus so many ms)",
                ));
            }
            if let Some(p) = percentile {
                if !(50.0..=99.9).contains(p) {
                    return Err(bad(
                        &format!("{at}.percentile"),
                        format!("a percentile between 50 and 99.9, not {p}"),
                    ));
                }
            }
            if [max, margin, margin_ms]
                .iter()
                .any(|v| matches!(v, Some(m) if *m < 0.0))
            {
                return Err(bad(at, "limits are not negative"));
            }
        }
        GateSpec::Prometheus {
            url,
            query,
            max,
            min,
        } => {
            check_url(url, &format!("{at}.url"))?;
            if query.trim().is_empty() {
                return Err(bad(&format!("{at}.query"), "give the PromQL query"));
            }
            if max.is_none() && min.is_none() {
                return Err(bad(at, "give `max`, `min` or both"));
            }
        }
        GateSpec::Http { url, failures } => {
            check_url(url, &format!("{at}.url"))?;
            if *failures == Some(0) {
                return Err(bad(&format!("{at}.failures"), "must be at least 1"));
            }
        }
    }
    Ok(())
}

/// The variant a rollout of `def`'s fallthrough in `environment` serves.
fn rolled_variant(
    def: &switchyard_engine::FlagDef,
    environment: &str,
    asked: Option<&str>,
) -> Result<String> {
    if let Some(v) = asked {
        return Ok(v.to_owned());
    }
    let serve = def
        .environments
        .get(environment)
        .and_then(|t| t.fallthrough.as_ref())
        .or(def.targeting.fallthrough.as_ref());
    match serve {
        Some(s) if s.split.is_some() => Err(bad(
            "variant",
            "the fallthrough serves a split: say which variant to roll out",
        )),
        Some(s) if s.variant.is_some() => Ok(s.variant.clone().unwrap_or_default()),
        _ => Ok("on".to_owned()),
    }
}

/// A transition's effect, decided from the state read under the lock.
struct Transition {
    /// The history action (`advanced`, …); the audit action is `rollout.<action>`.
    action: &'static str,
    /// The webhook event.
    event: &'static str,
    /// The new percentage, when the flag changes.
    percentage: Option<f64>,
    /// A note for the history and the audit entry.
    note: Option<String>,
}

impl Control {
    /// Starts a rollout: checks the plan, sets the flag's fallthrough to the first stage's
    /// percentage of the variant and records the rollout, in one transaction.
    pub async fn start_rollout(
        &self,
        plan: RolloutPlan,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Rollout>> {
        self.ensure_flags_writable()?;
        let mut plan = normalize(plan)?;
        let id = plan.id.clone().unwrap_or_default();
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                require_environment(&draft.snap, &plan.environment)?;
                crate::requests::refuse_unapproved(
                    &draft.snap,
                    [plan.environment.as_str()],
                    actor,
                    "a progressive rollout",
                )?;
                let flag = require_flag(&draft.snap, &plan.flag)?;
                if flag.meta.archived {
                    return Err(ControlError::Refused {
                        message: format!("flag `{}` is archived", plan.flag),
                    });
                }
                if let Some(exp) =
                    crate::running_experiment(&draft.snap, &plan.environment, &plan.flag)
                {
                    return Err(ControlError::Refused {
                        message: format!(
                            "experiment `{exp}` runs on `{}` in {}: its split decides who gets which variant; complete or cancel it first",
                            plan.flag, plan.environment
                        ),
                    });
                }
                let (def, _) = switchyard_engine::normalize(flag.definition);
                let variant =
                    rolled_variant(&def, &plan.environment, plan.variant.as_deref())?;
                plan.variant = Some(variant.clone());
                for record in draft.tx.items(ItemKind::Rollout).await? {
                    let (other, _) = from_record(&record)?;
                    if record.id == id {
                        return Err(ControlError::AlreadyExists {
                            what: format!("rollout `{id}`"),
                        });
                    }
                    if other.status.is_active()
                        && other.plan.flag == plan.flag
                        && other.plan.environment == plan.environment
                    {
                        return Err(ControlError::Refused {
                            message: format!(
                                "rollout `{}` already rolls `{}` out in {} ({}); abort it first",
                                other.id(),
                                plan.flag,
                                plan.environment,
                                other.status.as_str()
                            ),
                        });
                    }
                }
                let first = plan.stages.as_ref().map_or(0.0, |s| s[0].percentage);
                let now = draft.tx.now_ms();
                let state = RolloutState {
                    status: RolloutStatus::Running,
                    stage: 0,
                    percentage: first,
                    stage_started_at_ms: now,
                    last_healthy: None,
                    history: vec![StageEvent {
                        at: crate::rfc3339(now),
                        action: "started".into(),
                        stage: 0,
                        percentage: first,
                        actor: actor.id.clone(),
                        note: reason.clone(),
                    }],
                    created_by: actor.id.clone(),
                    created_by_name: actor.name.clone(),
                    plan: plan.clone(),
                };
                let env = plan.environment.clone();
                change_in(
                    &mut draft,
                    &plan.flag,
                    FlagChange::Rollout {
                        environment: Some(env.clone()),
                        percentage: first,
                        variant: Some(variant),
                    },
                    None,
                    audit(
                        actor,
                        "flag.rollout",
                        Some(&env),
                        Some(format!("rollout {id} started at {first} %")),
                    ),
                )
                .await?;
                let info = audit(actor, "rollout.start", Some(&env), reason);
                let record = draft
                    .put_item(ItemKind::Rollout, &id, &state, Expect::Absent, &info)
                    .await?;
                draft
                    .emit(
                        "rollout.started",
                        "rollout",
                        &id,
                        &info,
                        json!({"flag": plan.flag, "percentage": first, "stage": 0}),
                    )
                    .await?;
                let value = unread(&record)?;
                draft.finish(value, true).await
            })
            .await?;
        self.refresh_after_write().await;
        Ok(written)
    }

    /// Every rollout, newest first, with its latest readings.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        let store = self.require_store()?;
        let mut out = Vec::new();
        for record in store.list_items(ItemKind::Rollout).await? {
            let (state, version) = from_record(&record)?;
            let (readings, at) = self
                .stored_readings(&format!("rollout:{}", record.id))
                .await?;
            out.push(Rollout {
                state,
                version,
                readings,
                readings_at_ms: at,
            });
        }
        out.sort_by(|a, b| b.state.history[0].at.cmp(&a.state.history[0].at));
        Ok(out)
    }

    /// The rollout `id`.
    pub async fn rollout(&self, id: &str) -> Result<Rollout> {
        let Some(record) = self
            .require_store()?
            .get_item(ItemKind::Rollout, id)
            .await?
        else {
            return Err(ControlError::not_found(format!("rollout `{id}`")));
        };
        let (state, version) = from_record(&record)?;
        let (readings, at) = self.stored_readings(&format!("rollout:{id}")).await?;
        Ok(Rollout {
            state,
            version,
            readings,
            readings_at_ms: at,
        })
    }

    pub(crate) async fn stored_readings(
        &self,
        subject: &str,
    ) -> Result<(Vec<GateReading>, Option<i64>)> {
        Ok(match self.require_store()?.readings(subject).await? {
            Some((text, at)) => (serde_json::from_str(&text).unwrap_or_default(), Some(at)),
            None => (Vec::new(), None),
        })
    }

    /// A person's pause, resume, advance (approval) or abort.
    pub async fn rollout_action(
        &self,
        id: &str,
        action: RolloutAction,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Rollout>> {
        let refused = |state: &RolloutState, what: &str| ControlError::Refused {
            message: format!(
                "rollout `{id}` is {}; it cannot be {what}",
                state.status.as_str()
            ),
        };
        let written = self
            .transition(id, None, actor, reason, |state, _now| {
                use RolloutStatus::*;
                Ok(Some(match (action, state.status) {
                    (RolloutAction::Pause, Running | AwaitingApproval) => {
                        state.status = Paused;
                        Transition {
                            action: "paused",
                            event: "rollout.paused",
                            percentage: None,
                            note: None,
                        }
                    }
                    (RolloutAction::Pause, _) => return Err(refused(state, "paused")),
                    (RolloutAction::Resume, Paused) => {
                        state.status = Running;
                        Transition {
                            action: "resumed",
                            event: "rollout.resumed",
                            percentage: None,
                            note: Some("the stage's hold starts over".into()),
                        }
                    }
                    (RolloutAction::Resume, _) => return Err(refused(state, "resumed")),
                    (RolloutAction::Advance, Running | AwaitingApproval | Paused) => {
                        next_stage(state, true)
                    }
                    (RolloutAction::Advance, _) => return Err(refused(state, "advanced")),
                    (RolloutAction::Abort, s) if s.is_active() => {
                        state.status = Aborted;
                        Transition {
                            action: "aborted",
                            event: "rollout.aborted",
                            percentage: Some(0.0),
                            note: None,
                        }
                    }
                    (RolloutAction::Abort, _) => return Err(refused(state, "aborted")),
                }))
            })
            .await?;
        self.refresh_after_write().await;
        written.ok_or_else(|| ControlError::Internal("a rollout transition was lost".into()))
    }

    /// Reads every running rollout's gates and takes the step they call for: rolls back on
    /// red, advances (or waits for approval, or completes) on green once the stage's hold is
    /// over, holds otherwise. Returns what it did.
    pub async fn check_rollouts<P: Probe>(
        &self,
        now_ms: i64,
        probe: &P,
    ) -> Result<Vec<RolloutStep>> {
        // One listing serves both the exposure keys and the checks; readings are read for the
        // rollouts being checked only (finished ones accumulate).
        let mut states = Vec::new();
        for record in self.require_store()?.list_items(ItemKind::Rollout).await? {
            states.push(from_record(&record)?);
        }
        self.publish_exposures(states.iter().map(|(s, _)| s));
        let mut steps = Vec::new();
        for (state, version) in &states {
            if !matches!(
                state.status,
                RolloutStatus::Running | RolloutStatus::AwaitingApproval
            ) {
                continue;
            }
            let id = state.id().to_owned();
            let (previous, _) = self.stored_readings(&format!("rollout:{id}")).await?;
            let readings = self.read_gates(state, now_ms, probe, &previous).await;
            let text = serde_json::to_string(&readings)
                .map_err(|e| ControlError::Internal(format!("readings do not serialize: {e}")))?;
            if let Err(err) = self
                .require_store()?
                .put_readings(&format!("rollout:{id}"), &text, now_ms)
                .await
            {
                // The step below does not need them stored; the other rollouts still get checked.
                tracing::warn!(rollout = %id, error = %err, "gate readings were not stored");
            }
            let red: Vec<&GateReading> = readings.iter().filter(|g| g.status == "red").collect();
            let all_green = readings.iter().all(|g| g.status == "green");
            let held = now_ms >= state.stage_started_at_ms + state.hold_ms(state.stage);
            let decided: Option<fn(&mut RolloutState, String) -> Transition> = if !red.is_empty() {
                Some(roll_back)
            } else if state.status == RolloutStatus::Running && all_green && held {
                Some(|s, _| next_stage(s, false))
            } else {
                None
            };
            let Some(decide) = decided else { continue };
            let note = if red.is_empty() {
                summary(&readings)
            } else {
                red.iter()
                    .map(|g| format!("gate {} ({}) red: {}", g.gate, g.kind, g.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let actor = state.actor();
            let step = self
                .transition(&id, Some(*version), &actor, None, |s, _now| {
                    // The history says why: the step's own note and the readings behind it.
                    let mut t = decide(s, note.clone());
                    t.note = Some(match t.note.take() {
                        Some(n) if n != note => format!("{n}: {note}"),
                        _ => note.clone(),
                    });
                    Ok(Some(t))
                })
                .await;
            match step {
                Ok(Some(written)) if written.changed => {
                    let s = &written.value.state;
                    let last = s.history.last();
                    let action = match last.map(|h| h.action.as_str()) {
                        Some("rolled_back") => "rolled_back",
                        Some("completed") => "completed",
                        Some("awaiting_approval") => "awaiting_approval",
                        _ => "advanced",
                    };
                    if action == "rolled_back" {
                        tracing::warn!(rollout = %id, flag = %s.plan.flag, environment = %s.plan.environment, percentage = s.percentage, reason = %note, "a progressive rollout was rolled back");
                    } else {
                        tracing::info!(rollout = %id, action, percentage = s.percentage, "a progressive rollout moved on");
                    }
                    steps.push(RolloutStep {
                        id: id.clone(),
                        action,
                        percentage: s.percentage,
                        note: note.clone(),
                    });
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(rollout = %id, error = %err, "a rollout step could not be taken")
                }
            }
        }
        if !steps.is_empty() {
            self.refresh_after_write().await;
        }
        Ok(steps)
    }

    /// Runs `decide` on the rollout `id` under the write lock and writes what it decided:
    /// the flag's new percentage, the rollout's record, the audit entries and the webhook
    /// event, in one transaction. With `expect` set, a rollout whose version moved meanwhile
    /// is left alone (`Ok(None)`).
    async fn transition(
        &self,
        id: &str,
        expect: Option<i64>,
        actor: &Actor,
        reason: Option<String>,
        decide: impl FnOnce(&mut RolloutState, i64) -> Result<Option<Transition>>,
    ) -> Result<Option<Written<Rollout>>> {
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                let Some(record) = draft.tx.item(ItemKind::Rollout, id).await? else {
                    return Err(ControlError::not_found(format!("rollout `{id}`")));
                };
                let (mut state, version) = from_record(&record)?;
                if expect.is_some_and(|v| v != version) {
                    return Ok(None);
                }
                let now = draft.tx.now_ms();
                let Some(t) = decide(&mut state, now)? else {
                    return Ok(None);
                };
                let env = state.plan.environment.clone();
                let note = match (&t.note, &reason) {
                    (Some(n), Some(r)) => Some(format!("{r} ({n})")),
                    (n, r) => r.clone().or_else(|| n.clone()),
                };
                let flag_gone = draft.snap.flag(&state.plan.flag).is_none();
                let note = match (flag_gone, note) {
                    (true, n) => Some(format!(
                        "{}flag `{}` no longer exists; nothing to change",
                        n.map(|n| format!("{n}; ")).unwrap_or_default(),
                        state.plan.flag
                    )),
                    (false, n) => n,
                };
                if let Some(p) = t.percentage.filter(|_| !flag_gone) {
                    state.percentage = p;
                    change_in(
                        &mut draft,
                        &state.plan.flag,
                        FlagChange::Rollout {
                            environment: Some(env.clone()),
                            percentage: p,
                            variant: Some(state.variant().to_owned()),
                        },
                        None,
                        audit(
                            actor,
                            "flag.rollout",
                            Some(&env),
                            Some(format!(
                                "rollout {id} {}: {p} %",
                                t.action.replace('_', " ")
                            )),
                        ),
                    )
                    .await?;
                }
                if matches!(t.action, "resumed" | "advanced" | "approved") {
                    state.stage_started_at_ms = now;
                }
                state.history.push(StageEvent {
                    at: crate::rfc3339(now),
                    action: t.action.into(),
                    stage: state.stage,
                    percentage: state.percentage,
                    actor: actor.id.clone(),
                    note: note.clone(),
                });
                let info = audit(actor, &format!("rollout.{}", t.action), Some(&env), note);
                let record = draft
                    .put_item(
                        ItemKind::Rollout,
                        id,
                        &state,
                        Expect::Version(version),
                        &info,
                    )
                    .await?;
                draft
                    .emit(
                        t.event,
                        "rollout",
                        id,
                        &info,
                        json!({
                            "flag": state.plan.flag,
                            "stage": state.stage,
                            "percentage": state.percentage,
                            "status": state.status.as_str(),
                        }),
                    )
                    .await?;
                let value = unread(&record)?;
                draft.finish(value, true).await.map(Some)
            })
            .await?;
        // Read after the commit: an in-memory SQLite store has one connection, held by the
        // write transaction until then.
        Ok(match written {
            Some(mut w) => {
                let (readings, at) = self.stored_readings(&format!("rollout:{id}")).await?;
                w.value.readings = readings;
                w.value.readings_at_ms = at;
                Some(w)
            }
            None => None,
        })
    }

    /// Reloads the exposure keys after a committed change; a failure is logged, never
    /// reported as the change's (it was written: a retry would take the step twice). The next
    /// check reloads them anyway.
    async fn refresh_after_write(&self) {
        if let Err(err) = self.refresh_rollout_exposures().await {
            tracing::warn!(error = %err, "rollout exposure keys not reloaded; the next check will");
        }
    }

    /// The exposure key under which an evaluation of `flag` in `environment` is recorded
    /// while a rollout runs on it (as fresh as this replica's last check).
    pub fn rollout_exposures(&self, environment: &str, flag: &str) -> Option<Arc<str>> {
        let keys = self.inner.rollout_exposures.load();
        if keys.is_empty() {
            return None;
        }
        keys.get(environment)?.get(flag).cloned()
    }

    /// Reloads the exposure keys of the active rollouts (each check, and after every change
    /// made here).
    pub async fn refresh_rollout_exposures(&self) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let mut states = Vec::new();
        for record in store.list_items(ItemKind::Rollout).await? {
            states.push(from_record(&record)?.0);
        }
        self.publish_exposures(states.iter());
        Ok(())
    }

    /// Makes the active rollouts among `states` the exposure keys OFREP reads.
    fn publish_exposures<'s>(&self, states: impl Iterator<Item = &'s RolloutState>) {
        let mut keys = ExposureKeys::new();
        for state in states.filter(|s| s.status.is_active()) {
            keys.entry(state.plan.environment.clone())
                .or_default()
                .insert(state.plan.flag.clone(), state.exposure_key().into());
        }
        self.inner.rollout_exposures.store(Arc::new(keys));
    }

    /// Every gate's reading for the current stage of `state`.
    async fn read_gates<P: Probe>(
        &self,
        state: &RolloutState,
        now_ms: i64,
        probe: &P,
        previous: &[GateReading],
    ) -> Vec<GateReading> {
        let mut out = Vec::with_capacity(state.plan.gates.len());
        for (i, gate) in state.plan.gates.iter().enumerate() {
            let reading = match self
                .read_gate(state, gate, now_ms, probe, previous.get(i))
                .await
            {
                Ok(r) => r,
                Err(err) => hold(gate, format!("cannot be read: {err}")),
            };
            out.push(GateReading { gate: i, ..reading });
        }
        out
    }

    async fn read_gate<P: Probe>(
        &self,
        state: &RolloutState,
        gate: &GateSpec,
        now_ms: i64,
        probe: &P,
        previous: Option<&GateReading>,
    ) -> Result<GateReading> {
        let store = self.require_store()?;
        let key = state.exposure_key();
        let min = state.min_sample();
        let variant = state.variant();
        let env = &state.plan.environment;
        // At 100 % nobody is left outside the rollout: a margin gate compares with the units
        // the previous stage kept on the old variant.
        let full = state
            .stages()
            .get(state.stage)
            .is_some_and(|s| s.percentage >= 100.0);
        let base_key = if full && state.stage > 0 {
            format!("rollout:{}:{}", state.id(), state.stage - 1)
        } else {
            key.clone()
        };
        let note_base = |mut r: GateReading| {
            if base_key != key && r.baseline.is_some() {
                r.detail = format!("{} (baseline: the previous stage's other units)", r.detail);
            }
            r
        };
        Ok(match gate {
            GateSpec::ErrorRate { event, max, margin } => {
                let arms = |exposures: String| async move {
                    let metrics = [SummaryMetric {
                        event,
                        aggregate: Aggregate::Converted,
                        window_ms: None,
                        pre_period_ms: None,
                    }];
                    let rows = store
                        .experiment_summary(&SummaryQuery {
                            experiment: &exposures,
                            environment: env,
                            start_ms: state.stage_started_at_ms,
                            end_ms: now_ms + 1,
                            metrics: &metrics,
                            first_day_of: None,
                        })
                        .await?;
                    let (mut new, mut base) = ((0u64, 0.0), (0u64, 0.0));
                    for row in rows {
                        let arm = if row.variant == variant {
                            &mut new
                        } else {
                            &mut base
                        };
                        arm.0 += row.units;
                        arm.1 += row.sums[0].1;
                    }
                    Ok::<_, ControlError>((new, base))
                };
                let (new, mut base) = arms(key.clone()).await?;
                if base_key != key && margin.is_some() {
                    base = arms(base_key.clone()).await?.1;
                }
                note_base(gates::error_rate(
                    gate, new, base, *max, *margin, min, "units",
                ))
            }
            GateSpec::Latency {
                event,
                percentile,
                max,
                margin,
                margin_ms,
            } => {
                let q = percentile.unwrap_or(99.0) / 100.0;
                let query = |arm| ValuesQuery {
                    exposures: &key,
                    environment: env,
                    event,
                    arm,
                    end_ms: now_ms + 1,
                };
                let new_q = query(Arm::Variant(variant));
                let base_q = ValuesQuery {
                    exposures: &base_key,
                    ..query(Arm::Others(variant))
                };
                let (n1, _) = store.values_above(&new_q, f64::MAX).await?;
                let p_new = quantile(store, &new_q, q, n1).await?;
                let over = |b: f64| match (margin, margin_ms) {
                    (Some(m), _) => b * (1.0 + m),
                    (None, Some(ms)) => b + ms,
                    (None, None) => b,
                };
                match max {
                    Some(limit) => {
                        let (n, k) = store.values_above(&new_q, *limit).await?;
                        gates::latency_absolute(gate, q, n, k, p_new, *limit, min)
                    }
                    None => {
                        let (n0, _) = store.values_above(&base_q, f64::MAX).await?;
                        let p_base = quantile(store, &base_q, q, n0).await?;
                        let limit = p_base.map(over);
                        let (above_new, above_base) = match limit {
                            Some(t) => (
                                store.values_above(&new_q, t).await?,
                                store.values_above(&base_q, t).await?,
                            ),
                            None => ((n1, 0), (n0, 0)),
                        };
                        note_base(gates::latency_margin(
                            gate, q, above_new, above_base, p_new, p_base, limit, min,
                        ))
                    }
                }
            }
            GateSpec::Prometheus {
                url,
                query,
                max,
                min,
            } => match probe.prometheus(url, query).await {
                Ok(Some(v)) => gates::threshold(gate, v, *max, *min),
                Ok(None) => hold(gate, format!("`{query}` returned no sample yet")),
                Err(e) => hold(gate, format!("the query failed: {e}")),
            },
            GateSpec::Http { url, failures } => {
                let limit = failures.unwrap_or(3);
                let before = previous.and_then(|p| p.failures).unwrap_or(0);
                match probe.http(url).await {
                    Ok(()) => GateReading {
                        failures: Some(0),
                        ..reading(gate, "green", format!("{url} answered"))
                    },
                    Err(e) => {
                        let n = before + 1;
                        let status = if n >= limit { "red" } else { "hold" };
                        GateReading {
                            failures: Some(n),
                            ..reading(
                                gate,
                                status,
                                format!(
                                    "{n} consecutive failed checks of {url} (red at {limit}): {e}"
                                ),
                            )
                        }
                    }
                }
            }
        })
    }
}

/// The `q` quantile of the `n` values `query` reads.
async fn quantile(
    store: &switchyard_storage::Store,
    query: &ValuesQuery<'_>,
    q: f64,
    n: u64,
) -> Result<Option<f64>> {
    if n == 0 {
        return Ok(None);
    }
    Ok(store.value_at_rank(query, gates::rank(q, n)).await?)
}

/// The next stage, an approval wait before it, or completion from the last.
/// `by_person`: a person asked for it, which approves a stage that needs approval.
fn next_stage(state: &mut RolloutState, by_person: bool) -> Transition {
    let next = state.stage + 1;
    if next >= state.stages().len() {
        state.status = RolloutStatus::Completed;
        return Transition {
            action: "completed",
            event: "rollout.completed",
            percentage: None,
            note: Some("the last stage baked green".into()),
        };
    }
    if state.stages()[next].approval && !by_person {
        state.status = RolloutStatus::AwaitingApproval;
        return Transition {
            action: "awaiting_approval",
            event: "rollout.awaiting_approval",
            percentage: None,
            note: Some(format!(
                "stage {} ({} %) waits for a person's approval",
                next,
                state.stages()[next].percentage
            )),
        };
    }
    let approved = state.stages()[next].approval;
    state.last_healthy = Some(state.stage);
    state.stage = next;
    state.status = RolloutStatus::Running;
    Transition {
        action: if approved { "approved" } else { "advanced" },
        event: "rollout.advanced",
        percentage: Some(state.stages()[next].percentage),
        note: None,
    }
}

/// Back to 0 % or the last healthy stage, as the plan says.
fn roll_back(state: &mut RolloutState, note: String) -> Transition {
    let percentage = match (state.plan.on_red, state.last_healthy) {
        (OnRed::LastHealthy, Some(i)) => {
            state.stage = i;
            state.stages()[i].percentage
        }
        _ => 0.0,
    };
    state.status = RolloutStatus::RolledBack;
    Transition {
        action: "rolled_back",
        event: "rollout.rolled_back",
        percentage: Some(percentage),
        note: Some(note),
    }
}

/// A rollout as just written, before its readings are read.
fn unread(record: &ItemRecord) -> Result<Rollout> {
    let (state, version) = from_record(record)?;
    Ok(Rollout {
        state,
        version,
        readings: Vec::new(),
        readings_at_ms: None,
    })
}

fn summary(readings: &[GateReading]) -> String {
    if readings.is_empty() {
        return "the stage's hold is over (no gates)".into();
    }
    readings
        .iter()
        .map(|g| format!("gate {} ({}) green: {}", g.gate, g.kind, g.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

fn kind(gate: &GateSpec) -> &'static str {
    match gate {
        GateSpec::ErrorRate { .. } => "error_rate",
        GateSpec::Latency { .. } => "latency",
        GateSpec::Prometheus { .. } => "prometheus",
        GateSpec::Http { .. } => "http",
    }
}

pub(crate) fn reading(gate: &GateSpec, status: &str, detail: String) -> GateReading {
    GateReading {
        gate: 0,
        kind: kind(gate).into(),
        status: status.into(),
        value: None,
        baseline: None,
        sample: None,
        failures: None,
        detail,
    }
}

fn hold(gate: &GateSpec, detail: String) -> GateReading {
    reading(gate, "hold", detail)
}

/// The statistics of the gates, apart from where their numbers come from.
pub(crate) mod gates {
    use super::{hold, reading, GATE_ALPHA};
    use switchyard_api_types::rollouts::{GateReading, GateSpec};

    /// The 0-based rank of the `q` quantile of `n` sorted values (the nearest-rank method).
    pub(crate) fn rank(q: f64, n: u64) -> u64 {
        // In millionths, with integers: `ceil(q·n)` in floating point is one too high where
        // q·n is a whole number that does not round-trip (p99.9 of 1 000 values).
        let micro = (q * 1_000_000.0).round().clamp(0.0, 1_000_000.0) as u128;
        let at = (micro * u128::from(n)).div_ceil(1_000_000) as u64;
        at.clamp(1, n.max(1)) - 1
    }

    /// A proportion's standard error with half a success and half a failure added, so that
    /// 0 of n and n of n still have an honest (non-zero) uncertainty.
    fn se(x: f64, n: u64) -> f64 {
        let p = (x + 0.5) / (n as f64 + 1.0);
        (p * (1.0 - p) / n as f64).sqrt()
    }

    /// The lower end of the always-valid interval of `estimate` (standard error `se`, `n`
    /// observations, tuned for the stage's minimum sample): above 0 means the excess is real
    /// at [`GATE_ALPHA`] however often it is looked at.
    pub(crate) fn lower_bound(estimate: f64, se: f64, n: u64, min: u64) -> f64 {
        switchyard_stats::confidence_sequence(
            estimate,
            se,
            n.max(1) as f64,
            GATE_ALPHA,
            min.max(10) as f64,
        )
        .map_or(f64::NEG_INFINITY, |cs| cs.ci[0])
    }

    fn pct(v: f64) -> String {
        format!("{:.2} %", v * 100.0)
    }

    /// An error-rate gate from `(units, units with an error)` of the new variant and of the
    /// baseline.
    pub(crate) fn error_rate(
        gate: &GateSpec,
        new: (u64, f64),
        base: (u64, f64),
        max: Option<f64>,
        margin: Option<f64>,
        min: u64,
        noun: &str,
    ) -> GateReading {
        let (n1, x1) = new;
        let (n0, x0) = base;
        let rate = |x: f64, n: u64| if n == 0 { 0.0 } else { x / n as f64 };
        let (p1, p0) = (rate(x1, n1), rate(x0, n0));
        let with = |mut r: GateReading| {
            r.value = (n1 > 0).then_some(p1);
            r.baseline = (n0 > 0).then_some(p0);
            r.sample = Some(n1);
            r
        };
        if n1 < min {
            return with(hold(gate, format!("{n1} of {min} {noun} so far")));
        }
        match (max, margin) {
            (Some(limit), _) => {
                let lb = lower_bound(p1 - limit, se(x1, n1), n1, min);
                let facts = format!(
                    "{} of {n1} {noun} had an error ({}), limit {}",
                    x1,
                    pct(p1),
                    pct(limit)
                );
                with(if lb > 0.0 {
                    reading(gate, "red", format!("{facts}: above it beyond doubt"))
                } else if p1 <= limit {
                    reading(gate, "green", facts)
                } else {
                    hold(gate, format!("{facts}: above it, not yet beyond doubt"))
                })
            }
            (None, Some(m)) => {
                if n0 < min {
                    return with(hold(gate, format!("{n0} of {min} baseline {noun} so far")));
                }
                let diff = p1 - p0;
                let s = (se(x1, n1).powi(2) + se(x0, n0).powi(2)).sqrt();
                let lb = lower_bound(diff - m, s, n1 + n0, min);
                let facts = format!(
                    "new {} of {n1} {noun} ({}), baseline {} of {n0} ({}), margin {}",
                    x1,
                    pct(p1),
                    x0,
                    pct(p0),
                    pct(m)
                );
                with(if lb > 0.0 {
                    reading(gate, "red", format!("{facts}: worse beyond the margin"))
                } else if diff <= m {
                    reading(gate, "green", facts)
                } else {
                    hold(gate, format!("{facts}: worse, not yet beyond doubt"))
                })
            }
            (None, None) => hold(gate, "no limit".into()),
        }
    }

    /// A latency gate against an absolute limit: `n` values, `k` above `limit`. The
    /// percentile `q` is above the limit exactly when more than `1 − q` of the values are, so
    /// that share is what is tested.
    pub(crate) fn latency_absolute(
        gate: &GateSpec,
        q: f64,
        n: u64,
        k: u64,
        p_new: Option<f64>,
        limit: f64,
        min: u64,
    ) -> GateReading {
        let mut r = if n < min {
            hold(
                gate,
                format!("{n} of {min} values from the new variant so far"),
            )
        } else {
            let share = k as f64 / n as f64;
            let allowed = 1.0 - q;
            let lb = lower_bound(share - allowed, se(k as f64, n), n, min);
            let facts = format!(
                "p{} {} over {n} values ({k} above {limit}, {} where {} is allowed)",
                q * 100.0,
                p_new.map_or("n/a".into(), |v| format!("{v:.1}")),
                pct(share),
                pct(allowed)
            );
            if lb > 0.0 {
                reading(
                    gate,
                    "red",
                    format!("{facts}: above the limit beyond doubt"),
                )
            } else if share <= allowed {
                reading(gate, "green", facts)
            } else {
                hold(gate, format!("{facts}: above, not yet beyond doubt"))
            }
        };
        r.value = p_new;
        r.sample = Some(n);
        r
    }

    /// A latency gate against the baseline: the limit `t` is the baseline's percentile plus
    /// its margin; the new variant's percentile is above `t` exactly when more than `1 − q` of
    /// its values are, so — as against an absolute limit — red when that share is beyond
    /// doubt above `1 − q`. (The baseline's own share above `t` is shown, not tested: with any
    /// margin it is well under `1 − q`, and comparing with it would call red a new variant
    /// whose percentile is within the limit.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn latency_margin(
        gate: &GateSpec,
        q: f64,
        (n1, k1): (u64, u64),
        (n0, k0): (u64, u64),
        p_new: Option<f64>,
        p_base: Option<f64>,
        limit: Option<f64>,
        min: u64,
    ) -> GateReading {
        let mut r = match limit {
            _ if n1 < min => hold(
                gate,
                format!("{n1} of {min} values from the new variant so far"),
            ),
            _ if n0 < min => hold(gate, format!("{n0} of {min} baseline values so far")),
            None => hold(gate, "no baseline values".into()),
            Some(t) => {
                let (s1, s0) = (k1 as f64 / n1 as f64, k0 as f64 / n0 as f64);
                let lb = lower_bound(s1 - (1.0 - q), se(k1 as f64, n1), n1, min);
                let facts = format!(
                    "p{} new {} vs baseline {} (limit {t:.1}; above it: new {}, baseline {})",
                    q * 100.0,
                    p_new.map_or("n/a".into(), |v| format!("{v:.1}")),
                    p_base.map_or("n/a".into(), |v| format!("{v:.1}")),
                    pct(s1),
                    pct(s0)
                );
                if lb > 0.0 {
                    reading(gate, "red", format!("{facts}: slower beyond doubt"))
                } else if s1 <= 1.0 - q {
                    reading(gate, "green", facts)
                } else {
                    hold(gate, format!("{facts}: slower, not yet beyond doubt"))
                }
            }
        };
        r.value = p_new;
        r.baseline = p_base;
        r.sample = Some(n1);
        r
    }

    /// A value against `max` / `min` (a Prometheus query): one reading decides, since the
    /// query carries its own window.
    pub(crate) fn threshold(
        gate: &GateSpec,
        v: f64,
        max: Option<f64>,
        min: Option<f64>,
    ) -> GateReading {
        if v.is_nan() {
            return hold(gate, "the value is not a number".into());
        }
        let mut r = match (max, min) {
            (Some(m), _) if v > m => reading(gate, "red", format!("{v} is above {m}")),
            (_, Some(m)) if v < m => reading(gate, "red", format!("{v} is below {m}")),
            _ => reading(gate, "green", format!("{v} is within its limits")),
        };
        r.value = Some(v);
        r
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn gate() -> GateSpec {
            GateSpec::ErrorRate {
                event: "error".into(),
                max: Some(0.05),
                margin: None,
            }
        }

        #[test]
        fn too_few_units_hold_whatever_they_show() {
            let r = error_rate(
                &gate(),
                (10, 10.0),
                (0, 0.0),
                Some(0.05),
                None,
                100,
                "units",
            );
            assert_eq!(r.status, "hold");
            assert!(r.detail.contains("10 of 100 units so far"), "{}", r.detail);
        }

        #[test]
        fn a_burst_of_errors_is_red_and_a_clean_stage_green() {
            let red = error_rate(
                &gate(),
                (200, 60.0),
                (0, 0.0),
                Some(0.05),
                None,
                100,
                "units",
            );
            assert_eq!(red.status, "red", "{}", red.detail);
            let green = error_rate(
                &gate(),
                (200, 4.0),
                (0, 0.0),
                Some(0.05),
                None,
                100,
                "units",
            );
            assert_eq!(green.status, "green", "{}", green.detail);
        }

        #[test]
        fn slightly_above_the_limit_is_not_yet_red() {
            // 7 % of 200 against 5 %: above, but well within chance for an always-valid test.
            let r = error_rate(
                &gate(),
                (200, 14.0),
                (0, 0.0),
                Some(0.05),
                None,
                100,
                "units",
            );
            assert_eq!(r.status, "hold", "{}", r.detail);
        }

        #[test]
        fn a_margin_compares_with_the_baseline() {
            let margin = GateSpec::ErrorRate {
                event: "error".into(),
                max: None,
                margin: Some(0.01),
            };
            let same = error_rate(
                &margin,
                (500, 25.0),
                (5000, 240.0),
                None,
                Some(0.01),
                100,
                "units",
            );
            assert_eq!(same.status, "green", "{}", same.detail);
            let worse = error_rate(
                &margin,
                (500, 100.0),
                (5000, 240.0),
                None,
                Some(0.01),
                100,
                "units",
            );
            assert_eq!(worse.status, "red", "{}", worse.detail);
        }

        #[test]
        fn the_latency_percentile_is_tested_through_its_exceedances() {
            let g = GateSpec::Latency {
                event: "latency".into(),
                percentile: Some(99.0),
                max: Some(500.0),
                margin: None,
                margin_ms: None,
            };
            // 0.5 % above the limit: p99 below it.
            assert_eq!(
                latency_absolute(&g, 0.99, 2000, 10, Some(300.0), 500.0, 100).status,
                "green"
            );
            // 10 % above it: p99 far above it.
            assert_eq!(
                latency_absolute(&g, 0.99, 2000, 200, Some(900.0), 500.0, 100).status,
                "red"
            );
        }

        #[test]
        fn ranks_follow_the_nearest_rank_method() {
            assert_eq!(rank(0.99, 100), 98);
            assert_eq!(rank(0.5, 1), 0);
            assert_eq!(rank(0.5, 10), 4);
            assert_eq!(rank(0.999, 10), 9);
            assert_eq!(rank(0.999, 1000), 998);
            assert_eq!(rank(0.95, 20), 18);
        }
    }
}
