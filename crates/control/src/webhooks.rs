//! Webhooks: subscriptions (audited like flags, their signing secret kept apart so no audit
//! entry ever holds it), and the outbox rows every change writes in its own transaction for
//! the subscriptions that want it. Delivery (HTTP, retries) is the server's.

use serde_json::{json, Value};
use switchyard_api_types::webhooks::{WebhookFormat, WebhookSpec, EVENTS};
use switchyard_storage::{Attempt, AuditInfo, Delivery, Expect, ItemKind, ItemRecord, Write};

use crate::draft::Draft;
use crate::flags::audit;
use crate::tokens::Actor;
use crate::{Control, ControlError, Result, Written};

/// A stored subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// What was written.
    pub spec: WebhookSpec,
    /// Version.
    pub version: i64,
    /// Created, unix ms.
    pub created_at_ms: i64,
}

fn secret_key(id: &str) -> String {
    format!("webhook-secret:{id}")
}

fn from_record(r: &ItemRecord) -> Result<Webhook> {
    Ok(Webhook {
        spec: serde_json::from_value(r.definition.clone()).map_err(|e| {
            ControlError::Internal(format!("the stored webhook `{}` does not read: {e}", r.id))
        })?,
        version: r.version,
        created_at_ms: r.created_at_ms,
    })
}

fn check(spec: &WebhookSpec) -> Result<()> {
    let bad = |field: &str, message: String| Err(ControlError::bad_request(Some(field), message));
    if !switchyard_engine::is_valid_key(&spec.id) {
        return bad("id", format!("invalid webhook id `{}`", spec.id));
    }
    if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
        return bad(
            "url",
            format!("`{}` is not an http:// or https:// URL", spec.url),
        );
    }
    if spec.events.is_empty() {
        return bad(
            "events",
            "say which events: a list of names, or [\"*\"]".into(),
        );
    }
    for (i, e) in spec.events.iter().enumerate() {
        if e != "*" && !EVENTS.contains(&e.as_str()) {
            return bad(
                &format!("events[{i}]"),
                format!(
                    "unknown event `{e}`; the events are: {}, or *",
                    EVENTS.join(", ")
                ),
            );
        }
    }
    if spec.format == WebhookFormat::Pagerduty && spec.routing_key.is_none() {
        return bad(
            "routingKey",
            "a pagerduty webhook needs the integration's `routingKey`".into(),
        );
    }
    Ok(())
}

impl Control {
    /// Creates a subscription; returns it and its signing secret (shown once).
    pub async fn create_webhook(
        &self,
        spec: WebhookSpec,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<(Written<Webhook>, String)> {
        check(&spec)?;
        if let Some(env) = &spec.environment {
            crate::flags::require_environment(&self.snapshot(), env)?;
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| ControlError::Internal(format!("no randomness for a secret: {e}")))?;
        let secret = format!("whsec_{}", hex::encode(bytes));
        self.timed(async {
            let mut draft = self.begin().await?;
            let definition = serde_json::to_value(&spec).map_err(|e| {
                ControlError::Internal(format!("a webhook does not serialize: {e}"))
            })?;
            let record = draft
                .tx
                .write_item(
                    ItemKind::Webhook,
                    &Write {
                        key: spec.id.clone(),
                        expect: Expect::Absent,
                        definition: Some(definition),
                        archived: false,
                        audit: audit(actor, "webhook.create", spec.environment.as_deref(), reason),
                    },
                )
                .await?
                .ok_or_else(|| {
                    ControlError::Internal("a written webhook was not returned".into())
                })?;
            draft.tx.set_meta(&secret_key(&spec.id), &secret).await?;
            let webhook = from_record(&record)?;
            let written = draft.finish(webhook, true).await?;
            Ok((written, secret.clone()))
        })
        .await
    }

    /// Every subscription, by id.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.require_store()?
            .list_items(ItemKind::Webhook)
            .await?
            .iter()
            .map(from_record)
            .collect()
    }

    /// Deletes a subscription (its queued deliveries stay, dead once attempted).
    pub async fn delete_webhook(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<()>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            draft
                .tx
                .write_item(
                    ItemKind::Webhook,
                    &Write {
                        key: id.to_owned(),
                        expect: Expect::Exists,
                        definition: None,
                        archived: false,
                        audit: audit(actor, "webhook.delete", None, reason),
                    },
                )
                .await?;
            draft.finish((), true).await
        })
        .await
    }

    /// The signing secret of `id`.
    pub async fn webhook_secret(&self, id: &str) -> Result<Option<String>> {
        Ok(self.require_store()?.get_meta(&secret_key(id)).await?)
    }

    /// The newest deliveries to `id`.
    pub async fn deliveries(&self, id: &str, limit: i64) -> Result<Vec<Delivery>> {
        if !self.webhooks().await?.iter().any(|w| w.spec.id == id) {
            return Err(ControlError::not_found(format!("webhook `{id}`")));
        }
        Ok(self
            .require_store()?
            .deliveries(id, limit.clamp(1, 1000))
            .await?)
    }

    /// Claims due deliveries for `lease_ms` (see `Store::claim_deliveries`).
    pub async fn claim_deliveries(&self, now_ms: i64, lease_ms: i64) -> Result<Vec<Delivery>> {
        Ok(self
            .require_store()?
            .claim_deliveries(now_ms, lease_ms, 50)
            .await?)
    }

    /// Forgets finished deliveries older than `days` (the log keeps a month by default).
    pub async fn prune_deliveries(&self, now_ms: i64, days: i64) -> Result<u64> {
        Ok(self
            .require_store()?
            .prune_deliveries(now_ms - days * 86_400_000)
            .await?)
    }

    /// Records one delivery attempt.
    pub async fn record_attempt(&self, id: i64, now_ms: i64, attempt: &Attempt) -> Result<()> {
        Ok(self
            .require_store()?
            .record_attempt(id, now_ms, attempt)
            .await?)
    }
}

/// The webhook event a flag write's audit action reports.
pub(crate) fn flag_event(action: &str) -> &'static str {
    match action {
        "flag.kill" => "flag.killed",
        "flag.release" => "flag.released",
        _ => "flag.changed",
    }
}

impl Draft {
    /// Queues `event` about `subject` for every subscription that wants it, in this draft's
    /// transaction (so the event is delivered if and only if the change commits).
    pub(crate) async fn emit(
        &mut self,
        event: &str,
        subject_kind: &str,
        subject: &str,
        info: &AuditInfo,
        data: Value,
    ) -> Result<()> {
        if self.webhooks.is_none() {
            let records = self.tx.items(ItemKind::Webhook).await?;
            self.webhooks = Some(
                records
                    .iter()
                    .filter_map(|r| from_record(r).ok())
                    .map(|w| w.spec)
                    .collect(),
            );
        }
        let wanted: Vec<String> = self
            .webhooks
            .iter()
            .flatten()
            .filter(|w| w.events.iter().any(|e| e == "*" || e == event))
            .filter(|w| {
                w.environment.is_none() || w.environment.as_deref() == info.environment.as_deref()
            })
            .map(|w| w.id.clone())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let payload = json!({
            "event": event,
            "at": crate::rfc3339(self.tx.now_ms()),
            "actor": info.actor,
            "actorName": info.actor_name,
            "subject": {"kind": subject_kind, "key": subject},
            "environment": info.environment,
            "reason": info.reason,
            "data": data,
        });
        for id in wanted {
            self.tx.enqueue_delivery(&id, event, &payload).await?;
        }
        Ok(())
    }
}
