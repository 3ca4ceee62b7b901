//! The cache file: the last good ruleset from the server, so an application can start while
//! the server is down. Written atomically (a temporary file renamed over it). A file that is
//! corrupt, truncated, of another format version, for another SDK key, or whose checksum does
//! not match is reported and ignored — never trusted.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_api_types::sdk::Ruleset as RulesetBody;

const FORMAT: &str = "switchyard-sdk-cache";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CacheFile {
    format: String,
    version: u32,
    /// The public part of the SDK key (`sy_<id>_`), so another key's file is not used.
    key_id: String,
    server: String,
    saved_at_ms: i64,
    /// SHA-256 of `ruleset` as serialized here.
    sha256: String,
    ruleset: RulesetBody,
}

/// The public, non-secret part of an SDK key.
pub(crate) fn key_id(key: &str) -> String {
    match key.strip_prefix("sy_").and_then(|r| r.split_once('_')) {
        Some((id, _)) => id.to_owned(),
        None => hex::encode(&Sha256::digest(key.as_bytes())[..8]),
    }
}

fn checksum(ruleset: &RulesetBody) -> Result<String, String> {
    let bytes = serde_json::to_vec(ruleset).map_err(|e| e.to_string())?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Writes the cache file atomically.
pub(crate) fn save(
    path: &Path,
    key: &str,
    server: &str,
    ruleset: &RulesetBody,
) -> Result<(), String> {
    let file = CacheFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        key_id: key_id(key),
        server: server.to_owned(),
        saved_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        sha256: checksum(ruleset)?,
        ruleset: ruleset.clone(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the cache file: `Ok(None)` when there is none, `Err` (saying why) when it is not
/// usable.
pub(crate) fn load(path: &Path, key: &str) -> Result<Option<RulesetBody>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let shown = path.display();
    let header: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{shown} is corrupt or truncated ({e}); ignoring it"))?;
    let (format, version) = (
        header.get("format").and_then(|v| v.as_str()).unwrap_or("?"),
        header
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    );
    if format != FORMAT || version != u64::from(VERSION) {
        return Err(format!(
            "{shown} is {format} version {version}, not {FORMAT} version {VERSION} (an older or newer SDK wrote it); ignoring it"
        ));
    }
    let file: CacheFile = serde_json::from_value(header)
        .map_err(|e| format!("{shown} does not read ({e}); ignoring it"))?;
    if file.key_id != key_id(key) {
        return Err(format!(
            "{shown} was saved for another SDK key; ignoring it"
        ));
    }
    if checksum(&file.ruleset)? != file.sha256 {
        return Err(format!(
            "{shown} fails its checksum (it was altered or damaged); ignoring it"
        ));
    }
    Ok(Some(file.ruleset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> RulesetBody {
        serde_json::from_value(serde_json::json!({
            "format": "switchyard-ruleset", "version": 1, "revision": 3,
            "environment": "production", "flags": [{"key": "f"}], "segments": {}
        }))
        .unwrap()
    }

    #[test]
    fn a_saved_file_reads_back_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let key = "sy_0123456789abcdef_secret";
        assert_eq!(load(&path, key), Ok(None));
        save(&path, key, "http://x", &body()).unwrap();
        assert_eq!(load(&path, key).unwrap().unwrap().revision, 3);
        // Another key.
        assert!(load(&path, "sy_fedcba9876543210_x")
            .unwrap_err()
            .contains("another SDK key"));
        // Truncated.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(load(&path, key)
            .unwrap_err()
            .contains("corrupt or truncated"));
        // Altered but still JSON.
        std::fs::write(&path, text.replace("\"revision\":3", "\"revision\":4")).unwrap();
        assert!(load(&path, key).unwrap_err().contains("checksum"));
        // Another format version.
        std::fs::write(
            &path,
            text.replace("\"version\":1,\"keyId\"", "\"version\":0,\"keyId\""),
        )
        .unwrap();
        assert!(load(&path, key).unwrap_err().contains("version 0"));
    }
}
