//! `switchyard rollouts ...` (progressive rollouts: start, list, get, pause, resume, advance,
//! abort) and `switchyard guards ...` (automatic kill switches: create, list, delete).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use switchyard_api_types::rollouts::{
    GuardList, GuardResource, RolloutList, RolloutResource, StageSpec,
};

use crate::flags_cmd::read_source;
use crate::remote::{segment, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct RolloutsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: RolloutsCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutsCommand {
    /// Start a progressive rollout of a flag in one environment. The plan's stages and gates
    /// come from --file (YAML or JSON, see docs/rollouts.md) and/or the options here.
    Start(Box<StartArgs>),
    /// List rollouts, newest first.
    List {
        /// Only this status (running, awaiting_approval, paused, completed, rolled_back,
        /// aborted).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only this flag.
        #[arg(long, value_name = "KEY")]
        flag: Option<String>,
    },
    /// A rollout's state, stages, latest gate readings and history.
    Get {
        /// Rollout id.
        id: String,
    },
    /// Hold a rollout where it is.
    Pause(Act),
    /// Let a paused rollout advance again (the stage's hold starts over).
    Resume(Act),
    /// Enter the next stage now; approves a stage that waits for approval.
    Advance(Act),
    /// Stop a rollout and serve the new variant to nobody.
    Abort(Act),
}

/// `rollouts start`.
#[derive(Debug, Args)]
struct StartArgs {
    /// Flag key.
    flag: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// A plan file (`stages`, `gates`, `hold`, `minSample`, `onRed`, `variant`, `id`).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The variant rolled out (default: what the fallthrough serves, or `on`).
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// The stages' percentages, e.g. 5,25,50,100 (the default).
    #[arg(long, value_name = "P,P,…", value_delimiter = ',')]
    stages: Vec<f64>,
    /// The minimum hold of every stage, e.g. 10m, 1h.
    #[arg(long, value_name = "DURATION")]
    hold: Option<String>,
    /// A stage (by percentage) that waits for a person's approval before it starts.
    #[arg(long = "approval-at", value_name = "P")]
    approval_at: Vec<f64>,
    /// Red when more than RATE of the units served the new variant send EVENT,
    /// e.g. checkout_error=0.01.
    #[arg(long = "max-error-rate", value_name = "EVENT=RATE")]
    max_error_rate: Vec<String>,
    /// Red after three consecutive failed GET checks of URL.
    #[arg(long = "health-check", value_name = "URL")]
    health_check: Vec<String>,
    /// Units per arm a stage needs before its gates decide (default 100).
    #[arg(long, value_name = "N")]
    min_sample: Option<u64>,
    /// On red: zero (default) or last_healthy.
    #[arg(long, value_name = "WHAT")]
    on_red: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct Act {
    /// Rollout id.
    id: String,
    /// Why (recorded in the audit log and the history).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

fn plan_body(o: &StartArgs) -> Result<Value> {
    let StartArgs {
        flag,
        env,
        file,
        variant,
        stages,
        hold,
        approval_at,
        max_error_rate,
        health_check,
        min_sample,
        on_red,
        reason,
    } = o;
    let mut body = match file.as_deref() {
        Some(file) => {
            let (source, shown) = read_source(file)?;
            let Value::Object(body) = source.value else {
                bail!("{shown}: a rollout plan is an object (`stages`, `gates`, `hold`, …)");
            };
            body
        }
        None => Map::new(),
    };
    body.insert("flag".into(), json!(flag));
    body.insert("environment".into(), json!(env));
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    set("variant", variant.as_ref().map(|v| json!(v)));
    set("hold", hold.as_ref().map(|v| json!(v)));
    set("minSample", min_sample.map(|v| json!(v)));
    set("onRed", on_red.as_ref().map(|v| json!(v)));
    set("reason", reason.as_ref().map(|v| json!(v)));
    if !stages.is_empty() {
        let list: Vec<Value> = stages.iter().map(|p| json!({"percentage": p})).collect();
        body.insert("stages".into(), Value::Array(list));
    }
    if !approval_at.is_empty() {
        let Some(Value::Array(list)) = body.get_mut("stages") else {
            bail!("--approval-at names stages by percentage: give --stages too (e.g. --stages 5,25,50,100)");
        };
        for p in approval_at {
            let Some(stage) = list
                .iter_mut()
                .find(|s| s["percentage"].as_f64() == Some(*p))
            else {
                bail!("--approval-at {p}: no stage serves {p} %");
            };
            stage["approval"] = json!(true);
        }
    }
    let gates = body
        .entry("gates")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(gates) = gates else {
        bail!("the plan's `gates` must be a list");
    };
    for g in max_error_rate {
        let Some((event, rate)) = g.split_once('=') else {
            bail!("--max-error-rate {g}: write EVENT=RATE, e.g. checkout_error=0.01");
        };
        let rate: f64 = rate
            .parse()
            .with_context(|| format!("--max-error-rate {g}: `{rate}` is not a number"))?;
        gates.push(json!({"kind": "error_rate", "event": event, "max": rate}));
    }
    for url in health_check {
        gates.push(json!({"kind": "http", "url": url}));
    }
    Ok(Value::Object(body))
}

fn stages_line(r: &RolloutResource) -> String {
    r.stages
        .iter()
        .enumerate()
        .map(|(i, s)| stage_text(i == r.stage, s))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn stage_text(current: bool, s: &StageSpec) -> String {
    let hold = match &s.hold {
        Some(switchyard_api_types::rollouts::Duration::Seconds(secs)) => human(*secs),
        Some(switchyard_api_types::rollouts::Duration::Text(t)) => t.clone(),
        None => NONE.to_owned(),
    };
    let approval = if s.approval { ", approval" } else { "" };
    let text = format!("{} % ({hold}{approval})", s.percentage);
    if current {
        format!("[{text}]")
    } else {
        text
    }
}

fn human(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn render(r: &RolloutResource) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout {}: `{}` in {}, variant `{}`",
        r.id, r.flag, r.environment, r.variant
    );
    let _ = writeln!(
        out,
        "status {}, stage {} of {} serving {} % since {} (hold until {})",
        r.status,
        r.stage + 1,
        r.stages.len(),
        r.percentage,
        r.stage_started_at,
        r.hold_until
    );
    let _ = writeln!(out, "stages: {}", stages_line(r));
    if r.gates.is_empty() {
        let _ = writeln!(out, "gates: none (stages advance on time alone)");
    } else {
        let at = r.readings_at.as_deref().unwrap_or("not read yet");
        let _ = writeln!(out, "gates (read {at}):");
        let rows: Vec<Vec<String>> = r
            .gates
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let reading = r.readings.iter().find(|x| x.gate == i);
                vec![
                    i.to_string(),
                    serde_json::to_value(g)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    reading.map_or(NONE.to_owned(), |x| x.status.clone()),
                    reading.map_or(NONE.to_owned(), |x| x.detail.clone()),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &["GATE", "KIND", "STATUS", "READING"],
            &rows,
        ));
    }
    let _ = writeln!(out, "history:");
    let rows: Vec<Vec<String>> = r
        .history
        .iter()
        .map(|h| {
            vec![
                h.at.clone(),
                h.action.clone(),
                format!("{} %", h.percentage),
                h.actor.clone(),
                h.note.clone().unwrap_or_else(|| NONE.to_owned()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["AT", "ACTION", "SERVING", "BY", "NOTE"],
        &rows,
    ));
    out
}

pub fn run(args: &RolloutsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    let path = |id: &str| format!("/api/v1/rollouts/{}", segment(id));
    match &args.command {
        RolloutsCommand::Start(start) => {
            let (flag, env) = (&start.flag, &start.env);
            let body = plan_body(start)?;
            let reply = client
                .post("/api/v1/rollouts")
                .json(&body)
                .send()
                .with_context(|| format!("cannot start a rollout of `{flag}` in {env}"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: RolloutResource = reply.parse()?;
            outln!(
                "started rollout {} of `{}` in {}: {} % now; stages {}",
                r.id,
                r.flag,
                r.environment,
                r.percentage,
                stages_line(&r)
            );
        }
        RolloutsCommand::List { status, flag } => {
            let reply = client
                .get("/api/v1/rollouts")
                .query("status", status.as_ref())
                .query("flag", flag.as_ref())
                .send()
                .context("cannot list rollouts")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let RolloutList { rollouts } = reply.parse()?;
            if rollouts.is_empty() {
                outln!("no rollouts");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = rollouts
                .iter()
                .map(|r| {
                    let gates = if r.readings.is_empty() {
                        NONE.to_owned()
                    } else {
                        r.readings
                            .iter()
                            .map(|g| g.status.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    vec![
                        r.id.clone(),
                        r.flag.clone(),
                        r.environment.clone(),
                        r.status.clone(),
                        format!("{}/{}", r.stage + 1, r.stages.len()),
                        format!("{} %", r.percentage),
                        gates,
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["ID", "FLAG", "ENV", "STATUS", "STAGE", "SERVING", "GATES"],
                    &rows
                )
            );
        }
        RolloutsCommand::Get { id } => {
            let reply = client
                .get(path(id))
                .send()
                .with_context(|| format!("cannot read rollout `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: RolloutResource = reply.parse()?;
            out!("{}", render(&r));
        }
        RolloutsCommand::Pause(a)
        | RolloutsCommand::Resume(a)
        | RolloutsCommand::Advance(a)
        | RolloutsCommand::Abort(a) => {
            let action = match &args.command {
                RolloutsCommand::Pause(_) => "pause",
                RolloutsCommand::Resume(_) => "resume",
                RolloutsCommand::Advance(_) => "advance",
                _ => "abort",
            };
            let reply = client
                .post(format!("{}/{action}", path(&a.id)))
                .json(&json!({"reason": a.reason}))
                .send()
                .with_context(|| format!("cannot {action} rollout `{}`", a.id))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: RolloutResource = reply.parse()?;
            outln!(
                "rollout {} is {}: stage {} of {}, serving {} %",
                r.id,
                r.status,
                r.stage + 1,
                r.stages.len(),
                r.percentage
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GuardsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: GuardsCommand,
}

#[derive(Debug, Subcommand)]
enum GuardsCommand {
    /// Set up a guard: the flag's kill switch turns on when the error rate (ERRORS events
    /// over REQUESTS events in the window) or a Prometheus query is above --max.
    Create(Box<GuardArgs>),
    /// List guards with their latest reading.
    List,
    /// Remove a guard (the flag stays as it is).
    Delete {
        /// Guard id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// `guards create`.
#[derive(Debug, Args)]
struct GuardArgs {
    /// Flag key.
    flag: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// The limit: an error rate (0.05 = 5 %) or the query's unit.
    #[arg(long, value_name = "X")]
    max: f64,
    /// The error event (with --requests).
    #[arg(long, value_name = "EVENT")]
    errors: Option<String>,
    /// The request event, the rate's denominator.
    #[arg(long, value_name = "EVENT")]
    requests: Option<String>,
    /// A Prometheus server (with --query).
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// The PromQL query (one number).
    #[arg(long, value_name = "PROMQL")]
    query: Option<String>,
    /// The window counted (default 10m).
    #[arg(long, value_name = "DURATION")]
    window: Option<String>,
    /// Requests in the window before it may trip (default 100).
    #[arg(long, value_name = "N")]
    min_sample: Option<u64>,
    /// Quiet time after a trip (default 30m).
    #[arg(long, value_name = "DURATION")]
    cooldown: Option<String>,
    /// An id (default: generated).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub fn guards(args: &GuardsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        GuardsCommand::Create(g) => {
            let GuardArgs {
                flag,
                env,
                max,
                errors,
                requests,
                prometheus,
                query,
                window,
                min_sample,
                cooldown,
                id,
                reason,
            } = g.as_ref();
            let metric = match (errors, requests, prometheus, query) {
                (Some(e), Some(r), None, None) => {
                    json!({"kind": "error_rate", "errors": e, "requests": r})
                }
                (None, None, Some(url), Some(q)) => {
                    json!({"kind": "prometheus", "url": url, "query": q})
                }
                _ => bail!(
                    "say what the guard watches: --errors EVENT --requests EVENT, or --prometheus URL --query PROMQL"
                ),
            };
            let mut body = json!({"flag": flag, "environment": env, "metric": metric, "max": max});
            for (k, v) in [
                ("window", window.as_ref().map(|v| json!(v))),
                ("minSample", min_sample.map(|v| json!(v))),
                ("cooldown", cooldown.as_ref().map(|v| json!(v))),
                ("id", id.as_ref().map(|v| json!(v))),
                ("reason", reason.as_ref().map(|v| json!(v))),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let reply = client
                .post("/api/v1/guards")
                .json(&body)
                .send()
                .with_context(|| format!("cannot set up a guard on `{flag}` in {env}"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let g: GuardResource = reply.parse()?;
            outln!(
                "guard {} watches `{}` in {}: kills it above {}",
                g.id,
                g.spec.flag,
                g.spec.environment,
                g.spec.max
            );
        }
        GuardsCommand::List => {
            let reply = client
                .get("/api/v1/guards")
                .send()
                .context("cannot list guards")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let GuardList { guards } = reply.parse()?;
            if guards.is_empty() {
                outln!("no guards");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = guards
                .iter()
                .map(|g| {
                    vec![
                        g.id.clone(),
                        g.spec.flag.clone(),
                        g.spec.environment.clone(),
                        g.state.clone(),
                        g.trips.to_string(),
                        g.reading
                            .as_ref()
                            .map_or(NONE.to_owned(), |r| format!("{}: {}", r.status, r.detail)),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["ID", "FLAG", "ENV", "STATE", "TRIPS", "READING"], &rows)
            );
        }
        GuardsCommand::Delete { id, reason } => {
            client
                .delete(format!("/api/v1/guards/{}", segment(id)))
                .query("reason", reason.as_ref())
                .send()
                .with_context(|| format!("cannot delete guard `{id}`"))?;
            if !json {
                outln!("deleted guard {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
