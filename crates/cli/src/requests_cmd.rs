//! `switchyard requests ...`: flag changes waiting for approval (four-eyes) — list, show with
//! the diff, approve, reject.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use switchyard_api_types::requests::{ChangeRequest, ChangeRequestList};

use crate::remote::{segment, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: RequestsCommand,
}

#[derive(Debug, Subcommand)]
enum RequestsCommand {
    /// List change requests, newest first (pending ones by default).
    List {
        /// Only this status (pending, applied, rejected, stale, or all).
        #[arg(long, value_name = "STATUS", default_value = "pending")]
        status: String,
        /// Only this flag.
        #[arg(long, value_name = "KEY")]
        flag: Option<String>,
    },
    /// A request and what it changes.
    Get {
        /// Request id.
        id: String,
    },
    /// Approve someone else's request: it is applied if the flag has not changed since.
    Approve {
        /// Request id.
        id: String,
        /// Why (audited).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Reject a request (or withdraw your own).
    Reject {
        /// Request id.
        id: String,
        /// Why (audited).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// The fields where `before` and `after` differ, with both values (`~` for absent).
pub fn changes(before: &Value, after: &Value) -> Vec<(String, String, String)> {
    let show = |v: Option<Value>| v.map_or("~".to_owned(), |v| v.to_string());
    switchyard_api_types::changes::field_changes(before, after)
        .into_iter()
        .map(|c| (c.path, show(c.before), show(c.after)))
        .collect()
}

fn render(r: &ChangeRequest) -> String {
    let mut out = String::new();
    let by = r.author_name.as_deref().unwrap_or(&r.author);
    let _ = writeln!(
        out,
        "request {}: {} of `{}` in {} by {by} at {}",
        r.id,
        r.action,
        r.flag,
        r.environments.join(", "),
        r.created_at
    );
    let _ = writeln!(
        out,
        "status {} (made against version {})",
        r.status, r.base_version
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    if let (Some(who), Some(at)) = (&r.decided_by, &r.decided_at) {
        let _ = writeln!(out, "decided by {who} at {at}");
    }
    if let Some(note) = &r.note {
        let _ = writeln!(out, "note: {note}");
    }
    let rows: Vec<Vec<String>> = changes(&r.before, &r.after)
        .into_iter()
        .map(|(p, a, b)| vec![p, a, b])
        .collect();
    let _ = writeln!(out, "changes:");
    out.push_str(&table::render(&["FIELD", "BEFORE", "AFTER"], &rows));
    out
}

pub fn run(args: &RequestsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    let path = |id: &str| format!("/api/v1/requests/{}", segment(id));
    match &args.command {
        RequestsCommand::List { status, flag } => {
            let status = (status != "all").then_some(status);
            let reply = client
                .get("/api/v1/requests")
                .query("status", status)
                .query("flag", flag.as_ref())
                .send()
                .context("cannot list change requests")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let ChangeRequestList { requests } = reply.parse()?;
            if requests.is_empty() {
                outln!("no change requests");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = requests
                .iter()
                .map(|r| {
                    let fields = changes(&r.before, &r.after);
                    vec![
                        r.id.clone(),
                        r.flag.clone(),
                        r.environments.join(","),
                        r.action.clone(),
                        r.author_name.clone().unwrap_or_else(|| r.author.clone()),
                        r.status.clone(),
                        match fields.as_slice() {
                            [] => NONE.to_owned(),
                            [(p, a, b)] => format!("{p}: {a} → {b}"),
                            many => format!("{} fields", many.len()),
                        },
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["ID", "FLAG", "ENV", "ACTION", "BY", "STATUS", "CHANGES"],
                    &rows
                )
            );
        }
        RequestsCommand::Get { id } => {
            let reply = client
                .get(path(id))
                .send()
                .with_context(|| format!("cannot read change request `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: ChangeRequest = reply.parse()?;
            out!("{}", render(&r));
        }
        RequestsCommand::Approve { id, reason } | RequestsCommand::Reject { id, reason } => {
            let verb = match &args.command {
                RequestsCommand::Approve { .. } => "approve",
                _ => "reject",
            };
            let reply = client
                .post(format!("{}/{verb}", path(id)))
                .json(&json!({ "reason": reason }))
                .send()
                .with_context(|| format!("cannot {verb} change request `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: ChangeRequest = reply.parse()?;
            outln!(
                "request {} is {}: {} of `{}` in {}",
                r.id,
                r.status,
                r.action,
                r.flag,
                r.environments.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
