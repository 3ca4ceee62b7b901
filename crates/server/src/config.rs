//! Configuration: a TOML file, then `SWITCHYARD_*` environment variables, then command-line
//! flags (later wins), turned into validated [`Settings`] before anything starts.
//!
//! Precedence, highest first: command-line flag → environment variable → config file →
//! built-in default. Every key of the file, its variable and its flag:
//!
//! | file key | environment | flag | default |
//! | --- | --- | --- | --- |
//! | `listen` | `SWITCHYARD_LISTEN` | `--listen` | `127.0.0.1:8080` |
//! | `storage.url` | `SWITCHYARD_DB` | `--db` | `sqlite://switchyard.db` |
//! | `import` | `SWITCHYARD_IMPORT` | `--import` | none |
//! | `flags` | `SWITCHYARD_FLAGS` | `--flags` | none (GitOps mode when set) |
//! | `seed_examples` | `SWITCHYARD_SEED_EXAMPLES` | | `true` |
//! | `import_overwrite` | `SWITCHYARD_IMPORT_OVERWRITE` | `--import-overwrite` | `false` |
//! | `sync_interval_ms` | `SWITCHYARD_SYNC_INTERVAL_MS` | | `1000` |
//! | `snapshot_file` | `SWITCHYARD_SNAPSHOT_FILE` | `--snapshot-file` | none |
//! | `storage.timeout_ms` | `SWITCHYARD_DB_TIMEOUT_MS` | | `1000` |
//! | `ofrep.rate_limit_per_second` | `SWITCHYARD_RATE_LIMIT` | | `0` (off) |
//! | `ofrep.rate_limit_burst` | | | twice the rate |
//! | `ofrep.cors_allowed_origins` | `SWITCHYARD_CORS_ORIGINS` (comma-separated) | | `["*"]` |
//! | `sse.heartbeat_secs` | `SWITCHYARD_SSE_HEARTBEAT_SECS` | | `15` |
//! | `sse.client_buffer` | | | `256` events |
//! | `sse.ofrep_inactivity_secs` | | | `120` |
//! | `limits.max_connections` | `SWITCHYARD_MAX_CONNECTIONS` | | `10000` (and below the open-file limit) |
//! | `limits.header_read_timeout_secs` | | | `10` |
//! | `limits.request_timeout_secs` | | | `30` (to read a request's body) |
//! | `limits.idle_timeout_secs` | | | `75` (no byte either way; streams' heartbeats count) |
//! | `limits.requests_per_connection` | | | `10000` (then `Connection: close`) |
//! | `limits.ofrep_body_bytes` | | | `65536` |
//! | `limits.admin_body_bytes` | | | `1048576` |
//! | `limits.import_body_bytes` | | | `16777216` |
//! | `limits.events_body_bytes` | | | `4194304` (a batch of events from an SDK) |
//! | `limits.context_attributes` | | | `1000` |
//! | `limits.context_depth` | | | `16` |
//! | `log.format` | `SWITCHYARD_LOG_FORMAT` | | `text` |
//! | `log.level` | `SWITCHYARD_LOG` | | `info` |
//! | `experiments.unit_hash_key` | `SWITCHYARD_UNIT_HASH_KEY` | | none (units stored as sent) |
//! | `experiments.check_interval_secs` | `SWITCHYARD_EXPERIMENT_CHECK_SECS` | | `60` |
//! | `rollouts.check_interval_ms` | `SWITCHYARD_ROLLOUT_CHECK_MS` | | `10000` (rollout gates and guards) |
//! | `hygiene.evaluation_flush_ms` | `SWITCHYARD_EVALUATION_FLUSH_MS` | | `60000` (last-evaluated times to the store) |
//! | `ui.session_idle_minutes` | `SWITCHYARD_UI_SESSION_IDLE_MINUTES` | | `30` (web UI sign-in) |
//! | `ui.session_max_hours` | | | `12` (then sign in again) |
//! | `rollouts.probe_timeout_ms` | | | `5000` (a Prometheus query or health check) |
//! | `webhooks.retry_base_ms` | `SWITCHYARD_WEBHOOK_RETRY_BASE_MS` | | `1000` |
//! | `webhooks.max_attempts` | `SWITCHYARD_WEBHOOK_MAX_ATTEMPTS` | | `8` |
//! | | `SWITCHYARD_ADMIN_TOKEN` | | generated and printed on first start |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file, as written (`config.example.toml` documents every key).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Flag file(s) to import into the store at start.
    #[serde(default)]
    pub import: Vec<PathBuf>,
    /// Replace flags that differ from the import files (otherwise they are reported as drift).
    pub import_overwrite: Option<bool>,
    /// Keep the last snapshot here, to serve it when starting while the store is down.
    pub snapshot_file: Option<PathBuf>,
    /// Serve read-only from this flag file, reloading it when it changes (GitOps mode).
    pub flags: Option<PathBuf>,
    /// Load the example flags on first start.
    pub seed_examples: Option<bool>,
    /// How often to check the store for changes made by other replicas, in milliseconds.
    pub sync_interval_ms: Option<u64>,
    /// OFREP settings.
    #[serde(default)]
    pub ofrep: OfrepConfig,
    /// Event-stream settings.
    #[serde(default)]
    pub sse: SseConfig,
    /// Logging settings.
    #[serde(default)]
    pub log: LogConfig,
    /// Connection, time and size limits at the edge.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Experiment settings.
    #[serde(default)]
    pub experiments: ExperimentsConfig,
    /// Webhook delivery settings.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// `[rollouts]`.
    #[serde(default)]
    pub rollouts: RolloutsConfig,
    /// `[hygiene]`.
    #[serde(default)]
    pub hygiene: HygieneConfig,
    /// `[ui]`.
    #[serde(default)]
    pub ui: UiConfig,
}

/// `[ui]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Minutes a web UI session may go unused before it ends.
    pub session_idle_minutes: Option<u64>,
    /// Hours after sign-in a web UI session ends, used or not.
    pub session_max_hours: Option<u64>,
}

/// `[hygiene]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HygieneConfig {
    /// Milliseconds between copies of the last-evaluated times into the store.
    pub evaluation_flush_ms: Option<u64>,
}

/// `[rollouts]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutsConfig {
    /// Milliseconds between checks of running rollouts' gates and of guards.
    pub check_interval_ms: Option<u64>,
    /// Milliseconds a Prometheus query or health check may take.
    pub probe_timeout_ms: Option<u64>,
}

/// `[webhooks]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Milliseconds before the first retry; each later one waits twice as long (at most an hour).
    pub retry_base_ms: Option<u64>,
    /// Attempts before a delivery is given up (dead).
    pub max_attempts: Option<u32>,
}

/// `[experiments]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// Store units as HMAC-SHA256 keyed hashes with this secret (at least 16 characters)
    /// instead of raw ids. Every replica needs the same key; changing it splits units.
    pub unit_hash_key: Option<String>,
    /// Seconds between checks of running experiments for a sample-ratio mismatch or a harmed
    /// guardrail (either pauses the experiment).
    pub check_interval_secs: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections held at once; more are answered 503 and closed.
    pub max_connections: Option<u64>,
    /// Seconds a client has to send a request's headers.
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds to read a request's body.
    pub request_timeout_secs: Option<u64>,
    /// Seconds a connection may move no byte either way before it is closed.
    pub idle_timeout_secs: Option<u64>,
    /// Requests one keep-alive connection may carry before the server closes it.
    pub requests_per_connection: Option<u64>,
    /// Largest OFREP request body.
    pub ofrep_body_bytes: Option<u64>,
    /// Largest admin API request body (other than imports).
    pub admin_body_bytes: Option<u64>,
    /// Largest import body.
    pub import_body_bytes: Option<u64>,
    /// Largest batch of events (`POST /sdk/v1/events`).
    pub events_body_bytes: Option<u64>,
    /// Most attributes (leaf values) in an evaluation context.
    pub context_attributes: Option<u64>,
    /// Deepest nesting of objects in an evaluation context.
    pub context_depth: Option<u64>,
}

/// `[sse]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    /// Seconds between heartbeat comments on every stream.
    pub heartbeat_secs: Option<u64>,
    /// Events a client may have waiting before it is disconnected as too slow.
    pub client_buffer: Option<u64>,
    /// `inactivityDelaySec` advertised to OFREP clients.
    pub ofrep_inactivity_secs: Option<u64>,
}

/// `[storage]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://path` or `postgres://...`.
    pub url: Option<String>,
    /// How long a call waits for a database connection before failing, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// `[ofrep]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfrepConfig {
    /// Requests per second allowed per SDK key; 0 disables rate limiting.
    pub rate_limit_per_second: Option<u32>,
    /// Burst size per SDK key.
    pub rate_limit_burst: Option<u32>,
    /// Origins allowed by CORS; `*` allows any.
    pub cors_allowed_origins: Option<Vec<String>>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: Option<String>,
    /// A tracing filter (`info`, `switchyard_server=debug`).
    pub level: Option<String>,
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliOverrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--db URL`.
    pub db: Option<String>,
    /// `--import FILE` (repeatable).
    pub import: Vec<PathBuf>,
    /// `--flags FILE`.
    pub flags: Option<PathBuf>,
    /// `--import-overwrite`.
    pub import_overwrite: bool,
    /// `--snapshot-file FILE`.
    pub snapshot_file: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSource {
    /// The store; changed through the admin API.
    Store,
    /// A file, read-only, reloaded on change (GitOps).
    File(PathBuf),
}

/// Validated settings: everything the server needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Storage URL.
    pub storage_url: String,
    /// Files imported at start.
    pub import: Vec<PathBuf>,
    /// Replace what differs from the import files instead of reporting it.
    pub import_overwrite: bool,
    /// The snapshot file, if one.
    pub snapshot_file: Option<PathBuf>,
    /// How long a store call waits for a connection.
    pub storage_timeout_ms: u64,
    /// Where flags come from.
    pub flag_source: FlagSource,
    /// Load example flags on first start.
    pub seed_examples: bool,
    /// Change polling interval.
    pub sync_interval_ms: u64,
    /// Per-key OFREP rate limit, requests per second (`None` = off).
    pub rate_limit: Option<(u32, u32)>,
    /// CORS origins (`None` = any).
    pub cors_origins: Option<Vec<String>>,
    /// Bootstrap admin token, from the environment.
    pub admin_token: Option<String>,
    /// Event-stream settings.
    pub streams: crate::stream::StreamSettings,
    /// Edge limits.
    pub limits: crate::listen::Limits,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// The key units are hashed with before they are stored, if any.
    pub unit_hash_key: Option<switchyard_control::UnitHashKey>,
    /// Seconds between automatic checks of running experiments.
    pub experiment_check_secs: u64,
    /// First webhook retry delay, milliseconds.
    pub webhook_retry_base_ms: u64,
    /// Webhook attempts before giving up.
    pub webhook_max_attempts: u32,
    /// Milliseconds between rollout and guard checks.
    pub rollout_check_ms: u64,
    /// Milliseconds a gate's HTTP request may take.
    pub probe_timeout_ms: u64,
    /// Milliseconds between copies of last-evaluated times into the store.
    pub evaluation_flush_ms: u64,
    /// How long web UI sessions last.
    pub sessions: switchyard_control::SessionLimits,
}

/// A configuration problem, naming the setting and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("config file {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A setting has an invalid value.
    #[error("invalid {setting} `{value}` (from {origin}): {reason}")]
    Invalid {
        /// Setting name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// Where it came from: the flag, variable or file.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default storage URL: one SQLite file in the working directory.
pub const DEFAULT_STORAGE_URL: &str = "sqlite://switchyard.db";

impl Settings {
    /// Builds settings from the command line, the environment (passed in, so tests need no
    /// global state) and the config file named by either.
    pub fn load(
        cli: &CliOverrides,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let config_path = cli
            .config
            .clone()
            .or_else(|| env.get("SWITCHYARD_CONFIG").map(PathBuf::from));
        let (file, file_origin) = match &config_path {
            Some(path) => (
                read_config(path)?,
                format!("config file {}", path.display()),
            ),
            None => (ServerConfig::default(), "config file".to_owned()),
        };
        Self::resolve(cli, env, &file, &file_origin)
    }

    fn resolve(
        cli: &CliOverrides,
        env: &HashMap<String, String>,
        file: &ServerConfig,
        file_origin: &str,
    ) -> Result<Settings, ConfigError> {
        // (value, origin) for a setting: flag, then variable, then file.
        fn pick(
            flag: Option<&String>,
            flag_name: &str,
            env: &HashMap<String, String>,
            var: &str,
            file: Option<&String>,
            file_key: &str,
            file_origin: &str,
        ) -> Option<(String, String)> {
            flag.map(|v| (v.clone(), flag_name.to_owned()))
                .or_else(|| env.get(var).map(|v| (v.clone(), format!("${var}"))))
                .or_else(|| file.map(|v| (v.clone(), format!("`{file_key}` in {file_origin}"))))
        }
        let invalid = |setting: &'static str, (value, origin): (String, String), reason: String| {
            ConfigError::Invalid {
                setting,
                value,
                origin,
                reason,
            }
        };

        let listen_src = pick(
            cli.listen.as_ref(),
            "--listen",
            env,
            "SWITCHYARD_LISTEN",
            file.listen.as_ref(),
            "listen",
            file_origin,
        )
        .unwrap_or_else(|| (DEFAULT_LISTEN.to_owned(), "default".to_owned()));
        let listen = listen_src.0.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "listen address",
                listen_src.clone(),
                format!("{e}; expected HOST:PORT such as 127.0.0.1:8080"),
            )
        })?;

        let storage_src = pick(
            cli.db.as_ref(),
            "--db",
            env,
            "SWITCHYARD_DB",
            file.storage.url.as_ref(),
            "storage.url",
            file_origin,
        )
        .unwrap_or_else(|| (DEFAULT_STORAGE_URL.to_owned(), "default".to_owned()));
        let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| storage_src.0.starts_with(p));
        if !scheme_ok {
            return Err(invalid(
                "storage URL",
                (redact(&storage_src.0), storage_src.1),
                "expected sqlite://PATH or postgres://USER@HOST/DB".to_owned(),
            ));
        }

        let mut import: Vec<PathBuf> = if !cli.import.is_empty() {
            cli.import.clone()
        } else if let Some(v) = env.get("SWITCHYARD_IMPORT") {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        } else {
            file.import.clone()
        };
        import.retain(|p| !p.as_os_str().is_empty());
        for path in &import {
            check_file("import file", path)?;
        }

        let flags = cli
            .flags
            .clone()
            .or_else(|| env.get("SWITCHYARD_FLAGS").map(PathBuf::from))
            .or_else(|| file.flags.clone());
        let flag_source = match flags {
            Some(path) => {
                check_file("flags file", &path)?;
                if !import.is_empty() {
                    return Err(ConfigError::Invalid {
                        setting: "flags file",
                        value: path.display().to_string(),
                        origin: "--flags / $SWITCHYARD_FLAGS / `flags`".to_owned(),
                        reason: "serving read-only from a file cannot be combined with --import"
                            .to_owned(),
                    });
                }
                FlagSource::File(path)
            }
            None => FlagSource::Store,
        };

        let bool_setting =
            |var: &str, from_file: Option<bool>, default: bool| -> Result<bool, ConfigError> {
                match env.get(var) {
                    Some(v) => match v.as_str() {
                        "1" | "true" | "yes" | "on" => Ok(true),
                        "0" | "false" | "no" | "off" => Ok(false),
                        _ => Err(ConfigError::Invalid {
                            setting: "boolean",
                            value: v.clone(),
                            origin: format!("${var}"),
                            reason: "expected true or false".to_owned(),
                        }),
                    },
                    None => Ok(from_file.unwrap_or(default)),
                }
            };
        let seed_examples = bool_setting("SWITCHYARD_SEED_EXAMPLES", file.seed_examples, true)?;

        let number = |var: &str, from_file: Option<u64>| -> Result<Option<u64>, ConfigError> {
            match env.get(var) {
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|e| ConfigError::Invalid {
                        setting: "number",
                        value: v.clone(),
                        origin: format!("${var}"),
                        reason: e.to_string(),
                    }),
                None => Ok(from_file),
            }
        };
        let import_overwrite = cli.import_overwrite
            || bool_setting("SWITCHYARD_IMPORT_OVERWRITE", file.import_overwrite, false)?;
        let snapshot_file = cli
            .snapshot_file
            .clone()
            .or_else(|| env.get("SWITCHYARD_SNAPSHOT_FILE").map(PathBuf::from))
            .or_else(|| file.snapshot_file.clone())
            .filter(|p| !p.as_os_str().is_empty());
        let storage_timeout_ms =
            number("SWITCHYARD_DB_TIMEOUT_MS", file.storage.timeout_ms)?.unwrap_or(1000);
        if !(50..=600_000).contains(&storage_timeout_ms) {
            return Err(ConfigError::Invalid {
                setting: "storage timeout",
                value: storage_timeout_ms.to_string(),
                origin: "$SWITCHYARD_DB_TIMEOUT_MS / `storage.timeout_ms`".to_owned(),
                reason: "must be between 50 and 600000 milliseconds".to_owned(),
            });
        }
        let heartbeat_secs =
            number("SWITCHYARD_SSE_HEARTBEAT_SECS", file.sse.heartbeat_secs)?.unwrap_or(15);
        let client_buffer = file.sse.client_buffer.unwrap_or(256);
        let ofrep_inactivity_secs = file.sse.ofrep_inactivity_secs.unwrap_or(120);
        for (setting, value, range) in [
            ("SSE heartbeat", heartbeat_secs, 1..=3600),
            ("SSE client buffer", client_buffer, 8..=100_000),
            ("OFREP inactivity delay", ofrep_inactivity_secs, 1..=86_400),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::Invalid {
                    setting,
                    value: value.to_string(),
                    origin: "`[sse]` / $SWITCHYARD_SSE_HEARTBEAT_SECS".to_owned(),
                    reason: format!("must be between {} and {}", range.start(), range.end()),
                });
            }
        }
        let streams = crate::stream::StreamSettings {
            heartbeat: std::time::Duration::from_secs(heartbeat_secs),
            client_buffer: client_buffer as usize,
            ofrep_inactivity_secs: ofrep_inactivity_secs as u32,
        };
        let limits = {
            let l = &file.limits;
            let defaults = crate::listen::Limits::default();
            let max_connections = number("SWITCHYARD_MAX_CONNECTIONS", l.max_connections)?
                .unwrap_or(defaults.max_connections as u64);
            let secs = |d: std::time::Duration| d.as_secs();
            let checked = [
                ("limits.max_connections", max_connections, 1, 1_000_000),
                (
                    "limits.header_read_timeout_secs",
                    l.header_read_timeout_secs
                        .unwrap_or(secs(defaults.header_read_timeout)),
                    1,
                    3600,
                ),
                (
                    "limits.request_timeout_secs",
                    l.request_timeout_secs
                        .unwrap_or(secs(defaults.request_timeout)),
                    1,
                    3600,
                ),
                (
                    "limits.idle_timeout_secs",
                    l.idle_timeout_secs.unwrap_or(secs(defaults.idle_timeout)),
                    1,
                    86_400,
                ),
                (
                    "limits.requests_per_connection",
                    l.requests_per_connection
                        .unwrap_or(defaults.requests_per_connection),
                    1,
                    u64::MAX,
                ),
                (
                    "limits.ofrep_body_bytes",
                    l.ofrep_body_bytes
                        .unwrap_or(defaults.ofrep_body_bytes as u64),
                    256,
                    1 << 30,
                ),
                (
                    "limits.admin_body_bytes",
                    l.admin_body_bytes
                        .unwrap_or(defaults.admin_body_bytes as u64),
                    1024,
                    1 << 30,
                ),
                (
                    "limits.import_body_bytes",
                    l.import_body_bytes
                        .unwrap_or(defaults.import_body_bytes as u64),
                    1024,
                    1 << 32,
                ),
                (
                    "limits.events_body_bytes",
                    l.events_body_bytes
                        .unwrap_or(defaults.events_body_bytes as u64),
                    1024,
                    1 << 30,
                ),
                (
                    "limits.context_attributes",
                    l.context_attributes
                        .unwrap_or(defaults.context_attributes as u64),
                    1,
                    1_000_000,
                ),
                (
                    "limits.context_depth",
                    l.context_depth.unwrap_or(u64::from(defaults.context_depth)),
                    1,
                    64,
                ),
            ];
            for (setting, value, min, max) in checked {
                if !(min..=max).contains(&value) {
                    return Err(ConfigError::Invalid {
                        setting,
                        value: value.to_string(),
                        origin: format!("`{setting}` in {file_origin}"),
                        reason: format!("must be between {min} and {max}"),
                    });
                }
            }
            let v = |i: usize| checked[i].1;
            crate::listen::Limits {
                max_connections: v(0) as usize,
                header_read_timeout: std::time::Duration::from_secs(v(1)),
                request_timeout: std::time::Duration::from_secs(v(2)),
                idle_timeout: std::time::Duration::from_secs(v(3)),
                requests_per_connection: v(4),
                ofrep_body_bytes: v(5) as usize,
                admin_body_bytes: v(6) as usize,
                import_body_bytes: v(7) as usize,
                events_body_bytes: v(8) as usize,
                context_attributes: v(9) as usize,
                context_depth: v(10) as u16,
            }
        };
        let sync_interval_ms =
            number("SWITCHYARD_SYNC_INTERVAL_MS", file.sync_interval_ms)?.unwrap_or(1000);
        if !(10..=3_600_000).contains(&sync_interval_ms) {
            return Err(ConfigError::Invalid {
                setting: "sync interval",
                value: sync_interval_ms.to_string(),
                origin: "$SWITCHYARD_SYNC_INTERVAL_MS / `sync_interval_ms`".to_owned(),
                reason: "must be between 10 and 3600000 milliseconds".to_owned(),
            });
        }
        let rate = number(
            "SWITCHYARD_RATE_LIMIT",
            file.ofrep.rate_limit_per_second.map(u64::from),
        )?
        .unwrap_or(0);
        let rate = u32::try_from(rate).map_err(|_| ConfigError::Invalid {
            setting: "rate limit",
            value: rate.to_string(),
            origin: "$SWITCHYARD_RATE_LIMIT / `ofrep.rate_limit_per_second`".to_owned(),
            reason: "too large".to_owned(),
        })?;
        let rate_limit = (rate > 0).then(|| {
            (
                rate,
                file.ofrep
                    .rate_limit_burst
                    .unwrap_or(rate.saturating_mul(2))
                    .max(1),
            )
        });

        let origins = env
            .get("SWITCHYARD_CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .or_else(|| file.ofrep.cors_allowed_origins.clone())
            .unwrap_or_else(|| vec!["*".to_owned()]);
        let cors_origins = if origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(origins)
        };

        let log_format = match env
            .get("SWITCHYARD_LOG_FORMAT")
            .map(|v| (v.clone(), "$SWITCHYARD_LOG_FORMAT".to_owned()))
            .or_else(|| {
                file.log
                    .format
                    .clone()
                    .map(|v| (v, format!("`log.format` in {file_origin}")))
            }) {
            None => LogFormat::Text,
            Some((v, _)) if v == "text" => LogFormat::Text,
            Some((v, _)) if v == "json" => LogFormat::Json,
            Some(src) => {
                return Err(invalid(
                    "log format",
                    src,
                    "expected `text` or `json`".to_owned(),
                ))
            }
        };
        let log_level = env
            .get("SWITCHYARD_LOG")
            .cloned()
            .or_else(|| file.log.level.clone())
            .unwrap_or_else(|| "info".to_owned());

        let admin_token = env
            .get("SWITCHYARD_ADMIN_TOKEN")
            .cloned()
            .filter(|t| !t.is_empty());
        if let Some(token) = &admin_token {
            if token.len() < 16 {
                return Err(ConfigError::Invalid {
                    setting: "admin token",
                    value: "(hidden)".to_owned(),
                    origin: "$SWITCHYARD_ADMIN_TOKEN".to_owned(),
                    reason: "must be at least 16 characters".to_owned(),
                });
            }
        }

        let unit_hash_key = match env
            .get("SWITCHYARD_UNIT_HASH_KEY")
            .map(|k| (k.clone(), "$SWITCHYARD_UNIT_HASH_KEY"))
            .or_else(|| {
                file.experiments
                    .unit_hash_key
                    .clone()
                    .map(|k| (k, "`experiments.unit_hash_key`"))
            }) {
            None => None,
            Some((key, _)) if key.is_empty() => None,
            Some((key, origin)) => {
                if key.len() < 16 {
                    return Err(ConfigError::Invalid {
                        setting: "unit hash key",
                        value: "(hidden)".to_owned(),
                        origin: origin.to_owned(),
                        reason: "must be at least 16 characters".to_owned(),
                    });
                }
                Some(switchyard_control::UnitHashKey::new(key.into_bytes()))
            }
        };

        let experiment_check_secs = number(
            "SWITCHYARD_EXPERIMENT_CHECK_SECS",
            file.experiments.check_interval_secs,
        )?
        .unwrap_or(60);
        if !(1..=86_400).contains(&experiment_check_secs) {
            return Err(ConfigError::Invalid {
                setting: "experiment check interval",
                value: experiment_check_secs.to_string(),
                origin: "$SWITCHYARD_EXPERIMENT_CHECK_SECS / `experiments.check_interval_secs`"
                    .to_owned(),
                reason: "must be between 1 and 86400 seconds".to_owned(),
            });
        }

        let webhook_retry_base_ms = number(
            "SWITCHYARD_WEBHOOK_RETRY_BASE_MS",
            file.webhooks.retry_base_ms,
        )?
        .unwrap_or(1000);
        let webhook_max_attempts = number(
            "SWITCHYARD_WEBHOOK_MAX_ATTEMPTS",
            file.webhooks.max_attempts.map(u64::from),
        )?
        .unwrap_or(8);
        let rollout_check_ms = number(
            "SWITCHYARD_ROLLOUT_CHECK_MS",
            file.rollouts.check_interval_ms,
        )?
        .unwrap_or(10_000);
        let probe_timeout_ms = file.rollouts.probe_timeout_ms.unwrap_or(5_000);
        let evaluation_flush_ms = number(
            "SWITCHYARD_EVALUATION_FLUSH_MS",
            file.hygiene.evaluation_flush_ms,
        )?
        .unwrap_or(60_000);
        let session_idle_minutes = number(
            "SWITCHYARD_UI_SESSION_IDLE_MINUTES",
            file.ui.session_idle_minutes,
        )?
        .unwrap_or(30);
        let session_max_hours = file.ui.session_max_hours.unwrap_or(12);
        for (setting, value, range) in [
            ("ui session idle minutes", session_idle_minutes, 1..=10_080),
            ("ui session max hours", session_max_hours, 1..=720),
            ("webhook retry base", webhook_retry_base_ms, 1..=3_600_000),
            ("webhook max attempts", webhook_max_attempts, 1..=100),
            ("rollout check interval", rollout_check_ms, 100..=3_600_000),
            ("gate probe timeout", probe_timeout_ms, 100..=60_000),
            (
                "evaluation flush interval",
                evaluation_flush_ms,
                100..=3_600_000,
            ),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::Invalid {
                    setting,
                    value: value.to_string(),
                    origin: "settings".to_owned(),
                    reason: format!("must be between {} and {}", range.start(), range.end()),
                });
            }
        }

        Ok(Settings {
            evaluation_flush_ms,
            sessions: switchyard_control::SessionLimits {
                idle_ms: session_idle_minutes as i64 * 60_000,
                absolute_ms: session_max_hours as i64 * 3_600_000,
            },
            rollout_check_ms,
            probe_timeout_ms,
            webhook_retry_base_ms,
            webhook_max_attempts: webhook_max_attempts as u32,
            experiment_check_secs,
            unit_hash_key,
            listen,
            storage_url: storage_src.0,
            import,
            import_overwrite,
            snapshot_file,
            storage_timeout_ms,
            flag_source,
            seed_examples,
            sync_interval_ms,
            rate_limit,
            cors_origins,
            admin_token,
            streams,
            limits,
            log_format,
            log_level,
        })
    }
}

fn read_config(path: &Path) -> Result<ServerConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn check_file(setting: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting,
            value: path.display().to_string(),
            origin: "settings".to_owned(),
            reason: "no such file".to_owned(),
        })
    }
}

/// Hides the password of a URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::load(&CliOverrides::default(), &HashMap::new()).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.storage_url, DEFAULT_STORAGE_URL);
        assert_eq!(s.flag_source, FlagSource::Store);
        assert!(s.seed_examples);
        assert_eq!(s.rate_limit, None);
        assert_eq!(s.cors_origins, None);
    }

    #[test]
    fn experiment_settings_are_checked_and_the_key_never_printed() {
        let s = Settings::load(&CliOverrides::default(), &HashMap::new()).unwrap();
        assert_eq!(
            (s.unit_hash_key.is_none(), s.experiment_check_secs),
            (true, 60)
        );
        let err = Settings::load(
            &CliOverrides::default(),
            &env(&[("SWITCHYARD_UNIT_HASH_KEY", "short-secret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 16 characters"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
        let file = ServerConfig {
            experiments: ExperimentsConfig {
                unit_hash_key: Some("a-secret-of-enough-length".into()),
                check_interval_secs: Some(5),
            },
            ..ServerConfig::default()
        };
        let s = Settings::resolve(&CliOverrides::default(), &HashMap::new(), &file, "x").unwrap();
        assert_eq!(s.experiment_check_secs, 5);
        let key = s.unit_hash_key.as_ref().unwrap();
        assert!(!format!("{s:?}").contains("a-secret-of-enough-length"));
        // Units hash the same on every replica with the same key, differently with another.
        assert_eq!(key.hash("alice"), key.hash("alice"));
        assert!(key.hash("alice").starts_with("h:"));
        let other = switchyard_control::UnitHashKey::new(b"another-secret-of-length".to_vec());
        assert_ne!(key.hash("alice"), other.hash("alice"));
        let err = Settings::load(
            &CliOverrides::default(),
            &env(&[("SWITCHYARD_EXPERIMENT_CHECK_SECS", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("between 1 and 86400"), "{err}");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = ServerConfig {
            listen: Some("127.0.0.1:1".into()),
            storage: StorageConfig {
                url: Some("sqlite://file.db".into()),
                timeout_ms: None,
            },
            ..ServerConfig::default()
        };
        let e = env(&[("SWITCHYARD_LISTEN", "127.0.0.1:2")]);
        let cli = CliOverrides {
            listen: Some("127.0.0.1:3".into()),
            ..CliOverrides::default()
        };
        let s = Settings::resolve(&cli, &e, &file, "config file x").unwrap();
        assert_eq!(s.listen.port(), 3);
        assert_eq!(s.storage_url, "sqlite://file.db");
        let s = Settings::resolve(&CliOverrides::default(), &e, &file, "x").unwrap();
        assert_eq!(s.listen.port(), 2);
        let s = Settings::resolve(&CliOverrides::default(), &HashMap::new(), &file, "x").unwrap();
        assert_eq!(s.listen.port(), 1);
    }

    #[test]
    fn errors_name_the_setting_and_its_origin() {
        let err = Settings::load(
            &CliOverrides::default(),
            &env(&[("SWITCHYARD_LISTEN", "localhost")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("invalid listen address `localhost` (from $SWITCHYARD_LISTEN)"),
            "{err}"
        );
        let err = Settings::load(
            &CliOverrides {
                db: Some("mysql://u:secret@h/db".into()),
                ..CliOverrides::default()
            },
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mysql://u:***@h/db") && err.contains("--db"),
            "{err}"
        );
        assert!(!err.contains("secret"));
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../config.example.toml");
        let config: ServerConfig = toml::from_str(text).expect("config.example.toml is valid");
        let s = Settings::resolve(
            &CliOverrides::default(),
            &HashMap::new(),
            &config,
            "example",
        )
        .unwrap();
        assert_eq!(s.rate_limit, Some((1000, 2000)));
        // The example shows the defaults.
        assert_eq!(s.limits, crate::listen::Limits::default());
        assert_eq!(s.streams, crate::stream::StreamSettings::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let err = toml::from_str::<ServerConfig>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_port`"),
            "{err}"
        );
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
