//! Switchyard's control layer: the one path for every change to flags, segments,
//! environments and tokens, and the change feed that keeps every replica's snapshot current.
//!
//! Every operation is a read-modify-write **inside one store transaction that holds the
//! global write lock** ([`switchyard_storage::WriteTx`]): it brings this replica's snapshot up
//! to the store's revision (reading the change feed inside the lock), applies the change,
//! validates the candidate ruleset incrementally (only what the change touches is
//! recompiled), and writes definition, version, audit row and change-feed row together — or
//! changes nothing. So no acknowledged change is lost and no ruleset that does not compile is
//! ever stored, whatever the number of replicas and concurrent writers. A change that changes
//! nothing writes nothing and says so.
//!
//! Replicas learn of changes from the feed: the store wakes them (PostgreSQL `LISTEN/NOTIFY`,
//! in process on SQLite), [`Control::run`] reads what changed after the revision it has,
//! recompiles incrementally off the async worker threads and publishes a new
//! [`Snapshot`] — through an [`arc_swap`] for the evaluation hot path and a
//! [`tokio::sync::watch`] for subscribers (streams) — only ever moving forward. A periodic
//! revision check is the safety net.
//!
//! While the store is unreachable, the published snapshot keeps serving; writes fail at
//! once with [`ControlError::Unavailable`] (the sync loop probes and recovers by itself); a
//! replica that starts during an outage serves its snapshot file, if it has one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_control::{Actor, Control, FlagChange, Settings, Source};
//!
//! let store = switchyard_storage::Store::connect("sqlite::memory:").await?;
//! let control = Control::new(Source::Store, Settings::default());
//! control.attach(store).await?;
//! let who = Actor::system();
//!
//! let def = switchyard_engine::FlagDef { key: "new-checkout".into(), ..Default::default() };
//! control.create_flag(def, &who, None).await?;
//! let killed = control
//!     .change_flag("new-checkout", FlagChange::Kill { environment: None, on: true }, None, &who, Some("incident 42".into()))
//!     .await?;
//! assert!(killed.changed);
//! // Killing it again changes nothing, and says so.
//! let again = control
//!     .change_flag("new-checkout", FlagChange::Kill { environment: None, on: true }, None, &who, None)
//!     .await?;
//! assert!(!again.changed);
//! assert_eq!(again.value.meta.version, killed.value.meta.version);
//! # Ok(()) }
//! ```

mod bootstrap;
mod draft;
mod error;
mod events;
mod experiments;
mod flags;
mod guards;
mod hygiene;
mod import;
mod manage;
mod requests;
mod results;
mod rollouts;
mod snapfile;
pub use snapfile::SnapshotFileError;
mod preview;
mod schedules;
mod sessions;
mod snapshot;
mod sync;
pub mod tokens;
mod webhooks;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use switchyard_storage::Store;
use tokio::sync::watch;

pub use bootstrap::{AdminToken, BootstrapPlan, BootstrapReport, StartImport};
pub use error::{ControlError, Result};
pub use experiments::{
    parse_date, running_experiment, Experiment, ExperimentAction, TimelineEntry,
};
pub use flags::{FlagChange, StoredFlag, StoredSegment, TenantSetting};
pub use guards::{
    Guard, GuardState, GuardTrip, DEFAULT_COOLDOWN_MS, DEFAULT_GUARD_MIN_SAMPLE, DEFAULT_WINDOW_MS,
};
pub use hygiene::{stale_flags, Evaluations, StaleFlag};
pub use import::{ImportMode, ImportReport};
pub use manage::{CreatedToken, NewTokenRequest};
pub use preview::{FlagCheck, PREVIEW_MAX_UNITS};
pub use results::{AutoStop, GUARDRAIL_MIN_UNITS, SRM_MIN_UNITS};
pub use rollouts::{
    Probe, Rollout, RolloutAction, RolloutState, RolloutStatus, RolloutStep, DEFAULT_HOLD_MS,
    DEFAULT_MIN_SAMPLE, DEFAULT_STAGES, GATE_ALPHA,
};
pub use schedules::{Schedule, ScheduleRun, ScheduledOp, LATE_MS};
pub use sessions::{OpenedSession, Session, SessionLimits};
pub use snapshot::{Changed, FlagMeta, FlagView, SegmentMeta, SegmentView, Snapshot, Source};
pub use tokens::{Actor, Principal, TokenCache};
pub use webhooks::Webhook;

/// How the control layer behaves; every duration is configurable so tests run in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often the sync loop checks the store revision even without a wake-up (the safety
    /// net), and probes the store while it is down.
    pub sync_interval: Duration,
    /// How long a write may wait for this replica's other writes before failing.
    pub lock_timeout: Duration,
    /// How long one operation may take in all before failing as unavailable.
    pub operation_timeout: Duration,
    /// Where to keep the last snapshot, so a replica can start while the store is down.
    pub snapshot_file: Option<PathBuf>,
    /// Units are stored as keyed hashes with this key, when set.
    pub unit_hash_key: Option<UnitHashKey>,
}

/// A secret units are hashed with (HMAC-SHA256) before experiment events are stored; never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct UnitHashKey(Vec<u8>);

impl UnitHashKey {
    /// Wraps a key.
    pub fn new(key: Vec<u8>) -> UnitHashKey {
        UnitHashKey(key)
    }

    /// The stored form of `unit`: `h:` and the hex HMAC-SHA256 of it.
    pub fn hash(&self, unit: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(unit.as_bytes());
        format!("h:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for UnitHashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitHashKey(hidden)")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sync_interval: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            snapshot_file: None,
            unit_hash_key: None,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    /// The result (the stored flag, segment, …), after the write or as it already was.
    pub value: T,
    /// Whether anything changed (`false`: the request asked for what was already there, and
    /// nothing was written, versioned or audited).
    pub changed: bool,
    /// The store revision after the write.
    pub revision: i64,
}

/// The store's state as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum StoreStatus {
    /// Not connected yet (starting).
    Connecting {
        /// Why the last attempt failed, if one did.
        reason: Option<String>,
    },
    /// Answering.
    Up,
    /// Not answering since `since_ms`; writes fail at once, evaluations continue from memory.
    Down {
        /// Unix milliseconds.
        since_ms: i64,
        /// The last error.
        reason: String,
    },
}

/// Where the served snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Served {
    /// Nothing is served yet.
    Nothing,
    /// The snapshot file (the store has not answered yet).
    SnapshotFile,
    /// The store.
    Store,
}

/// The control layer: cheap to clone, shared by every caller (HTTP handlers, bootstrap, the
/// file watcher, and the schedulers to come).
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: OnceLock<Store>,
    source: Source,
    settings: Settings,
    current: ArcSwap<Snapshot>,
    published: watch::Sender<Arc<Snapshot>>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    status: Mutex<StoreStatus>,
    served: Mutex<Served>,
    ready: AtomicBool,
    recent: Mutex<Recent>,
    stream_key: OnceLock<[u8; 32]>,
    /// Exposure keys of the active rollouts, by environment and flag.
    rollout_exposures: ArcSwap<rollouts::ExposureKeys>,
}

/// The flags and segments changed in the last published snapshots, so a stream that has
/// ruleset revision `r` learns what to send without asking the store.
#[derive(Debug, Default)]
struct Recent {
    /// The oldest revision the entries reach back to.
    floor: i64,
    /// The ruleset revision they reach (the served one).
    until: i64,
    /// `(since, until, changed)`, oldest first, contiguous.
    entries: std::collections::VecDeque<(i64, i64, Arc<[Changed]>)>,
}

/// How many published changes [`Control::changed_since`] remembers.
const RECENT_CHANGES: usize = 4096;

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Control")
            .field("source", &self.inner.source)
            .field("revision", &snapshot.revision)
            .field("status", &self.store_status())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// A control layer without a store yet (see [`Control::attach`]); it serves an empty
    /// snapshot until one is loaded.
    pub fn new(source: Source, settings: Settings) -> Control {
        let empty = Arc::new(Snapshot::empty(source.clone()));
        Control {
            inner: Arc::new(Inner {
                store: OnceLock::new(),
                source,
                settings,
                current: ArcSwap::new(Arc::clone(&empty)),
                published: watch::Sender::new(empty),
                write_lock: Arc::new(tokio::sync::Mutex::new(())),
                status: Mutex::new(StoreStatus::Connecting { reason: None }),
                served: Mutex::new(Served::Nothing),
                ready: AtomicBool::new(false),
                recent: Mutex::new(Recent::default()),
                stream_key: OnceLock::new(),
                rollout_exposures: ArcSwap::from_pointee(rollouts::ExposureKeys::new()),
            }),
        }
    }

    /// Connects the control layer to its store and loads everything from it (compiling off
    /// the async threads). Call once; later calls fail.
    pub async fn attach(&self, store: Store) -> Result<()> {
        self.inner
            .store
            .set(store)
            .map_err(|_| ControlError::Internal("the store is already attached".into()))?;
        self.reload().await
    }

    /// The store, once attached.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.get()
    }

    pub(crate) fn require_store(&self) -> Result<&Store> {
        self.inner
            .store
            .get()
            .ok_or_else(|| ControlError::Unavailable {
                reason: match self.store_status() {
                    StoreStatus::Connecting {
                        reason: Some(reason),
                    } => format!("not connected yet ({reason})"),
                    _ => "not connected yet".to_owned(),
                },
                source: None,
            })
    }

    /// Where flags come from.
    pub fn source(&self) -> &Source {
        &self.inner.source
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The snapshot being served (the evaluation hot path: lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The snapshot being served, without touching its reference count (hold it briefly).
    pub fn snapshot_guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.current.load()
    }

    /// A receiver of every snapshot published from now on (streams subscribe here).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.published.subscribe()
    }

    /// Whether a snapshot is served (from the store or the snapshot file).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Where the served snapshot came from.
    pub fn served(&self) -> Served {
        *lock(&self.inner.served)
    }

    /// The store's state as this replica last saw it.
    pub fn store_status(&self) -> StoreStatus {
        lock(&self.inner.status).clone()
    }

    /// The PostgreSQL change listener's state (`Local` on SQLite or before connecting).
    pub fn listener_state(&self) -> switchyard_storage::ListenerState {
        self.store()
            .map_or(switchyard_storage::ListenerState::Local, |s| {
                s.listener_state()
            })
    }

    pub(crate) fn mark_up(&self) {
        let mut status = lock(&self.inner.status);
        if !matches!(*status, StoreStatus::Up) {
            if matches!(*status, StoreStatus::Down { .. }) {
                tracing::info!("the store answers again");
            }
            *status = StoreStatus::Up;
        }
    }

    pub(crate) fn mark_down(&self, reason: &str) {
        let mut status = lock(&self.inner.status);
        match &*status {
            StoreStatus::Down { .. } => {}
            StoreStatus::Connecting { .. } if self.inner.store.get().is_none() => {
                *status = StoreStatus::Connecting {
                    reason: Some(reason.to_owned()),
                };
            }
            _ => {
                tracing::warn!(%reason, "the store is unavailable; serving the last snapshot, refusing writes until it answers");
                *status = StoreStatus::Down {
                    since_ms: now_ms(),
                    reason: reason.to_owned(),
                };
            }
        }
    }

    /// Notes the outcome of a store call for the health state.
    pub(crate) fn observe<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Err(ControlError::Unavailable { reason, .. }) => self.mark_down(reason),
            Err(ControlError::Store(_) | ControlError::Internal(_)) => {}
            _ => self.mark_up(),
        }
        result
    }

    /// Publishes `snapshot` if it is not older than the one served (snapshots only move
    /// forward, whoever publishes them).
    pub(crate) fn publish(&self, snapshot: Snapshot, served: Served) {
        let current = self.inner.current.load();
        let key = |s: &Snapshot| (s.revision, s.ruleset_revision);
        if key(&snapshot) < key(&current) {
            tracing::debug!(
                offered = snapshot.revision,
                current = current.revision,
                "not publishing an older snapshot"
            );
            return;
        }
        if snapshot.ruleset_revision > current.ruleset_revision {
            let mut recent = lock(&self.inner.recent);
            let contiguous = recent.until == current.ruleset_revision
                && snapshot
                    .delta
                    .as_ref()
                    .is_some_and(|d| d.since == recent.until);
            match &snapshot.delta {
                Some(delta) if contiguous => {
                    if recent.entries.is_empty() {
                        recent.floor = delta.since;
                    }
                    recent.entries.push_back((
                        delta.since,
                        snapshot.ruleset_revision,
                        delta.keys.clone().into(),
                    ));
                    if recent.entries.len() > RECENT_CHANGES {
                        recent.entries.pop_front();
                        recent.floor = recent.entries.front().map_or(delta.since, |e| e.0);
                    }
                }
                _ => {
                    recent.entries.clear();
                    recent.floor = snapshot.ruleset_revision;
                }
            }
            recent.until = snapshot.ruleset_revision;
        }
        let snapshot = Arc::new(snapshot);
        self.inner.current.store(Arc::clone(&snapshot));
        self.inner.published.send_replace(snapshot);
        *lock(&self.inner.served) = served;
        self.inner.ready.store(true, Ordering::Release);
    }
}

impl Control {
    /// The flags and segments changed after ruleset revision `revision`, up to the served
    /// one (whose revision comes with them), from memory; `None` when memory does not reach
    /// back that far (ask the store's change feed, or resend everything). A revision newer
    /// than the served one (a client that was on a replica ahead of this one) has nothing
    /// to catch up here yet.
    pub fn changed_since(&self, revision: i64) -> Option<(i64, Vec<Changed>)> {
        let recent = lock(&self.inner.recent);
        if revision >= recent.until {
            return Some((recent.until, Vec::new()));
        }
        if revision < recent.floor {
            return None;
        }
        let mut keys: Vec<Changed> = Vec::new();
        for (_, _, changed) in recent.entries.iter().filter(|e| e.1 > revision) {
            for c in changed.iter() {
                if !keys.contains(c) {
                    keys.push(c.clone());
                }
            }
        }
        Some((recent.until, keys))
    }

    /// The key stream URLs are signed with (shared by every replica through the store), once
    /// the first start has run.
    pub fn stream_key(&self) -> Option<&[u8; 32]> {
        self.inner.stream_key.get()
    }

    pub(crate) fn set_stream_key(&self, key: [u8; 32]) {
        let _ = self.inner.stream_key.set(key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unix time in milliseconds.
/// Unix milliseconds as RFC 3339 (empty for a time out of range).
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whoever publishes (the sync loop, a write's commit), an older snapshot never replaces
    /// a newer one.
    #[test]
    fn snapshots_only_move_forward() {
        let control = Control::new(Source::Store, Settings::default());
        let at = |revision: i64, ruleset_revision: i64| {
            let mut s = Snapshot::empty(Source::Store);
            s.revision = revision;
            s.ruleset_revision = ruleset_revision;
            s
        };
        control.publish(at(5, 4), Served::Store);
        let mut seen = control.subscribe();
        seen.borrow_and_update();
        control.publish(at(3, 3), Served::Store);
        assert_eq!(control.snapshot().revision, 5);
        assert!(
            !seen.has_changed().unwrap(),
            "subscribers were not told of it either"
        );
        control.publish(at(5, 4), Served::Store);
        control.publish(at(6, 4), Served::Store);
        assert_eq!(control.snapshot().revision, 6);
        assert!(control.is_ready());
    }

    /// Every operation's future is `Send` (HTTP handlers run them on any worker thread).
    #[allow(dead_code, clippy::let_underscore_future)]
    fn operations_are_send(c: &Control, a: &Actor, def: switchyard_engine::FlagDef) {
        fn send<T: Send>(_: T) {}
        send(c.create_flag(def.clone(), a, None));
        send(c.replace_flag("k", def, None, false, a, None));
        send(c.delete_flag("k", None, a, None));
        send(c.change_flag("k", FlagChange::Archive(true), None, a, None));
        send(c.put_segment("s", Default::default(), None, false, a, None));
        send(c.delete_segment("s", None, a, None));
        send(c.create_environment("e", a, None));
        send(c.create_token(
            NewTokenRequest {
                name: "n".into(),
                role: switchyard_api_types::Role::Viewer,
                environment: None,
            },
            a,
        ));
        send(c.revoke_token("t", a, None));
        send(c.import(
            "",
            switchyard_engine::Format::Yaml,
            "x",
            ImportMode::Merge,
            a,
            None,
        ));
        send(c.bootstrap(&BootstrapPlan {
            environments: vec![],
            admin_token: AdminToken::GenerateIfNone,
            seed: None,
            imports: vec![],
            overwrite_imports: false,
        }));
        send(c.catch_up());
        send(c.reload());
        send(c.run(tokio::sync::watch::channel(false).1));
    }
}
