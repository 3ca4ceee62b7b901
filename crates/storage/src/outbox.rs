//! The webhook outbox, read by the deliverers: claim what is due (a lease, so a replica that
//! dies mid-delivery leaves the row to another after it expires), record each attempt, list
//! a subscription's deliveries.

use sqlx::Row;

use crate::{Result, Store};

/// A delivery of one event to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Increases with every queued delivery.
    pub id: i64,
    /// The subscription.
    pub webhook: String,
    /// The event (`flag.killed`, …).
    pub event: String,
    /// The event's JSON (the generic body).
    pub payload: serde_json::Value,
    /// When it was queued, unix ms.
    pub created_at_ms: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due, unix ms.
    pub next_at_ms: i64,
    /// The last attempt's HTTP status, if it got one.
    pub last_status: Option<i64>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When it was delivered, unix ms.
    pub delivered_at_ms: Option<i64>,
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Delivered (a 2xx answer).
    Delivered {
        /// The status.
        status: i64,
    },
    /// Failed; retry at `retry_at_ms`, or give up (`None`: dead-lettered).
    Failed {
        /// The status, if the receiver answered.
        status: Option<i64>,
        /// What went wrong.
        error: String,
        /// The next attempt's time; `None` gives up.
        retry_at_ms: Option<i64>,
    },
}

const COLUMNS: &str = "id, webhook, event, payload, created_at_ms, state, attempts, next_at_ms, \
                       last_status, last_error, delivered_at_ms";

fn delivery(row: &sqlx::any::AnyRow) -> Result<Delivery> {
    let payload: String = row.try_get("payload")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook: row.try_get("webhook")?,
        event: row.try_get("event")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        created_at_ms: row.try_get("created_at_ms")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_at_ms: row.try_get("next_at_ms")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
    })
}

impl Store {
    /// Claims up to `limit` due deliveries for `lease_ms` (no other replica claims them
    /// meanwhile; a concurrent claim of the same row re-checks the lease and skips it).
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_until_ms = $1 \
             WHERE id IN (SELECT id FROM webhook_deliveries \
                          WHERE state = 'pending' AND next_at_ms <= $2 AND claimed_until_ms <= $2 \
                          ORDER BY id LIMIT $3) \
               AND state = 'pending' AND claimed_until_ms <= $2 \
             RETURNING {COLUMNS}"
        ))
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<Delivery> = rows.iter().map(delivery).collect::<Result<_>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// Records one attempt of delivery `id` and releases its lease.
    pub async fn record_attempt(&self, id: i64, now_ms: i64, attempt: &Attempt) -> Result<()> {
        let query = match attempt {
            Attempt::Delivered { status } => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 last_status = $2, last_error = NULL, delivered_at_ms = $3, claimed_until_ms = 0 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*status)
            .bind(now_ms),
            Attempt::Failed {
                status,
                error,
                retry_at_ms,
            } => sqlx::query(
                "UPDATE webhook_deliveries SET state = $4, attempts = attempts + 1, \
                 last_status = $2, last_error = $3, next_at_ms = $5, claimed_until_ms = 0 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*status)
            .bind(error.as_str())
            .bind(if retry_at_ms.is_some() {
                "pending"
            } else {
                "dead"
            })
            .bind(retry_at_ms.unwrap_or(now_ms)),
        };
        query.execute(self.pool()).await?;
        Ok(())
    }

    /// Deletes finished (delivered or dead) deliveries queued before `before_ms`; how many.
    pub async fn prune_deliveries(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at_ms < $1",
        )
        .bind(before_ms)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// The newest `limit` deliveries to `webhook`, newest first.
    pub async fn deliveries(&self, webhook: &str, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE webhook = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(webhook)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery).collect()
    }
}
