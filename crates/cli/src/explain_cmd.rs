//! `switchyard flags explain KEY --env E --context JSON`: "why does this unit see this?",
//! answered by the server (`POST /api/v1/flags/{key}/evaluate`) and printed step by step.

use std::fmt::Write as _;
use std::io::Read as _;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde_json::{Map, Value};
use switchyard_api_types::admin::{ExplainRequest, Explanation};
use switchyard_engine::explain::{ConditionTrace, ServeTrace, Step};

use crate::remote::{segment, Client};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Flag key.
    key: String,
    /// The environment to evaluate in.
    #[arg(long, value_name = "ENV")]
    env: String,
    /// The evaluation context as a JSON object (`{"targetingKey": "user-42", "plan": "pro"}`);
    /// `-` reads it from standard input. Without it, an empty context.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
}

pub fn run(client: &Client, json: bool, args: &ExplainArgs) -> Result<()> {
    let context = read_context(args.context.as_deref())?;
    let reply = client
        .post(format!("/api/v1/flags/{}/evaluate", segment(&args.key)))
        .json(&ExplainRequest {
            environment: args.env.clone(),
            context,
        })
        .send()
        .with_context(|| format!("cannot explain `{}` in {}", args.key, args.env))?;
    if json {
        reply.print();
        return Ok(());
    }
    let explanation: Explanation = reply.parse()?;
    out!("{}", render(&explanation, &args.env));
    Ok(())
}

fn read_context(arg: Option<&str>) -> Result<Map<String, Value>> {
    let text = match arg {
        None => return Ok(Map::new()),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the context from standard input")?;
            text
        }
        Some(text) => text.to_owned(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => bail!(
            "--context must be a JSON object such as '{{\"targetingKey\": \"user-42\"}}', not {}",
            switchyard_engine::document::describe(&other)
        ),
        Err(e) => bail!("--context is not valid JSON: {e}"),
    }
}

/// The explanation as people read it: the outcome first, then each step.
pub fn render(e: &Explanation, env: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} in {env}", e.flag);
    let _ = writeln!(out, "  {}", outcome(e));
    out.push('\n');
    steps(&mut out, e, 1);
    out
}

fn outcome(e: &Explanation) -> String {
    let mut line = match &e.variant {
        Some(v) => format!("serves `{v}` ({})", e.value),
        None => format!("serves {}", e.value),
    };
    let _ = write!(line, ", reason {}", e.reason);
    if let Some(rule) = &e.rule_id {
        let _ = write!(line, ", rule `{rule}`");
    } else if let Some(by) = &e.decided_by {
        let _ = write!(line, " ({})", by.to_ascii_lowercase().replace('_', " "));
    }
    if let Some(code) = &e.error_code {
        let _ = write!(
            line,
            "\n  error {code}: {}",
            e.error_message.as_deref().unwrap_or("")
        );
    }
    line
}

fn steps(out: &mut String, e: &Explanation, depth: usize) {
    let pad = "  ".repeat(depth);
    for (i, step) in e.steps.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Archived => {
                let _ = writeln!(out, "{pad}{n}. archived: not served");
            }
            Step::KillSwitch { on } => {
                let _ = writeln!(
                    out,
                    "{pad}{n}. kill switch: {}",
                    if *on {
                        "ON, serves the off variant"
                    } else {
                        "off"
                    }
                );
            }
            Step::Tenant {
                attribute,
                tenant,
                outcome,
                variant,
            } => {
                let who = tenant
                    .as_ref()
                    .map_or_else(|| "absent".to_owned(), Value::to_string);
                let what = match (outcome.as_str(), variant) {
                    ("variant", Some(v)) => format!("override serves `{v}`"),
                    ("on", _) => "override: on".to_owned(),
                    ("off", _) => "override: off".to_owned(),
                    _ => "no override".to_owned(),
                };
                let _ = writeln!(out, "{pad}{n}. tenant ({attribute} = {who}): {what}");
            }
            Step::Enabled { enabled } => {
                let _ = writeln!(
                    out,
                    "{pad}{n}. enabled: {}",
                    if *enabled {
                        "yes"
                    } else {
                        "no, serves the off variant"
                    }
                );
            }
            Step::Static { variant } => {
                let _ = writeln!(out, "{pad}{n}. static: everybody gets `{variant}`");
            }
            Step::Prerequisite {
                flag,
                required,
                served,
                passed,
                explanation,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}{n}. prerequisite {flag} must serve {}: it serves {} → {}",
                    required
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    served
                        .as_ref()
                        .map_or_else(|| "nothing".to_owned(), |v| format!("`{v}`")),
                    if *passed {
                        "passed"
                    } else {
                        "failed, serves the default"
                    }
                );
                if let Some(inner) = explanation {
                    steps(out, inner, depth + 2);
                }
            }
            Step::Targets {
                attribute,
                value,
                variant,
                matched,
            } => {
                let id = value
                    .as_ref()
                    .map_or_else(|| "absent".to_owned(), Value::to_string);
                let _ = writeln!(
                    out,
                    "{pad}{n}. targets for `{variant}` ({attribute} = {id}): {}",
                    if *matched { "listed" } else { "not listed" }
                );
            }
            Step::Experiment {
                id,
                outcome,
                unit,
                holdout_bucket,
                allocation_bucket,
                variant,
            } => {
                let unit = unit
                    .as_ref()
                    .map_or_else(|| "absent".to_owned(), Value::to_string);
                let mut what = match (outcome.as_str(), variant) {
                    ("assigned", Some(v)) => format!("assigned `{v}` (an exposure)"),
                    ("opted out", Some(v)) => format!("opted out: `{v}`, no exposure"),
                    ("paused", Some(v)) => format!("paused: `{v}`, no exposure"),
                    (other, _) => format!("{other}: the flag's own targeting applies"),
                };
                if let Some(b) = holdout_bucket {
                    what.push_str(&format!("; holdout bucket {b}"));
                }
                if let Some(b) = allocation_bucket {
                    what.push_str(&format!("; allocation bucket {b}"));
                }
                let _ = writeln!(out, "{pad}{n}. experiment {id} (unit {unit}): {what}");
            }
            Step::Rule {
                id,
                matched,
                conditions,
                serve,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}{n}. rule {id}: {}",
                    if *matched { "matched" } else { "no match" }
                );
                for c in conditions {
                    condition(out, c, depth + 2);
                }
                if conditions.is_empty() {
                    let _ = writeln!(out, "{pad}    (no conditions: everybody)");
                }
                if let Some(serve) = serve {
                    serve_lines(out, serve, depth + 2);
                }
            }
            Step::Fallthrough { serve } => match serve {
                Some(serve) => {
                    let _ = writeln!(out, "{pad}{n}. fallthrough:");
                    serve_lines(out, serve, depth + 2);
                    if serve.outcome == "outside rollout" {
                        let _ = writeln!(out, "{pad}    nothing left: serves the default");
                    }
                }
                None => {
                    let _ = writeln!(out, "{pad}{n}. fallthrough: none, serves the default");
                }
            },
        }
    }
}

fn condition(out: &mut String, c: &ConditionTrace, depth: usize) {
    let pad = "  ".repeat(depth);
    let mark = if c.holds { "✓" } else { "✗" };
    let mut line = format!("{pad}{mark} {}", c.text);
    if c.attribute.is_some() {
        match &c.actual {
            Some(v) => {
                let _ = write!(line, "  (context: {v})");
            }
            None => line.push_str("  (context: absent)"),
        }
    } else if let Some(why) = &c.why {
        let _ = write!(line, "  ({why})");
    }
    let _ = writeln!(out, "{line}");
    for child in &c.children {
        condition(out, child, depth + 1);
    }
}

fn serve_lines(out: &mut String, s: &ServeTrace, depth: usize) {
    let pad = "  ".repeat(depth);
    if let Some(unit) = &s.unit {
        let _ = writeln!(
            out,
            "{pad}unit: {unit} (bucketed by {})",
            s.bucket_by.join(", then ")
        );
    }
    if let Some(r) = &s.rollout {
        let _ = writeln!(
            out,
            "{pad}rollout {}%: bucket {} {} threshold {} → {}",
            r.percentage,
            r.bucket,
            if r.inside { "<" } else { "≥" },
            r.threshold,
            if r.inside { "in" } else { "out, falls through" }
        );
    }
    if let Some(split) = &s.split {
        let ranges: Vec<String> = split
            .ranges
            .iter()
            .map(|r| format!("{} [{}, {})", r.variant, r.from, r.to))
            .collect();
        let _ = writeln!(
            out,
            "{pad}split: bucket {} → `{}`   ({})",
            split.bucket,
            split.variant,
            ranges.join(", ")
        );
    }
    match (s.outcome.as_str(), &s.variant) {
        ("no unit", _) => {
            let _ = writeln!(
                out,
                "{pad}no bucketing unit: the context has none of {}",
                s.bucket_by.join(", ")
            );
        }
        ("served", Some(v)) => {
            let _ = writeln!(out, "{pad}serves `{v}`");
        }
        _ => {}
    }
}
