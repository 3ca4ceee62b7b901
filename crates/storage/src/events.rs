//! Experiment events: exposures and metric events, appended in batches.
//!
//! Not the flag write path: no write lock, no revision, no change feed, no audit row, no
//! `NOTIFY` — an append never wakes a replica or a stream. A batch is one transaction of
//! multi-row `INSERT`s (500 rows a statement, far below both backends' parameter limits).
//! Exposures keep one row per environment, flag and unit — the earliest; metric events are
//! idempotent on the client's event id within an environment.

use sqlx::{Any, Executor, Row, Transaction};

use crate::{Result, Store};

/// Rows per `INSERT` statement.
const CHUNK: usize = 500;

/// A unit was served a variant of a flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureRow {
    /// The environment of the SDK key that reported it.
    pub environment: String,
    /// Flag key.
    pub flag: String,
    /// Bucketing unit.
    pub unit: String,
    /// Variant served.
    pub variant: String,
    /// When it was served (unix ms, the client's clock).
    pub at_ms: i64,
    /// The running experiment that assigned the unit, when one did: the exposure is also
    /// recorded for that experiment (one row per experiment and unit, the earliest).
    pub experiment: Option<String>,
}

/// A unit did something: a conversion, a purchase with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// The environment of the SDK key that reported it.
    pub environment: String,
    /// The client's event id (retries send the same id).
    pub id: String,
    /// Unit.
    pub unit: String,
    /// Event name.
    pub event: String,
    /// Optional numeric value.
    pub value: Option<f64>,
    /// When (unix ms, the client's clock).
    pub at_ms: i64,
}

/// What an append stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Exposures that were new or earlier than the one stored.
    pub exposures: u64,
    /// Metric events not seen before.
    pub metrics: u64,
}

/// Units exposed to one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantUnits {
    /// The variant.
    pub variant: String,
    /// Units whose first exposure was to it.
    pub units: i64,
}

fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(r * columns + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

async fn insert_exposures(
    tx: &mut Transaction<'_, Any>,
    rows: &[&ExposureRow],
    now_ms: i64,
) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO exposures (environment, flag, unit, variant, first_at_ms, received_at_ms) \
             VALUES {} \
             ON CONFLICT (environment, flag, unit) DO UPDATE \
             SET variant = excluded.variant, first_at_ms = excluded.first_at_ms \
             WHERE excluded.first_at_ms < exposures.first_at_ms",
            placeholders(chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.environment.as_str())
                .bind(row.flag.as_str())
                .bind(row.unit.as_str())
                .bind(row.variant.as_str())
                .bind(row.at_ms)
                .bind(now_ms);
        }
        written += tx.execute(query).await?.rows_affected();
    }
    let assigned: Vec<(&str, &ExposureRow)> = rows
        .iter()
        .filter_map(|row| Some((row.experiment.as_deref()?, *row)))
        .collect();
    for chunk in assigned.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO experiment_exposures (experiment, unit, variant, first_at_ms, received_at_ms) \
             VALUES {} \
             ON CONFLICT (experiment, unit) DO UPDATE \
             SET variant = excluded.variant, first_at_ms = excluded.first_at_ms \
             WHERE excluded.first_at_ms < experiment_exposures.first_at_ms",
            placeholders(chunk.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for (experiment, row) in chunk {
            query = query
                .bind(*experiment)
                .bind(row.unit.as_str())
                .bind(row.variant.as_str())
                .bind(row.at_ms)
                .bind(now_ms);
        }
        tx.execute(query).await?;
    }
    Ok(written)
}

async fn insert_metrics(
    tx: &mut Transaction<'_, Any>,
    rows: &[&MetricRow],
    now_ms: i64,
) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO metric_events (environment, id, unit, event, value, at_ms, received_at_ms) \
             VALUES {} ON CONFLICT (environment, id) DO NOTHING",
            placeholders(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.environment.as_str())
                .bind(row.id.as_str())
                .bind(row.unit.as_str())
                .bind(row.event.as_str())
                .bind(row.value)
                .bind(row.at_ms)
                .bind(now_ms);
        }
        written += tx.execute(query).await?.rows_affected();
    }
    Ok(written)
}

impl Store {
    /// Appends a batch of events in one transaction (all or nothing). Repeats within the batch
    /// are folded first (the earliest exposure per unit, the first metric event per id), so a
    /// statement never touches a row twice.
    pub async fn append_events(
        &self,
        exposures: &[ExposureRow],
        metrics: &[MetricRow],
        now_ms: i64,
    ) -> Result<Appended> {
        let mut earliest: std::collections::HashMap<(&str, &str, &str), &ExposureRow> =
            std::collections::HashMap::with_capacity(exposures.len());
        for e in exposures {
            earliest
                .entry((&e.environment, &e.flag, &e.unit))
                .and_modify(|kept| {
                    if e.at_ms < kept.at_ms {
                        *kept = e;
                    }
                })
                .or_insert(e);
        }
        let exposures: Vec<&ExposureRow> = earliest.into_values().collect();
        let mut seen = std::collections::HashSet::with_capacity(metrics.len());
        let metrics: Vec<&MetricRow> = metrics
            .iter()
            .filter(|m| seen.insert((m.environment.as_str(), m.id.as_str())))
            .collect();
        let mut tx = self.pool().begin().await?;
        let appended = Appended {
            exposures: insert_exposures(&mut tx, &exposures, now_ms).await?,
            metrics: insert_metrics(&mut tx, &metrics, now_ms).await?,
        };
        tx.commit().await?;
        Ok(appended)
    }

    /// Units per variant exposed to `flag` in `environment` (first exposures), by variant.
    pub async fn exposure_counts(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Vec<VariantUnits>> {
        let rows = sqlx::query(
            "SELECT variant, COUNT(*) AS units FROM exposures \
             WHERE environment = $1 AND flag = $2 GROUP BY variant ORDER BY variant",
        )
        .bind(environment)
        .bind(flag)
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

    /// How many metric events `environment` has (all names, or one).
    pub async fn metric_event_count(&self, environment: &str, event: Option<&str>) -> Result<i64> {
        let row =
            match event {
                Some(event) => sqlx::query(
                    "SELECT COUNT(*) AS n FROM metric_events WHERE environment = $1 AND event = $2",
                )
                .bind(environment)
                .bind(event)
                .fetch_one(self.pool())
                .await?,
                None => {
                    sqlx::query("SELECT COUNT(*) AS n FROM metric_events WHERE environment = $1")
                        .bind(environment)
                        .fetch_one(self.pool())
                        .await?
                }
            };
        Ok(row.try_get("n")?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(super::placeholders(2, 3), "($1,$2,$3),($4,$5,$6)");
    }
}
