//! Reading an experiment's events for analysis, without loading them.
//!
//! The database does the heavy part: it joins each exposed unit with its metric events in the
//! attribution window and groups them per unit and day, so what crosses the connection is one
//! row per unit and active day, streamed in unit order. [`Store::unit_days`] folds that stream
//! into [`UnitHistory`] values one unit at a time and hands each to the caller, who keeps only
//! running sums: memory stays bounded by one unit's days, whatever the number of events.

use futures_util::TryStreamExt;
use sqlx::Row;

use crate::events::VariantUnits;
use crate::{Result, Store};

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;

/// How much earlier than a unit's first exposure an event may be dated and still count:
/// exposures recorded by OFREP carry the server's clock, metric events the application's, and
/// a conversion right after an exposure must not be lost to a clock a little behind.
pub const CLOCK_SKEW_MS: i64 = 60_000;

/// What to read: one experiment's exposures and one event's metric events.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery<'a> {
    /// The experiment.
    pub experiment: &'a str,
    /// The environment its events are in.
    pub environment: &'a str,
    /// The metric's event name.
    pub event: &'a str,
    /// Only events at most this long after the unit's first exposure (`None`: any).
    pub window_ms: Option<i64>,
    /// Day 0 starts here (the experiment's start), unix ms.
    pub start_ms: i64,
    /// Only exposures and events before this instant (its end, or now), unix ms.
    pub end_ms: i64,
}

/// One exposed unit's metric events, by day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitHistory {
    /// The variant of its first exposure.
    pub variant: String,
    /// The day of its first exposure (0 = the start day).
    pub exposed_day: i64,
    /// `(day, events, sum of values)` for each day it sent the event, ascending.
    pub days: Vec<(i64, u64, f64)>,
}

impl Store {
    /// Units per variant first exposed to `experiment` before `end_ms`.
    pub async fn experiment_exposure_counts(
        &self,
        experiment: &str,
        end_ms: i64,
    ) -> Result<Vec<VariantUnits>> {
        let rows = sqlx::query(
            "SELECT variant, COUNT(*) AS units FROM experiment_exposures \
             WHERE experiment = $1 AND first_at_ms < $2 GROUP BY variant ORDER BY variant",
        )
        .bind(experiment)
        .bind(end_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VariantUnits {
                    variant: r.try_get("variant")?,
                    units: r.try_get("units")?,
                })
            })
            .collect()
    }

    /// Streams every exposed unit's history of `q.event` to `visit`, one unit at a time (see
    /// the module docs). Units with no event in their window come with no days.
    pub async fn unit_days(
        &self,
        q: &MetricQuery<'_>,
        mut visit: impl FnMut(&UnitHistory),
    ) -> Result<()> {
        // Integer division on both backends (BIGINT / BIGINT, INTEGER / INTEGER); the window
        // and the end are separate conditions so that no dialect's LEAST/MIN is needed.
        let window = q.window_ms.unwrap_or(i64::MAX / 4);
        let mut rows = sqlx::query(
            "SELECT unit, variant, exposed_day, day, COUNT(at_ms) AS n, \
                    SUM(COALESCE(value, 0.0)) AS total \
             FROM (SELECT e.unit AS unit, e.variant AS variant, \
                          (e.first_at_ms - $4) / $6 AS exposed_day, \
                          (CASE WHEN m.at_ms < e.first_at_ms THEN e.first_at_ms ELSE m.at_ms END - $4) / $6 AS day, \
                          m.at_ms AS at_ms, m.value AS value \
                   FROM experiment_exposures e \
                   LEFT JOIN metric_events m \
                     ON m.environment = $2 AND m.event = $3 AND m.unit = e.unit \
                    AND m.at_ms >= e.first_at_ms - $8 AND m.at_ms - e.first_at_ms <= $5 \
                    AND m.at_ms < $7 \
                   WHERE e.experiment = $1 AND e.first_at_ms < $7) joined \
             GROUP BY unit, variant, exposed_day, day \
             ORDER BY unit, day",
        )
        .bind(q.experiment)
        .bind(q.environment)
        .bind(q.event)
        .bind(q.start_ms)
        .bind(window)
        .bind(DAY_MS)
        .bind(q.end_ms)
        .bind(CLOCK_SKEW_MS)
        .fetch(self.pool());
        let mut current: Option<(String, UnitHistory)> = None;
        while let Some(row) = rows.try_next().await? {
            let unit: String = row.try_get("unit")?;
            if current.as_ref().is_none_or(|(u, _)| *u != unit) {
                if let Some((_, history)) = current.take() {
                    visit(&history);
                }
                current = Some((
                    unit,
                    UnitHistory {
                        variant: row.try_get("variant")?,
                        exposed_day: row.try_get::<i64, _>("exposed_day")?.max(0),
                        days: Vec::new(),
                    },
                ));
            }
            let n: i64 = row.try_get("n")?;
            if n > 0 {
                let day: i64 = row.try_get("day")?;
                let total: f64 = row.try_get("total")?;
                if let Some((_, history)) = current.as_mut() {
                    history.days.push((day.max(0), n as u64, total));
                }
            }
        }
        if let Some((_, history)) = current {
            visit(&history);
        }
        Ok(())
    }

    /// Erases every exposure and metric event of `unit` in `environment` (a privacy
    /// request): flag exposures, experiment exposures (of experiments in that environment,
    /// `experiments`) and metric events. Returns how many rows went.
    pub async fn erase_unit(
        &self,
        environment: &str,
        unit: &str,
        experiments: &[String],
    ) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut erased = sqlx::query("DELETE FROM exposures WHERE environment = $1 AND unit = $2")
            .bind(environment)
            .bind(unit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased += sqlx::query("DELETE FROM metric_events WHERE environment = $1 AND unit = $2")
            .bind(environment)
            .bind(unit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for experiment in experiments {
            erased +=
                sqlx::query("DELETE FROM experiment_exposures WHERE experiment = $1 AND unit = $2")
                    .bind(experiment.as_str())
                    .bind(unit)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
        }
        tx.commit().await?;
        Ok(erased)
    }
}
