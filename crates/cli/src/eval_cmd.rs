//! `switchyard eval`: evaluate flags from a file, offline, for one context or a JSON Lines file
//! of contexts (one result per line, same order) — how a person previews who a rollout reaches.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{ArgGroup, Args};
use serde::Serialize;
use serde_json::Value;
use switchyard_engine::{
    load_file, load_str, Context, ContextError, Detail, Evaluation, Evaluator, Format, Ruleset,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["flag", "all"])))]
#[command(group(ArgGroup::new("input").required(true).args(["context", "contexts"])))]
pub struct EvalArgs {
    /// Flag definition file (.yaml, .yml or .json); `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    file: PathBuf,
    /// The format of the flag definitions read from standard input (default: JSON if the
    /// text starts with `{`, else YAML).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FileFormat>,
    /// Environment whose overrides apply; without it, the flags' top-level targeting is used.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// The flag to evaluate.
    #[arg(long, value_name = "KEY")]
    flag: Option<String>,
    /// Evaluate every flag (prints a JSON array per context).
    #[arg(long)]
    all: bool,
    /// Evaluation context as JSON: {"targetingKey": "...", ...other attributes}.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    /// File with one JSON context per line (JSON Lines); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    contexts: Option<PathBuf>,
    /// Evaluation time (RFC 3339) for `before`/`after` conditions; default: now.
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

fn load(args: &EvalArgs) -> Result<Ruleset> {
    if args.file.as_os_str() != "-" {
        if args.format.is_some() {
            bail!("--format is for flag definitions read from standard input (--file -); a file's extension says its format");
        }
        return load_file(&args.file)
            .with_context(|| format!("cannot load {}", args.file.display()));
    }
    if args.contexts.as_ref().is_some_and(|c| c.as_os_str() == "-") {
        bail!("--file - and --contexts - cannot both read standard input");
    }
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the flag definitions from standard input")?;
    let format = match args.format {
        Some(FileFormat::Json) => Format::Json,
        Some(FileFormat::Yaml) => Format::Yaml,
        None if text.trim_start().starts_with('{') => Format::Json,
        None => Format::Yaml,
    };
    load_str(&text, format, Some("<stdin>"))
        .context("cannot load the flag definitions from standard input")
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let ruleset = load(args)?;
    let now = match &args.now {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .with_context(|| format!("--now `{text}` is not an RFC 3339 timestamp"))?,
        None => OffsetDateTime::now_utc(),
    };
    let evaluator = ruleset.evaluator(args.env.as_deref().unwrap_or(""), now);
    if let Some(flag) = &args.flag {
        if ruleset.definition(flag).is_none() {
            eprintln!(
                "warning: {} has no flag `{flag}`; results will be FLAG_NOT_FOUND",
                args.file.display()
            );
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());

    if let Some(text) = &args.context {
        let value: Value = serde_json::from_str(text).context("--context is not valid JSON")?;
        let ctx = match Context::from_value(value) {
            Ok(ctx) => ctx,
            Err(err) => bail!("--context is not a valid evaluation context: {err}"),
        };
        let line = render(args, &evaluator, &ctx);
        writeln!(out, "{line}")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }

    let path = args
        .contexts
        .as_ref()
        .expect("clap requires --context or --contexts");
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut bad_lines = 0usize;
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(&line)
            .map_err(|err| ("PARSE_ERROR", format!("line {}: {err}", number + 1)))
            .and_then(|v| {
                Context::from_value(v).map_err(|err: ContextError| {
                    ("INVALID_CONTEXT", format!("line {}: {err}", number + 1))
                })
            });
        match parsed {
            Ok(ctx) => {
                let rendered = render_line(args, &evaluator, &ctx, number + 1);
                writeln!(out, "{rendered}")?;
            }
            Err((code, details)) => {
                bad_lines += 1;
                let key = args.flag.as_deref().map_or(Value::Null, Value::from);
                let error = serde_json::json!({
                    "line": number + 1, "key": key, "value": null, "reason": "ERROR",
                    "errorCode": code, "errorDetails": details,
                });
                writeln!(out, "{error}")?;
            }
        }
    }
    out.flush()?;
    if bad_lines > 0 {
        eprintln!(
            "{bad_lines} line(s) of {} were not valid contexts",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--context` answer, pretty-printed (the `--contexts` lines are `render_line`).
fn render(args: &EvalArgs, evaluator: &Evaluator<'_>, ctx: &Context) -> String {
    let text = match &args.flag {
        Some(key) => {
            let eval = evaluator.evaluate(key, ctx);
            serde_json::to_string_pretty(&ResultOut::new(key, &eval))
        }
        None => {
            let evals: Vec<(&str, Evaluation<'_>)> = evaluator.evaluate_all(ctx).collect();
            let out: Vec<ResultOut<'_>> = evals.iter().map(|(k, e)| ResultOut::new(k, e)).collect();
            serde_json::to_string_pretty(&out)
        }
    };
    text.unwrap_or_default()
}

/// One line of `--contexts` output: which context (its line number and targeting key) and
/// its result (the result's fields with `--flag`, `"flags": [...]` with `--all`).
fn render_line(args: &EvalArgs, evaluator: &Evaluator<'_>, ctx: &Context, line: usize) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a, T: Serialize> {
        line: usize,
        targeting_key: Option<&'a str>,
        #[serde(flatten)]
        result: T,
    }
    #[derive(Serialize)]
    struct All<'a> {
        flags: Vec<ResultOut<'a>>,
    }
    let targeting_key = ctx.targeting_key();
    let text = match &args.flag {
        Some(key) => {
            let eval = evaluator.evaluate(key, ctx);
            serde_json::to_string(&Line {
                line,
                targeting_key,
                result: ResultOut::new(key, &eval),
            })
        }
        None => {
            let evals: Vec<(&str, Evaluation<'_>)> = evaluator.evaluate_all(ctx).collect();
            let flags = evals.iter().map(|(k, e)| ResultOut::new(k, e)).collect();
            serde_json::to_string(&Line {
                line,
                targeting_key,
                result: All { flags },
            })
        }
    };
    text.unwrap_or_default()
}

/// One result: `{"key","value","variant","reason","ruleId"?,"detail"?,"prerequisite"?,
/// "errorCode"?,"errorDetails"?}`, fields in that order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultOut<'a> {
    key: &'a str,
    value: &'a Value,
    variant: Option<&'a str>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prerequisite: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_details: Option<&'a str>,
}

impl<'a> ResultOut<'a> {
    pub fn new(key: &'a str, eval: &'a Evaluation<'a>) -> Self {
        Self {
            key,
            value: eval.value,
            variant: eval.variant,
            reason: eval.reason.as_str(),
            rule_id: eval.rule_id(),
            detail: eval.detail.map(|d| d.tag()),
            prerequisite: match eval.detail {
                Some(Detail::PrerequisiteFailed(flag)) => Some(flag),
                _ => None,
            },
            error_code: eval.error.as_ref().map(|e| e.code.as_str()),
            error_details: eval.error.as_ref().map(|e| e.message.as_str()),
        }
    }
}
