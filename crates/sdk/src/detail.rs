//! What an evaluation returns when the caller wants to know how it was decided.

use serde_json::{Map, Value};
use switchyard_engine::{ErrorCode, Evaluation};

/// How current the served ruleset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Streaming (or polling) from the server: changes arrive as they are made.
    Live,
    /// From the server, but the connection is lost: possibly out of date.
    Stale,
    /// From the cache file: the server has not answered since start.
    Cached,
    /// Nothing loaded: the caller's default.
    NotReady,
}

/// Why a value was served (the OpenFeature reasons, plus where the SDK's data came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The flag has no targeting (or an override fixed the value).
    Static,
    /// A target, tenant override or rule selected the value.
    TargetingMatch,
    /// A percentage or split selected the value.
    Split,
    /// The flag is off (disabled or killed).
    Disabled,
    /// Nothing applied; the configured default was served.
    Default,
    /// Served from the cache file (the server has not answered since start).
    Cached,
    /// Served from the last known ruleset while disconnected.
    Stale,
    /// Failed; see the error (the caller's default is served).
    Error,
}

impl Reason {
    /// The OpenFeature spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Cached => "CACHED",
            Reason::Stale => "STALE",
            Reason::Error => "ERROR",
        }
    }

    fn from_engine(reason: switchyard_engine::Reason) -> Reason {
        match reason {
            switchyard_engine::Reason::Static => Reason::Static,
            switchyard_engine::Reason::TargetingMatch => Reason::TargetingMatch,
            switchyard_engine::Reason::Split => Reason::Split,
            switchyard_engine::Reason::Disabled => Reason::Disabled,
            switchyard_engine::Reason::Default => Reason::Default,
            switchyard_engine::Reason::Error => Reason::Error,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value and how it was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail<T> {
    /// The value (the caller's default on error).
    pub value: T,
    /// The variant served (`None` on error, or for an override).
    pub variant: Option<String>,
    /// Why: the engine's reason, except `CACHED`/`STALE` when the data is not live and
    /// `ERROR` on failure.
    pub reason: Reason,
    /// The engine's own reason, whatever the freshness (`TARGETING_MATCH` behind a `STALE`).
    pub evaluated: Reason,
    /// The rule that matched, when one did.
    pub rule_id: Option<String>,
    /// The error, when `reason` is `ERROR`.
    pub error: Option<(ErrorCode, String)>,
    /// The flag's metadata (its `metadata` and `owner`).
    pub flag_metadata: Option<Map<String, Value>>,
    /// How current the ruleset was.
    pub freshness: Freshness,
    /// Whether an override (test or environment variable) decided the value.
    pub overridden: bool,
}

impl<T> Detail<T> {
    pub(crate) fn from_evaluation(
        evaluation: &Evaluation<'_>,
        default: T,
        read: impl Fn(&Value) -> Option<T>,
        freshness: Freshness,
        flag_metadata: Option<Map<String, Value>>,
    ) -> Detail<T> {
        if let Some(error) = &evaluation.error {
            return Detail {
                flag_metadata,
                ..Detail::error(default, error.code, error.message.clone(), freshness)
            };
        }
        let evaluated = Reason::from_engine(evaluation.reason);
        let Some(value) = read(evaluation.value) else {
            return Detail {
                flag_metadata,
                ..Detail::error(
                    default,
                    ErrorCode::TypeMismatch,
                    format!(
                        "the flag is of type {} and served {}",
                        evaluation.flag_type.map_or("unknown", |t| t.as_str()),
                        evaluation.value
                    ),
                    freshness,
                )
            };
        };
        Detail {
            value,
            variant: evaluation.variant.map(str::to_owned),
            reason: match freshness {
                Freshness::Stale => Reason::Stale,
                Freshness::Cached => Reason::Cached,
                Freshness::Live | Freshness::NotReady => evaluated,
            },
            evaluated,
            rule_id: evaluation.rule_id().map(str::to_owned),
            error: None,
            flag_metadata,
            freshness,
            overridden: false,
        }
    }

    pub(crate) fn error(
        default: T,
        code: ErrorCode,
        message: String,
        freshness: Freshness,
    ) -> Detail<T> {
        Detail {
            value: default,
            variant: None,
            reason: Reason::Error,
            evaluated: Reason::Error,
            rule_id: None,
            error: Some((code, message)),
            flag_metadata: None,
            freshness,
            overridden: false,
        }
    }

    pub(crate) fn not_ready(default: T, key: &str) -> Detail<T> {
        Detail::error(
            default,
            ErrorCode::General,
            format!("no ruleset is loaded yet, so `{key}` answers its default (the server has not answered and there is no usable cache file)"),
            Freshness::NotReady,
        )
    }

    pub(crate) fn overridden(value: T, freshness: Freshness) -> Detail<T> {
        Detail {
            value,
            variant: None,
            reason: Reason::Static,
            evaluated: Reason::Static,
            rule_id: None,
            error: None,
            flag_metadata: None,
            freshness,
            overridden: true,
        }
    }
}
