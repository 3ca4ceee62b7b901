//! Keeping this replica current: full loads, catching up from the change feed when woken
//! (or on the periodic safety-net check), watching the flag file in GitOps mode, and probing
//! the store while it is down.

use std::time::SystemTime;

use switchyard_engine::Ruleset;
use tokio::sync::watch;

use crate::draft::{blocking, log_stored_problems};
use crate::snapshot::{Snapshot, Source};
use crate::{Control, ControlError, Result, Served};

impl Control {
    /// Loads everything from the store (and the flag file in GitOps mode) and publishes it.
    pub async fn reload(&self) -> Result<()> {
        let store = self.require_store()?.clone();
        let _local = self.inner.write_lock.lock().await;
        let state = self.observe(store.state().await.map_err(ControlError::from))?;
        let file = match self.source() {
            Source::File(path) => Some(self.load_flag_file(path, &self.snapshot())?),
            Source::Store => None,
        };
        let source = self.source().clone();
        let (snapshot, diagnostics) =
            blocking(move || Snapshot::from_state(&state, source, file)).await?;
        log_stored_problems(&diagnostics);
        self.publish(snapshot, Served::Store);
        Ok(())
    }

    /// Applies what changed in the store since the served snapshot, if anything did.
    /// Returns whether a newer snapshot was published.
    pub async fn catch_up(&self) -> Result<bool> {
        let store = self.require_store()?.clone();
        let _local = self.inner.write_lock.lock().await;
        let base = self.snapshot();
        let changes = self.observe(
            store
                .changes_since(base.revision)
                .await
                .map_err(ControlError::from),
        )?;
        let Some(changes) = changes else {
            drop(_local);
            tracing::info!(
                revision = base.revision,
                "this replica is behind the change feed; reloading everything"
            );
            self.reload().await?;
            return Ok(true);
        };
        if changes.revision <= base.revision {
            return Ok(false);
        }
        let (snapshot, diagnostics) = blocking(move || base.with_changes(&changes)).await?;
        log_stored_problems(&diagnostics);
        self.publish(snapshot, Served::Store);
        Ok(true)
    }

    /// Keeps this replica current until `shutdown` changes: wakes on every commit the store
    /// hears of, checks the revision every `sync_interval` anyway (and probes a store that is
    /// down), and in GitOps mode reloads the flag file when it changes (an invalid edit keeps
    /// the previous flags).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(store) = self.store().cloned() else {
            tracing::error!("the sync loop needs an attached store");
            return;
        };
        let mut woken = store.subscribe();
        let mut tick = tokio::time::interval(self.settings().sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut file_stamp = match self.source() {
            Source::File(path) => stamp(path),
            Source::Store => None,
        };
        loop {
            tokio::select! {
                changed = woken.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if let Source::File(path) = self.source() {
                        let now = stamp(path);
                        if now != file_stamp {
                            file_stamp = now;
                            self.reload_flag_file(path).await;
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
            match self.catch_up().await {
                Ok(_) => {}
                Err(ControlError::Unavailable { .. }) => {
                    // Already recorded; the next tick probes again.
                }
                Err(err) => tracing::error!(error = %err, "catching up with the store failed"),
            }
        }
    }

    async fn reload_flag_file(&self, path: &std::path::Path) {
        let _local = self.inner.write_lock.lock().await;
        let base = self.snapshot();
        match self.load_flag_file(path, &base) {
            Ok((ruleset, generation)) => {
                let mut next = (*base).clone();
                let modified = modified_ms(path);
                next.set_file_ruleset(ruleset, generation, modified);
                tracing::info!(flags = next.ruleset.len(), file = %path.display(), "flag file reloaded");
                self.publish(next, self.served());
            }
            Err(err) => {
                tracing::error!(error = %err, file = %path.display(), "flag file not reloaded; still serving the previous version");
            }
        }
    }

    /// Reads and compiles the flag file; its generation is one more than the served one's.
    pub(crate) fn load_flag_file(
        &self,
        path: &std::path::Path,
        base: &Snapshot,
    ) -> Result<(Ruleset, i64)> {
        let ruleset =
            switchyard_engine::load_file(path).map_err(|e| ControlError::invalid(e.diagnostics))?;
        Ok((ruleset, base.ruleset_revision + 1))
    }

    /// In GitOps mode, the file's flags keep being served across a full reload of the rest.
    pub(crate) fn file_ruleset_for_reload(&self, base: &Snapshot) -> Option<(Ruleset, i64)> {
        match self.source() {
            Source::File(_) => Some((base.ruleset.clone(), base.ruleset_revision)),
            Source::Store => None,
        }
    }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn modified_ms(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}
