//! Automatic exposures: when OFREP serves a unit a running experiment's variant, the exposure
//! is queued here and appended in batches off the request path.
//!
//! The handler only tries to put a row in a bounded channel (never waits; a full queue drops
//! the row and counts it in `switchyard_events_total{kind="exposure",outcome="dropped"}`). A
//! task drains it: a batch is whatever arrived within [`BATCH_WINDOW`] of its first row (at
//! most [`MAX_BATCH`]), with repeats of an (experiment, unit) already written by this replica
//! skipped, appended through the control layer in one transaction. The store keeps the
//! earliest exposure per experiment and unit whichever replica wrote it.

use std::collections::HashSet;
use std::time::Duration;

use switchyard_control::Control;
use switchyard_storage::ExposureRow;
use tokio::sync::mpsc;

/// Rows waiting at most.
pub const QUEUE: usize = 100_000;
/// Rows per append at most.
pub const MAX_BATCH: usize = 2_000;
/// How long a batch collects after its first row.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// (experiment, unit) pairs remembered as written; forgotten all at once beyond this.
const SEEN: usize = 1_000_000;

/// The sending side, held by the app state.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<ExposureRow>>,
}

impl Recorder {
    /// A recorder draining into `control` (on the current runtime); inert outside one.
    pub fn start(control: Control, events: prometheus::IntCounterVec) -> Recorder {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Recorder { tx: None };
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(drain(rx, control, events));
        Recorder { tx: Some(tx) }
    }

    /// Queues one exposure; `false` when it had to be dropped (queue full or no drain).
    pub fn record(&self, row: ExposureRow) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.try_send(row).is_ok())
    }
}

async fn drain(
    mut rx: mpsc::Receiver<ExposureRow>,
    control: Control,
    events: prometheus::IntCounterVec,
) {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(row)) => batch.push(row),
                Ok(None) | Err(_) => break,
            }
        }
        if seen.len() > SEEN {
            seen.clear();
        }
        batch.retain(|row| {
            let key = (row.experiment.clone().unwrap_or_default(), row.unit.clone());
            !seen.contains(&key)
        });
        if batch.is_empty() {
            continue;
        }
        match control.append_events(&batch, &[]).await {
            Ok(appended) => {
                for row in &batch {
                    seen.insert((row.experiment.clone().unwrap_or_default(), row.unit.clone()));
                }
                events
                    .with_label_values(&["exposure", "stored"])
                    .inc_by(appended.exposures);
            }
            Err(err) => {
                tracing::warn!(error = %err, rows = batch.len(), "automatic exposures were not stored");
                events
                    .with_label_values(&["exposure", "dropped"])
                    .inc_by(batch.len() as u64);
            }
        }
        batch.clear();
    }
}
