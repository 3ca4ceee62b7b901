//! Prometheus metrics: evaluations, HTTP latency, flag changes, kill switches, rollouts.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The server's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `switchyard_evaluations_total{flag, variant, reason}`.
    pub evaluations: IntCounterVec,
    /// `switchyard_http_request_duration_seconds{method, route, status}`.
    pub http: HistogramVec,
    /// `switchyard_flag_changes_total{action}`.
    pub flag_changes: IntCounterVec,
    /// `switchyard_kill_switch_activations_total{flag, environment}`.
    pub kill_switches: IntCounterVec,
    /// `switchyard_rollout_percentage{flag, environment}` (fallthrough percentage).
    pub rollout: prometheus::GaugeVec,
    /// `switchyard_flags` served.
    pub flags: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let evaluations = IntCounterVec::new(
            Opts::new(
                "switchyard_evaluations_total",
                "Flag evaluations by flag, variant and reason",
            ),
            &["flag", "variant", "reason"],
        )?;
        let http = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["method", "route", "status"],
        )?;
        let flag_changes = IntCounterVec::new(
            Opts::new("switchyard_flag_changes_total", "Flag changes by action"),
            &["action"],
        )?;
        let kill_switches = IntCounterVec::new(
            Opts::new(
                "switchyard_kill_switch_activations_total",
                "Kill switch activations",
            ),
            &["flag", "environment"],
        )?;
        let rollout = prometheus::GaugeVec::new(
            Opts::new(
                "switchyard_rollout_percentage",
                "Fallthrough rollout percentage",
            ),
            &["flag", "environment"],
        )?;
        let flags = IntGauge::new("switchyard_flags", "Flags currently served")?;
        registry.register(Box::new(evaluations.clone()))?;
        registry.register(Box::new(http.clone()))?;
        registry.register(Box::new(flag_changes.clone()))?;
        registry.register(Box::new(kill_switches.clone()))?;
        registry.register(Box::new(rollout.clone()))?;
        registry.register(Box::new(flags.clone()))?;
        Ok(Self {
            registry,
            evaluations,
            http,
            flag_changes,
            kill_switches,
            rollout,
            flags,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
