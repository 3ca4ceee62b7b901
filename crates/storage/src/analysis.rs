//! Reading an experiment's events for analysis, without loading them.
//!
//! The database does the heavy part: it joins each exposed unit with its metric events in the
//! attribution window and groups them per unit and day, so what crosses the connection is one
//! row per unit and active day, streamed in unit order. [`Store::unit_days`] folds that stream
//! into [`UnitHistory`] values one unit at a time and hands each to the caller, who keeps only
//! running sums: memory stays bounded by one unit's days, whatever the number of events.

use futures_util::TryStreamExt;
use sqlx::{Executor, Row};

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
    /// Also count each unit's events in this long a period before its first exposure (CUPED's
    /// covariate; see [`SummaryMetric::pre_period_ms`]).
    pub pre_period_ms: Option<i64>,
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
    /// `(events, sum of values)` in the pre-period (zeros without one).
    pub pre: (u64, f64),
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
        // and the end are separate conditions so that no dialect's LEAST/MIN is needed. Events
        // of the pre-period form one more group per unit (`pre` = 1, day 0), first.
        let window = q.window_ms.unwrap_or(i64::MAX / 4);
        let reach = q
            .pre_period_ms
            .map_or(CLOCK_SKEW_MS, |p| p.saturating_add(CLOCK_SKEW_MS));
        let mut rows = sqlx::query(
            "SELECT unit, variant, exposed_day, pre, day, COUNT(at_ms) AS n, \
                    SUM(COALESCE(value, 0.0)) AS total \
             FROM (SELECT e.unit AS unit, e.variant AS variant, \
                          (e.first_at_ms - $4) / $6 AS exposed_day, \
                          CASE WHEN m.at_ms < e.first_at_ms - $8 THEN 1 ELSE 0 END AS pre, \
                          CASE WHEN m.at_ms < e.first_at_ms - $8 THEN 0 \
                               ELSE (CASE WHEN m.at_ms < e.first_at_ms THEN e.first_at_ms ELSE m.at_ms END - $4) / $6 END AS day, \
                          m.at_ms AS at_ms, m.value AS value \
                   FROM experiment_exposures e \
                   LEFT JOIN metric_events m \
                     ON m.environment = $2 AND m.event = $3 AND m.unit = e.unit \
                    AND m.at_ms >= e.first_at_ms - $9 AND m.at_ms - e.first_at_ms <= $5 \
                    AND m.at_ms < $7 \
                   WHERE e.experiment = $1 AND e.first_at_ms < $7) joined \
             GROUP BY unit, variant, exposed_day, pre, day \
             ORDER BY unit, pre DESC, day",
        )
        .bind(q.experiment)
        .bind(q.environment)
        .bind(q.event)
        .bind(q.start_ms)
        .bind(window)
        .bind(DAY_MS)
        .bind(q.end_ms)
        .bind(CLOCK_SKEW_MS)
        .bind(reach)
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
                        pre: (0, 0.0),
                    },
                ));
            }
            let n: i64 = row.try_get("n")?;
            if let (true, Some((_, history))) = (n > 0, current.as_mut()) {
                let total: f64 = row.try_get("total")?;
                if row.try_get::<i32, _>("pre")? == 1 {
                    history.pre = (n as u64, total);
                } else {
                    let day: i64 = row.try_get("day")?;
                    history.days.push((day.max(0), n as u64, total));
                }
            }
        }
        if let Some((_, history)) = current {
            visit(&history);
        }
        Ok(())
    }
}

/// How a metric turns a unit's events into its value (see [`Store::experiment_summary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// 1 if the unit sent the event, else 0.
    Converted,
    /// How many events.
    Count,
    /// The sum of their values (0 without events).
    Sum,
    /// The mean of their values, for units with events only.
    Mean,
}

/// One metric of a [`SummaryQuery`].
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryMetric<'a> {
    /// The event name.
    pub event: &'a str,
    /// How the unit's events become its value.
    pub aggregate: Aggregate,
    /// Only events at most this long after the unit's first exposure (`None`: any).
    pub window_ms: Option<i64>,
    /// CUPED's covariate: the same aggregate over the unit's events of the same name in this
    /// long a period before its first exposure (ending where the post-exposure events begin,
    /// [`CLOCK_SKEW_MS`] before it). `None`: no covariate. Not for [`Aggregate::Mean`], whose
    /// units are only those with events.
    pub pre_period_ms: Option<i64>,
}

/// An experiment's exposures and the metrics to sum over them.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryQuery<'a> {
    /// The experiment.
    pub experiment: &'a str,
    /// Its environment.
    pub environment: &'a str,
    /// Day 0 starts here, unix ms.
    pub start_ms: i64,
    /// Only exposures and events before this instant, unix ms.
    pub end_ms: i64,
    /// The metrics.
    pub metrics: &'a [SummaryMetric<'a>],
    /// The metric (an index into `metrics`) whose first event's day groups the rows, so a
    /// conversion series can be drawn day by day.
    pub first_day_of: Option<usize>,
}

/// A group of units: one arm, one exposure day, one first-event day of the grouping metric.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The arm.
    pub variant: String,
    /// The day of the units' first exposure (0 = the start day).
    pub exposed_day: i64,
    /// The day of their first event of the grouping metric (`None`: none in its window).
    pub first_day: Option<i64>,
    /// Whether they sent the grouping metric's event in its pre-period (`None`: it has none,
    /// or is not a conversion): a conversion's covariate, for its series.
    pub pre_converted: Option<bool>,
    /// Units in the group.
    pub units: u64,
    /// Per metric: units counted, Σy and Σy² of their values.
    pub sums: Vec<(u64, f64, f64)>,
    /// Per metric with a pre-period: Σx, Σx² and Σxy of the units' pre-period values `x`
    /// (over the same units as `sums`); `None` for the others.
    pub pre: Vec<Option<(f64, f64, f64)>>,
}

impl Store {
    /// Sums every metric over an experiment's exposed units in one pass of the database over
    /// their events (each unit's events of the metrics' names are one range of the
    /// `(environment, unit, event, at_ms, value)` index), returning a row per arm, exposure day
    /// and first-event day: a few hundred rows whatever the number of events.
    pub async fn experiment_summary(&self, q: &SummaryQuery<'_>) -> Result<Vec<SummaryRow>> {
        const FIXED: usize = 7;
        let never = i64::MAX / 4;
        // Metrics on the same event and window share their per-unit count and sum: each is
        // computed once per event row.
        let mut pairs: Vec<(&str, i64)> = Vec::new();
        let pair_of: Vec<usize> = q
            .metrics
            .iter()
            .map(|m| {
                let key = (m.event, m.window_ms.unwrap_or(never));
                pairs.iter().position(|p| *p == key).unwrap_or_else(|| {
                    pairs.push(key);
                    pairs.len() - 1
                })
            })
            .collect();
        let event = |j: usize| format!("${}", FIXED + 1 + 2 * j);
        let window = |j: usize| format!("${}", FIXED + 2 + 2 * j);
        // With a pre-period the join reaches further back than the post-exposure events, so
        // they need a lower bound of their own.
        let any_pre = q.metrics.iter().any(|m| m.pre_period_ms.is_some());
        let post = if any_pre {
            " AND m.at_ms >= e.first_at_ms - $6"
        } else {
            ""
        };
        let hit = |j: usize| {
            format!(
                "m.event = {} AND m.at_ms - e.first_at_ms <= {}{post}",
                event(j),
                window(j)
            )
        };
        let needs_sum = |j: usize| {
            q.metrics
                .iter()
                .zip(&pair_of)
                .any(|(m, &p)| p == j && matches!(m.aggregate, Aggregate::Sum | Aggregate::Mean))
        };
        let mut per_unit = Vec::new();
        for j in 0..pairs.len() {
            per_unit.push(format!(
                "SUM(CASE WHEN {} THEN 1 ELSE 0 END) AS n{j}",
                hit(j)
            ));
            if needs_sum(j) {
                per_unit.push(format!(
                    "COALESCE(SUM(CASE WHEN {} THEN m.value END), 0.0) AS s{j}",
                    hit(j)
                ));
            }
        }
        // Each pre-period: its own bound, after the pairs' parameters.
        let mut pre_binds = Vec::new();
        for (k, m) in q.metrics.iter().enumerate() {
            let Some(pre_ms) = m.pre_period_ms else {
                continue;
            };
            pre_binds.push(pre_ms.saturating_add(CLOCK_SKEW_MS));
            let bound = format!("${}", FIXED + 2 * pairs.len() + pre_binds.len());
            let before = format!(
                "m.event = {} AND m.at_ms < e.first_at_ms - $6 AND m.at_ms >= e.first_at_ms - {bound}",
                event(pair_of[k])
            );
            per_unit.push(format!(
                "SUM(CASE WHEN {before} THEN 1 ELSE 0 END) AS pn{k}"
            ));
            if m.aggregate == Aggregate::Sum {
                per_unit.push(format!(
                    "COALESCE(SUM(CASE WHEN {before} THEN m.value END), 0.0) AS ps{k}"
                ));
            }
        }
        let mut outer = Vec::new();
        for (k, m) in q.metrics.iter().enumerate() {
            let j = pair_of[k];
            let real = |e: String| format!("CAST(COALESCE(SUM({e}), 0) AS DOUBLE PRECISION)");
            let (n, x) = match m.aggregate {
                Aggregate::Converted => (
                    "COUNT(*)".to_owned(),
                    format!("CASE WHEN n{j} > 0 THEN 1.0 ELSE 0.0 END"),
                ),
                Aggregate::Count => ("COUNT(*)".to_owned(), format!("n{j} * 1.0")),
                Aggregate::Sum => ("COUNT(*)".to_owned(), format!("s{j}")),
                Aggregate::Mean => (
                    format!("SUM(CASE WHEN n{j} > 0 THEN 1 ELSE 0 END)"),
                    format!("CASE WHEN n{j} > 0 THEN s{j} / n{j} END"),
                ),
            };
            outer.push(format!(
                "{n} AS u{k}, {} AS x{k}, {} AS xx{k}",
                real(x.clone()),
                real(format!("({x}) * ({x})"))
            ));
            if m.pre_period_ms.is_some() {
                let c = match m.aggregate {
                    Aggregate::Converted => format!("CASE WHEN pn{k} > 0 THEN 1.0 ELSE 0.0 END"),
                    Aggregate::Count => format!("pn{k} * 1.0"),
                    Aggregate::Sum => format!("ps{k}"),
                    // Refused by the caller; analysed without a covariate.
                    Aggregate::Mean => "0.0".to_owned(),
                };
                outer.push(format!(
                    "{} AS c{k}, {} AS cc{k}, {} AS cy{k}",
                    real(c.clone()),
                    real(format!("({c}) * ({c})")),
                    real(format!("({c}) * ({x})"))
                ));
            }
        }
        let first_day = match q.first_day_of {
            Some(k) => format!(
                "(MIN(CASE WHEN {} THEN CASE WHEN m.at_ms < e.first_at_ms THEN e.first_at_ms \
                 ELSE m.at_ms END END) - $3) / $4",
                hit(pair_of[k])
            ),
            None => "NULL".to_owned(),
        };
        // How far back the join reaches: the longest pre-period, else the clock skew.
        let reach = pre_binds.iter().copied().fold(CLOCK_SKEW_MS, i64::max);
        let first_pre = q
            .first_day_of
            .filter(|&k| {
                q.metrics[k].pre_period_ms.is_some()
                    && q.metrics[k].aggregate == Aggregate::Converted
            })
            .map(|k| format!("CASE WHEN pn{k} > 0 THEN 1 ELSE 0 END"));
        let group_pre = first_pre
            .as_ref()
            .map(|e| format!(", {e}"))
            .unwrap_or_default();
        let first_pre = first_pre.unwrap_or_else(|| "NULL".to_owned());
        let names: Vec<String> = (0..pairs.len()).map(event).collect();
        let in_list = if names.is_empty() {
            "NULL".to_owned()
        } else {
            names.join(", ")
        };
        let per_unit = if per_unit.is_empty() {
            String::new()
        } else {
            format!(", {}", per_unit.join(", "))
        };
        let outer = if outer.is_empty() {
            String::new()
        } else {
            format!(", {}", outer.join(", "))
        };
        // The statement for units in `[lo, hi)` (either bound may be open): its bounds are the
        // parameters after the pre-periods'.
        let base = FIXED + 2 * pairs.len() + pre_binds.len();
        let sql_for = |lo: bool, hi: bool| {
            let mut range_e = String::new();
            let mut range_m = String::new();
            let mut next = base;
            if lo {
                next += 1;
                range_e.push_str(&format!(" AND e.unit >= ${next}"));
                range_m.push_str(&format!(" AND m.unit >= ${next}"));
            }
            if hi {
                next += 1;
                range_e.push_str(&format!(" AND e.unit < ${next}"));
                range_m.push_str(&format!(" AND m.unit < ${next}"));
            }
            format!(
                "SELECT variant, exposed_day, first_day, {first_pre} AS first_pre, COUNT(*) AS units{outer} \
                 FROM (SELECT e.variant AS variant, (e.first_at_ms - $3) / $4 AS exposed_day, \
                              {first_day} AS first_day{per_unit} \
                       FROM experiment_exposures e \
                       LEFT JOIN metric_events m \
                         ON m.environment = $2 AND m.unit = e.unit AND m.event IN ({in_list}) \
                        AND m.at_ms >= e.first_at_ms - $7 AND m.at_ms < $5{range_m} \
                       WHERE e.experiment = $1 AND e.first_at_ms < $5{range_e} \
                       GROUP BY e.experiment, e.unit) per_unit \
                 GROUP BY variant, exposed_day, first_day{group_pre}"
            )
        };
        // Units are summed independently of each other, so the exposed units are cut into
        // ranges summed by concurrent statements (each its own connection, and a core of the
        // database), whose rows are then added up here: a row's sums are over its units only.
        let bounds = self.unit_bounds(q.experiment).await?;
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lo: Option<&str> = None;
        for b in &bounds {
            ranges.push((lo, Some(b.as_str())));
            lo = Some(b.as_str());
        }
        ranges.push((lo, None));
        let parts = futures_util::future::try_join_all(ranges.into_iter().map(|(lo, hi)| {
            let sql = sql_for(lo.is_some(), hi.is_some());
            let (pairs, pre_binds) = (&pairs, &pre_binds);
            async move {
                let mut query = sqlx::query(&sql)
                    .bind(q.experiment)
                    .bind(q.environment)
                    .bind(q.start_ms)
                    .bind(DAY_MS)
                    .bind(q.end_ms)
                    .bind(CLOCK_SKEW_MS)
                    .bind(reach);
                for (event, window) in pairs {
                    query = query.bind(*event).bind(*window);
                }
                for bound in pre_binds {
                    query = query.bind(*bound);
                }
                for bound in [lo, hi].into_iter().flatten() {
                    query = query.bind(bound);
                }
                // PostgreSQL hashes a row per unit (about 210 bytes each): with the default
                // 4 MB of work memory a million units spill to disk; 128 MB (256 MB for hashes,
                // PostgreSQL's `hash_mem_multiplier` being 2) keeps them in memory, for this
                // statement only. Grouping by the exposures' primary key lets the variant and
                // the exposure time be read without hashing them too.
                let mut tx = self.pool().begin().await?;
                if self.backend() == crate::Backend::Postgres {
                    tx.execute("SET LOCAL work_mem = '128MB'").await?;
                }
                let rows = query.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| summary_row(r, q.metrics))
                    .collect::<Result<Vec<_>>>()
            }
        }))
        .await?;
        Ok(merge_summaries(parts.into_iter().flatten()))
    }

    /// Where to cut `experiment`'s exposed units (in the database's order of their ids) into
    /// ranges of about equal size for [`Store::experiment_summary`]: none below
    /// [`crate::StoreOptions::summary_units_per_range`] units each, at most the backend's
    /// [`Store::summary_parts`] ranges.
    async fn unit_bounds(&self, experiment: &str) -> Result<Vec<String>> {
        let units: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM experiment_exposures WHERE experiment = $1")
                .bind(experiment)
                .fetch_one(self.pool())
                .await?;
        let parts = (units / self.summary_units_per_range()).clamp(1, self.summary_parts() as i64);
        let cuts = (1..parts).map(|i| {
            sqlx::query_scalar::<_, String>(
                "SELECT unit FROM experiment_exposures WHERE experiment = $1 \
                 ORDER BY unit LIMIT 1 OFFSET $2",
            )
            .bind(experiment)
            .bind(units * i / parts)
            .fetch_optional(self.pool())
        });
        let mut bounds: Vec<String> = futures_util::future::try_join_all(cuts)
            .await?
            .into_iter()
            .flatten()
            .collect();
        // Exposures may have come or gone between the statements: bounds stay strictly
        // increasing whatever happened (the database's order, which the OFFSETs followed).
        bounds.dedup();
        Ok(bounds)
    }

    /// How many concurrent statements one summary may use: at most four (each runs in a
    /// database backend of its own, on its own core; more measured slower), and never more than
    /// half the pool, so that writers and other reads still get connections while it runs —
    /// two of SQLite's four, four of PostgreSQL's ten, one for an in-memory database.
    fn summary_parts(&self) -> usize {
        let pool = self.pool().options().get_max_connections() as usize;
        (pool / 2).clamp(1, 4)
    }
}

fn summary_row(r: &sqlx::any::AnyRow, metrics: &[SummaryMetric<'_>]) -> Result<SummaryRow> {
    let real = |name: String| r.try_get::<f64, _>(name.as_str());
    let mut sums = Vec::with_capacity(metrics.len());
    let mut pre = Vec::with_capacity(metrics.len());
    for (k, m) in metrics.iter().enumerate() {
        sums.push((
            r.try_get::<i64, _>(format!("u{k}").as_str())?.max(0) as u64,
            real(format!("x{k}"))?,
            real(format!("xx{k}"))?,
        ));
        pre.push(match m.pre_period_ms {
            Some(_) => Some((
                real(format!("c{k}"))?,
                real(format!("cc{k}"))?,
                real(format!("cy{k}"))?,
            )),
            None => None,
        });
    }
    Ok(SummaryRow {
        variant: r.try_get("variant")?,
        exposed_day: r.try_get::<i64, _>("exposed_day")?.max(0),
        first_day: r.try_get::<Option<i64>, _>("first_day")?.map(|d| d.max(0)),
        pre_converted: r.try_get::<Option<i32>, _>("first_pre")?.map(|p| p == 1),
        units: r.try_get::<i64, _>("units")?.max(0) as u64,
        sums,
        pre,
    })
}

/// Adds up rows of the same group (arm, exposure day, first-event day, pre-period conversion)
/// from the ranges' statements, ordered by group.
fn merge_summaries(rows: impl IntoIterator<Item = SummaryRow>) -> Vec<SummaryRow> {
    type Group = (String, i64, Option<i64>, Option<bool>);
    let mut groups: std::collections::BTreeMap<Group, SummaryRow> = Default::default();
    for row in rows {
        let key = (
            row.variant.clone(),
            row.exposed_day,
            row.first_day,
            row.pre_converted,
        );
        match groups.entry(key) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(row);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let kept = slot.get_mut();
                kept.units += row.units;
                for (a, b) in kept.sums.iter_mut().zip(&row.sums) {
                    *a = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
                }
                for (a, b) in kept.pre.iter_mut().zip(&row.pre) {
                    if let (Some(a), Some(b)) = (a.as_mut(), b) {
                        *a = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
                    }
                }
            }
        }
    }
    groups.into_values().collect()
}
