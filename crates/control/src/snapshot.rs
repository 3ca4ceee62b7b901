//! [`Snapshot`]: everything a replica serves, immutable once published — the compiled
//! ruleset, each flag's bookkeeping, environments and tokens — built from the store in full
//! or advanced by the change feed (recompiling only what changed).

use std::collections::BTreeMap;

use imbl::OrdMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};
use switchyard_engine::document::SegmentDef;
use switchyard_engine::{Change, Diagnostic, Document, FieldPath, FlagDef, Ruleset};
use switchyard_storage::{
    Changes, EnvironmentRecord, FeedKind, FlagRecord, SegmentRecord, StoreState, TokenRecord,
};

use crate::tokens::TokenCache;

/// Where the served flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The store: changed through the control layer.
    Store,
    /// A flag file, read-only (GitOps mode); tokens and environments still come from the store.
    File(PathBuf),
}

/// A flag's bookkeeping besides its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagMeta {
    /// Version (1, 2, 3, …) for optimistic concurrency.
    pub version: i64,
    /// Archived flags are kept but not served.
    pub archived: bool,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, unix milliseconds.
    pub updated_at_ms: i64,
}

/// A segment's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Version.
    pub version: i64,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, unix milliseconds.
    pub updated_at_ms: i64,
}

/// A flag as the control layer shows it: its definition as stored and its bookkeeping.
#[derive(Debug, Clone, Copy)]
pub struct FlagView<'s> {
    /// The definition as written (whether or not it compiles).
    pub definition: &'s FlagDef,
    /// Version, timestamps, archived.
    pub meta: &'s FlagMeta,
}

/// A segment as the control layer shows it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentView<'s> {
    /// Its name.
    pub name: &'s str,
    /// Its definition.
    pub definition: &'s SegmentDef,
    /// Version and timestamps.
    pub meta: &'s SegmentMeta,
}

/// Everything one replica serves, at one store revision. Immutable; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The store revision it reflects (every change up to it is applied).
    pub revision: i64,
    /// The last revision that changed what is evaluated (flags, segments; in file mode, a
    /// count of file reloads). ETags and event ids derive from it.
    pub ruleset_revision: i64,
    /// The compiled flags.
    pub ruleset: Ruleset,
    /// Where the flags come from.
    pub source: Source,
    /// Persistent maps: a change copies a path of the tree, not the map (10 000 flags).
    flags: OrdMap<Arc<str>, FlagMeta>,
    segments: OrdMap<Arc<str>, SegmentMeta>,
    environments: Arc<BTreeMap<String, EnvironmentRecord>>,
    tokens: Arc<BTreeMap<String, TokenRecord>>,
    token_cache: Arc<TokenCache>,
    /// The flags and segments changed since ruleset revision `delta.since` to make this
    /// snapshot (`None` after a full load): what streams send as patches.
    pub(crate) delta: Option<Delta>,
}

/// A flag or segment whose definition changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Changed {
    /// The flag with this key (created, changed, archived or removed).
    Flag(Arc<str>),
    /// The segment with this name.
    Segment(Arc<str>),
}

/// What changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delta {
    /// The ruleset revision of the snapshot this one was made from.
    pub since: i64,
    /// What changed since then.
    pub keys: Vec<Changed>,
}

impl Delta {
    pub(crate) fn add(&mut self, changed: Changed) {
        if !self.keys.contains(&changed) {
            self.keys.push(changed);
        }
    }
}

impl Snapshot {
    /// Nothing loaded yet (revision 0, no flags, no tokens).
    pub fn empty(source: Source) -> Snapshot {
        Snapshot {
            revision: 0,
            ruleset_revision: 0,
            ruleset: Ruleset::default(),
            source,
            flags: OrdMap::new(),
            segments: OrdMap::new(),
            environments: Arc::default(),
            tokens: Arc::default(),
            token_cache: Arc::default(),
            delta: None,
        }
    }

    /// Builds a snapshot from everything stored (compiling every flag). In file mode the
    /// stored flags and segments are ignored and `ruleset` (the file's) is served instead.
    pub fn from_state(
        state: &StoreState,
        source: Source,
        file: Option<(Ruleset, i64)>,
    ) -> (Snapshot, Vec<Diagnostic>) {
        let mut snapshot = Snapshot::empty(source);
        snapshot.revision = state.revision;
        snapshot.environments = Arc::new(
            state
                .environments
                .iter()
                .map(|e| (e.name.clone(), e.clone()))
                .collect(),
        );
        snapshot.set_tokens(
            state
                .tokens
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
        );
        let mut diagnostics = Vec::new();
        match file {
            Some((ruleset, generation)) => {
                snapshot.set_file_ruleset(ruleset, generation, 0);
            }
            None => {
                snapshot.ruleset_revision = state.ruleset_revision;
                let mut doc = Document {
                    version: switchyard_engine::FORMAT_VERSION,
                    ..Document::default()
                };
                let mut flags = OrdMap::new();
                let mut segments = OrdMap::new();
                for s in &state.segments {
                    match segment_def(s) {
                        Ok(def) => {
                            doc.segments.insert(s.name.clone(), def);
                            segments.insert(Arc::from(s.name.as_str()), segment_meta(s));
                        }
                        Err(d) => diagnostics.push(d),
                    }
                }
                for f in &state.flags {
                    match flag_def(f) {
                        Ok(def) => {
                            flags.insert(Arc::from(f.key.as_str()), flag_meta(f));
                            doc.flags.push(def);
                        }
                        Err(d) => diagnostics.push(d),
                    }
                }
                let (ruleset, more) = switchyard_engine::compile(&doc);
                diagnostics.extend(more);
                snapshot.ruleset = ruleset;
                snapshot.flags = flags;
                snapshot.segments = segments;
            }
        }
        (snapshot, diagnostics)
    }

    /// This snapshot advanced by the change feed: recompiles only the flags and segments that
    /// changed (and what depends on them). In file mode, flag and segment changes in the store
    /// are ignored.
    pub fn with_changes(&self, changes: &Changes) -> (Snapshot, Vec<Diagnostic>) {
        let mut next = self.clone();
        next.revision = changes.revision.max(self.revision);
        let mut diagnostics = Vec::new();
        let mut flag_keys: Vec<&str> = Vec::new();
        let mut segment_names: Vec<&str> = Vec::new();
        let mut tokens_changed = false;
        let mut environments_changed = false;
        for entry in &changes.entries {
            match entry.kind {
                FeedKind::Flag if !flag_keys.contains(&entry.key.as_str()) => {
                    flag_keys.push(&entry.key)
                }
                FeedKind::Segment if !segment_names.contains(&entry.key.as_str()) => {
                    segment_names.push(&entry.key)
                }
                FeedKind::Token => tokens_changed = true,
                FeedKind::Environment => environments_changed = true,
                FeedKind::Flag | FeedKind::Segment => {}
            }
        }
        if tokens_changed {
            let mut tokens = (*next.tokens).clone();
            for t in &changes.tokens {
                tokens.insert(t.id.clone(), t.clone());
            }
            next.set_tokens(tokens);
        }
        if environments_changed {
            let environments = Arc::make_mut(&mut next.environments);
            for e in &changes.environments {
                environments.insert(e.name.clone(), e.clone());
            }
        }
        if next.source != Source::Store || (flag_keys.is_empty() && segment_names.is_empty()) {
            return (next, diagnostics);
        }
        next.ruleset_revision = changes.ruleset_revision.max(self.ruleset_revision);
        let mut delta = Delta {
            since: self.ruleset_revision,
            keys: Vec::new(),
        };
        for name in &segment_names {
            delta.add(Changed::Segment(Arc::from(*name)));
        }
        for key in &flag_keys {
            delta.add(Changed::Flag(Arc::from(*key)));
        }
        next.delta = Some(delta);
        let mut engine_changes = Vec::new();
        {
            let segments = &mut next.segments;
            for name in segment_names {
                match changes.segments.iter().find(|s| s.name == name) {
                    Some(record) => match segment_def(record) {
                        Ok(def) => {
                            segments.insert(Arc::from(name), segment_meta(record));
                            engine_changes.push(Change::Segment(name.to_owned(), def));
                        }
                        Err(d) => diagnostics.push(d),
                    },
                    None => {
                        segments.remove(name);
                        engine_changes.push(Change::RemoveSegment(name.to_owned()));
                    }
                }
            }
        }
        if !flag_keys.is_empty() {
            let flags = &mut next.flags;
            for key in flag_keys {
                match changes.flags.iter().find(|f| f.key == key) {
                    Some(record) => match flag_def(record) {
                        Ok(def) => {
                            flags.insert(Arc::from(key), flag_meta(record));
                            engine_changes.push(Change::Flag(Box::new(def)));
                        }
                        Err(d) => diagnostics.push(d),
                    },
                    None => {
                        flags.remove(key);
                        engine_changes.push(Change::RemoveFlag(key.to_owned()));
                    }
                }
            }
        }
        let (ruleset, more) = next.ruleset.apply(&engine_changes);
        diagnostics.extend(more);
        next.ruleset = ruleset;
        (next, diagnostics)
    }

    /// Replaces the served flags with a flag file's (GitOps mode): every flag gets version
    /// `generation`, and `modified_ms` as its timestamps.
    pub(crate) fn set_file_ruleset(&mut self, ruleset: Ruleset, generation: i64, modified_ms: i64) {
        let flags = ruleset
            .definitions()
            .map(|def| {
                let meta = FlagMeta {
                    version: generation,
                    archived: def.archived,
                    created_at_ms: modified_ms,
                    updated_at_ms: modified_ms,
                };
                (Arc::from(def.key.as_str()), meta)
            })
            .collect();
        let segments = ruleset
            .segment_definitions()
            .into_iter()
            .map(|(name, _)| {
                let meta = SegmentMeta {
                    version: generation,
                    created_at_ms: modified_ms,
                    updated_at_ms: modified_ms,
                };
                (Arc::from(name), meta)
            })
            .collect();
        self.flags = flags;
        self.segments = segments;
        self.ruleset = ruleset;
        self.ruleset_revision = generation;
    }

    fn set_tokens(&mut self, tokens: BTreeMap<String, TokenRecord>) {
        self.token_cache = Arc::new(TokenCache::new(tokens.values()));
        self.tokens = Arc::new(tokens);
    }

    /// Records a written flag's bookkeeping (its definition is in the ruleset, set apart).
    /// Starts recording this snapshot's changes (for a draft: since the snapshot it began from).
    pub(crate) fn begin_delta(&mut self, since: i64) {
        if self.delta.as_ref().is_none_or(|d| d.since != since) {
            self.delta = Some(Delta {
                since,
                keys: Vec::new(),
            });
        }
    }

    fn record(&mut self, changed: Changed) {
        if let Some(delta) = &mut self.delta {
            delta.add(changed);
        }
    }

    pub(crate) fn put_flag_meta(&mut self, record: &FlagRecord) {
        self.record(Changed::Flag(Arc::from(record.key.as_str())));
        self.flags
            .insert(Arc::from(record.key.as_str()), flag_meta(record));
    }

    /// Records a written segment's bookkeeping.
    pub(crate) fn put_segment_meta(&mut self, record: &SegmentRecord) {
        self.record(Changed::Segment(Arc::from(record.name.as_str())));
        self.segments
            .insert(Arc::from(record.name.as_str()), segment_meta(record));
    }

    pub(crate) fn remove_flag(&mut self, ruleset: Ruleset, key: &str) {
        self.record(Changed::Flag(Arc::from(key)));
        self.flags.remove(key);
        self.ruleset = ruleset;
    }

    pub(crate) fn remove_segment(&mut self, ruleset: Ruleset, name: &str) {
        self.record(Changed::Segment(Arc::from(name)));
        self.segments.remove(name);
        self.ruleset = ruleset;
    }

    pub(crate) fn put_environment(&mut self, record: EnvironmentRecord) {
        Arc::make_mut(&mut self.environments).insert(record.name.clone(), record);
    }

    pub(crate) fn put_token(&mut self, record: TokenRecord) {
        let mut tokens = (*self.tokens).clone();
        tokens.insert(record.id.clone(), record);
        self.set_tokens(tokens);
    }

    /// The flag `key` (archived or not, compiling or not).
    pub fn flag(&self, key: &str) -> Option<FlagView<'_>> {
        Some(FlagView {
            definition: self.ruleset.definition(key)?,
            meta: self.flags.get(key)?,
        })
    }

    /// The flag `key`, or a not-found error that suggests a close key (a likely typo).
    pub fn flag_or_hint(&self, key: &str) -> Result<FlagView<'_>, crate::ControlError> {
        crate::flags::require_flag(self, key)
    }

    /// Every flag, by key.
    pub fn flags(&self) -> impl Iterator<Item = FlagView<'_>> {
        self.flags.iter().filter_map(|(key, meta)| {
            Some(FlagView {
                definition: self.ruleset.definition(key)?,
                meta,
            })
        })
    }

    /// How many flags there are (archived and not compiling included).
    pub fn flag_count(&self) -> usize {
        self.flags.len()
    }

    /// The segment `name`.
    pub fn segment(&self, name: &str) -> Option<SegmentView<'_>> {
        let (name, meta) = self.segments.get_key_value(name)?;
        Some(SegmentView {
            name,
            definition: self.ruleset.segment(name)?,
            meta,
        })
    }

    /// Every segment, by name.
    pub fn segments(&self) -> impl Iterator<Item = SegmentView<'_>> {
        self.segments.iter().filter_map(|(name, meta)| {
            Some(SegmentView {
                name,
                definition: self.ruleset.segment(name)?,
                meta,
            })
        })
    }

    /// The environment `name`.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentRecord> {
        self.environments.get(name)
    }

    /// Every environment, by name.
    pub fn environments(&self) -> impl Iterator<Item = &EnvironmentRecord> {
        self.environments.values()
    }

    /// Every token (revoked ones included), by id.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// The active tokens, for checking a presented one.
    pub fn token_cache(&self) -> &TokenCache {
        &self.token_cache
    }

    /// The metadata clients see for the served flag `key` (its `metadata` plus its `owner`).
    pub fn client_metadata(&self, key: &str) -> Option<&Map<String, Value>> {
        self.ruleset.client_metadata(key)
    }

    /// The definitions as a flag document (flags by key).
    pub fn to_document(&self) -> Document {
        let mut doc = self.ruleset.to_document();
        doc.flags.sort_by(|a, b| a.key.cmp(&b.key));
        doc
    }

    /// A message naming the environments that exist, for "no such environment" errors.
    pub fn environment_names(&self) -> String {
        let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
        if names.is_empty() {
            "there are none".to_owned()
        } else {
            format!("environments: {}", names.join(", "))
        }
    }
}

/// The origin flags read from the store get (their diagnostics name `flags.<key>`).
pub(crate) fn stored_origin(key: &str) -> FieldPath {
    FieldPath::root().key("flags").key(key.to_owned())
}

fn flag_def(record: &FlagRecord) -> Result<FlagDef, Diagnostic> {
    let origin = stored_origin(&record.key);
    let mut def = FlagDef::from_value_at(record.definition.clone(), &origin).map_err(|mut d| {
        d.flag = Some(record.key.clone());
        d.message = format!("the stored definition does not read: {}", d.message);
        d
    })?;
    def.key = record.key.clone();
    def.archived = record.archived;
    def.origin = origin;
    Ok(def)
}

fn segment_def(record: &SegmentRecord) -> Result<SegmentDef, Diagnostic> {
    serde_json::from_value(record.definition.clone()).map_err(|e| {
        Diagnostic::error(
            FieldPath::root().key("segments").key(record.name.clone()),
            format!("the stored definition does not read: {e}"),
        )
    })
}

pub(crate) fn flag_meta(record: &FlagRecord) -> FlagMeta {
    FlagMeta {
        version: record.version,
        archived: record.archived,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
    }
}

fn segment_meta(record: &SegmentRecord) -> SegmentMeta {
    SegmentMeta {
        version: record.version,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
    }
}
