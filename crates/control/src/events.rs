//! Experiment events through the control layer: the one place the server appends them, so
//! "everything that writes goes through control" holds for events too. They are not changes:
//! no write lock, no revision, no feed, no audit row, nothing for replicas to apply.

use switchyard_storage::{Appended, ExposureRow, MetricRow};

use crate::{now_ms, Control, Result};

impl Control {
    /// Appends a batch of exposures and metric events in one transaction (see
    /// `switchyard_storage::Store::append_events`). Fails at once with `Unavailable` while
    /// the store is unreachable, like writes; the caller (an SDK) keeps and retries the batch.
    pub async fn append_events(
        &self,
        exposures: &[ExposureRow],
        metrics: &[MetricRow],
    ) -> Result<Appended> {
        let store = self.require_store()?;
        Ok(store.append_events(exposures, metrics, now_ms()).await?)
    }
}

impl Control {
    /// Units per variant first exposed to `flag` in `environment`.
    pub async fn exposure_counts(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Vec<switchyard_storage::VariantUnits>> {
        Ok(self
            .require_store()?
            .exposure_counts(environment, flag)
            .await?)
    }
}
