//! `switchyard webhooks ...`: create (the secret is printed once), list, delete, and the
//! delivery log.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use switchyard_api_types::webhooks::{
    DeliveryList, WebhookFormat, WebhookList, WebhookResource, WebhookSpec,
};

use crate::remote::{segment, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Subscribe a URL to events (admin); prints the signing secret once.
    Create {
        /// Subscription id.
        id: String,
        /// Where to POST.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Body format: generic (signed JSON), slack, pagerduty.
        #[arg(long, default_value = "generic", value_name = "FORMAT")]
        format: String,
        /// Events, comma-separated (flag.changed, flag.killed, flag.released,
        /// experiment.started|paused|resumed|completed|cancelled|stopped), or `*`.
        #[arg(long, default_value = "*", value_name = "EVENTS")]
        events: String,
        /// Only events in this environment.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// PagerDuty routing key (pagerduty format).
        #[arg(long, value_name = "KEY")]
        routing_key: Option<String>,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List subscriptions.
    List,
    /// Delete a subscription.
    Delete {
        /// Subscription id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// A subscription's deliveries, newest first.
    Deliveries {
        /// Subscription id.
        id: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

pub fn run(args: &WebhooksArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        WebhooksCommand::Create {
            id,
            url,
            format,
            events,
            env,
            routing_key,
            reason,
        } => {
            let format = match format.as_str() {
                "generic" => WebhookFormat::Generic,
                "slack" => WebhookFormat::Slack,
                "pagerduty" => WebhookFormat::Pagerduty,
                other => {
                    anyhow::bail!("unknown --format `{other}`: use generic, slack or pagerduty")
                }
            };
            let spec = WebhookSpec {
                id: id.clone(),
                url: url.clone(),
                format,
                events: events.split(',').map(|e| e.trim().to_owned()).collect(),
                environment: env.clone(),
                routing_key: routing_key.clone(),
                description: None,
            };
            let mut body = serde_json::to_value(&spec)?;
            if let (Some(r), Some(o)) = (reason, body.as_object_mut()) {
                o.insert("reason".into(), r.clone().into());
            }
            let reply = client
                .post("/api/v1/webhooks")
                .json(&body)
                .send()
                .with_context(|| format!("cannot create webhook `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let w: WebhookResource = reply.parse()?;
            outln!("created webhook {} → {}", w.spec.id, w.spec.url);
            if let Some(secret) = w.secret {
                outln!("signing secret (shown once; receivers verify Switchyard-Signature with it):\n  {secret}");
            }
        }
        WebhooksCommand::List => {
            let reply = client
                .get("/api/v1/webhooks")
                .send()
                .context("cannot list webhooks")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let WebhookList { webhooks } = reply.parse()?;
            if webhooks.is_empty() {
                outln!("no webhooks");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = webhooks
                .iter()
                .map(|w| {
                    vec![
                        w.spec.id.clone(),
                        format!("{:?}", w.spec.format).to_lowercase(),
                        w.spec.events.join(","),
                        w.spec.environment.clone().unwrap_or_else(|| NONE.into()),
                        w.spec.url.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["ID", "FORMAT", "EVENTS", "ENV", "URL"], &rows)
            );
        }
        WebhooksCommand::Delete { id, reason } => {
            client
                .delete(format!("/api/v1/webhooks/{}", segment(id)))
                .query("reason", reason.as_ref())
                .send()
                .with_context(|| format!("cannot delete webhook `{id}`"))?;
            outln!("deleted webhook {id}");
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let reply = client
                .get(format!("/api/v1/webhooks/{}/deliveries", segment(id)))
                .query("limit", Some(limit))
                .send()
                .with_context(|| format!("cannot read the deliveries of `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let DeliveryList { deliveries } = reply.parse()?;
            if deliveries.is_empty() {
                outln!("no deliveries to {id} yet");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = deliveries
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.created_at.clone(),
                        d.event.clone(),
                        d.state.clone(),
                        d.attempts.to_string(),
                        d.last_status
                            .map_or_else(|| NONE.to_owned(), |s| s.to_string()),
                        d.last_error.clone().unwrap_or_else(|| NONE.to_owned()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &[
                        "ID",
                        "QUEUED",
                        "EVENT",
                        "STATE",
                        "ATTEMPTS",
                        "STATUS",
                        "LAST ERROR"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
