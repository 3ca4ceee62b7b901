//! [`Draft`]: one operation's transaction. It holds this replica's write lock and the store's
//! global write lock, starts from the snapshot brought up to the store's revision inside that
//! lock, validates every change against it incrementally, and publishes it after commit.

use std::sync::Arc;

use switchyard_engine::document::SegmentDef;
use switchyard_engine::{Change, Diagnostic, FlagDef, Ruleset};
use switchyard_storage::{
    AuditInfo, Expect, FlagRecord, ItemKind, ItemRecord, SegmentRecord, Write, WriteTx,
};

use crate::snapshot::{stored_origin, Snapshot};
use crate::{Control, ControlError, Result, Served, StoreStatus};

/// A stored id-keyed record (rollout, guard, change request, …) read as `T`.
pub(crate) fn read_item<T: serde::de::DeserializeOwned>(record: &ItemRecord) -> Result<T> {
    serde_json::from_value(record.definition.clone()).map_err(|e| {
        ControlError::Internal(format!(
            "the stored record `{}` does not read: {e}",
            record.id
        ))
    })
}

/// An id for a new record: `prefix` and 12 random hex digits (`ro_3f9a1c…`).
pub(crate) fn new_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)
        .map_err(|e| ControlError::Internal(format!("no randomness for an id: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// An operation in progress (see the module docs). Dropping it rolls back.
pub(crate) struct Draft {
    _local: tokio::sync::OwnedMutexGuard<()>,
    pub(crate) tx: WriteTx,
    /// The snapshot at the store's revision, with this draft's changes applied.
    pub(crate) snap: Snapshot,
    control: Control,
    /// The webhook subscriptions, read once when the draft first emits an event.
    pub(crate) webhooks: Option<Vec<switchyard_api_types::webhooks::WebhookSpec>>,
}

impl Control {
    /// Starts an operation: fails at once while the store is known to be down; waits (a
    /// bounded time) for this replica's other writes; takes the global write lock; and brings
    /// the snapshot up to the store's revision from inside the lock.
    pub(crate) async fn begin(&self) -> Result<Draft> {
        let store = self.require_store()?.clone();
        if let StoreStatus::Down { reason, .. } = self.store_status() {
            return Err(ControlError::Unavailable {
                reason: format!("{reason} (writes resume by themselves once it answers)"),
                source: None,
            });
        }
        let local = tokio::time::timeout(
            self.settings().lock_timeout,
            Arc::clone(&self.inner.write_lock).lock_owned(),
        )
        .await
        .map_err(|_| ControlError::Unavailable {
            reason: format!(
                "other changes on this server have waited for the store for over {:?}",
                self.settings().lock_timeout
            ),
            source: None,
        })?;
        let mut tx = self.observe(store.begin_write().await.map_err(ControlError::from))?;
        let base = self.snapshot();
        let since = base.ruleset_revision;
        let mut reloaded = false;
        let snap = match self.observe(
            tx.changes_since(base.revision)
                .await
                .map_err(ControlError::from),
        )? {
            Some(changes) if changes.is_empty() => {
                let mut snap = (*base).clone();
                snap.revision = snap.revision.max(changes.revision);
                snap
            }
            Some(changes) => {
                let (snap, diagnostics) = blocking(move || base.with_changes(&changes)).await?;
                log_stored_problems(&diagnostics);
                snap
            }
            None => {
                reloaded = true;
                let state = self.observe(tx.state().await.map_err(ControlError::from))?;
                let source = self.source().clone();
                let file = self.file_ruleset_for_reload(&base);
                let (snap, diagnostics) =
                    blocking(move || Snapshot::from_state(&state, source, file)).await?;
                log_stored_problems(&diagnostics);
                snap
            }
        };
        let mut snap = snap;
        // What this operation changes is recorded from the snapshot it started from (the
        // changes caught up from other replicas are already recorded since that one); after
        // a full reload nothing is known to have changed: streams resend everything.
        if !reloaded {
            snap.begin_delta(since);
        }
        Ok(Draft {
            _local: local,
            tx,
            snap,
            control: self.clone(),
            webhooks: None,
        })
    }
}

/// Validates `changes` against `ruleset` (incrementally, off the async threads): the new
/// ruleset, or every problem. (A free function: a `Draft` holds a connection, which is `Send`
/// but not `Sync`, so no `&Draft` may live across an await.)
pub(crate) async fn check(ruleset: Ruleset, changes: Vec<Change>) -> Result<Ruleset> {
    let (next, diagnostics) = blocking(move || ruleset.apply(&changes)).await?;
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(ControlError::invalid(diagnostics));
    }
    Ok(next)
}

fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| ControlError::Internal(format!("a definition does not serialize: {e}")))
}

/// Runs CPU work (compiling) off the async worker threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControlError::Internal(format!("a compile task failed: {e}")))
}

/// Stored definitions that do not compile can only come from an older or newer engine:
/// they are not served (the rest is), and said loudly.
pub(crate) fn log_stored_problems(diagnostics: &[Diagnostic]) {
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        tracing::error!(diagnostic = %d, "a stored definition does not compile; it is not served");
    }
}

impl Draft {
    /// Writes `value` as the record `id` of `kind`, audited with `info`; the stored record.
    pub(crate) async fn put_item<T: serde::Serialize>(
        &mut self,
        kind: ItemKind,
        id: &str,
        value: &T,
        expect: Expect,
        info: &AuditInfo,
    ) -> Result<ItemRecord> {
        let definition = serde_json::to_value(value)
            .map_err(|e| ControlError::Internal(format!("`{id}` does not serialize: {e}")))?;
        self.tx
            .write_item(
                kind,
                &Write {
                    key: id.to_owned(),
                    expect,
                    definition: Some(definition),
                    archived: false,
                    audit: info.clone(),
                },
            )
            .await?
            .ok_or_else(|| ControlError::Internal(format!("`{id}` was written but not returned")))
    }

    /// Validates and writes a flag (created when absent), audited and in the feed.
    pub(crate) async fn put_flag(&mut self, def: FlagDef, audit: AuditInfo) -> Result<FlagRecord> {
        let (_, mut flags) = self.put_batch(Vec::new(), vec![(def, audit)]).await?;
        flags
            .pop()
            .ok_or_else(|| ControlError::Internal("a written flag was not returned".into()))
    }

    /// Validates a flag as [`Draft::put_flag`] would, without writing it. (The future does
    /// not borrow the draft, so it may be awaited while the draft is held.)
    pub(crate) fn validate_flag(
        &self,
        mut def: FlagDef,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        def.origin = stored_origin(&def.key);
        def.provenance = Default::default();
        let ruleset = self.snap.ruleset.clone();
        async move {
            check(ruleset, vec![Change::Flag(Box::new(def))]).await?;
            Ok(())
        }
    }

    /// Validates and writes a segment (created when absent).
    pub(crate) async fn put_segment(
        &mut self,
        name: &str,
        def: SegmentDef,
        audit: AuditInfo,
    ) -> Result<SegmentRecord> {
        let (mut segments, _) = self
            .put_batch(vec![(name.to_owned(), def, audit)], Vec::new())
            .await?;
        segments
            .pop()
            .ok_or_else(|| ControlError::Internal("a written segment was not returned".into()))
    }

    /// Validates segments and flags together (one incremental compile for the whole batch)
    /// and writes each, audited and in the feed; returns what was stored.
    pub(crate) async fn put_batch(
        &mut self,
        segments: Vec<(String, SegmentDef, AuditInfo)>,
        flags: Vec<(FlagDef, AuditInfo)>,
    ) -> Result<(Vec<SegmentRecord>, Vec<FlagRecord>)> {
        if segments.is_empty() && flags.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let flags: Vec<(FlagDef, AuditInfo)> = flags
            .into_iter()
            .map(|(mut def, audit)| {
                def.origin = stored_origin(&def.key);
                def.provenance = Default::default();
                (def, audit)
            })
            .collect();
        let changes = segments
            .iter()
            .map(|(name, def, _)| Change::Segment(name.clone(), def.clone()))
            .chain(
                flags
                    .iter()
                    .map(|(def, _)| Change::Flag(Box::new(def.clone()))),
            )
            .collect();
        let ruleset = check(self.snap.ruleset.clone(), changes).await?;
        let mut segment_records = Vec::with_capacity(segments.len());
        for (name, def, audit) in segments {
            let expect = match self.snap.segment(&name) {
                Some(current) => Expect::Version(current.meta.version),
                None => Expect::Absent,
            };
            let write = Write {
                key: name,
                expect,
                definition: Some(to_json(&def)?),
                archived: false,
                audit,
            };
            segment_records.extend(self.tx.write_segment(&write).await?);
        }
        let mut flag_records = Vec::with_capacity(flags.len());
        let mut events = Vec::with_capacity(flags.len());
        for (def, audit) in flags {
            let expect = match self.snap.flag(&def.key) {
                Some(current) => Expect::Version(current.meta.version),
                None => Expect::Absent,
            };
            let write = Write {
                key: def.key.clone(),
                expect,
                definition: Some(to_json(&def)?),
                archived: def.archived,
                audit,
            };
            let written = self.tx.write_flag(&write).await?;
            if let Some(record) = &written {
                events.push((def.key.clone(), write.audit, record.version));
            }
            flag_records.extend(written);
        }
        for (key, info, version) in events {
            let event = crate::webhooks::flag_event(&info.action);
            self.emit(
                event,
                "flag",
                &key,
                &info,
                serde_json::json!({"version": version, "action": info.action}),
            )
            .await?;
        }
        for record in &segment_records {
            self.snap.put_segment_meta(record);
        }
        for record in &flag_records {
            self.snap.put_flag_meta(record);
        }
        self.snap.ruleset = ruleset;
        Ok((segment_records, flag_records))
    }

    /// Validates and deletes a flag (refused while other flags require it).
    pub(crate) async fn delete_flag(&mut self, key: &str, audit: AuditInfo) -> Result<()> {
        let version = self
            .snap
            .flag(key)
            .map(|f| f.meta.version)
            .ok_or_else(|| ControlError::not_found(format!("flag `{key}`")))?;
        let ruleset = check(
            self.snap.ruleset.clone(),
            vec![Change::RemoveFlag(key.to_owned())],
        )
        .await?;
        self.tx
            .write_flag(&Write {
                key: key.to_owned(),
                expect: Expect::Version(version),
                definition: None,
                archived: false,
                audit: audit.clone(),
            })
            .await?;
        self.emit(
            "flag.changed",
            "flag",
            key,
            &audit,
            serde_json::json!({"deleted": true, "action": audit.action}),
        )
        .await?;
        self.snap.remove_flag(ruleset, key);
        Ok(())
    }

    /// Validates and deletes a segment (refused while flags or segments use it).
    pub(crate) async fn delete_segment(&mut self, name: &str, audit: AuditInfo) -> Result<()> {
        let version = self
            .snap
            .segment(name)
            .map(|s| s.meta.version)
            .ok_or_else(|| ControlError::not_found(format!("segment `{name}`")))?;
        let ruleset = check(
            self.snap.ruleset.clone(),
            vec![Change::RemoveSegment(name.to_owned())],
        )
        .await?;
        self.tx
            .write_segment(&Write {
                key: name.to_owned(),
                expect: Expect::Version(version),
                definition: None,
                archived: false,
                audit,
            })
            .await?;
        self.snap.remove_segment(ruleset, name);
        Ok(())
    }

    /// Commits, publishes, and wraps `value` as what the operation did.
    pub(crate) async fn finish<T>(self, value: T, changed: bool) -> Result<crate::Written<T>> {
        let revision = self.commit().await?;
        Ok(crate::Written {
            value,
            changed,
            revision,
        })
    }

    /// Commits and publishes the draft's snapshot. Returns the store revision after it.
    pub(crate) async fn commit(self) -> Result<i64> {
        let Draft {
            _local,
            tx,
            mut snap,
            control,
            webhooks: _,
        } = self;
        let committed = control.observe(tx.commit().await.map_err(ControlError::from))?;
        if committed.changes > 0 || committed.revision > snap.revision {
            snap.revision = committed.revision;
        }
        if committed.ruleset_changed {
            snap.ruleset_revision = committed.revision;
        }
        control.publish(snap, Served::Store);
        Ok(committed.revision)
    }
}
