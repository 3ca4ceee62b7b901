//! Flag and segment operations: create, replace, delete, and the partial changes (enable,
//! kill, rollout, targets, rules, tenants, archive). Partial changes apply to the latest
//! version (checked against `If-Match` only when the caller sends one), on the flag's
//! [normalized](switchyard_engine::normalize()) form, so they work whatever layout the flag
//! was written in; a change that changes nothing is not written.

use switchyard_engine::document::{RuleDef, SegmentDef, ServeDef, TargetDef, TenantDef};
use switchyard_engine::{normalize, FlagDef, TargetingDef};
use switchyard_storage::AuditInfo;

use crate::snapshot::{FlagMeta, SegmentMeta, Snapshot, Source};
use crate::tokens::Actor;
use crate::{Control, ControlError, Result, Written};

/// A flag as stored, owned (what an operation returns).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    /// The definition as stored (its `key` is the flag's key).
    pub definition: FlagDef,
    /// Version, timestamps, archived.
    pub meta: FlagMeta,
}

/// A segment as stored, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSegment {
    /// Its name.
    pub name: String,
    /// Its definition.
    pub definition: SegmentDef,
    /// Version and timestamps.
    pub meta: SegmentMeta,
}

/// A partial change to one flag, at its top level (`environment: None`: every environment
/// that does not override the field) or in one environment.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagChange {
    /// Turn it on or off.
    Enabled {
        /// Where.
        environment: Option<String>,
        /// On or off.
        enabled: bool,
    },
    /// Kill switch on (serve the default everywhere it applies) or released.
    Kill {
        /// Where (a top-level kill switch wins in every environment).
        environment: Option<String>,
        /// On or released.
        on: bool,
    },
    /// Serve the fallthrough to this percentage of units.
    Rollout {
        /// Where.
        environment: Option<String>,
        /// 0–100, in steps of 0.001.
        percentage: f64,
        /// The variant rolled out (default: what the fallthrough serves, or `on`).
        variant: Option<String>,
    },
    /// Replace the individual targets.
    Targets {
        /// Where.
        environment: Option<String>,
        /// The new targets.
        targets: Vec<TargetDef>,
    },
    /// Replace the ordered rules.
    Rules {
        /// Where.
        environment: Option<String>,
        /// The new rules.
        rules: Vec<RuleDef>,
    },
    /// Turn the flag on or off for one tenant (organization), or clear that override.
    Tenant {
        /// Where.
        environment: Option<String>,
        /// The tenant id.
        tenant: String,
        /// What it gets.
        setting: TenantSetting,
    },
    /// Archive (kept, not served) or bring back.
    Archive(bool),
    /// Copy environment `from`'s configuration (enabled, kill switch, targets, rules,
    /// fallthrough, tenants, …) to environment `to`, replacing what `to` had. A running
    /// experiment's block stays where it is.
    Promote {
        /// Copied from.
        from: String,
        /// Copied to.
        to: String,
    },
    /// Add and remove tags.
    Tags {
        /// Tags added (kept once).
        add: Vec<String>,
        /// Tags removed.
        remove: Vec<String>,
    },
}

/// What one tenant gets from [`FlagChange::Tenant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSetting {
    /// On for this tenant, whatever the flag's own `enabled`.
    On,
    /// Off for this tenant.
    Off,
    /// This variant for this tenant.
    Variant(String),
    /// No override: the tenant gets what everyone gets.
    Clear,
}

impl FlagChange {
    /// The audit action it is recorded as.
    pub fn action(&self) -> &'static str {
        match self {
            FlagChange::Enabled { enabled: true, .. } => "flag.enable",
            FlagChange::Enabled { enabled: false, .. } => "flag.disable",
            FlagChange::Kill { on: true, .. } => "flag.kill",
            FlagChange::Kill { on: false, .. } => "flag.release",
            FlagChange::Rollout { .. } => "flag.rollout",
            FlagChange::Targets { .. } => "flag.targets",
            FlagChange::Rules { .. } => "flag.rules",
            FlagChange::Tenant { .. } => "flag.tenant",
            FlagChange::Archive(true) => "flag.archive",
            FlagChange::Archive(false) => "flag.unarchive",
            FlagChange::Promote { .. } => "flag.promote",
            FlagChange::Tags { .. } => "flag.tags",
        }
    }

    /// The environment it is made in, if one.
    pub fn environment(&self) -> Option<&str> {
        match self {
            FlagChange::Enabled { environment, .. }
            | FlagChange::Kill { environment, .. }
            | FlagChange::Rollout { environment, .. }
            | FlagChange::Targets { environment, .. }
            | FlagChange::Rules { environment, .. }
            | FlagChange::Tenant { environment, .. } => environment.as_deref(),
            FlagChange::Promote { to, .. } => Some(to),
            FlagChange::Archive(_) | FlagChange::Tags { .. } => None,
        }
    }

    /// Applies the change to a (normalized) definition, leaving `self` (a check of whether it
    /// would apply).
    pub(crate) fn apply_to(&self, def: &mut FlagDef) -> Result<()> {
        self.clone().apply(def)
    }

    /// Applies the change to a (normalized) definition.
    fn apply(self, def: &mut FlagDef) -> Result<()> {
        fn at<'a>(def: &'a mut FlagDef, env: &Option<String>) -> &'a mut TargetingDef {
            match env {
                Some(e) => def.environments.entry(e.clone()).or_default(),
                None => &mut def.targeting,
            }
        }
        match self {
            FlagChange::Enabled {
                environment,
                enabled,
            } => at(def, &environment).enabled = Some(enabled),
            FlagChange::Kill { environment, on } => at(def, &environment).kill_switch = Some(on),
            FlagChange::Rollout {
                environment,
                percentage,
                variant,
            } => rollout(def, &environment, percentage, variant)?,
            FlagChange::Targets {
                environment,
                targets,
            } => at(def, &environment).targets = Some(targets),
            FlagChange::Rules { environment, rules } => at(def, &environment).rules = Some(rules),
            FlagChange::Tenant {
                environment,
                tenant,
                setting,
            } => {
                let t = at(def, &environment);
                let tenants = t.tenants.get_or_insert_with(Default::default);
                match setting {
                    TenantSetting::Clear => {
                        tenants.remove(&tenant);
                    }
                    TenantSetting::On => {
                        tenants.insert(
                            tenant,
                            TenantDef {
                                enabled: Some(true),
                                ..TenantDef::default()
                            },
                        );
                    }
                    TenantSetting::Off => {
                        tenants.insert(
                            tenant,
                            TenantDef {
                                enabled: Some(false),
                                ..TenantDef::default()
                            },
                        );
                    }
                    TenantSetting::Variant(variant) => {
                        tenants.insert(
                            tenant,
                            TenantDef {
                                variant: Some(variant),
                                ..TenantDef::default()
                            },
                        );
                    }
                }
                if tenants.is_empty() {
                    t.tenants = None;
                }
            }
            FlagChange::Archive(archived) => def.archived = archived,
            FlagChange::Promote { from, to } => {
                if from == to {
                    return Err(ControlError::bad_request(
                        Some("to"),
                        format!("promoting `{from}` to itself changes nothing; name another environment"),
                    ));
                }
                let mut copied = def.environments.get(&from).cloned().unwrap_or_default();
                // An experiment runs where it was started; the target keeps its own (if any).
                copied.experiment = def.environments.get(&to).and_then(|t| t.experiment.clone());
                let empty = serde_json::to_value(&copied)
                    .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()));
                if empty {
                    // Nothing of its own in `from`: `to` inherits the top level too.
                    def.environments.remove(&to);
                } else {
                    def.environments.insert(to, copied);
                }
            }
            FlagChange::Tags { add, remove } => {
                def.tags.retain(|t| !remove.contains(t));
                for t in add {
                    if !def.tags.contains(&t) {
                        def.tags.push(t);
                    }
                }
            }
        }
        Ok(())
    }
}

fn rollout(
    def: &mut FlagDef,
    environment: &Option<String>,
    percentage: f64,
    variant: Option<String>,
) -> Result<()> {
    let has_on = match &def.variants {
        None => true,
        Some(v) => v.iter().any(|(k, _, _)| k == "on"),
    };
    let inherited = def.targeting.fallthrough.clone();
    let slot = match environment {
        Some(e) => &mut def.environments.entry(e.clone()).or_default().fallthrough,
        None => &mut def.targeting.fallthrough,
    };
    let mut serve: ServeDef = slot.clone().or(inherited).unwrap_or_default();
    if let Some(v) = variant {
        serve.variant = Some(v);
        serve.value = None;
        serve.split = None;
    } else if serve.variant.is_none() && serve.value.is_none() && serve.split.is_none() {
        if !has_on {
            return Err(ControlError::bad_request(
                Some("variant"),
                "the flag's fallthrough serves nothing yet and it has no `on` variant: say which variant to roll out with `variant`",
            ));
        }
        serve.variant = Some("on".to_owned());
    }
    serve.percentage = Some(percentage);
    *slot = Some(serve);
    Ok(())
}

impl Control {
    pub(crate) fn ensure_flags_writable(&self) -> Result<()> {
        match self.source() {
            Source::File(path) => Err(ControlError::ReadOnly {
                path: path.display().to_string(),
            }),
            Source::Store => Ok(()),
        }
    }

    /// Creates a flag; [`ControlError::AlreadyExists`] if its key is taken.
    pub async fn create_flag(
        &self,
        mut def: FlagDef,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<StoredFlag>> {
        self.ensure_flags_writable()?;
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                if draft.snap.flag(&def.key).is_some() {
                    return Err(ControlError::AlreadyExists {
                        what: format!("flag `{}`", def.key),
                    });
                }
                managed_experiments(&mut def, None)?;
                let key = def.key.clone();
                if crate::requests::is_person(actor) {
                    // A new flag is served at once: where approval is required, it waits too
                    // (made against version 0: approving it finds the key still free).
                    let absent = FlagDef {
                        key: key.clone(),
                        ..FlagDef::default()
                    };
                    if let Some(request) = crate::requests::hold_if_required(
                        &mut draft,
                        &key,
                        (absent, def.clone(), 0),
                        "flag.create",
                        actor,
                        reason.clone(),
                    )
                    .await?
                    {
                        return draft.finish(Err(request), true).await;
                    }
                }
                let audit = audit(actor, "flag.create", None, reason);
                draft.put_flag(def, audit).await?;
                let value = stored_flag(&draft.snap, &key)?;
                draft.finish(Ok(value), true).await
            })
            .await?;
        crate::requests::applied_or_held(written)
    }

    /// Replaces a flag's definition. A replacement needs the version it replaces
    /// (`if_match`), unless `force`d: without it a concurrent change would be silently lost.
    /// The archived state is kept (archive and unarchive change it).
    pub async fn replace_flag(
        &self,
        key: &str,
        mut def: FlagDef,
        if_match: Option<i64>,
        force: bool,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<StoredFlag>> {
        self.ensure_flags_writable()?;
        if def.key.is_empty() {
            def.key = key.to_owned();
        } else if def.key != key {
            return Err(ControlError::bad_request(
                Some("key"),
                format!("the definition's key `{}` differs from `{key}`", def.key),
            ));
        }
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                let current = require_flag(&draft.snap, key)?;
                let version = current.meta.version;
                check_version(key, version, if_match, !force)?;
                def.archived = current.meta.archived;
                managed_experiments(&mut def, Some(current.definition))?;
                if same_definition(&def, current.definition) {
                    let value = stored_flag(&draft.snap, key)?;
                    return draft.finish(Ok(value), false).await;
                }
                if crate::requests::is_person(actor) {
                    let (before, _) = normalize(current.definition);
                    if let Some(request) = crate::requests::hold_if_required(
                        &mut draft,
                        key,
                        (before, def.clone(), version),
                        "flag.update",
                        actor,
                        reason.clone(),
                    )
                    .await?
                    {
                        return draft.finish(Err(request), true).await;
                    }
                }
                let audit = audit(actor, "flag.update", None, reason);
                draft.put_flag(def, audit).await?;
                let value = stored_flag(&draft.snap, key)?;
                draft.finish(Ok(value), true).await
            })
            .await?;
        crate::requests::applied_or_held(written)
    }

    /// Deletes a flag (refused, with the flags that need it, while others require it).
    pub async fn delete_flag(
        &self,
        key: &str,
        if_match: Option<i64>,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<()>> {
        self.ensure_flags_writable()?;
        self.timed(async {
            let mut draft = self.begin().await?;
            let current = require_flag(&draft.snap, key)?;
            check_version(key, current.meta.version, if_match, false)?;
            if crate::requests::is_person(actor) && !current.meta.archived {
                let guarded: Vec<&str> = draft
                    .snap
                    .environments()
                    .filter(|e| e.require_approval)
                    .map(|e| e.name.as_str())
                    .collect();
                if !guarded.is_empty() {
                    return Err(ControlError::Refused {
                        message: format!(
                            "{} requires approval, and deleting `{key}` would change what it serves at once: archive it first (archiving waits for approval like any change), then delete the archived flag",
                            guarded.join(", ")
                        ),
                    });
                }
            }
            if let Some((env, block)) = current
                .definition
                .environments
                .iter()
                .find_map(|(env, t)| Some((env, t.experiment.as_ref()?)))
            {
                return Err(ControlError::Refused {
                    message: format!(
                        "experiment `{}` is running on flag `{key}` in `{env}`; complete or cancel it first",
                        block.id
                    ),
                });
            }
            draft
                .delete_flag(key, audit(actor, "flag.delete", None, reason))
                .await?;
            draft.finish((), true).await
        })
        .await
    }

    /// Applies a partial change to the latest version of a flag (or to `if_match`'s, which
    /// must then be the latest). Asking for what is already there changes nothing.
    pub async fn change_flag(
        &self,
        key: &str,
        change: FlagChange,
        if_match: Option<i64>,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<StoredFlag>> {
        self.ensure_flags_writable()?;
        let written = self
            .timed(async {
                let mut draft = self.begin().await?;
                // The kill switch never waits for approval: stopping harm is always allowed.
                let emergency = matches!(change, FlagChange::Kill { on: true, .. });
                if !emergency && crate::requests::is_person(actor) {
                    if let Some((before, after, version)) =
                        prepare_change(&draft.snap, key, &change, if_match)?
                    {
                        if let Some(request) = crate::requests::hold_if_required(
                            &mut draft,
                            key,
                            (before, after, version),
                            change.action(),
                            actor,
                            reason.clone(),
                        )
                        .await?
                        {
                            return draft.finish(Err(request), true).await;
                        }
                    }
                }
                let info = audit(actor, change.action(), change.environment(), reason);
                let changed = change_in(&mut draft, key, change, if_match, info).await?;
                let value = stored_flag(&draft.snap, key)?;
                draft.finish(Ok(value), changed).await
            })
            .await?;
        crate::requests::applied_or_held(written)
    }

    /// What `change` would make of the flag now, without making it: the definition before
    /// and after (`None` when it would change nothing), checked against `if_match` as the
    /// change would be. For previews (promotion's diff, dry runs).
    pub fn preview_change(
        &self,
        key: &str,
        change: &FlagChange,
        if_match: Option<i64>,
    ) -> Result<Option<(FlagDef, FlagDef)>> {
        Ok(prepare_change(&self.snapshot(), key, change, if_match)?.map(|(b, a, _)| (b, a)))
    }

    /// Applies one change to many flags in one transaction: every flag changed (each with its
    /// own audit entry) or none. Refused as a whole when a flag is unknown, when the change
    /// does not apply to one of them, or when one of them would need approval (change those
    /// one by one, each becoming a request).
    pub async fn bulk_change(
        &self,
        keys: &[String],
        change: FlagChange,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Vec<StoredFlag>>> {
        self.ensure_flags_writable()?;
        if keys.is_empty() {
            return Err(ControlError::bad_request(
                Some("flags"),
                "name at least one flag",
            ));
        }
        let mut unique: Vec<&String> = Vec::new();
        for k in keys {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        self.timed(async {
            let mut draft = self.begin().await?;
            let mut changed = false;
            for key in &unique {
                let Some((before, after, _)) = prepare_change(&draft.snap, key, &change, None)?
                else {
                    continue;
                };
                if crate::requests::is_person(actor)
                    && !matches!(change, FlagChange::Kill { on: true, .. })
                {
                    let guarded = crate::requests::guarded_environments(&draft.snap, &before, &after);
                    if !guarded.is_empty() {
                        return Err(ControlError::Refused {
                            message: format!(
                                "flag `{key}` in {} requires approval, which a bulk change cannot wait for; change it on its own (it becomes a change request), or leave it out",
                                guarded.join(", ")
                            ),
                        });
                    }
                }
                let info = audit(
                    actor,
                    change.action(),
                    change.environment(),
                    Some(match &reason {
                        Some(r) => format!("{r} (bulk change of {} flags)", unique.len()),
                        None => format!("bulk change of {} flags", unique.len()),
                    }),
                );
                draft.put_flag(after, info).await?;
                changed = true;
            }
            let flags = unique
                .iter()
                .map(|k| stored_flag(&draft.snap, k))
                .collect::<Result<Vec<_>>>()?;
            draft.finish(flags, changed).await
        })
        .await
    }

    /// Creates or replaces a segment. Replacing one needs the version it replaces
    /// (`if_match`), unless `force`d.
    pub async fn put_segment(
        &self,
        name: &str,
        def: SegmentDef,
        if_match: Option<i64>,
        force: bool,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<StoredSegment>> {
        self.ensure_flags_writable()?;
        if !switchyard_engine::is_valid_key(name) {
            return Err(ControlError::bad_request(
                Some("name"),
                format!(
                    "invalid segment name `{name}`: use 1–128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
                ),
            ));
        }
        self.timed(async {
            let mut draft = self.begin().await?;
            let action = match draft.snap.segment(name) {
                Some(current) => {
                    check_version(
                        &format!("segment `{name}`"),
                        current.meta.version,
                        if_match,
                        !force,
                    )?;
                    if current.definition == &def {
                        let value = stored_segment(&draft.snap, name)?;
                        return draft.finish(value, false).await;
                    }
                    "segment.update"
                }
                None => {
                    if let Some(v) = if_match {
                        return Err(ControlError::Stale {
                            what: format!("segment `{name}`"),
                            expected: v,
                            current: 0,
                        });
                    }
                    "segment.create"
                }
            };
            draft
                .put_segment(name, def, audit(actor, action, None, reason))
                .await?;
            let value = stored_segment(&draft.snap, name)?;
            draft.finish(value, true).await
        })
        .await
    }

    /// Deletes a segment (refused, naming the flags and segments that use it, while in use).
    pub async fn delete_segment(
        &self,
        name: &str,
        if_match: Option<i64>,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<()>> {
        self.ensure_flags_writable()?;
        self.timed(async {
            let mut draft = self.begin().await?;
            let current = draft
                .snap
                .segment(name)
                .ok_or_else(|| not_found_segment(&draft.snap, name))?;
            check_version(
                &format!("segment `{name}`"),
                current.meta.version,
                if_match,
                false,
            )?;
            draft
                .delete_segment(name, audit(actor, "segment.delete", None, reason))
                .await?;
            draft.finish((), true).await
        })
        .await
    }

    /// Runs one operation within the configured time, so a store that stops answering mid-way
    /// fails the call instead of hanging it.
    pub(crate) async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.settings().operation_timeout, op).await {
            Ok(result) => result,
            Err(_) => {
                let reason = format!(
                    "the store did not answer within {:?}; the change was not confirmed (check the audit log before retrying)",
                    self.settings().operation_timeout
                );
                self.mark_down(&reason);
                Err(ControlError::Unavailable {
                    reason,
                    source: None,
                })
            }
        }
    }
}

/// Applies `change` to the latest version of `key` inside `draft` (the body of
/// [`Control::change_flag`], shared with the scheduler). Whether anything changed.
pub(crate) async fn change_in(
    draft: &mut crate::draft::Draft,
    key: &str,
    change: FlagChange,
    if_match: Option<i64>,
    info: AuditInfo,
) -> Result<bool> {
    let Some((_, after, _)) = prepare_change(&draft.snap, key, &change, if_match)? else {
        return Ok(false);
    };
    draft.put_flag(after, info).await?;
    Ok(true)
}

/// The flag's definition before and after `change`, and the version it applies to; `None`
/// when the change asks for what is already there.
pub(crate) fn prepare_change(
    snap: &Snapshot,
    key: &str,
    change: &FlagChange,
    if_match: Option<i64>,
) -> Result<Option<(FlagDef, FlagDef, i64)>> {
    if let Some(env) = change.environment() {
        require_environment(snap, env)?;
    }
    if let FlagChange::Promote { from, .. } = change {
        require_environment(snap, from)?;
    }
    let current = require_flag(snap, key)?;
    check_version(key, current.meta.version, if_match, false)?;
    let (before, _) = normalize(current.definition);
    let mut after = before.clone();
    change.apply_to(&mut after)?;
    if same_definition(&after, &before) {
        return Ok(None);
    }
    Ok(Some((before, after, current.meta.version)))
}

fn stored_flag(snap: &Snapshot, key: &str) -> Result<StoredFlag> {
    let view = require_flag(snap, key)?;
    Ok(StoredFlag {
        definition: view.definition.clone(),
        meta: view.meta.clone(),
    })
}

fn stored_segment(snap: &Snapshot, name: &str) -> Result<StoredSegment> {
    let view = snap
        .segment(name)
        .ok_or_else(|| ControlError::not_found(format!("segment `{name}`")))?;
    Ok(StoredSegment {
        name: name.to_owned(),
        definition: view.definition.clone(),
        meta: *view.meta,
    })
}

pub(crate) fn require_flag<'s>(snap: &'s Snapshot, key: &str) -> Result<crate::FlagView<'s>> {
    snap.flag(key).ok_or_else(|| ControlError::NotFound {
        what: format!("flag `{key}`"),
        hint: suggest(key, snap.flags().map(|f| f.definition.key.as_str()))
            .map(|s| format!("did you mean `{s}`?")),
    })
}

fn not_found_segment(snap: &Snapshot, name: &str) -> ControlError {
    ControlError::NotFound {
        what: format!("segment `{name}`"),
        hint: suggest(name, snap.segments().map(|s| s.name))
            .map(|s| format!("did you mean `{s}`?")),
    }
}

pub(crate) fn require_environment(snap: &Snapshot, env: &str) -> Result<()> {
    if snap.environment(env).is_some() {
        return Ok(());
    }
    Err(ControlError::NotFound {
        what: format!("environment `{env}`"),
        hint: Some(
            match suggest(env, snap.environments().map(|e| e.name.as_str())) {
                Some(s) => format!("did you mean `{s}`? ({})", snap.environment_names()),
                None => snap.environment_names(),
            },
        ),
    })
}

/// Checks `if_match` against the stored version; with `required`, a missing one is refused.
pub(crate) fn check_version(
    what: &str,
    current: i64,
    if_match: Option<i64>,
    required: bool,
) -> Result<()> {
    let what = if what.contains('`') {
        what.to_owned()
    } else {
        format!("flag `{what}`")
    };
    match if_match {
        Some(expected) if expected != current => Err(ControlError::Stale {
            what,
            expected,
            current,
        }),
        None if required => Err(ControlError::PreconditionRequired { what, current }),
        _ => Ok(()),
    }
}

/// Running experiments' blocks belong to the experiments API: a replacement keeps the stored
/// ones (a definition read, edited and sent back may carry them unchanged, or leave them out)
/// and may not add, change or remove one; a create may not bring one.
pub(crate) fn managed_experiments(def: &mut FlagDef, current: Option<&FlagDef>) -> Result<()> {
    let stored = |env: &str| {
        current
            .and_then(|c| c.environments.get(env))
            .and_then(|t| t.experiment.as_ref())
    };
    if def.targeting.experiment.is_some() {
        return Err(ControlError::bad_request(
            Some("experiment"),
            "experiments are started with the experiments API (`switchyard experiments start`), not written into a flag",
        ));
    }
    for (env, t) in &def.environments {
        if let Some(block) = &t.experiment {
            if stored(env) != Some(block) {
                return Err(ControlError::bad_request(
                    Some(&format!("environments.{env}.experiment")),
                    "experiments are started, paused and stopped with the experiments API (`switchyard experiments …`), not written into a flag",
                ));
            }
        }
    }
    if let Some(current) = current {
        for (env, t) in &current.environments {
            if let Some(block) = &t.experiment {
                def.environments.entry(env.clone()).or_default().experiment = Some(block.clone());
            }
        }
    }
    Ok(())
}

/// Whether two definitions are the same as stored (serialized), whatever their origins.
pub(crate) fn same_definition(a: &FlagDef, b: &FlagDef) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(crate) fn audit(
    actor: &Actor,
    action: &str,
    environment: Option<&str>,
    reason: Option<String>,
) -> AuditInfo {
    AuditInfo {
        actor: actor.id.clone(),
        actor_name: actor.name.clone(),
        action: action.to_owned(),
        environment: environment.map(str::to_owned),
        reason: reason.filter(|r| !r.trim().is_empty()),
    }
}

/// The candidate closest to `name` if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (by characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = ["checkout-redesign", "dark-mode", "search-v2"];
        assert_eq!(
            suggest("checkout-redsign", keys.into_iter()),
            Some("checkout-redesign")
        );
        assert_eq!(suggest("dark-mod", keys.into_iter()), Some("dark-mode"));
        assert_eq!(suggest("billing", keys.into_iter()), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
