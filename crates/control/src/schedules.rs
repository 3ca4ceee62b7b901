//! Scheduled changes: a flag operation (enable, disable, kill, release, rollout, archive) in one
//! environment at a time. Each run is one control-layer operation: under the global write lock
//! the oldest due pending schedule is read, its change applied as a person's would be
//! (validated, versioned, audited — actor `scheduler`, naming who set it up), and the schedule
//! marked done in the same transaction; so it runs exactly once whatever the number of
//! replicas. A change that no longer applies (the flag deleted, a variant gone) is rolled back
//! and the schedule marked failed with the reason, in a transaction of its own: never half
//! applied. A schedule found due after its time (every server was down) runs at once and says
//! how late.

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_storage::{AuditInfo, ScheduleRecord};

use crate::flags::{audit, change_in, require_environment, require_flag};
use crate::tokens::Actor;
use crate::{Control, ControlError, FlagChange, Result, Written};

/// A run later than this says it ran late.
pub const LATE_MS: i64 = 60_000;

/// The operation a schedule performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum ScheduledOp {
    /// Turn the flag on in the environment.
    Enable,
    /// Turn it off.
    Disable,
    /// Kill switch on.
    Kill,
    /// Release the kill switch.
    Release,
    /// Serve the fallthrough to this percentage.
    Rollout {
        /// 0–100.
        percentage: f64,
        /// The variant rolled out (default: what the fallthrough serves, or `on`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// Archive the flag.
    Archive,
}

impl ScheduledOp {
    fn change(&self, environment: &str) -> FlagChange {
        let env = Some(environment.to_owned());
        match self {
            ScheduledOp::Enable => FlagChange::Enabled {
                environment: env,
                enabled: true,
            },
            ScheduledOp::Disable => FlagChange::Enabled {
                environment: env,
                enabled: false,
            },
            ScheduledOp::Kill => FlagChange::Kill {
                environment: env,
                on: true,
            },
            ScheduledOp::Release => FlagChange::Kill {
                environment: env,
                on: false,
            },
            ScheduledOp::Rollout {
                percentage,
                variant,
            } => FlagChange::Rollout {
                environment: env,
                percentage: *percentage,
                variant: variant.clone(),
            },
            ScheduledOp::Archive => FlagChange::Archive(true),
        }
    }
}

/// A schedule as the control layer returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The stored row.
    pub record: ScheduleRecord,
    /// Its operation.
    pub op: ScheduledOp,
}

fn schedule(record: ScheduleRecord) -> Result<Schedule> {
    let op = serde_json::from_value(record.action.clone()).map_err(|e| {
        ControlError::Internal(format!(
            "schedule `{}` has an unknown operation: {e}",
            record.id
        ))
    })?;
    Ok(Schedule { record, op })
}

/// What one run of the scheduler did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRun {
    /// The schedule.
    pub id: String,
    /// `done` or `failed`.
    pub state: String,
    /// What happened.
    pub outcome: String,
}

impl Control {
    /// Schedules `op` on `flag` in `environment` at `due_at_ms`. Checked now against the flag
    /// as it is (a mistyped flag, an unknown variant, a time in the past are refused); checked
    /// again when it runs.
    pub async fn create_schedule(
        &self,
        flag: &str,
        environment: &str,
        op: ScheduledOp,
        due_at_ms: i64,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Schedule>> {
        if due_at_ms < crate::now_ms() - LATE_MS {
            return Err(ControlError::bad_request(
                Some("at"),
                "that time is in the past; make the change now instead",
            ));
        }
        let id = crate::draft::new_id("sch_")?;
        self.timed(async {
            let mut draft = self.begin().await?;
            require_environment(&draft.snap, environment)?;
            crate::requests::refuse_unapproved(
                &draft.snap,
                [environment],
                actor,
                "a scheduled change",
            )?;
            let current = require_flag(&draft.snap, flag)?;
            // The change must apply to the flag as it is now (it is checked again at run time).
            let (mut trial, _) = switchyard_engine::normalize(current.definition);
            op.change(environment).apply_to(&mut trial)?;
            draft.validate_flag(trial).await?;
            let record = ScheduleRecord {
                id: id.clone(),
                flag: flag.to_owned(),
                environment: environment.to_owned(),
                action: serde_json::to_value(&op).map_err(|e| {
                    ControlError::Internal(format!("an operation does not serialize: {e}"))
                })?,
                due_at_ms,
                state: "pending".into(),
                created_by: actor.id.clone(),
                created_by_name: actor.name.clone(),
                reason: reason.clone(),
                created_at_ms: draft.tx.now_ms(),
                finished_at_ms: None,
                outcome: None,
            };
            draft
                .tx
                .insert_schedule(
                    &record,
                    &audit(actor, "schedule.create", Some(environment), reason),
                )
                .await?;
            let value = Schedule { record, op };
            draft.finish(value, true).await
        })
        .await
    }

    /// Every schedule, soonest first.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        self.require_store()?
            .list_schedules()
            .await?
            .into_iter()
            .map(schedule)
            .collect()
    }

    /// Cancels a pending schedule.
    pub async fn cancel_schedule(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Schedule>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            let Some(current) = draft.tx.schedule(id).await? else {
                return Err(ControlError::not_found(format!("schedule `{id}`")));
            };
            if current.state != "pending" {
                return Err(ControlError::Refused {
                    message: format!(
                        "schedule `{id}` is {}; only a pending one can be cancelled",
                        current.state
                    ),
                });
            }
            let info = audit(actor, "schedule.cancel", Some(&current.environment), reason);
            let record = draft
                .tx
                .finish_schedule(
                    id,
                    "cancelled",
                    &format!("cancelled by {}", actor.id),
                    &info,
                )
                .await?;
            let value = schedule(record)?;
            draft.finish(value, true).await
        })
        .await
    }

    /// Runs every schedule due at `now_ms`, oldest first, each in its own transaction.
    pub async fn run_due_schedules(&self, now_ms: i64) -> Result<Vec<ScheduleRun>> {
        let mut runs = Vec::new();
        // Bounded: a schedule that cannot even be marked failed must not spin this loop.
        for _ in 0..100 {
            match self.run_one_schedule(now_ms).await? {
                Step::Ran(run) => runs.push(run),
                Step::Skipped => {}
                Step::Nothing => break,
            }
        }
        Ok(runs)
    }

    async fn run_one_schedule(&self, now_ms: i64) -> Result<Step> {
        let attempt = self
            .timed(async {
                let mut draft = self.begin().await?;
                let Some(due) = draft.tx.next_due_schedule(now_ms).await? else {
                    return Ok(None);
                };
                let s = schedule(due.clone())?;
                let late = draft.tx.now_ms() - due.due_at_ms;
                let timing = if late > LATE_MS {
                    format!(
                        "ran late by {} (the servers were down at its time)",
                        human(late)
                    )
                } else {
                    "ran on time".to_owned()
                };
                let set_up_by = due
                    .created_by_name
                    .clone()
                    .unwrap_or_else(|| due.created_by.clone());
                let why = match &due.reason {
                    Some(r) => format!("schedule {} set up by {set_up_by}: {r}; {timing}", due.id),
                    None => format!("schedule {} set up by {set_up_by}; {timing}", due.id),
                };
                let scheduler = Actor {
                    id: "scheduler".into(),
                    name: Some(format!("scheduler (for {set_up_by})")),
                };
                let change = s.op.change(&due.environment);
                let info = audit(
                    &scheduler,
                    change.action(),
                    Some(&due.environment),
                    Some(why),
                );
                match change_in(&mut draft, &due.flag, change, None, info.clone()).await {
                    Ok(changed) => {
                        let outcome = if changed {
                            timing
                        } else {
                            format!("{timing}; the flag was already so, nothing changed")
                        };
                        let done = info_for(&scheduler, "schedule.run", &due, &outcome);
                        draft
                            .tx
                            .finish_schedule(&due.id, "done", &outcome, &done)
                            .await?;
                        draft
                            .emit(
                                "schedule.ran",
                                "schedule",
                                &due.id,
                                &done,
                                json!({"flag": due.flag, "outcome": outcome}),
                            )
                            .await?;
                        draft.finish((), true).await?;
                        Ok(Some(Ok(ScheduleRun {
                            id: due.id,
                            state: "done".into(),
                            outcome,
                        })))
                    }
                    // Dropping the draft rolls the change back; the failure is recorded below.
                    Err(err)
                        if !matches!(
                            err,
                            ControlError::Unavailable { .. } | ControlError::Store(_)
                        ) =>
                    {
                        Ok(Some(Err((due, err.to_string()))))
                    }
                    Err(err) => Err(err),
                }
            })
            .await?;
        match attempt {
            None => Ok(Step::Nothing),
            Some(Ok(run)) => Ok(Step::Ran(run)),
            Some(Err((due, error))) => {
                let outcome = format!("failed: {error}");
                let recorded = self
                    .timed(async {
                        let mut draft = self.begin().await?;
                        // Another replica may have recorded the same failure meanwhile.
                        if draft
                            .tx
                            .schedule(&due.id)
                            .await?
                            .is_none_or(|s| s.state != "pending")
                        {
                            return Ok(false);
                        }
                        let scheduler = Actor {
                            id: "scheduler".into(),
                            name: Some("scheduler".into()),
                        };
                        let info = info_for(&scheduler, "schedule.fail", &due, &outcome);
                        draft
                            .tx
                            .finish_schedule(&due.id, "failed", &outcome, &info)
                            .await?;
                        draft
                            .emit(
                                "schedule.failed",
                                "schedule",
                                &due.id,
                                &info,
                                json!({"flag": due.flag, "outcome": outcome}),
                            )
                            .await?;
                        draft.finish((), true).await?;
                        Ok(true)
                    })
                    .await?;
                if !recorded {
                    return Ok(Step::Skipped);
                }
                tracing::warn!(schedule = %due.id, flag = %due.flag, %outcome, "a scheduled change failed");
                Ok(Step::Ran(ScheduleRun {
                    id: due.id,
                    state: "failed".into(),
                    outcome,
                }))
            }
        }
    }
}

/// One turn of the scheduler.
enum Step {
    Ran(ScheduleRun),
    /// Another replica finished it first.
    Skipped,
    Nothing,
}

fn info_for(actor: &Actor, action: &str, due: &ScheduleRecord, outcome: &str) -> AuditInfo {
    audit(
        actor,
        action,
        Some(&due.environment),
        Some(outcome.to_owned()),
    )
}

fn human(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}
