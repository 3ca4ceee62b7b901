//! What rollout gates and guards read: the latest readings of each (kept apart from the
//! audited records, since a check every few seconds changes nothing that is served), a
//! variant's metric values over the units a stage exposed, and an environment's recent event
//! counts.

use sqlx::Row;

use crate::{Result, Store, CLOCK_SKEW_MS};

/// Which units of a stage's exposures a value query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm<'a> {
    /// Units first exposed to this variant.
    Variant(&'a str),
    /// Units first exposed to any other variant (the baseline).
    Others(&'a str),
}

/// The values of one event sent by one arm's units after their exposure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValuesQuery<'a> {
    /// The exposure key (`rollout:<id>:<stage>`).
    pub exposures: &'a str,
    /// The environment.
    pub environment: &'a str,
    /// The event whose values are read (latency in ms, say).
    pub event: &'a str,
    /// Which units.
    pub arm: Arm<'a>,
    /// Only events before this instant, unix ms.
    pub end_ms: i64,
}

impl ValuesQuery<'_> {
    /// The shared `FROM … WHERE` and its first five parameters.
    fn from(&self) -> String {
        let op = match self.arm {
            Arm::Variant(_) => "=",
            Arm::Others(_) => "<>",
        };
        format!(
            "FROM experiment_exposures e \
             JOIN metric_events m ON m.environment = $2 AND m.unit = e.unit AND m.event = $3 \
              AND m.at_ms >= e.first_at_ms - {CLOCK_SKEW_MS} AND m.at_ms < $5 \
             WHERE e.experiment = $1 AND e.variant {op} $4 AND m.value IS NOT NULL"
        )
    }

    fn variant(&self) -> &str {
        match self.arm {
            Arm::Variant(v) | Arm::Others(v) => v,
        }
    }
}

impl Store {
    /// Replaces the readings kept for `subject`.
    pub async fn put_readings(&self, subject: &str, readings: &str, at_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_readings (subject, readings, at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO UPDATE SET readings = excluded.readings, at_ms = excluded.at_ms",
        )
        .bind(subject)
        .bind(readings)
        .bind(at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The readings kept for `subject` and when they were taken.
    pub async fn readings(&self, subject: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT readings, at_ms FROM gate_readings WHERE subject = $1")
            .bind(subject)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((r.try_get("readings")?, r.try_get("at_ms")?)))
            .transpose()
    }

    /// How many values `q` reads and how many of them exceed `above`.
    pub async fn values_above(&self, q: &ValuesQuery<'_>, above: f64) -> Result<(u64, u64)> {
        let sql = format!(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN m.value > $6 THEN 1 ELSE 0 END), 0) AS k {}",
            q.from()
        );
        let row = sqlx::query(&sql)
            .bind(q.exposures)
            .bind(q.environment)
            .bind(q.event)
            .bind(q.variant())
            .bind(q.end_ms)
            .bind(above)
            .fetch_one(self.pool())
            .await?;
        let n: i64 = row.try_get("n")?;
        let k: i64 = row.try_get("k")?;
        Ok((n.max(0) as u64, k.max(0) as u64))
    }

    /// The `rank`-th smallest value `q` reads (0-based), if there are that many: a quantile
    /// without loading the values (the database sorts them).
    pub async fn value_at_rank(&self, q: &ValuesQuery<'_>, rank: u64) -> Result<Option<f64>> {
        let sql = format!(
            "SELECT m.value AS v {} ORDER BY m.value LIMIT 1 OFFSET $6",
            q.from()
        );
        let row = sqlx::query(&sql)
            .bind(q.exposures)
            .bind(q.environment)
            .bind(q.event)
            .bind(q.variant())
            .bind(q.end_ms)
            .bind(i64::try_from(rank).unwrap_or(i64::MAX))
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get::<f64, _>("v").map_err(Into::into))
            .transpose()
    }

    /// How many events of each name in `events` the environment received at or after
    /// `since_ms` (server time), in the order asked.
    pub async fn recent_event_counts(
        &self,
        environment: &str,
        events: &[&str],
        since_ms: i64,
    ) -> Result<Vec<u64>> {
        let mut counts = Vec::with_capacity(events.len());
        for event in events {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM metric_events \
                 WHERE environment = $1 AND received_at_ms >= $2 AND event = $3",
            )
            .bind(environment)
            .bind(since_ms)
            .bind(*event)
            .fetch_one(self.pool())
            .await?;
            counts.push(n.max(0) as u64);
        }
        Ok(counts)
    }
}
