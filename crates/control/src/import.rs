//! Imports: flag-file text into the store in one transaction, validated as a whole against
//! what is stored. Three modes: an explicit import creates and replaces; seeding creates
//! what is missing; an import at start creates what is missing and reports what differs
//! (drift) without touching it, unless told to overwrite — so restarting a server never
//! undoes a change made at run time (a production kill switch included).

use switchyard_engine::document::SegmentDef;
use switchyard_engine::{FlagDef, Format};

use crate::draft::Draft;
use crate::flags::audit;
use crate::snapshot::Source;
use crate::tokens::Actor;
use crate::{Control, ControlError, Result, Written};

/// How an import treats flags and segments that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Create new ones, replace changed ones (an explicit import: `POST /api/v1/import`).
    Merge,
    /// Create what is missing; leave the rest alone (seeding the examples).
    MissingOnly,
    /// At server start: create what is missing; existing ones that differ are reported as
    /// drift and left as they are, unless `overwrite` (then replaced, and audited as such).
    AtStart {
        /// Replace what differs.
        overwrite: bool,
    },
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Flags created.
    pub created: Vec<String>,
    /// Flags replaced.
    pub updated: Vec<String>,
    /// Flags already as in the file.
    pub unchanged: Vec<String>,
    /// Flags that differ from the file and were left as stored.
    pub drifted: Vec<String>,
    /// Segments created or replaced.
    pub segments: Vec<String>,
    /// Segments that differ from the file and were left as stored.
    pub drifted_segments: Vec<String>,
}

impl ImportReport {
    /// Whether anything was written.
    pub fn wrote(&self) -> bool {
        !(self.created.is_empty() && self.updated.is_empty() && self.segments.is_empty())
    }
}

impl Control {
    /// Imports flag-file text (`source` names it in diagnostics) in one transaction.
    pub async fn import(
        &self,
        text: &str,
        format: Format,
        source: &str,
        mode: ImportMode,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<ImportReport>> {
        if let Source::File(path) = self.source() {
            return Err(ControlError::ReadOnly {
                path: path.display().to_string(),
            });
        }
        let (ruleset, diagnostics) = switchyard_engine::check_str(text, format, Some(source));
        let Some(ruleset) = ruleset else {
            return Err(ControlError::invalid(diagnostics));
        };
        let doc = ruleset.to_document();
        self.timed(async {
            let mut draft = self.begin().await?;
            let names: Vec<String> = draft.snap.environments().map(|e| e.name.clone()).collect();
            crate::requests::refuse_unapproved(
                &draft.snap,
                names.iter().map(String::as_str),
                actor,
                "an import",
            )?;
            let report = import_into(&mut draft, &doc, mode, actor, reason.clone()).await?;
            let changed = report.wrote();
            draft.finish(report, changed).await
        })
        .await
    }
}

/// Imports `doc` into the draft (see [`ImportMode`]).
pub(crate) async fn import_into(
    draft: &mut Draft,
    doc: &switchyard_engine::Document,
    mode: ImportMode,
    actor: &Actor,
    reason: Option<String>,
) -> Result<ImportReport> {
    let (flag_action, segment_action) = match mode {
        ImportMode::MissingOnly => ("flag.seed", "segment.seed"),
        ImportMode::Merge | ImportMode::AtStart { .. } => ("flag.import", "segment.import"),
    };
    let replace = match mode {
        ImportMode::Merge | ImportMode::AtStart { overwrite: true } => true,
        ImportMode::MissingOnly | ImportMode::AtStart { overwrite: false } => false,
    };
    let mut report = ImportReport::default();
    let mut segments: Vec<(String, SegmentDef, _)> = Vec::new();
    for (name, def) in &doc.segments {
        match draft.snap.segment(name) {
            None => {}
            Some(current) if current.definition == def => continue,
            Some(_) if replace => {}
            Some(_) => {
                if mode != ImportMode::MissingOnly {
                    report.drifted_segments.push(name.clone());
                }
                continue;
            }
        }
        report.segments.push(name.clone());
        segments.push((
            name.clone(),
            def.clone(),
            audit(actor, segment_action, None, reason.clone()),
        ));
    }
    let mut flags: Vec<(FlagDef, _)> = Vec::new();
    for flag in &doc.flags {
        let mut def = flag.clone();
        // Experiments are not imported: a file's experiment blocks (an export taken while one
        // ran) are dropped, and the blocks of experiments running here are kept.
        def.targeting.experiment = None;
        for t in def.environments.values_mut() {
            t.experiment = None;
        }
        let current = draft.snap.flag(&flag.key).map(|c| c.definition);
        crate::flags::managed_experiments(&mut def, current)?;
        match draft.snap.flag(&flag.key) {
            None => report.created.push(flag.key.clone()),
            Some(current) => {
                def.archived = flag.archived;
                if same(&def, current.definition) {
                    report.unchanged.push(flag.key.clone());
                    continue;
                }
                if !replace {
                    if mode == ImportMode::MissingOnly {
                        report.unchanged.push(flag.key.clone());
                    } else {
                        report.drifted.push(flag.key.clone());
                    }
                    continue;
                }
                report.updated.push(flag.key.clone());
            }
        }
        flags.push((def, audit(actor, flag_action, None, reason.clone())));
    }
    draft.put_batch(segments, flags).await?;
    Ok(report)
}

fn same(a: &FlagDef, b: &FlagDef) -> bool {
    matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(a), Ok(b)) if a == b)
}
