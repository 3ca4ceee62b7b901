//! `switchyard schedule ...`: schedule a flag operation for a time in one environment, list,
//! cancel.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use switchyard_api_types::schedules::{NewSchedule, ScheduleList, ScheduleResource};

use crate::remote::{segment, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Schedule an operation: enable, disable, kill, release, rollout (with --percentage),
    /// archive.
    Create {
        /// Flag key.
        flag: String,
        /// The operation.
        action: String,
        /// The environment.
        #[arg(long, value_name = "ENV")]
        env: String,
        /// When (RFC 3339, e.g. 2026-12-24T09:00:00Z).
        #[arg(long, value_name = "TIME")]
        at: String,
        /// For rollout: the percentage.
        #[arg(long, value_name = "P")]
        percentage: Option<f64>,
        /// For rollout: the variant.
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
        /// Why (recorded in the audit log, and in the change's when it runs).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List scheduled changes, soonest first.
    List {
        /// Only this state (pending, done, failed, cancelled).
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Only this flag.
        #[arg(long, value_name = "KEY")]
        flag: Option<String>,
    },
    /// Cancel a pending scheduled change.
    Cancel {
        /// Schedule id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

fn describe(s: &ScheduleResource) -> String {
    let op = s.action["op"].as_str().unwrap_or("?");
    match s.action.get("percentage") {
        Some(p) => format!("{op} {p}%"),
        None => op.to_owned(),
    }
}

pub fn run(args: &ScheduleArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        ScheduleCommand::Create {
            flag,
            action,
            env,
            at,
            percentage,
            variant,
            reason,
        } => {
            let body = NewSchedule {
                flag: flag.clone(),
                environment: env.clone(),
                action: action.clone(),
                percentage: *percentage,
                variant: variant.clone(),
                at: at.clone(),
                reason: reason.clone(),
            };
            let reply = client
                .post("/api/v1/schedules")
                .json(&body)
                .send()
                .with_context(|| format!("cannot schedule {action} of `{flag}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let s: ScheduleResource = reply.parse()?;
            outln!(
                "scheduled {} of {} in {} at {} (id {})",
                describe(&s),
                s.flag,
                s.environment,
                s.at,
                s.id
            );
        }
        ScheduleCommand::List { state, flag } => {
            let reply = client
                .get("/api/v1/schedules")
                .query("state", state.as_ref())
                .query("flag", flag.as_ref())
                .send()
                .context("cannot list scheduled changes")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let ScheduleList { schedules } = reply.parse()?;
            if schedules.is_empty() {
                outln!("no scheduled changes");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = schedules
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.at.clone(),
                        s.flag.clone(),
                        s.environment.clone(),
                        describe(s),
                        s.state.clone(),
                        s.outcome.clone().unwrap_or_else(|| NONE.to_owned()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["ID", "AT", "FLAG", "ENV", "ACTION", "STATE", "OUTCOME"],
                    &rows
                )
            );
        }
        ScheduleCommand::Cancel { id, reason } => {
            let reply = client
                .delete(format!("/api/v1/schedules/{}", segment(id)))
                .query("reason", reason.as_ref())
                .send()
                .with_context(|| format!("cannot cancel schedule `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let s: ScheduleResource = reply.parse()?;
            outln!(
                "cancelled {} of {} in {} ({})",
                describe(&s),
                s.flag,
                s.environment,
                s.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
