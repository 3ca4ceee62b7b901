//! `switchyard experiments ...`: create a draft from a file, list, get, edit, start, pause,
//! resume, complete (shipping a variant), cancel, and read the results as a table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use switchyard_api_types::experiments::{
    ExperimentList, ExperimentResource, ExperimentResults, ExperimentStatus, MetricKind,
    TransitionRequest,
};

use crate::flags_cmd::read_source;
use crate::remote::{segment, Client, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct ExperimentsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: ExperimentsCommand,
}

#[derive(Debug, Subcommand)]
enum ExperimentsCommand {
    /// Create a draft from a YAML or JSON file (see docs/experiments.md for the fields).
    Create {
        /// The experiment file (`-` reads standard input).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Replace a draft's definition from a file (only drafts can be edited).
    Update {
        /// Experiment id.
        id: String,
        /// The experiment file (`-` reads standard input).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List experiments: id, status, flag, environment, arms, started.
    List {
        /// Only this environment.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// Only this flag.
        #[arg(long, value_name = "KEY")]
        flag: Option<String>,
        /// Only this status (draft, running, paused, completed, cancelled).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
    /// Show one experiment and its timeline.
    Get {
        /// Experiment id.
        id: String,
    },
    /// Start a draft: its flag assigns units and exposures are recorded.
    Start(Action),
    /// Pause: the units it would assign get the control, nothing is recorded.
    Pause(Action),
    /// Resume a paused experiment (the same units get the same variants).
    Resume(Action),
    /// Complete, optionally shipping a variant to everybody (the environment's fallthrough).
    Complete {
        #[command(flatten)]
        action: Action,
        /// The variant to ship.
        #[arg(long, value_name = "VARIANT")]
        ship: Option<String>,
    },
    /// Cancel.
    Cancel(Action),
    /// Results: per metric and arm, lifts with intervals, p-values, Bayesian summaries, SRM,
    /// warnings and a recommendation.
    Results {
        /// Experiment id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct Action {
    /// Experiment id.
    id: String,
    /// Why (recorded in the audit log and the timeline).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

fn path(id: &str) -> String {
    format!("/api/v1/experiments/{}", segment(id))
}

fn spec_body(file: &std::path::Path, reason: &Option<String>) -> Result<(Value, String)> {
    let (source, shown) = read_source(file)?;
    let Value::Object(mut body) = source.value else {
        bail!("{shown}: an experiment is an object (`id`, `environment`, `flag`, `control`, `variants`, `metrics`, …)");
    };
    // A file saved from `experiments get --json` holds the resource: keep what was written.
    for field in [
        "status",
        "version",
        "createdAt",
        "updatedAt",
        "startedAt",
        "endedAt",
        "layerSlice",
        "shippedVariant",
        "timeline",
    ] {
        body.remove(field);
    }
    if let Some(reason) = reason {
        body.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    Ok((Value::Object(body), shown))
}

pub fn run(args: &ExperimentsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        ExperimentsCommand::Create { file, reason } => {
            let (body, shown) = spec_body(file, reason)?;
            let reply = client
                .post("/api/v1/experiments")
                .json(&body)
                .send()
                .map_err(|e| e.in_file(&shown))
                .with_context(|| format!("cannot create an experiment from {shown}"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let e: ExperimentResource = reply.parse()?;
            outln!(
                "created experiment {} (draft) on flag {} in {}; start it with `switchyard experiments start {}`",
                e.spec.id, e.spec.flag, e.spec.environment, e.spec.id
            );
        }
        ExperimentsCommand::Update { id, file, reason } => {
            let (body, shown) = spec_body(file, reason)?;
            let current: ExperimentResource = client
                .get(path(id))
                .send()
                .with_context(|| format!("cannot read experiment `{id}`"))?
                .parse()?;
            let reply = client
                .put(path(id))
                .if_match(Some(current.version))
                .json(&body)
                .send()
                .map_err(|e| e.in_file(&shown))
                .with_context(|| format!("cannot update experiment `{id}` from {shown}"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let e: ExperimentResource = reply.parse()?;
            outln!("experiment {} is at version {}", e.spec.id, e.version);
        }
        ExperimentsCommand::List { env, flag, status } => {
            let reply = client
                .get("/api/v1/experiments")
                .query("environment", env.as_ref())
                .query("flag", flag.as_ref())
                .query("status", status.as_ref())
                .send()
                .context("cannot list experiments")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let ExperimentList { experiments } = reply.parse()?;
            if experiments.is_empty() {
                outln!("no experiments");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = experiments
                .iter()
                .map(|e| {
                    vec![
                        e.spec.id.clone(),
                        e.status.as_str().to_owned(),
                        e.spec.flag.clone(),
                        e.spec.environment.clone(),
                        arms(&e.spec.variants, &e.spec.control),
                        e.started_at.clone().unwrap_or_else(|| NONE.to_owned()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["ID", "STATUS", "FLAG", "ENV", "ARMS", "STARTED"], &rows)
            );
        }
        ExperimentsCommand::Get { id } => {
            let reply = client
                .get(path(id))
                .send()
                .with_context(|| format!("cannot read experiment `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let e: ExperimentResource = reply.parse()?;
            out!("{}", describe(&e));
        }
        ExperimentsCommand::Start(a) => transition(&client, json, a, "start", None)?,
        ExperimentsCommand::Pause(a) => transition(&client, json, a, "pause", None)?,
        ExperimentsCommand::Resume(a) => transition(&client, json, a, "resume", None)?,
        ExperimentsCommand::Cancel(a) => transition(&client, json, a, "cancel", None)?,
        ExperimentsCommand::Complete { action, ship } => {
            transition(&client, json, action, "complete", ship.clone())?
        }
        ExperimentsCommand::Results { id } => {
            let reply = client
                .get(format!("{}/results", path(id)))
                .send()
                .with_context(|| format!("cannot compute the results of `{id}`"))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let r: ExperimentResults = reply.parse()?;
            out!("{}", render_results(&r));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The unit (as the application sends it; hashed by the server when it stores hashes).
    unit: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    env: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn erase(args: &EraseArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let reply = client
        .delete(format!("/api/v1/units/{}/events", segment(&args.unit)))
        .query("environment", Some(&args.env))
        .send()
        .with_context(|| format!("cannot erase the events of `{}`", args.unit))?;
    if args.remote.json {
        reply.print();
        return Ok(ExitCode::SUCCESS);
    }
    let erased: switchyard_api_types::experiments::Erased = reply.parse()?;
    outln!(
        "erased {} rows of unit `{}` in {}",
        erased.rows,
        erased.unit,
        erased.environment
    );
    Ok(ExitCode::SUCCESS)
}

fn transition(
    client: &Client,
    json: bool,
    a: &Action,
    action: &str,
    ship: Option<String>,
) -> Result<()> {
    let body = TransitionRequest {
        reason: a.reason.clone(),
        ship,
    };
    let reply = client
        .post(format!("{}/{action}", path(&a.id)))
        .json(&body)
        .send()
        .with_context(|| format!("cannot {action} experiment `{}`", a.id))?;
    if json {
        reply.print();
        return Ok(());
    }
    let e: ExperimentResource = reply.parse()?;
    let extra = match (&e.status, &e.shipped_variant, &e.layer_slice) {
        (ExperimentStatus::Completed, Some(v), _) => format!(", shipped `{v}`"),
        (ExperimentStatus::Running, _, Some([from, to])) => {
            format!(", layer slice {from}–{to} %")
        }
        _ => String::new(),
    };
    outln!("experiment {} is {}{extra}", e.spec.id, e.status.as_str());
    Ok(())
}

fn arms(variants: &std::collections::BTreeMap<String, f64>, control: &str) -> String {
    variants
        .iter()
        .map(|(k, w)| {
            if k == control {
                format!("{k}*:{w}")
            } else {
                format!("{k}:{w}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(e: &ExperimentResource) -> String {
    let s = &e.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment {} ({}), version {}",
        s.id,
        e.status.as_str(),
        e.version
    );
    if let Some(name) = &s.name {
        let _ = writeln!(out, "  name: {name}");
    }
    if let Some(h) = &s.hypothesis {
        let _ = writeln!(out, "  hypothesis: {h}");
    }
    let _ = writeln!(out, "  flag {} in {}", s.flag, s.environment);
    let _ = writeln!(out, "  arms (control*): {}", arms(&s.variants, &s.control));
    for m in &s.metrics {
        let _ = writeln!(
            out,
            "  metric {} ({:?}, {:?}) on event `{}`{}",
            m.display_name(),
            m.role,
            m.kind,
            m.event,
            m.window_hours
                .map(|h| format!(", within {h} h of exposure"))
                .unwrap_or_default()
                + &m.cuped_days
                    .map(|d| format!(", CUPED over {d} days before"))
                    .unwrap_or_default()
        );
    }
    if let Some(l) = &s.layer {
        let slice = e
            .layer_slice
            .map(|[a, b]| format!(", slice {a}–{b} %"))
            .unwrap_or_default();
        let _ = writeln!(out, "  layer {} ({} %{slice})", l.name, l.percentage);
    }
    if let Some(h) = &s.holdout {
        let _ = writeln!(out, "  holdout {} ({} %)", h.name, h.percentage);
    }
    for t in &e.timeline {
        let who = match &t.actor_name {
            Some(name) => format!("{name} ({})", t.actor),
            None => t.actor.clone(),
        };
        let why = t
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}  {:<9}  by {who}{why}", t.at, t.status.as_str());
    }

    out
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| NONE.to_owned(), |v| format!("{v:.digits$}"))
}

fn interval(x: Option<[f64; 2]>, digits: usize) -> String {
    x.map_or_else(
        || NONE.to_owned(),
        |[l, h]| format!("[{l:.digits$}, {h:.digits$}]"),
    )
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| NONE.to_owned(), |v| format!("{:+.2}%", v * 100.0))
}

fn render_results(r: &ExperimentResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment {} ({}), {:.1} days, alpha {}",
        r.experiment,
        r.status.as_str(),
        r.days,
        r.alpha
    );
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.variant, if v.control { " (control)" } else { "" }),
                v.weight.to_string(),
                v.units.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(&["VARIANT", "WEIGHT", "UNITS"], &rows));
    if let Some(srm) = &r.srm {
        let _ = writeln!(
            out,
            "sample ratio: {} (chi2 {:.3}, df {}, p {:.4})",
            srm.status, srm.chi2, srm.df, srm.p_value
        );
    }
    for m in &r.metrics {
        let _ = writeln!(
            out,
            "\n{} — {:?} {}, on `{}` ({} is better)",
            m.name,
            m.role,
            match m.kind {
                MetricKind::Conversion => "conversion rate",
                MetricKind::Count => "count per unit",
                MetricKind::Sum => "sum per unit",
                MetricKind::Mean => "mean per unit",
            },
            m.event,
            if m.higher_is_better {
                "higher"
            } else {
                "lower"
            }
        );
        if let Some(cuped) = &m.cuped {
            let _ = match (cuped.applied, cuped.theta, cuped.variance_reduction) {
                (true, Some(theta), reduction) => writeln!(
                    out,
                    "CUPED over {} days before exposure: theta {theta:.4}, variance {} — lifts and tests below are adjusted (MEAN is what units did)",
                    cuped.pre_period_days,
                    reduction.map_or_else(|| "unchanged".to_owned(), |r| format!("-{:.1} %", r * 100.0)),
                ),
                _ => writeln!(
                    out,
                    "CUPED over {} days: {}",
                    cuped.pre_period_days,
                    cuped.note.as_deref().unwrap_or("not applied")
                ),
            };
        }
        let rows: Vec<Vec<String>> = m
            .arms
            .iter()
            .map(|a| {
                let c = a.vs_control.as_ref();
                vec![
                    a.variant.clone(),
                    a.units.to_string(),
                    num(a.mean, 4),
                    pct(c.and_then(|c| c.rel_lift)),
                    interval(c.and_then(|c| c.ci_abs), 4),
                    num(c.and_then(|c| c.p_value), 4),
                    num(c.and_then(|c| c.p_value_adjusted), 4),
                    interval(c.and_then(|c| c.sequential_ci_abs), 4),
                    num(c.and_then(|c| c.chance_to_beat_control), 3),
                    c.map_or_else(|| "control".to_owned(), |c| c.verdict.clone()),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &[
                "VARIANT",
                "UNITS",
                "MEAN",
                "LIFT",
                "CI(DIFF)",
                "P",
                "P(ADJ)",
                "ALWAYS-VALID CI",
                "P(BEAT)",
                "VERDICT",
            ],
            &rows,
        ));
    }
    if !r.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &r.warnings {
            let _ = writeln!(out, "  - {} ({})", w.message, w.code);
        }
    }
    let _ = writeln!(
        out,
        "\nrecommendation: {}{} — {}",
        r.recommendation.action.replace('_', " "),
        r.recommendation
            .variant
            .as_ref()
            .map(|v| format!(" `{v}`"))
            .unwrap_or_default(),
        r.recommendation.message
    );
    out
}
