//! Experiments: create and edit drafts, start, pause, resume, complete, cancel.
//!
//! An experiment is a stored record (versioned, audited as subject kind `experiment`) and,
//! while it runs, an `experiment` block in its flag's environment, which is what evaluation
//! uses (the engine assigns units, the same way in the server and in every SDK). Each status
//! change is one control-layer operation: under the global write lock it checks the rules
//! (one live experiment per flag and environment, free room in a layer, one percentage per
//! holdout), writes the flag — validated by the engine like any flag change — and the
//! experiment record, with an audit row for each, in one transaction. Pausing, completing and
//! Pausing keeps the block, marked paused: the units it would assign get the control and
//! nothing is recorded (resuming gives them their variants back). Completing and cancelling
//! remove it, so the flag serves its own targeting again; completing can ship a variant (it
//! becomes the environment's fallthrough).

use serde::{Deserialize, Serialize};
use switchyard_api_types::experiments::{
    ExperimentResource, ExperimentSpec, ExperimentStatus, MetricKind, MetricRole, Transition,
};
use switchyard_engine::document::{ConditionDef, ExperimentDef, LayerSliceDef, ServeDef};
use switchyard_engine::{normalize, FlagDef};
use switchyard_storage::{Expect, ItemKind, ItemRecord, Write};

use crate::draft::Draft;
use crate::flags::{audit, check_version, require_environment, require_flag};
use crate::tokens::Actor;
use crate::{rfc3339, Control, ControlError, Result, Written};

/// What the store keeps for an experiment (its record's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    spec: ExperimentSpec,
    status: ExperimentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer_slice: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shipped_variant: Option<String>,
    #[serde(default)]
    timeline: Vec<TimelineEntry>,
}

/// One change of an experiment's status, as the control layer returns it and as it is stored
/// (`actorName` is absent in transitions stored before names were kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// The status it entered.
    pub status: ExperimentStatus,
    /// When, unix ms.
    pub at_ms: i64,
    /// Who: an actor id (`token:<id>`, `guardrail`, `srm`, …).
    pub actor: String,
    /// The actor's display name then (a token's name), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TimelineEntry {
    fn new(status: ExperimentStatus, at_ms: i64, actor: &Actor, reason: Option<String>) -> Self {
        TimelineEntry {
            status,
            at_ms,
            actor: actor.id.clone(),
            actor_name: actor.name.clone(),
            reason,
        }
    }
}

/// An experiment as the control layer returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// What was written.
    pub spec: ExperimentSpec,
    /// Where it is in its life.
    pub status: ExperimentStatus,
    /// Version (optimistic concurrency).
    pub version: i64,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last written, unix ms.
    pub updated_at_ms: i64,
    /// First started, unix ms.
    pub started_at_ms: Option<i64>,
    /// Completed or cancelled, unix ms.
    pub ended_at_ms: Option<i64>,
    /// Its slice of its layer, percent.
    pub layer_slice: Option<[f64; 2]>,
    /// The variant shipped on completion.
    pub shipped_variant: Option<String>,
    /// Status changes, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl Experiment {
    fn from_record(record: &ItemRecord) -> Result<Experiment> {
        let stored: Stored = serde_json::from_value(record.definition.clone()).map_err(|e| {
            ControlError::Internal(format!(
                "the stored experiment `{}` does not read: {e}",
                record.id
            ))
        })?;
        Ok(Experiment {
            spec: stored.spec,
            status: stored.status,
            version: record.version,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            started_at_ms: stored.started_at_ms,
            ended_at_ms: stored.ended_at_ms,
            layer_slice: stored.layer_slice,
            shipped_variant: stored.shipped_variant,
            timeline: stored.timeline,
        })
    }

    fn stored(&self) -> Stored {
        Stored {
            spec: self.spec.clone(),
            status: self.status,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            layer_slice: self.layer_slice,
            shipped_variant: self.shipped_variant.clone(),
            timeline: self.timeline.clone(),
        }
    }

    /// The API body, with times in RFC 3339.
    pub fn to_resource(&self) -> ExperimentResource {
        ExperimentResource {
            spec: self.spec.clone(),
            status: self.status,
            version: self.version,
            created_at: rfc3339(self.created_at_ms),
            updated_at: rfc3339(self.updated_at_ms),
            started_at: self.started_at_ms.map(rfc3339),
            ended_at: self.ended_at_ms.map(rfc3339),
            layer_slice: self.layer_slice,
            shipped_variant: self.shipped_variant.clone(),
            timeline: self
                .timeline
                .iter()
                .map(|t| Transition {
                    status: t.status,
                    at: rfc3339(t.at_ms),
                    actor: t.actor.clone(),
                    actor_name: t.actor_name.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
        }
    }

    /// The block its flag carries while it runs (or is paused).
    fn block(&self, paused: bool) -> ExperimentDef {
        let spec = &self.spec;
        let mut audience = Vec::new();
        let segments = |names: &[String]| serde_json::Value::from(names.to_vec());
        if !spec.audience.include_segments.is_empty() {
            audience.push(ConditionDef {
                operator: Some("in_segment".to_owned()),
                value: Some(segments(&spec.audience.include_segments)),
                ..ConditionDef::default()
            });
        }
        if !spec.audience.exclude_segments.is_empty() {
            audience.push(ConditionDef {
                operator: Some("not_in_segment".to_owned()),
                value: Some(segments(&spec.audience.exclude_segments)),
                ..ConditionDef::default()
            });
        }
        ExperimentDef {
            id: spec.id.clone(),
            control: spec.control.clone(),
            split: spec.variants.clone(),
            audience,
            allocation: spec
                .audience
                .allocation
                .filter(|_| spec.layer.is_none() && self.layer_slice.is_none()),
            layer: spec
                .layer
                .as_ref()
                .zip(self.layer_slice)
                .map(|(l, [from, to])| LayerSliceDef {
                    name: l.name.clone(),
                    from,
                    to,
                }),
            holdout: spec.holdout.clone(),
            bucket_by: None,
            paused,
        }
    }

    /// Running or paused: it holds its flag and its layer slice.
    fn is_live(&self) -> bool {
        matches!(
            self.status,
            ExperimentStatus::Running | ExperimentStatus::Paused
        )
    }
}

/// Parses a planned date: RFC 3339 or `YYYY-MM-DD` (midnight UTC). Unix ms.
pub fn parse_date(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// A status change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExperimentAction {
    /// Draft → running.
    Start,
    /// Running → paused.
    Pause,
    /// Paused → running.
    Resume,
    /// Running or paused → completed, optionally shipping a variant.
    Complete {
        /// The variant everybody gets from now on.
        ship: Option<String>,
    },
    /// Anything not final → cancelled.
    Cancel,
}

impl ExperimentAction {
    fn target(&self) -> ExperimentStatus {
        match self {
            ExperimentAction::Start | ExperimentAction::Resume => ExperimentStatus::Running,
            ExperimentAction::Pause => ExperimentStatus::Paused,
            ExperimentAction::Complete { .. } => ExperimentStatus::Completed,
            ExperimentAction::Cancel => ExperimentStatus::Cancelled,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ExperimentAction::Start => "start",
            ExperimentAction::Pause => "pause",
            ExperimentAction::Resume => "resume",
            ExperimentAction::Complete { .. } => "complete",
            ExperimentAction::Cancel => "cancel",
        }
    }

    fn allowed_from(&self, status: ExperimentStatus) -> bool {
        use ExperimentStatus::*;
        match self {
            ExperimentAction::Start => status == Draft,
            ExperimentAction::Pause => status == Running,
            ExperimentAction::Resume => status == Paused,
            ExperimentAction::Complete { .. } => matches!(status, Running | Paused),
            ExperimentAction::Cancel => !status.is_final(),
        }
    }
}

/// Checks what can be checked of a spec without the store.
fn check_spec(spec: &ExperimentSpec) -> Result<()> {
    let bad = |field: &str, message: String| Err(ControlError::bad_request(Some(field), message));
    if !switchyard_engine::is_valid_key(&spec.id) {
        return bad(
            "id",
            format!(
                "invalid experiment id `{}`: use 1–128 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
                spec.id
            ),
        );
    }
    if !spec.variants.contains_key(&spec.control) {
        return bad(
            "variants",
            format!(
                "the control `{}` needs a weight in `variants` (e.g. {{\"{}\": 50, \"treatment\": 50}})",
                spec.control, spec.control
            ),
        );
    }
    if spec.variants.len() < 2 {
        return bad(
            "variants",
            "an experiment needs the control and at least one treatment".to_owned(),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        if m.event.is_empty() || m.event.len() > 512 {
            return bad(
                &format!("metrics[{i}].event"),
                "an event name is 1–512 bytes".to_owned(),
            );
        }
        if !names.insert(m.display_name().to_owned()) {
            return bad(
                &format!("metrics[{i}].name"),
                format!(
                    "two metrics are called `{}`; give one a `name`",
                    m.display_name()
                ),
            );
        }
        if let Some(w) = m.window_hours {
            if !(w > 0.0 && w.is_finite()) {
                return bad(
                    &format!("metrics[{i}].windowHours"),
                    format!("the attribution window must be a positive number of hours, not {w}"),
                );
            }
        }
        if let Some(d) = m.cuped_days {
            if !(d > 0.0 && d <= 365.0) {
                return bad(
                    &format!("metrics[{i}].cupedDays"),
                    format!(
                        "the CUPED pre-period must be more than 0 and at most 365 days, not {d}"
                    ),
                );
            }
            if m.kind == MetricKind::Mean {
                return bad(
                    &format!("metrics[{i}].cupedDays"),
                    "CUPED does not apply to `mean` metrics: their units are only those with events, so most have no pre-period value; use `sum` or `count`".to_owned(),
                );
            }
        }
    }
    if let Some(a) = spec.alpha {
        if !(a > 0.0 && a < 0.5) {
            return bad("alpha", format!("alpha must be in (0, 0.5), not {a}"));
        }
    }
    if let Some(d) = spec.min_duration_days {
        if !(d >= 0.0 && d.is_finite()) {
            return bad(
                "minDurationDays",
                format!("must be a non-negative number of days, not {d}"),
            );
        }
    }
    for (field, value) in [("startDate", &spec.start_date), ("endDate", &spec.end_date)] {
        if let Some(text) = value {
            if parse_date(text).is_none() {
                return bad(
                    field,
                    format!("`{text}` is not a date (YYYY-MM-DD) or an RFC 3339 time"),
                );
            }
        }
    }
    if let Some(layer) = &spec.layer {
        if !(layer.percentage > 0.0 && layer.percentage <= 100.0) {
            return bad(
                "layer.percentage",
                format!(
                    "a layer share is more than 0 and at most 100 percent, not {}",
                    layer.percentage
                ),
            );
        }
        if spec.audience.allocation.is_some() {
            return bad(
                "audience.allocation",
                "with a layer, the layer's `percentage` is the allocation; drop `audience.allocation`"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// The flag with `block` in `environment` (replacing any), normalized.
fn with_block(def: &FlagDef, environment: &str, block: Option<ExperimentDef>) -> FlagDef {
    let (mut def, _) = normalize(def);
    let env = def.environments.entry(environment.to_owned()).or_default();
    env.experiment = block.map(Box::new);
    def
}

impl Control {
    /// Every experiment, by id.
    pub async fn experiments(&self) -> Result<Vec<Experiment>> {
        let records = self
            .require_store()?
            .list_items(ItemKind::Experiment)
            .await?;
        records.iter().map(Experiment::from_record).collect()
    }

    /// The experiment `id`.
    pub async fn experiment(&self, id: &str) -> Result<Experiment> {
        match self
            .require_store()?
            .get_item(ItemKind::Experiment, id)
            .await?
        {
            Some(record) => Experiment::from_record(&record),
            None => Err(ControlError::not_found(format!("experiment `{id}`"))),
        }
    }

    /// Creates a draft; its flag, environment, segments and arms are checked now (the arms
    /// by compiling the flag with the experiment's block, so mistakes show before `start`).
    pub async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Experiment>> {
        check_spec(&spec)?;
        self.timed(async {
            let mut draft = self.begin().await?;
            if draft
                .tx
                .item(ItemKind::Experiment, &spec.id)
                .await?
                .is_some()
            {
                return Err(ControlError::AlreadyExists {
                    what: format!("experiment `{}`", spec.id),
                });
            }
            let now = draft.tx.now_ms();
            let experiment = Experiment {
                spec,
                status: ExperimentStatus::Draft,
                version: 0,
                created_at_ms: now,
                updated_at_ms: now,
                started_at_ms: None,
                ended_at_ms: None,
                layer_slice: None,
                shipped_variant: None,
                timeline: vec![TimelineEntry::new(
                    ExperimentStatus::Draft,
                    now,
                    actor,
                    None,
                )],
            };
            validate_against_flag(&draft, &experiment)?.await?;
            let written = write(
                &mut draft,
                &experiment,
                Expect::Absent,
                audit(
                    actor,
                    "experiment.create",
                    Some(&experiment.spec.environment),
                    reason,
                ),
            )
            .await?;
            draft.finish(written, true).await
        })
        .await
    }

    /// Replaces a draft's spec (`if_match`: the version read). Only drafts can be edited:
    /// a started experiment's design is what its data was collected under.
    pub async fn update_experiment(
        &self,
        id: &str,
        spec: ExperimentSpec,
        if_match: Option<i64>,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Experiment>> {
        if spec.id != id {
            return Err(ControlError::bad_request(
                Some("id"),
                format!("the body's id `{}` differs from `{id}`", spec.id),
            ));
        }
        check_spec(&spec)?;
        self.timed(async {
            let mut draft = self.begin().await?;
            let mut current = load(&mut draft, id).await?;
            check_version(&format!("experiment `{id}`"), current.version, if_match, false)?;
            if current.status != ExperimentStatus::Draft {
                return Err(ControlError::Refused {
                    message: format!(
                        "experiment `{id}` is {}: only drafts can be edited (its data was collected under this design); create a new experiment instead",
                        current.status.as_str()
                    ),
                });
            }
            if current.spec == spec {
                return draft.finish(current, false).await;
            }
            current.spec = spec;
            validate_against_flag(&draft, &current)?.await?;
            let version = current.version;
            let written = write(
                &mut draft,
                &current,
                Expect::Version(version),
                audit(
                    actor,
                    "experiment.update",
                    Some(&current.spec.environment),
                    reason,
                ),
            )
            .await?;
            draft.finish(written, true).await
        })
        .await
    }

    /// Moves an experiment to its next status (see [`ExperimentAction`]); the flag changes in
    /// the same transaction.
    pub async fn transition_experiment(
        &self,
        id: &str,
        action: ExperimentAction,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Experiment>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            let mut exp = load(&mut draft, id).await?;
            let target = action.target();
            if exp.status == target {
                // Asking again for where it is (a retried request): nothing to do.
                return draft.finish(exp, false).await;
            }
            if !action.allowed_from(exp.status) {
                return Err(ControlError::Refused {
                    message: format!(
                        "experiment `{id}` is {}; `{}` applies to {}",
                        exp.status.as_str(),
                        action.name(),
                        match action {
                            ExperimentAction::Start => "a draft",
                            ExperimentAction::Pause => "a running experiment",
                            ExperimentAction::Resume => "a paused experiment",
                            ExperimentAction::Complete { .. } => "a running or paused experiment",
                            ExperimentAction::Cancel => "an experiment not yet completed or cancelled",
                        }
                    ),
                });
            }
            let env = exp.spec.environment.clone();
            let flag_key = exp.spec.flag.clone();
            let now = draft.tx.now_ms();
            if matches!(action, ExperimentAction::Start | ExperimentAction::Resume) {
                if !exp.spec.metrics.iter().any(|m| m.role == MetricRole::Primary) {
                    return Err(ControlError::bad_request(
                        Some("metrics"),
                        format!("experiment `{id}` has no primary metric: add one (`metrics: [{{event: purchase, role: primary}}]`) before starting it"),
                    ));
                }
                let others = draft.tx.items(ItemKind::Experiment).await?;
                let others: Vec<Experiment> = others
                    .iter()
                    .filter(|r| r.id != exp.spec.id)
                    .map(Experiment::from_record)
                    .collect::<Result<_>>()?;
                check_room(&mut exp, &others)?;
                let current = require_flag(&draft.snap, &flag_key)?;
                let targeting = current.definition.environments.get(&env);
                let killed = current.definition.targeting.kill_switch == Some(true)
                    || targeting.is_some_and(|t| t.kill_switch == Some(true));
                let enabled = targeting
                    .and_then(|t| t.enabled)
                    .or(current.definition.targeting.enabled)
                    .unwrap_or(true);
                if killed || !enabled {
                    return Err(ControlError::Refused {
                        message: format!(
                            "flag `{flag_key}` is {} in `{env}`, so the experiment would assign nobody; {} it there first",
                            if killed { "killed" } else { "off" },
                            if killed { "release" } else { "enable" }
                        ),
                    });
                }
            }
            let flag_change = match &action {
                ExperimentAction::Start | ExperimentAction::Resume => Some(Some(exp.block(false))),
                ExperimentAction::Pause => Some(Some(exp.block(true))),
                _ if exp.is_live() => Some(None),
                _ => None,
            };
            let ship = match &action {
                ExperimentAction::Complete { ship: Some(v) } => {
                    if !exp.spec.variants.contains_key(v) {
                        return Err(ControlError::bad_request(
                            Some("ship"),
                            format!(
                                "`{v}` is not an arm of experiment `{id}`; ship one of: {}",
                                exp.spec.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    Some(v.clone())
                }
                _ => None,
            };
            if flag_change.is_some() || ship.is_some() {
                let current = require_flag(&draft.snap, &flag_key)?;
                let block = flag_change.unwrap_or(None);
                let mut def = with_block(current.definition, &env, block);
                if let Some(variant) = &ship {
                    let t = def.environments.entry(env.clone()).or_default();
                    t.fallthrough = Some(ServeDef {
                        variant: Some(variant.clone()),
                        ..ServeDef::default()
                    });
                }
                let why = format!(
                    "experiment `{id}` {}{}",
                    match target {
                        ExperimentStatus::Running if action == ExperimentAction::Start => "started",
                        ExperimentStatus::Running => "resumed",
                        ExperimentStatus::Paused => "paused",
                        ExperimentStatus::Completed => "completed",
                        _ => "cancelled",
                    },
                    ship.as_ref().map(|v| format!(", shipping `{v}`")).unwrap_or_default()
                );
                let reason_text = match &reason {
                    Some(r) if !r.trim().is_empty() => format!("{why}: {r}"),
                    _ => why,
                };
                draft
                    .put_flag(
                        def,
                        audit(
                            actor,
                            &format!("experiment.{}", action.name()),
                            Some(&env),
                            Some(reason_text),
                        ),
                    )
                    .await?;
            }
            exp.status = target;
            if action == ExperimentAction::Start {
                exp.started_at_ms = Some(now);
            }
            if target.is_final() {
                exp.ended_at_ms = Some(now);
                exp.shipped_variant = ship;
            }
            exp.timeline
                .push(TimelineEntry::new(target, now, actor, reason.clone()));
            let version = exp.version;
            let info = audit(actor, &format!("experiment.{}", action.name()), Some(&env), reason);
            let written = write(&mut draft, &exp, Expect::Version(version), info.clone()).await?;
            let automatic = matches!(actor.id.as_str(), "srm" | "guardrail");
            let event = match (&action, automatic) {
                (ExperimentAction::Pause, true) => "experiment.stopped",
                (ExperimentAction::Start, _) => "experiment.started",
                (ExperimentAction::Pause, _) => "experiment.paused",
                (ExperimentAction::Resume, _) => "experiment.resumed",
                (ExperimentAction::Complete { .. }, _) => "experiment.completed",
                (ExperimentAction::Cancel, _) => "experiment.cancelled",
            };
            let data = serde_json::json!({
                "flag": flag_key,
                "status": target.as_str(),
                "shippedVariant": written.shipped_variant,
            });
            draft.emit(event, "experiment", id, &info, data).await?;
            draft.finish(written, true).await
        })
        .await
    }
}

async fn load(draft: &mut Draft, id: &str) -> Result<Experiment> {
    match draft.tx.item(ItemKind::Experiment, id).await? {
        Some(record) => Experiment::from_record(&record),
        None => Err(ControlError::not_found(format!("experiment `{id}`"))),
    }
}

async fn write(
    draft: &mut Draft,
    exp: &Experiment,
    expect: Expect,
    audit: switchyard_storage::AuditInfo,
) -> Result<Experiment> {
    let definition = serde_json::to_value(exp.stored())
        .map_err(|e| ControlError::Internal(format!("an experiment does not serialize: {e}")))?;
    let record = draft
        .tx
        .write_item(
            ItemKind::Experiment,
            &Write {
                key: exp.spec.id.clone(),
                expect,
                definition: Some(definition),
                archived: false,
                audit,
            },
        )
        .await?
        .ok_or_else(|| ControlError::Internal("a written experiment was not returned".into()))?;
    Experiment::from_record(&record)
}

/// The environment and flag exist, and the flag compiles with the experiment's block (the
/// engine checks the arms, weights and segments, with the paths of the flag format).
fn validate_against_flag(
    draft: &Draft,
    exp: &Experiment,
) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
    let spec = &exp.spec;
    require_environment(&draft.snap, &spec.environment)
        .map_err(|e| with_field(e, "environment"))?;
    let current = require_flag(&draft.snap, &spec.flag).map_err(|e| with_field(e, "flag"))?;
    let mut trial = exp.clone();
    if let Some(layer) = &spec.layer {
        trial.layer_slice = Some([0.0, layer.percentage]);
    }
    let def = with_block(
        current.definition,
        &spec.environment,
        Some(trial.block(false)),
    );
    let check = draft.validate_flag(def);
    Ok(async move { check.await.map_err(in_spec_terms) })
}

/// The engine reports a bad block in flag-format paths (`flags.f.environments.e.experiment.
/// split.x`); the person wrote an experiment file, so its problems are named by its fields
/// (`variants.x`). Problems elsewhere in the flag keep their paths.
fn in_spec_terms(err: ControlError) -> ControlError {
    use switchyard_engine::{FieldPath, PathSegment};
    let ControlError::Invalid { mut diagnostics } = err else {
        return err;
    };
    for d in &mut diagnostics {
        let segments = d.path.segments();
        let Some(at) = segments
            .iter()
            .position(|s| matches!(s, PathSegment::Key(k) if k == "experiment"))
        else {
            continue;
        };
        let rest = &segments[at + 1..];
        let (field, tail): (String, &[PathSegment]) = match rest.first() {
            Some(PathSegment::Key(k)) if k == "split" => ("variants".to_owned(), &rest[1..]),
            Some(PathSegment::Key(k)) if k == "audience" => ("audience".to_owned(), &[]),
            Some(PathSegment::Key(k)) => (k.clone(), &rest[1..]),
            _ => continue,
        };
        let mut path = FieldPath::root().key(field);
        for s in tail {
            path = match s {
                PathSegment::Key(k) => path.key(k.clone()),
                PathSegment::Index(i) => path.index(*i),
            };
        }
        d.path = path;
        d.flag = None;
    }
    ControlError::Invalid { diagnostics }
}

fn with_field(err: ControlError, field: &str) -> ControlError {
    match err {
        ControlError::NotFound { what, hint } => ControlError::BadRequest {
            field: Some(field.to_owned()),
            message: match hint {
                Some(h) => format!("{what} was not found; {h}"),
                None => format!("{what} was not found"),
            },
        },
        other => other,
    }
}

/// The rules between live experiments: one per flag and environment, a free slice in the
/// layer (taken now, kept across pause and resume), one percentage per holdout.
fn check_room(exp: &mut Experiment, others: &[Experiment]) -> Result<()> {
    let spec = &exp.spec;
    let live: Vec<&Experiment> = others
        .iter()
        .filter(|o| o.is_live() && o.spec.environment == spec.environment)
        .collect();
    if let Some(other) = live.iter().find(|o| o.spec.flag == spec.flag) {
        return Err(ControlError::Refused {
            message: format!(
                "experiment `{}` is already {} on flag `{}` in `{}`; complete or cancel it first",
                other.spec.id,
                other.status.as_str(),
                spec.flag,
                spec.environment
            ),
        });
    }
    if let Some(h) = &spec.holdout {
        if let Some(other) = live.iter().find(|o| {
            o.spec
                .holdout
                .as_ref()
                .is_some_and(|oh| oh.name == h.name && oh.percentage != h.percentage)
        }) {
            return Err(ControlError::Refused {
                message: format!(
                    "holdout `{}` is {} % in running experiment `{}`, not {} %: one holdout holds out the same units from every experiment",
                    h.name,
                    other.spec.holdout.as_ref().map_or(0.0, |h| h.percentage),
                    other.spec.id,
                    h.percentage
                ),
            });
        }
    }
    if let (Some(layer), None) = (&spec.layer, exp.layer_slice) {
        let mut taken: Vec<[f64; 2]> = live
            .iter()
            .filter(|o| o.spec.layer.as_ref().is_some_and(|l| l.name == layer.name))
            .filter_map(|o| o.layer_slice)
            .collect();
        taken.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let mut from = 0.0_f64;
        let mut slice = None;
        for t in taken.iter().chain(std::iter::once(&[100.0, 100.0])) {
            if t[0] - from >= layer.percentage - 1e-9 {
                slice = Some([from, round3(from + layer.percentage)]);
                break;
            }
            from = from.max(t[1]);
        }
        match slice {
            Some(s) => exp.layer_slice = Some(s),
            None => {
                let used: f64 = taken.iter().map(|t| t[1] - t[0]).sum();
                return Err(ControlError::Refused {
                    message: format!(
                        "layer `{}` has no free slice of {} %: {} % is taken by {} live experiment(s); lower the share or end one of them",
                        layer.name,
                        layer.percentage,
                        round3(used),
                        taken.len()
                    ),
                });
            }
        }
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The id of the experiment running on `flag` in `environment`, from the served definition:
/// what evaluation assigns with.
pub fn running_experiment<'s>(
    snapshot: &'s crate::Snapshot,
    environment: &str,
    flag: &str,
) -> Option<&'s str> {
    let targeting = snapshot
        .flag(flag)?
        .definition
        .environments
        .get(environment)?;
    Some(targeting.experiment.as_ref()?.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_api_types::experiments::LayerSpec;

    fn spec(id: &str, flag: &str, layer: Option<(&str, f64)>) -> ExperimentSpec {
        ExperimentSpec {
            id: id.into(),
            environment: "production".into(),
            flag: flag.into(),
            control: "off".into(),
            variants: [("off".to_owned(), 50.0), ("on".to_owned(), 50.0)].into(),
            name: None,
            hypothesis: None,
            metrics: Vec::new(),
            audience: Default::default(),
            layer: layer.map(|(name, percentage)| LayerSpec {
                name: name.into(),
                percentage,
            }),
            holdout: None,
            planned_units: None,
            start_date: None,
            end_date: None,
            min_duration_days: None,
            min_units_per_variant: None,
            alpha: None,
        }
    }

    fn live(spec: ExperimentSpec, slice: Option<[f64; 2]>) -> Experiment {
        Experiment {
            spec,
            status: ExperimentStatus::Running,
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            started_at_ms: Some(0),
            ended_at_ms: None,
            layer_slice: slice,
            shipped_variant: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn layer_slices_fill_gaps_and_refuse_when_full() {
        let others = vec![
            live(spec("a", "fa", Some(("l", 30.0))), Some([0.0, 30.0])),
            live(spec("b", "fb", Some(("l", 20.0))), Some([50.0, 70.0])),
        ];
        let mut c = live(spec("c", "fc", Some(("l", 20.0))), None);
        check_room(&mut c, &others).unwrap();
        assert_eq!(c.layer_slice, Some([30.0, 50.0]), "the first gap that fits");
        let mut d = live(spec("d", "fd", Some(("l", 30.0))), None);
        check_room(&mut d, &others).unwrap();
        assert_eq!(d.layer_slice, Some([70.0, 100.0]));
        let mut e = live(spec("e", "fe", Some(("l", 31.0))), None);
        let err = check_room(&mut e, &others).unwrap_err().to_string();
        assert!(err.contains("no free slice of 31 %"), "{err}");
        // Another layer is unaffected.
        let mut f = live(spec("f", "ff", Some(("other", 100.0))), None);
        check_room(&mut f, &others).unwrap();
        assert_eq!(f.layer_slice, Some([0.0, 100.0]));
    }

    #[test]
    fn one_live_experiment_per_flag() {
        let others = vec![live(spec("a", "checkout", None), None)];
        let mut b = live(spec("b", "checkout", None), None);
        let err = check_room(&mut b, &others).unwrap_err().to_string();
        assert!(err.contains("experiment `a` is already running"), "{err}");
    }

    #[test]
    fn specs_are_checked_with_the_field_at_fault() {
        let mut s = spec("x", "f", None);
        s.control = "control".into();
        let err = check_spec(&s).unwrap_err();
        assert!(matches!(&err, ControlError::BadRequest { field: Some(f), .. } if f == "variants"));
        let mut s = spec("x", "f", None);
        s.end_date = Some("next week".into());
        let err = check_spec(&s).unwrap_err();
        assert!(
            err.to_string().contains("`next week` is not a date"),
            "{err}"
        );
        assert_eq!(parse_date("2026-12-01"), Some(1_796_083_200_000));
    }
}
