//! Shared state: the store, the compiled snapshot (swapped atomically), the token cache, and
//! the one path every flag or segment change goes through.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::{Map, Value};
use switchyard_engine::document::{SegmentDef, FORMAT_VERSION};
use switchyard_engine::{compile, Diagnostic, Document, FieldPath, FlagDef, Ruleset};
use switchyard_storage::{AuditInfo, Expect, FlagRecord, SegmentRecord, Store, Write};

use crate::auth::TokenCache;
use crate::config::{FlagSource, Settings};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics::Metrics;

/// What evaluation reads: the compiled flags and their metadata, immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Compiled flags.
    pub ruleset: Ruleset,
    /// Store revision it was built from (0 in file mode).
    pub revision: i64,
    /// OFREP metadata per flag key.
    pub metadata: HashMap<String, Map<String, Value>>,
    /// Flag-set metadata for bulk responses.
    pub set_metadata: Map<String, Value>,
}

/// Cheap-to-clone handle on everything the handlers need.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The state behind [`AppState`].
pub struct Inner {
    /// The store.
    pub store: Store,
    /// Current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Current tokens.
    pub tokens: ArcSwap<TokenCache>,
    /// Validated settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// Serialises writes within this replica, so whole-ruleset validation sees a stable set.
    pub write_lock: tokio::sync::Mutex<()>,
    /// Per-SDK-key rate limiter, when configured.
    pub limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Set once the first snapshot is loaded.
    pub ready: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The example flags, loaded on first start and by `POST /api/v1/seed`.
pub const EXAMPLE_FLAGS: &str = include_str!("../../../examples/flags.yaml");

/// Converts unix milliseconds to RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    // Fixed width (always milliseconds, always `Z`), so timestamps sort as text.
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

impl AppState {
    /// New state; no snapshot is loaded yet.
    pub fn new(store: Store, settings: Settings, metrics: Metrics) -> Self {
        let limiter = settings.rate_limit.and_then(|(rate, burst)| {
            let rate = std::num::NonZeroU32::new(rate)?;
            let burst = std::num::NonZeroU32::new(burst).unwrap_or(rate);
            Some(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self(Arc::new(Inner {
            store,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            tokens: ArcSwap::from_pointee(TokenCache::default()),
            settings,
            metrics,
            write_lock: tokio::sync::Mutex::new(()),
            limiter,
            ready: AtomicBool::new(false),
        }))
    }

    /// Whether flags are read-only (served from a file).
    pub fn read_only_file(&self) -> Option<&PathBuf> {
        match &self.settings.flag_source {
            FlagSource::File(path) => Some(path),
            FlagSource::Store => None,
        }
    }

    /// Refuses writes in file mode.
    pub fn ensure_writable(&self) -> ApiResult<()> {
        match self.read_only_file() {
            Some(path) => Err(ApiError::new(
                ErrorCode::ReadOnly,
                format!(
                    "flags are served read-only from {}; change that file instead",
                    path.display()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Reloads tokens from the store.
    pub async fn reload_tokens(&self) -> Result<(), switchyard_storage::StoreError> {
        let records = self.store.list_tokens().await?;
        self.tokens.store(Arc::new(TokenCache::new(&records)));
        Ok(())
    }

    /// Rebuilds the snapshot from the store (or the file in GitOps mode).
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let snapshot = match self.read_only_file() {
            Some(path) => {
                let ruleset = switchyard_engine::load_file(path).map_err(ReloadError::File)?;
                build_snapshot(ruleset, 0)
            }
            None => {
                let revision = self.store.revision().await.map_err(ReloadError::Store)?;
                let flags = self.store.list_flags().await.map_err(ReloadError::Store)?;
                let segments = self
                    .store
                    .list_segments()
                    .await
                    .map_err(ReloadError::Store)?;
                // Tokens share the store revision with flags: reloading both together means a
                // revision seen is a revision fully applied (a token made on another replica is
                // never skipped because this replica's own write advanced the revision).
                let tokens = self.store.list_tokens().await.map_err(ReloadError::Store)?;
                self.tokens.store(Arc::new(TokenCache::new(&tokens)));
                let doc = document_from_records(&flags, &segments).map_err(ReloadError::Corrupt)?;
                let (ruleset, diagnostics) = compile(&doc);
                for d in diagnostics.iter().filter(|d| d.is_error()) {
                    // Writes are validated, so this only happens after an engine change;
                    // the flags that still compile keep being served.
                    tracing::error!(diagnostic = %d, "stored flag does not compile; not served");
                }
                build_snapshot(ruleset, revision)
            }
        };
        self.metrics.flags.set(snapshot.ruleset.len() as i64);
        self.metrics.rollout.reset();
        for (flag, env, pct) in rollout_percentages(&snapshot.ruleset.to_document()) {
            self.metrics
                .rollout
                .with_label_values(&[flag.as_str(), env.as_str()])
                .set(pct);
        }
        self.snapshot.store(Arc::new(snapshot));
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Validates `candidate` (the whole ruleset after a change) and returns its diagnostics'
    /// errors as a 422.
    pub fn validate(&self, doc: &Document) -> ApiResult<()> {
        let (_, diagnostics) = compile(doc);
        if diagnostics.iter().any(Diagnostic::is_error) {
            return Err(ApiError::validation(&diagnostics));
        }
        Ok(())
    }

    /// The current stored document, for building candidates (reads the store, not the
    /// snapshot, so a flag that no longer compiles is still seen).
    pub async fn stored_document(
        &self,
    ) -> ApiResult<(Vec<FlagRecord>, Vec<SegmentRecord>, Document)> {
        let flags = self.store.list_flags().await?;
        let segments = self.store.list_segments().await?;
        let doc = document_from_records(&flags, &segments).map_err(ApiError::internal)?;
        Ok((flags, segments, doc))
    }

    /// The one path for changing a flag: read, apply `change`, validate the whole ruleset,
    /// write with its audit entry, reload. `change` gets the current definition (None when
    /// absent) and returns the new one (None deletes).
    pub async fn change_flag(
        &self,
        key: &str,
        expect: Expect,
        audit: AuditInfo,
        change: impl FnOnce(Option<FlagDef>) -> ApiResult<Option<FlagDef>>,
    ) -> ApiResult<Option<FlagRecord>> {
        self.ensure_writable()?;
        let _guard = self.write_lock.lock().await;
        let (records, _, mut doc) = self.stored_document().await?;
        let current = records.iter().find(|r| r.key == key);
        match (&expect, current) {
            (Expect::Version(v), Some(cur)) if cur.version != *v => {
                return Err(ApiError::from(switchyard_storage::StoreError::Conflict {
                    subject: format!("flag `{key}`"),
                    expected: Some(*v),
                    actual: Some(cur.version),
                }))
            }
            (Expect::Version(_) | Expect::Exists, None) => {
                return Err(ApiError::not_found(format!("flag `{key}`")))
            }
            (Expect::Absent, Some(_)) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("flag `{key}` already exists"),
                ))
            }
            _ => {}
        }
        let position = doc.flags.iter().position(|f| f.key == key);
        let current_def = position.map(|i| doc.flags[i].clone());
        let new_def = change(current_def)?;
        match (&new_def, position) {
            (Some(def), Some(i)) => doc.flags[i] = with_origin(def.clone(), FieldPath::root()),
            (Some(def), None) => doc.flags.push(with_origin(def.clone(), FieldPath::root())),
            (None, Some(i)) => {
                doc.flags.remove(i);
            }
            (None, None) => {}
        }
        self.validate(&doc)?;
        let definition = match &new_def {
            Some(def) => Some(serde_json::to_value(def).map_err(ApiError::internal)?),
            None => None,
        };
        let action = audit.action.clone();
        let written = self
            .store
            .write_flag(&Write {
                key: key.to_owned(),
                expect,
                archived: new_def.as_ref().is_some_and(|d| d.archived),
                definition,
                audit,
            })
            .await?;
        self.metrics
            .flag_changes
            .with_label_values(&[action.as_str()])
            .inc();
        self.after_write().await;
        Ok(written)
    }

    /// Same as [`Self::change_flag`] for segments.
    pub async fn change_segment(
        &self,
        name: &str,
        expect: Expect,
        audit: AuditInfo,
        new_def: Option<SegmentDef>,
    ) -> ApiResult<Option<SegmentRecord>> {
        self.ensure_writable()?;
        let _guard = self.write_lock.lock().await;
        let (_, _, mut doc) = self.stored_document().await?;
        match &new_def {
            Some(def) => {
                doc.segments.insert(name.to_owned(), def.clone());
            }
            None => {
                doc.segments.remove(name);
            }
        }
        self.validate(&doc)?;
        let definition = match &new_def {
            Some(def) => Some(serde_json::to_value(def).map_err(ApiError::internal)?),
            None => None,
        };
        let written = self
            .store
            .write_segment(&Write {
                key: name.to_owned(),
                expect,
                archived: false,
                definition,
                audit,
            })
            .await?;
        self.after_write().await;
        Ok(written)
    }

    /// Reloads after a write; a failure is logged (the write itself succeeded).
    pub async fn after_write(&self) {
        if let Err(err) = self.reload().await {
            tracing::error!(error = %err, "reload after a write failed; the sync loop will retry");
        }
    }

    /// Keeps this replica current: polls the store revision (changes made by other replicas)
    /// or the flag file's modification time (GitOps mode).
    pub async fn sync_loop(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.settings.sync_interval_ms);
        let mut shutdown = shutdown;
        let mut last_file: Option<(SystemTime, u64)> = self.file_stamp();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            if self.read_only_file().is_some() {
                let stamp = self.file_stamp();
                if stamp != last_file {
                    last_file = stamp;
                    match self.reload().await {
                        Ok(()) => tracing::info!(
                            flags = self.snapshot.load().ruleset.len(),
                            "flag file reloaded"
                        ),
                        Err(err) => {
                            tracing::error!(error = %err, "flag file not reloaded; still serving the previous version")
                        }
                    }
                }
            }
            match self.store.revision().await {
                Ok(rev)
                    if rev != self.snapshot.load().revision && self.read_only_file().is_none() =>
                {
                    if let Err(err) = self.reload().await {
                        tracing::error!(error = %err, "reload failed");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "store unreachable; serving the last snapshot")
                }
            }
        }
    }

    fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.read_only_file()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }
}

/// Why the snapshot could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] switchyard_storage::StoreError),
    /// The flag file is invalid.
    #[error("{0}")]
    File(#[source] switchyard_engine::LoadError),
    /// A stored definition does not parse.
    #[error("{0}")]
    Corrupt(#[source] StoredCorrupt),
}

/// A stored definition that no longer parses as the format.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} `{key}` is not a valid definition: {message}")]
pub struct StoredCorrupt {
    kind: &'static str,
    key: String,
    message: String,
}

fn with_origin(mut def: FlagDef, origin: FieldPath) -> FlagDef {
    def.origin = origin;
    def
}

/// Builds a document from stored records.
pub fn document_from_records(
    flags: &[FlagRecord],
    segments: &[SegmentRecord],
) -> Result<Document, StoredCorrupt> {
    let mut doc = Document {
        version: FORMAT_VERSION,
        ..Document::default()
    };
    for s in segments {
        let def: SegmentDef =
            serde_json::from_value(s.definition.clone()).map_err(|e| StoredCorrupt {
                kind: "segment",
                key: s.name.clone(),
                message: e.to_string(),
            })?;
        doc.segments.insert(s.name.clone(), def);
    }
    for f in flags {
        let mut def: FlagDef =
            serde_json::from_value(f.definition.clone()).map_err(|e| StoredCorrupt {
                kind: "flag",
                key: f.key.clone(),
                message: e.to_string(),
            })?;
        def.key = f.key.clone();
        def.archived = f.archived;
        def.origin = FieldPath::root().key("flags").key(f.key.clone());
        doc.flags.push(def);
    }
    Ok(doc)
}

fn build_snapshot(ruleset: Ruleset, revision: i64) -> Snapshot {
    let mut metadata = HashMap::new();
    for def in ruleset.definitions() {
        let mut meta: Map<String, Value> = def
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(owner) = &def.owner {
            meta.entry("owner")
                .or_insert_with(|| Value::from(owner.clone()));
        }
        if !meta.is_empty() {
            metadata.insert(def.key.clone(), meta);
        }
    }
    let mut set_metadata = Map::new();
    set_metadata.insert("revision".into(), Value::from(revision));
    Snapshot {
        ruleset,
        revision,
        metadata,
        set_metadata,
    }
}

/// `(flag, environment, percentage)` for fallthroughs that roll out a percentage.
fn rollout_percentages(doc: &Document) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for f in &doc.flags {
        let top = f
            .targeting
            .fallthrough
            .as_ref()
            .and_then(|ft| ft.percentage)
            .or(f.percentage);
        if let Some(p) = top {
            out.push((f.key.clone(), "*".to_owned(), p));
        }
        for (env, e) in &f.environments {
            if let Some(p) = e.fallthrough.as_ref().and_then(|ft| ft.percentage) {
                out.push((f.key.clone(), env.clone(), p));
            }
        }
    }
    out
}
