//! Shared state of the HTTP layer: the control layer (every change and the served snapshot),
//! the settings, the metrics and the per-SDK-key rate limiter.

use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use switchyard_control::Control;

use crate::config::Settings;
use crate::metrics::Metrics;

/// Cheap-to-clone handle on everything the handlers need.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The state behind [`AppState`].
pub struct Inner {
    /// The control layer: every change goes through it; evaluation reads its snapshot.
    pub control: Control,
    /// Validated settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// Per-SDK-key rate limiter, when configured.
    pub limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// The replica's event streams (SDK and OFREP).
    pub streams: Arc<crate::stream::Streams>,
    /// Exposures of running experiments, queued for appending.
    pub recorder: crate::recorder::Recorder,
    /// When each flag was last evaluated here, per environment.
    pub evaluated: crate::evaluated::LastEvaluated,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("control", &self.control)
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

/// Converts unix milliseconds to RFC 3339 (fixed width, always milliseconds and `Z`, so
/// timestamps sort as text).
pub fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

impl AppState {
    /// New state around a control layer.
    pub fn new(control: Control, settings: Settings, metrics: Metrics) -> Self {
        let limiter = settings.rate_limit.and_then(|(rate, burst)| {
            let rate = std::num::NonZeroU32::new(rate)?;
            let burst = std::num::NonZeroU32::new(burst).unwrap_or(rate);
            Some(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        let streams = Arc::new(crate::stream::Streams::new(settings.streams));
        let recorder = crate::recorder::Recorder::start(control.clone(), metrics.events.clone());
        Self(Arc::new(Inner {
            evaluated: crate::evaluated::LastEvaluated::default(),
            recorder,
            control,
            settings,
            metrics,
            limiter,
            streams,
        }))
    }
}
