//! `switchyard segments ...` and `switchyard envs ...`: segments (reusable audiences) and
//! environments on a running server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use switchyard_api_types::admin::{
    Environment, NewEnvironment, Reason, SegmentList, SegmentResource,
};

use crate::flags_cmd::read_source;
use crate::remote::{segment, RemoteArgs, RemoteError};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: SegmentsCommand,
}

#[derive(Debug, Subcommand)]
enum SegmentsCommand {
    /// List segments: name, ids included and excluded, conditions, version.
    List,
    /// Show one segment's definition.
    Get {
        /// Segment name.
        name: String,
    },
    /// Create a segment from a YAML or JSON file, or replace it at the version just read.
    Apply {
        /// Segment name.
        name: String,
        /// File with the segment definition (`-` reads standard input).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Replace only if the segment is still at version N; without it, at the version read
        /// just before (a change made in between is refused, not overwritten).
        #[arg(long, value_name = "N")]
        if_version: Option<i64>,
    },
    /// Delete a segment that no flag uses (the server names the flags that do).
    Delete {
        /// Segment name.
        name: String,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EnvsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: EnvsCommand,
}

#[derive(Debug, Subcommand)]
enum EnvsCommand {
    /// List environments.
    List,
    /// Create an environment (admin).
    Create {
        /// Environment name.
        name: String,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Set an environment's policy (admin).
    Update {
        /// Environment name.
        name: String,
        /// Whether a person's flag change there waits for someone else's approval.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        require_approval: bool,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

fn count(v: &[Value]) -> String {
    match v.len() {
        0 => NONE.to_owned(),
        n => n.to_string(),
    }
}

pub fn segments(args: &SegmentsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        SegmentsCommand::List => {
            let reply = client
                .get("/api/v1/segments")
                .send()
                .context("cannot list segments")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let SegmentList { segments } = reply.parse()?;
            if segments.is_empty() {
                outln!("no segments");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = segments
                .iter()
                .map(|s| {
                    let d = &s.definition;
                    vec![
                        s.name.clone(),
                        count(&d.included),
                        count(&d.excluded),
                        d.conditions.len().to_string(),
                        s.version.to_string(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["NAME", "INCLUDED", "EXCLUDED", "CONDITIONS", "VERSION"],
                    &rows
                )
            );
        }
        SegmentsCommand::Get { name } => {
            let reply = client
                .get(format!("/api/v1/segments/{}", segment(name)))
                .send()
                .with_context(|| format!("cannot get segment `{name}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let s: SegmentResource = reply.parse()?;
            outln!("segment `{}` (version {})", s.name, s.version);
            out!("{}", serde_yaml_like(&serde_json::to_value(&s.definition)?));
        }
        SegmentsCommand::Apply {
            name,
            file,
            reason,
            if_version,
        } => {
            let (source, shown) = read_source(file)?;
            let Value::Object(mut body) = source.value else {
                bail!("{shown}: a segment definition is an object (`included`, `excluded`, `conditions`, …)");
            };
            // A file exported or copied from `segments get --json` may hold the resource.
            if let Some(Value::Object(def)) = body.remove("definition") {
                body = def;
            }
            if let Some(reason) = reason {
                body.insert("reason".to_owned(), Value::String(reason.clone()));
            }
            let path = format!("/api/v1/segments/{}", segment(name));
            let current = match client.get(path.clone()).send() {
                Ok(reply) => Some(reply.parse::<SegmentResource>()?.version),
                Err(RemoteError::Refused(f)) if f.status == 404 => None,
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot read segment `{name}`"))
                }
            };
            let reply = client
                .put(path)
                .if_match(if_version.or(current))
                .json(&body)
                .send()
                .map_err(|e| e.in_file(&shown))
                .with_context(|| format!("cannot apply segment `{name}` from {shown}"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let s: SegmentResource = reply.parse()?;
            let verb = match (current, s.unchanged) {
                (_, true) => "unchanged",
                (None, _) => "created",
                (Some(_), _) => "replaced",
            };
            outln!("{verb} segment `{}` (version {})", s.name, s.version);
        }
        SegmentsCommand::Delete { name, reason } => {
            let reply = client
                .delete(format!("/api/v1/segments/{}", segment(name)))
                .json(&Reason {
                    reason: reason.clone(),
                })
                .send()
                .with_context(|| format!("cannot delete segment `{name}`"))?;
            if json {
                reply.print();
            } else {
                outln!("deleted segment `{name}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn envs(args: &EnvsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        EnvsCommand::List => {
            let reply = client
                .get("/api/v1/environments")
                .send()
                .context("cannot list environments")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let envs: Vec<Environment> = reply.parse()?;
            let rows: Vec<Vec<String>> = envs
                .iter()
                .map(|e| {
                    vec![
                        e.name.clone(),
                        e.created_at.clone(),
                        if e.require_approval { "required" } else { NONE }.to_owned(),
                    ]
                })
                .collect();
            out!("{}", table::render(&["NAME", "CREATED", "APPROVAL"], &rows));
        }
        EnvsCommand::Update {
            name,
            require_approval,
            reason,
        } => {
            let reply = client
                .put(format!(
                    "/api/v1/environments/{}",
                    crate::remote::segment(name)
                ))
                .json(&switchyard_api_types::admin::EnvironmentPolicy {
                    require_approval: *require_approval,
                    reason: reason.clone(),
                })
                .send()
                .with_context(|| format!("cannot update environment `{name}`"))?;
            if json {
                reply.print();
            } else if *require_approval {
                outln!("flag changes in `{name}` now wait for someone else's approval");
            } else {
                outln!("flag changes in `{name}` apply at once");
            }
        }
        EnvsCommand::Create { name, reason } => {
            let reply = client
                .post("/api/v1/environments")
                .json(&NewEnvironment {
                    name: name.clone(),
                    reason: reason.clone(),
                })
                .send()
                .with_context(|| format!("cannot create environment `{name}`"))?;
            if json {
                reply.print();
            } else {
                outln!("created environment `{name}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A definition as indented `key: value` lines (JSON values inline), for people.
fn serde_yaml_like(value: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    out
}
