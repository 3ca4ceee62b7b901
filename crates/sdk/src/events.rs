//! Events: `track` calls and exposures, queued in bounded memory and sent in batches in the
//! background. What does not fit in the queue, or cannot be sent (the server refuses it, or
//! has no event endpoint yet), is dropped and counted — the application is never slowed or
//! grown by events.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use switchyard_api_types::sdk::{EventBatch, Exposure, Metric, SdkEvent};
use switchyard_engine::{Context, Evaluation, Evaluator};

use crate::Client;

/// How many (flag, unit) pairs are remembered to send each exposure once; the set is cleared
/// when full (an exposure may then be sent again, which the server deduplicates).
const EXPOSURES_REMEMBERED: usize = 100_000;

pub(crate) struct Queue {
    events: Mutex<VecDeque<SdkEvent>>,
    capacity: usize,
    seen: Mutex<HashSet<(String, String)>>,
    prefix: String,
    next: AtomicU64,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        Queue {
            events: Mutex::new(VecDeque::new()),
            capacity,
            seen: Mutex::new(HashSet::new()),
            prefix: hex::encode(random),
            next: AtomicU64::new(0),
        }
    }

    fn id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Queues `event`; `false` when the queue is full (the event is dropped).
    fn push(&self, event: SdkEvent) -> bool {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.len() >= self.capacity {
            return false;
        }
        events.push_back(event);
        true
    }

    fn take(&self, max: usize) -> Vec<SdkEvent> {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = max.min(events.len());
        events.drain(..n).collect()
    }

    /// Puts a batch that could not be sent back at the front, as far as it fits (its oldest
    /// events are dropped first); returns how many were dropped.
    fn put_back(&self, batch: Vec<SdkEvent>) -> usize {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = self.capacity.saturating_sub(events.len());
        let dropped = batch.len().saturating_sub(room);
        // The oldest are the ones dropped, so what stays is contiguous.
        for event in batch.into_iter().skip(dropped).rev() {
            events.push_front(event);
        }
        dropped
    }

    fn len(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Client {
    /// Records that `unit` did `event` (a conversion, a purchase with its `value`, an error):
    /// queued and sent in the background for experiment analysis.
    pub fn track(&self, event: &str, unit: &str, value: Option<f64>) {
        let queue = &self.inner.events;
        let metric = SdkEvent::Metric(Metric {
            id: queue.id(),
            event: event.to_owned(),
            unit: unit.to_owned(),
            value,
            timestamp_ms: now_ms(),
        });
        if !queue.push(metric) {
            self.inner
                .stats
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn exposure(
        &self,
        evaluator: &Evaluator<'_>,
        key: &str,
        ctx: &Context,
        evaluation: &Evaluation<'_>,
    ) {
        if !self.inner.config.record_exposures || evaluation.error.is_some() {
            return;
        }
        if let Some(variant) = evaluation.variant {
            let experiment = evaluation.detail.as_ref().and_then(|d| d.experiment_id());
            self.record_exposure(evaluator, key, ctx, variant, experiment);
        }
    }

    /// Queues the first exposure of a unit to `key` seen by this client. An exposure from a
    /// running experiment carries its id and the experiment's bucketing unit.
    pub(crate) fn record_exposure(
        &self,
        evaluator: &Evaluator<'_>,
        key: &str,
        ctx: &Context,
        variant: &str,
        experiment: Option<&str>,
    ) {
        let experiment_unit = experiment
            .and_then(|_| evaluator.experiment_unit(key, ctx))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        let Some(unit) = experiment_unit.as_deref().or(ctx.targeting_key()) else {
            return;
        };
        let queue = &self.inner.events;
        {
            let mut seen = queue
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.len() >= EXPOSURES_REMEMBERED {
                seen.clear();
            }
            if !seen.insert((key.to_owned(), unit.to_owned())) {
                return;
            }
        }
        let exposure = SdkEvent::Exposure(Exposure {
            id: queue.id(),
            flag: key.to_owned(),
            variant: variant.to_owned(),
            unit: unit.to_owned(),
            timestamp_ms: now_ms(),
            experiment: experiment.map(str::to_owned),
        });
        if !queue.push(exposure) {
            self.inner
                .stats
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends queued events every flush interval (and once more at shutdown).
    pub(crate) async fn run_events(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut tick = tokio::time::interval(self.inner.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.wait_for(|stopped| *stopped) => true,
            };
            let deadline = tokio::time::Instant::now() + self.inner.config.request_timeout;
            while self.inner.events.len() > 0 && tokio::time::Instant::now() < deadline {
                if !self.flush_once().await {
                    break;
                }
            }
            if stopping {
                let left = self.inner.events.take(usize::MAX).len();
                self.inner
                    .stats
                    .events_dropped
                    .fetch_add(left as u64, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Sends one batch; whether to go on sending.
    async fn flush_once(&self) -> bool {
        let batch = self.inner.events.take(self.inner.config.event_batch);
        if batch.is_empty() {
            return false;
        }
        let n = batch.len() as u64;
        let url = format!("{}/sdk/v1/events", self.inner.config.server);
        let sent = self
            .inner
            .http
            .post(&url)
            .bearer_auth(&self.inner.config.key)
            .timeout(self.inner.config.request_timeout)
            .json(&EventBatch {
                events: batch.clone(),
            })
            .send()
            .await;
        let stats = &self.inner.stats;
        match sent {
            Ok(r) if r.status().is_success() => {
                stats.events_sent.fetch_add(n, Ordering::Relaxed);
                true
            }
            // The server refuses them (or has no event endpoint): sending again will not help.
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    events = n,
                    "switchyard: the server refused events; they are dropped"
                );
                stats.events_dropped.fetch_add(n, Ordering::Relaxed);
                true
            }
            Ok(_) | Err(_) => {
                let dropped = self.inner.events.put_back(batch);
                stats
                    .events_dropped
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_keeps_order() {
        let q = Queue::new(3);
        let metric = |i: i64| {
            SdkEvent::Metric(Metric {
                id: i.to_string(),
                event: "e".into(),
                unit: "u".into(),
                value: None,
                timestamp_ms: i,
            })
        };
        assert!(q.push(metric(1)) && q.push(metric(2)) && q.push(metric(3)));
        assert!(!q.push(metric(4)), "full");
        let batch = q.take(2);
        assert_eq!(batch.len(), 2);
        assert!(q.push(metric(5)));
        // Two come back; one fits.
        assert_eq!(q.put_back(batch), 1);
        let all = q.take(10);
        let ids: Vec<String> = all
            .iter()
            .map(|e| match e {
                SdkEvent::Metric(m) => m.id.clone(),
                SdkEvent::Exposure(x) => x.id.clone(),
            })
            .collect();
        assert_eq!(ids, vec!["2", "3", "5"]);
    }
}
