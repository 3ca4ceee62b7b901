//! Four-eyes approvals. In an environment that requires approval, a person's change to a flag
//! (other than turning a kill switch on: stopping harm never waits) is not applied: it is
//! validated, then kept as a change request — the definition before and after, and the
//! version it was made against — in the same transaction as its audit entry. Someone else
//! with the editor or admin role approves it (applied through the control layer like any
//! change, audited as the approver naming the author) or rejects it; the author never
//! approves their own. A request whose flag changed meanwhile is refused as stale and marked
//! so: approving it would silently undo the newer change.
//!
//! Automatic actors (the scheduler, rollouts, guards) are not held: a person set each of them
//! up, and a rollback or a kill switch waiting for a second person would defeat its purpose.

use serde_json::json;
use switchyard_api_types::requests::ChangeRequest;
use switchyard_engine::FlagDef;
use switchyard_storage::{AuditInfo, Expect, ItemKind};

use crate::draft::{new_id, read_item, Draft};
use crate::flags::{audit, same_definition};
use crate::snapshot::Snapshot;
use crate::tokens::Actor;
use crate::{Control, ControlError, Result, StoredFlag, Written};

/// Whether `actor` is a person (an API token), whose changes approval policies apply to.
pub(crate) fn is_person(actor: &Actor) -> bool {
    actor.id.starts_with("token:")
}

/// Refuses what a person sets up to change flags later without approval (a schedule, a
/// progressive rollout, an import) where `environments` include one that requires it.
pub(crate) fn refuse_unapproved<'e>(
    snap: &Snapshot,
    environments: impl IntoIterator<Item = &'e str>,
    actor: &Actor,
    what: &str,
) -> Result<()> {
    if !is_person(actor) {
        return Ok(());
    }
    let guarded: Vec<&str> = environments
        .into_iter()
        .filter(|e| snap.environment(e).is_some_and(|e| e.require_approval))
        .collect();
    if guarded.is_empty() {
        return Ok(());
    }
    Err(ControlError::Refused {
        message: format!(
            "{} requires approval, and {what} would change flags there without it; make the change itself (it becomes a change request), or lift the requirement first",
            guarded.join(", ")
        ),
    })
}

/// The environments requiring approval whose served configuration `before` → `after`
/// changes (all of them when anything outside the environments' own blocks changes).
pub(crate) fn guarded_environments(
    snap: &Snapshot,
    before: &FlagDef,
    after: &FlagDef,
) -> Vec<String> {
    // What does not change what is served: the environments' own blocks (compared one by
    // one below) and the descriptive fields.
    let strip = |d: &FlagDef| {
        let mut d = d.clone();
        d.environments.clear();
        d.tags.clear();
        d.name = None;
        d.description = None;
        d.owner = None;
        d.lifecycle = None;
        d.created_at = None;
        d.updated_at = None;
        d
    };
    let everywhere = !same_definition(&strip(before), &strip(after));
    let block = |d: &FlagDef, e: &str| {
        d.environments
            .get(e)
            .and_then(|t| serde_json::to_value(t).ok())
    };
    snap.environments()
        .filter(|e| e.require_approval)
        .filter(|e| everywhere || block(before, &e.name) != block(after, &e.name))
        .map(|e| e.name.clone())
        .collect()
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v)
        .map_err(|e| ControlError::Internal(format!("a change request does not serialize: {e}")))
}

/// Keeps `before → after` (at `version`) as a pending request when a guarded environment is
/// touched; `None` when the change may be applied at once. The proposed definition is
/// validated first, so an approval never fails on a mistake the author could have seen.
pub(crate) async fn hold_if_required(
    draft: &mut Draft,
    key: &str,
    (before, after, version): (FlagDef, FlagDef, i64),
    action: &str,
    actor: &Actor,
    reason: Option<String>,
) -> Result<Option<ChangeRequest>> {
    // A replacement may be written in the compact layout: compare its normalized form.
    let (normalized, _) = switchyard_engine::normalize(&after);
    let environments = guarded_environments(&draft.snap, &before, &normalized);
    if environments.is_empty() {
        return Ok(None);
    }
    draft.validate_flag(after.clone()).await?;
    let request = ChangeRequest {
        id: new_id("req_")?,
        flag: key.to_owned(),
        environments,
        action: action.to_owned(),
        status: "pending".into(),
        base_version: version,
        before: to_value(&before)?,
        after: to_value(&after)?,
        author: actor.id.clone(),
        author_name: actor.name.clone(),
        reason: reason.clone(),
        created_at: crate::rfc3339(draft.tx.now_ms()),
        decided_by: None,
        decided_at: None,
        note: None,
    };
    let info = audit(
        actor,
        "request.create",
        request.environments.first().map(String::as_str),
        reason,
    );
    draft
        .put_item(
            ItemKind::Request,
            &request.id,
            &request,
            Expect::Absent,
            &info,
        )
        .await?;
    draft
        .emit(
            "request.created",
            "request",
            &request.id,
            &info,
            json!({"flag": key, "action": action, "environments": request.environments}),
        )
        .await?;
    Ok(Some(request))
}

/// A held change as the error that says so; an applied one as it is.
pub(crate) fn applied_or_held(
    written: Written<std::result::Result<StoredFlag, ChangeRequest>>,
) -> Result<Written<StoredFlag>> {
    match written.value {
        Ok(value) => Ok(Written {
            value,
            changed: written.changed,
            revision: written.revision,
        }),
        Err(request) => Err(ControlError::ApprovalRequired {
            request: Box::new(request),
        }),
    }
}

/// What a decision did, kept apart from the error it may become once committed.
enum Decided {
    Done(Box<ChangeRequest>),
    Stale(String),
}

impl Control {
    /// Sets whether a person's flag change in `environment` waits for approval.
    pub async fn set_environment_policy(
        &self,
        environment: &str,
        require_approval: bool,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<switchyard_storage::EnvironmentRecord>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            crate::flags::require_environment(&draft.snap, environment)?;
            let current = draft.snap.environment(environment).cloned();
            if let Some(record) = current.filter(|e| e.require_approval == require_approval) {
                return draft.finish(record, false).await;
            }
            let info = audit(actor, "environment.policy", Some(environment), reason);
            let record = draft
                .tx
                .set_environment_policy(environment, require_approval, &info)
                .await?;
            draft.snap.put_environment(record.clone());
            draft.finish(record, true).await
        })
        .await
    }

    /// Every change request, newest first.
    pub async fn requests(&self) -> Result<Vec<ChangeRequest>> {
        let mut out: Vec<ChangeRequest> = self
            .require_store()?
            .list_items(ItemKind::Request)
            .await?
            .iter()
            .map(read_item)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// The change request `id`.
    pub async fn request(&self, id: &str) -> Result<ChangeRequest> {
        match self
            .require_store()?
            .get_item(ItemKind::Request, id)
            .await?
        {
            Some(r) => read_item(&r),
            None => Err(ControlError::not_found(format!("change request `{id}`"))),
        }
    }

    /// Approves a pending request: applies its definition if the flag is still at the version
    /// it was made against (otherwise marks it stale and refuses).
    pub async fn approve_request(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<ChangeRequest>> {
        self.decide(id, actor, reason, true).await
    }

    /// Rejects a pending request (its author may withdraw it this way).
    pub async fn reject_request(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<ChangeRequest>> {
        self.decide(id, actor, reason, false).await
    }

    async fn decide(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
        approve: bool,
    ) -> Result<Written<ChangeRequest>> {
        self.ensure_flags_writable()?;
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                let Some(record) = draft.tx.item(ItemKind::Request, id).await? else {
                    return Err(ControlError::not_found(format!("change request `{id}`")));
                };
                let mut request: ChangeRequest = read_item(&record)?;
                if request.status != "pending" {
                    return Err(ControlError::Refused {
                        message: format!(
                            "change request `{id}` is {}; only a pending one can be decided",
                            request.status
                        ),
                    });
                }
                if approve && actor.id == request.author {
                    return Err(ControlError::Refused {
                        message: format!(
                            "you asked for change request `{id}`: someone else with the editor or admin role must approve it"
                        ),
                    });
                }
                let now = draft.tx.now_ms();
                let env = request.environments.first().cloned();
                request.decided_by = Some(actor.name.clone().unwrap_or_else(|| actor.id.clone()));
                request.decided_at = Some(crate::rfc3339(now));
                request.note = reason.clone();
                // A held creation was made against version 0: the key must still be free.
                let current = draft
                    .snap
                    .flag(&request.flag)
                    .map_or(Some(0), |f| Some(f.meta.version));
                let (action, event, outcome) = if !approve {
                    request.status = "rejected".into();
                    ("request.reject", "request.rejected", None)
                } else if current != Some(request.base_version) {
                    let why = match (request.base_version, current.unwrap_or(0)) {
                        (_, 0) => format!("flag `{}` no longer exists", request.flag),
                        (0, _) => format!(
                            "flag `{}` was created by someone else meanwhile",
                            request.flag
                        ),
                        (base, v) => format!(
                            "flag `{}` changed since the request (version {base} → {v}); approving it would undo that change — ask again on the current version",
                            request.flag
                        ),
                    };
                    request.status = "stale".into();
                    request.note = Some(why.clone());
                    ("request.stale", "request.stale", Some(why))
                } else {
                    let after: FlagDef = serde_json::from_value(request.after.clone())
                        .map_err(|e| {
                            ControlError::Internal(format!(
                                "the request's definition does not read: {e}"
                            ))
                        })?;
                    let author = request
                        .author_name
                        .clone()
                        .unwrap_or_else(|| request.author.clone());
                    let approver = actor.name.clone().unwrap_or_else(|| actor.id.clone());
                    let why = match (&request.reason, &reason) {
                        (Some(r), Some(n)) => format!("{r} (approved: {n})"),
                        (Some(r), None) => r.clone(),
                        (None, Some(n)) => format!("approved: {n}"),
                        (None, None) => format!("approved request {id}"),
                    };
                    let info = AuditInfo {
                        actor: actor.id.clone(),
                        actor_name: Some(format!("{approver}, approving {author}'s request {id}")),
                        action: request.action.clone(),
                        environment: env.clone(),
                        reason: Some(why),
                    };
                    draft.put_flag(after, info).await?;
                    request.status = "applied".into();
                    ("request.approve", "request.approved", None)
                };
                let info = audit(actor, action, env.as_deref(), reason);
                draft
                    .put_item(
                        ItemKind::Request,
                        id,
                        &request,
                        Expect::Version(record.version),
                        &info,
                    )
                    .await?;
                draft
                    .emit(
                        event,
                        "request",
                        id,
                        &info,
                        json!({"flag": request.flag, "status": request.status, "author": request.author}),
                    )
                    .await?;
                let value = match outcome {
                    None => Decided::Done(Box::new(request)),
                    Some(why) => Decided::Stale(why),
                };
                draft.finish(value, true).await
            })
            .await?;
        match written.value {
            Decided::Done(value) => Ok(Written {
                value: *value,
                changed: written.changed,
                revision: written.revision,
            }),
            Decided::Stale(message) => Err(ControlError::Refused { message }),
        }
    }
}
