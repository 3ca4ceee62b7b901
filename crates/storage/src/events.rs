//! Experiment events: exposures and metric events, appended in batches.
//!
//! Not the flag write path: no write lock, no revision, no change feed, no audit row, no
//! `NOTIFY` — an append never wakes a replica or a stream. A batch is one transaction of
//! `INSERT … SELECT` statements whose rows (1 000 a statement) arrive as one JSON parameter.
//! Exposures keep one row per environment, flag and unit — the earliest; metric events are
//! idempotent on the client's event id within an environment.

use sqlx::{Any, Executor, Row, Transaction};

use crate::{Backend, Result, Store};

/// Rows per `INSERT` statement.
const CHUNK: usize = 1000;

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

/// The rows of one statement as one JSON parameter: `[{"e": …, "f": …}, …]`. The database
/// unpacks it (SQLite `json_each`, PostgreSQL `json_to_recordset`), so a batch binds one text
/// value per statement instead of several thousand parameters — the binding, not the disk, was
/// what bounded ingestion.
fn rows_json<T>(rows: &[T], row: impl Fn(&T) -> serde_json::Value) -> String {
    serde_json::Value::Array(rows.iter().map(row).collect()).to_string()
}

/// `SELECT <columns> FROM <the JSON rows>` in this backend's dialect; `columns` are
/// `(key, SQL type)`, selected in order, then `extra` (further parameters).
fn from_json(backend: Backend, columns: &[(&str, &str)], extra: &str) -> String {
    match backend {
        Backend::Sqlite => {
            let select: Vec<String> = columns
                .iter()
                .map(|(k, _)| format!("json_extract(value, '$.{k}')"))
                .collect();
            // `WHERE true` keeps SQLite from reading the upsert's ON as a join constraint.
            format!(
                "SELECT {}{extra} FROM json_each($1) WHERE true",
                select.join(", ")
            )
        }
        Backend::Postgres => {
            let select: Vec<String> = columns.iter().map(|(k, _)| format!("x.{k}")).collect();
            let types: Vec<String> = columns.iter().map(|(k, t)| format!("{k} {t}")).collect();
            format!(
                "SELECT {}{extra} FROM json_to_recordset($1::json) AS x({})",
                select.join(", "),
                types.join(", ")
            )
        }
    }
}

const EXPOSURE_COLUMNS: &[(&str, &str)] = &[
    ("e", "text"),
    ("f", "text"),
    ("u", "text"),
    ("v", "text"),
    ("t", "bigint"),
];

async fn insert_exposures(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    rows: &[&ExposureRow],
    now_ms: i64,
) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO exposures (environment, flag, unit, variant, first_at_ms, received_at_ms) \
             {} \
             ON CONFLICT (environment, flag, unit) DO UPDATE \
             SET variant = excluded.variant, first_at_ms = excluded.first_at_ms \
             WHERE excluded.first_at_ms < exposures.first_at_ms",
            from_json(backend, EXPOSURE_COLUMNS, ", $2")
        );
        let data = rows_json(
            chunk,
            |r| serde_json::json!({"e": r.environment, "f": r.flag, "u": r.unit, "v": r.variant, "t": r.at_ms}),
        );
        let query = sqlx::query(&sql).bind(data).bind(now_ms);
        written += tx.execute(query).await?.rows_affected();
    }
    let assigned: Vec<(&str, &ExposureRow)> = rows
        .iter()
        .filter_map(|row| Some((row.experiment.as_deref()?, *row)))
        .collect();
    for chunk in assigned.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO experiment_exposures (experiment, unit, variant, first_at_ms, received_at_ms) \
             {} \
             ON CONFLICT (experiment, unit) DO UPDATE \
             SET variant = excluded.variant, first_at_ms = excluded.first_at_ms \
             WHERE excluded.first_at_ms < experiment_exposures.first_at_ms",
            from_json(
                backend,
                &[("x", "text"), ("u", "text"), ("v", "text"), ("t", "bigint")],
                ", $2"
            )
        );
        let data = rows_json(
            chunk,
            |(x, r)| serde_json::json!({"x": x, "u": r.unit, "v": r.variant, "t": r.at_ms}),
        );
        tx.execute(sqlx::query(&sql).bind(data).bind(now_ms))
            .await?;
    }
    Ok(written)
}

async fn insert_metrics(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    rows: &[&MetricRow],
    now_ms: i64,
) -> Result<u64> {
    let mut written = 0;
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO metric_events (environment, id, unit, event, value, at_ms, received_at_ms) \
             {} ON CONFLICT (environment, id) DO NOTHING",
            from_json(
                backend,
                &[
                    ("e", "text"),
                    ("i", "text"),
                    ("u", "text"),
                    ("n", "text"),
                    ("v", "double precision"),
                    ("t", "bigint"),
                ],
                ", $2"
            )
        );
        let data = rows_json(
            chunk,
            |r| serde_json::json!({"e": r.environment, "i": r.id, "u": r.unit, "n": r.event, "v": r.value, "t": r.at_ms}),
        );
        written += tx
            .execute(sqlx::query(&sql).bind(data).bind(now_ms))
            .await?
            .rows_affected();
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
        let backend = self.backend();
        let mut tx = self.pool().begin().await?;
        let appended = Appended {
            exposures: insert_exposures(&mut tx, backend, &exposures, now_ms).await?,
            metrics: insert_metrics(&mut tx, backend, &metrics, now_ms).await?,
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
    use super::*;

    #[test]
    fn rows_unpack_in_each_dialect() {
        let cols = &[("u", "text"), ("t", "bigint")];
        assert_eq!(
            from_json(Backend::Sqlite, cols, ", $2"),
            "SELECT json_extract(value, '$.u'), json_extract(value, '$.t'), $2 FROM json_each($1) WHERE true"
        );
        assert_eq!(
            from_json(Backend::Postgres, cols, ""),
            "SELECT x.u, x.t FROM json_to_recordset($1::json) AS x(u text, t bigint)"
        );
    }
}
