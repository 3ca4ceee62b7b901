//! The snapshot file: the last served snapshot, kept on disk so a replica that starts while
//! the store is down can serve it (with the SDK keys it knows) until the store answers.
//!
//! It is written atomically (a temporary file renamed over it, readable by the owner only,
//! since it holds token hashes) at most once a second after a change. A file that does not
//! read — truncated, corrupt, another format version — is reported and ignored, never trusted.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_api_types::Role;
use switchyard_storage::{EnvironmentRecord, FlagRecord, SegmentRecord, StoreState, TokenRecord};
use tokio::sync::watch;

use crate::snapshot::{Snapshot, Source};
use crate::{Control, Served};

const FORMAT: &str = "switchyard-snapshot";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SnapshotFile {
    format: String,
    version: u32,
    revision: i64,
    ruleset_revision: i64,
    written_at_ms: i64,
    flags: Vec<FileFlag>,
    segments: Vec<FileSegment>,
    environments: Vec<FileEnvironment>,
    tokens: Vec<FileToken>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileFlag {
    key: String,
    version: i64,
    archived: bool,
    created_at_ms: i64,
    updated_at_ms: i64,
    definition: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSegment {
    name: String,
    version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    definition: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileEnvironment {
    name: String,
    created_at_ms: i64,
    #[serde(default)]
    require_approval: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileToken {
    id: String,
    name: String,
    role: Role,
    environment: Option<String>,
    secret_hash: String,
    created_at_ms: i64,
}

/// Why the snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// It could not be read or written.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not a snapshot file this build reads (corrupt, truncated, another version).
    #[error("snapshot file {path} is not usable: {reason}")]
    Unusable {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Control {
    /// Serves the snapshot file, if one is configured and reads; returns its store revision.
    /// Nothing is served from it once a snapshot from the store is.
    pub fn load_snapshot_file(&self) -> Result<Option<i64>, SnapshotFileError> {
        let Some(path) = self.settings().snapshot_file.clone() else {
            return Ok(None);
        };
        if *self.source() != Source::Store {
            return Ok(None);
        }
        let shown = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SnapshotFileError::Io {
                    path: shown,
                    source,
                })
            }
        };
        let unusable = |reason: String| SnapshotFileError::Unusable {
            path: shown.clone(),
            reason,
        };
        let file: SnapshotFile =
            serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(unusable(format!(
                "it is {} version {}; this build reads {FORMAT} version {VERSION}",
                file.format, file.version
            )));
        }
        let state = StoreState {
            revision: file.revision,
            ruleset_revision: file.ruleset_revision,
            flags: file
                .flags
                .into_iter()
                .map(|f| FlagRecord {
                    key: f.key,
                    version: f.version,
                    definition: f.definition,
                    archived: f.archived,
                    created_at_ms: f.created_at_ms,
                    updated_at_ms: f.updated_at_ms,
                })
                .collect(),
            segments: file
                .segments
                .into_iter()
                .map(|s| SegmentRecord {
                    name: s.name,
                    version: s.version,
                    definition: s.definition,
                    created_at_ms: s.created_at_ms,
                    updated_at_ms: s.updated_at_ms,
                })
                .collect(),
            environments: file
                .environments
                .into_iter()
                .map(|e| EnvironmentRecord {
                    name: e.name,
                    created_at_ms: e.created_at_ms,
                    require_approval: e.require_approval,
                })
                .collect(),
            tokens: file
                .tokens
                .into_iter()
                .map(|t| TokenRecord {
                    id: t.id,
                    name: t.name,
                    role: t.role,
                    environment: t.environment,
                    secret_hash: t.secret_hash,
                    created_at_ms: t.created_at_ms,
                    revoked_at_ms: None,
                })
                .collect(),
        };
        let (snapshot, diagnostics) = Snapshot::from_state(&state, Source::Store, None);
        if let Some(d) = diagnostics.iter().find(|d| d.is_error()) {
            return Err(unusable(format!(
                "a definition in it does not compile: {d}"
            )));
        }
        if self.served() == Served::Store {
            return Ok(None);
        }
        let revision = snapshot.revision;
        self.publish(snapshot, Served::SnapshotFile);
        Ok(Some(revision))
    }

    /// Writes the served snapshot to the snapshot file (atomically), if one is configured.
    pub fn write_snapshot_file(&self) -> Result<(), SnapshotFileError> {
        let Some(path) = self.settings().snapshot_file.clone() else {
            return Ok(());
        };
        let snapshot = self.snapshot();
        if self.served() != Served::Store || *self.source() != Source::Store {
            return Ok(());
        }
        let file = SnapshotFile {
            format: FORMAT.to_owned(),
            version: VERSION,
            revision: snapshot.revision,
            ruleset_revision: snapshot.ruleset_revision,
            written_at_ms: crate::now_ms(),
            flags: snapshot
                .flags()
                .map(|f| FileFlag {
                    key: f.definition.key.clone(),
                    version: f.meta.version,
                    archived: f.meta.archived,
                    created_at_ms: f.meta.created_at_ms,
                    updated_at_ms: f.meta.updated_at_ms,
                    definition: serde_json::to_value(f.definition).unwrap_or(Value::Null),
                })
                .collect(),
            segments: snapshot
                .segments()
                .map(|s| FileSegment {
                    name: s.name.to_owned(),
                    version: s.meta.version,
                    created_at_ms: s.meta.created_at_ms,
                    updated_at_ms: s.meta.updated_at_ms,
                    definition: serde_json::to_value(s.definition).unwrap_or(Value::Null),
                })
                .collect(),
            environments: snapshot
                .environments()
                .map(|e| FileEnvironment {
                    name: e.name.clone(),
                    created_at_ms: e.created_at_ms,
                    require_approval: e.require_approval,
                })
                .collect(),
            tokens: snapshot
                .tokens()
                .filter(|t| t.revoked_at_ms.is_none())
                .map(|t| FileToken {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    role: t.role,
                    environment: t.environment.clone(),
                    secret_hash: t.secret_hash.clone(),
                    created_at_ms: t.created_at_ms,
                })
                .collect(),
        };
        let io = |source| SnapshotFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| io(std::io::Error::other(e)))?;
        write_atomically(&path, &bytes).map_err(io)
    }

    /// Writes the snapshot file after changes (at most once a second) until `shutdown`, and
    /// once more then.
    pub async fn run_snapshot_writer(&self, mut shutdown: watch::Receiver<bool>) {
        if self.settings().snapshot_file.is_none() {
            return;
        }
        let mut published = self.subscribe();
        let mut written = 0i64;
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => {
                    let _ = self.write_snapshot_file();
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let revision = self.snapshot().revision;
            if revision != written {
                let control = self.clone();
                match tokio::task::spawn_blocking(move || control.write_snapshot_file()).await {
                    Ok(Ok(())) => written = revision,
                    Ok(Err(err)) => tracing::warn!(error = %err, "snapshot file not written"),
                    Err(err) => tracing::warn!(error = %err, "snapshot file writer failed"),
                }
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
