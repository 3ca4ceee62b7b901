//! Prometheus metrics: evaluations, HTTP latency, flag changes, kill switches, rollouts.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
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
    /// `switchyard_store_up`: 1 while the store answers, 0 while it is down or connecting.
    pub store_up: IntGauge,
    /// `switchyard_snapshot_revision`: the store revision this replica serves.
    pub revision: IntGauge,
    /// `switchyard_sse_clients{kind}`: connected stream clients (`sdk`, `ofrep`).
    pub sse_clients: prometheus::IntGaugeVec,
    /// `switchyard_sse_dropped_clients_total{kind}`: clients disconnected for not reading.
    pub sse_dropped: IntCounterVec,
    /// `switchyard_connections_rejected_total`: connections refused at the connection limit.
    pub rejected_connections: prometheus::IntCounter,
    /// `switchyard_events_total{kind, outcome}`: events received from SDKs (`exposure`,
    /// `metric`) by outcome (`stored`, `duplicate`, `rejected`).
    pub events: IntCounterVec,
    /// `switchyard_experiment_stops_total{reason}`: experiments paused automatically (`srm`,
    /// `guardrail`).
    pub experiment_stops: IntCounterVec,
    /// `switchyard_webhook_deliveries_total{outcome}`: attempts (`delivered`, `failed` and
    /// retried, `dead`).
    pub webhook_deliveries: IntCounterVec,
    /// `switchyard_schedule_runs_total{state}`: scheduled changes run (`done`, `failed`).
    pub schedule_runs: IntCounterVec,
    /// `switchyard_rollout_steps_total{action}`: automatic rollout steps (`advanced`,
    /// `awaiting_approval`, `completed`, `rolled_back`).
    pub rollout_steps: IntCounterVec,
    /// `switchyard_guard_trips_total`: kill switches turned on by guards.
    pub guard_trips: IntCounter,
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
        let store_up = IntGauge::new(
            "switchyard_store_up",
            "1 while the store answers, 0 while it is down (evaluations continue from memory)",
        )?;
        let revision = IntGauge::new(
            "switchyard_snapshot_revision",
            "The store revision this replica serves",
        )?;
        let sse_clients = prometheus::IntGaugeVec::new(
            Opts::new(
                "switchyard_sse_clients",
                "Connected event-stream clients by kind",
            ),
            &["kind"],
        )?;
        let sse_dropped = IntCounterVec::new(
            Opts::new(
                "switchyard_sse_dropped_clients_total",
                "Event-stream clients disconnected because they stopped reading",
            ),
            &["kind"],
        )?;
        let rejected_connections = prometheus::IntCounter::new(
            "switchyard_connections_rejected_total",
            "Connections answered 503 and closed because the server held its maximum",
        )?;
        registry.register(Box::new(rejected_connections.clone()))?;
        let events = IntCounterVec::new(
            Opts::new(
                "switchyard_events_total",
                "Events received from SDKs, by kind (exposure, metric) and outcome (stored, duplicate, rejected)",
            ),
            &["kind", "outcome"],
        )?;
        for kind in ["exposure", "metric"] {
            for outcome in ["stored", "duplicate", "rejected"] {
                events.with_label_values(&[kind, outcome]).inc_by(0);
            }
        }
        registry.register(Box::new(events.clone()))?;
        let experiment_stops = IntCounterVec::new(
            Opts::new(
                "switchyard_experiment_stops_total",
                "Experiments paused automatically, by reason (srm, guardrail)",
            ),
            &["reason"],
        )?;
        for reason in ["srm", "guardrail"] {
            experiment_stops.with_label_values(&[reason]).inc_by(0);
        }
        registry.register(Box::new(experiment_stops.clone()))?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "switchyard_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered, failed and retried, dead)",
            ),
            &["outcome"],
        )?;
        for outcome in ["delivered", "failed", "dead"] {
            webhook_deliveries.with_label_values(&[outcome]).inc_by(0);
        }
        registry.register(Box::new(webhook_deliveries.clone()))?;
        let schedule_runs = IntCounterVec::new(
            Opts::new(
                "switchyard_schedule_runs_total",
                "Scheduled changes run, by state (done, failed)",
            ),
            &["state"],
        )?;
        for state in ["done", "failed"] {
            schedule_runs.with_label_values(&[state]).inc_by(0);
        }
        registry.register(Box::new(schedule_runs.clone()))?;
        let rollout_steps = IntCounterVec::new(
            Opts::new(
                "switchyard_rollout_steps_total",
                "Automatic progressive-rollout steps, by action (advanced, awaiting_approval, completed, rolled_back)",
            ),
            &["action"],
        )?;
        for action in ["advanced", "awaiting_approval", "completed", "rolled_back"] {
            rollout_steps.with_label_values(&[action]).inc_by(0);
        }
        registry.register(Box::new(rollout_steps.clone()))?;
        let guard_trips = IntCounter::new(
            "switchyard_guard_trips_total",
            "Kill switches turned on by guards",
        )?;
        registry.register(Box::new(guard_trips.clone()))?;
        for kind in ["sdk", "ofrep"] {
            sse_clients.with_label_values(&[kind]).set(0);
            sse_dropped.with_label_values(&[kind]).inc_by(0);
        }
        registry.register(Box::new(sse_clients.clone()))?;
        registry.register(Box::new(sse_dropped.clone()))?;
        registry.register(Box::new(store_up.clone()))?;
        registry.register(Box::new(revision.clone()))?;
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
            store_up,
            revision,
            sse_clients,
            sse_dropped,
            rejected_connections,
            events,
            experiment_stops,
            webhook_deliveries,
            schedule_runs,
            rollout_steps,
            guard_trips,
        })
    }

    /// Updates the gauges that read the control layer's state.
    pub fn observe_control(&self, control: &switchyard_control::Control) {
        let up = matches!(control.store_status(), switchyard_control::StoreStatus::Up);
        self.store_up.set(i64::from(up));
        self.revision.set(control.snapshot_guard().revision);
    }

    /// Sets the rollout and flag-count gauges from a snapshot.
    pub fn observe_snapshot(&self, snapshot: &switchyard_control::Snapshot) {
        self.flags.set(snapshot.ruleset.len() as i64);
        self.revision.set(snapshot.revision);
        self.rollout.reset();
        for view in snapshot.flags() {
            let f = view.definition;
            let top = f
                .targeting
                .fallthrough
                .as_ref()
                .and_then(|ft| ft.percentage)
                .or(f.percentage);
            if let Some(p) = top {
                self.rollout
                    .with_label_values(&[f.key.as_str(), "*"])
                    .set(p);
            }
            for (env, e) in &f.environments {
                if let Some(p) = e.fallthrough.as_ref().and_then(|ft| ft.percentage) {
                    self.rollout
                        .with_label_values(&[f.key.as_str(), env.as_str()])
                        .set(p);
                }
            }
        }
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

/// Keeps the snapshot gauges current until `stop` changes: at most once a second, since
/// refreshing them walks every flag (a burst of changes costs one refresh, not one per change).
pub async fn follow_snapshots(
    state: crate::state::AppState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut published = state.control.subscribe();
    state.metrics.observe_snapshot(&state.control.snapshot());
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let snapshot = published.borrow_and_update().clone();
        state.metrics.observe_snapshot(&snapshot);
    }
}
