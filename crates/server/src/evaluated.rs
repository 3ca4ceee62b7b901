//! When each flag was last evaluated in each environment, for the stale-flag report.
//!
//! The hot path only reads: under a shared (read) lock it finds the flag's slot and stores
//! the current second into an atomic when it differs from what is there, so concurrent
//! evaluations never wait on each other. The write lock is taken only to add the slot of a
//! flag seen for the first time in an environment (never for unknown keys, which would let
//! anyone grow the map). A background task copies the slots into the store every minute (and
//! at shutdown): the last-evaluated time of a flag is known to within that interval, and the
//! store sees a few hundred upserts a minute, not one write per evaluation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

/// Per environment, per flag: the last second it was evaluated.
#[derive(Debug, Default)]
pub struct LastEvaluated {
    slots: RwLock<HashMap<String, HashMap<String, AtomicI64>>>,
}

impl LastEvaluated {
    /// Notes that `flag` was evaluated in `environment` at `now_secs`.
    pub fn seen(&self, environment: &str, flag: &str, now_secs: i64) {
        if let Ok(slots) = self.slots.read() {
            if let Some(slot) = slots.get(environment).and_then(|f| f.get(flag)) {
                if slot.load(Ordering::Relaxed) != now_secs {
                    slot.store(now_secs, Ordering::Relaxed);
                }
                return;
            }
        }
        if let Ok(mut slots) = self.slots.write() {
            slots
                .entry(environment.to_owned())
                .or_default()
                .entry(flag.to_owned())
                .or_insert_with(|| AtomicI64::new(now_secs))
                .store(now_secs, Ordering::Relaxed);
        }
    }

    /// The slots evaluated at or after `since_secs`: `(environment, flag, unix ms)`.
    pub fn since(&self, since_secs: i64) -> Vec<(String, String, i64)> {
        let Ok(slots) = self.slots.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (env, flags) in slots.iter() {
            for (flag, at) in flags {
                let at = at.load(Ordering::Relaxed);
                if at >= since_secs {
                    out.push((env.clone(), flag.clone(), at.saturating_mul(1000)));
                }
            }
        }
        out
    }
}

/// Copies what was evaluated since the last copy into the store, every `every` and once more
/// when `stop` is set.
pub async fn flush(
    state: crate::state::AppState,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = crate::ticker(every);
    tick.reset();
    let mut since = 0;
    loop {
        let running = crate::tick_or_stop(&mut tick, &mut stop).await;
        if crate::store_is_up(&state) {
            let now = crate::now_secs();
            let rows = state.evaluated.since(since);
            match state.control.record_evaluations(&rows).await {
                Ok(()) => since = now,
                Err(err) => tracing::warn!(error = %err, "last-evaluated times were not stored"),
            }
        }
        if !running {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LastEvaluated;

    #[test]
    fn the_latest_second_is_kept_per_environment_and_flag() {
        let seen = LastEvaluated::default();
        seen.seen("production", "checkout", 100);
        seen.seen("production", "checkout", 160);
        seen.seen("staging", "checkout", 120);
        let mut rows = seen.since(0);
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("production".into(), "checkout".into(), 160_000),
                ("staging".into(), "checkout".into(), 120_000),
            ]
        );
        assert_eq!(seen.since(150).len(), 1);
    }
}
