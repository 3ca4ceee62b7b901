//! Experiment events through the control layer: the one place the server appends them, so
//! "everything that writes goes through control" holds for events too. They are not changes:
//! no write lock, no revision, no feed, no audit row, nothing for replicas to apply.

use switchyard_storage::{Appended, ExposureRow, MetricRow};

use crate::{now_ms, Actor, Control, Result};

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
        match &self.settings().unit_hash_key {
            None => Ok(store.append_events(exposures, metrics, now_ms()).await?),
            Some(key) => {
                let exposures: Vec<ExposureRow> = exposures
                    .iter()
                    .map(|e| ExposureRow {
                        unit: key.hash(&e.unit),
                        ..e.clone()
                    })
                    .collect();
                let metrics: Vec<MetricRow> = metrics
                    .iter()
                    .map(|m| MetricRow {
                        unit: key.hash(&m.unit),
                        ..m.clone()
                    })
                    .collect();
                Ok(store.append_events(&exposures, &metrics, now_ms()).await?)
            }
        }
    }

    /// Erases every exposure and metric event of `unit` in `environment` (hashed first when
    /// units are stored hashed). Not a change of flags: no audit row (it would have to name
    /// the unit); the erasure is logged with the actor and the count only.
    pub async fn erase_unit(&self, environment: &str, unit: &str, actor: &Actor) -> Result<u64> {
        crate::flags::require_environment(&self.snapshot(), environment)?;
        let store = self.require_store()?;
        let stored = match &self.settings().unit_hash_key {
            Some(key) => key.hash(unit),
            None => unit.to_owned(),
        };
        let experiments: Vec<String> = self
            .experiments()
            .await?
            .into_iter()
            .filter(|e| e.spec.environment == environment)
            .map(|e| e.spec.id)
            .collect();
        let rows = store.erase_unit(environment, &stored, &experiments).await?;
        tracing::info!(actor = %actor.id, environment, rows, "a unit's events were erased");
        Ok(rows)
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
