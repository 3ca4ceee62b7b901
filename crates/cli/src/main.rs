//! `switchyard`: the one binary. This file is glue: argument parsing, I/O and exit codes;
//! the work is done by the library crates.

mod audit_cmd;
mod eval_cmd;
mod flags_cmd;
mod remote;
mod serve_cmd;
mod table;
mod tokens_cmd;
mod transfer_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use switchyard_engine::{check_file, Diagnostic, Severity};

/// Self-hosted feature flags and experiments.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about,
    propagate_version = true,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check flag definition files; print every problem and exit 1 if any file is invalid.
    Validate(ValidateArgs),
    /// Evaluate flags from a file for one or many contexts, printing JSON results.
    Eval(eval_cmd::EvalArgs),
    /// Run the server (admin API, OFREP, metrics). With no configuration: 127.0.0.1:8080,
    /// one SQLite file, example flags loaded.
    Serve(serve_cmd::ServeArgs),
    /// List, show, create and change flags on a running server.
    Flags(flags_cmd::FlagsArgs),
    /// Show a running server's audit log: who changed what, when and why.
    Audit(audit_cmd::AuditArgs),
    /// Create, list and revoke a running server's API tokens (admin token needed).
    Tokens(tokens_cmd::TokensArgs),
    /// Import a flag file into a running server (all or nothing).
    Import(transfer_cmd::ImportArgs),
    /// Export a running server's flags and segments as a flag file.
    Export(transfer_cmd::ExportArgs),
}

const AFTER_HELP: &str = "\
Remote commands (flags, audit, tokens, import, export) talk to a running server over its
HTTP API and take these options before or after the subcommand:
  --server URL   the server [env: SWITCHYARD_SERVER] [default: http://127.0.0.1:8080]
  --token TOKEN  an API token [env: SWITCHYARD_TOKEN]
  --json         print the server's JSON instead of tables
Changes apply to a flag's current version (last write wins); add --if-version N to change
it only if it is still at version N.

Exit status:
  0  success
  1  the server refused the request (HTTP 4xx or 5xx), or `validate` found invalid files,
     or `eval` met invalid context lines
  2  usage error, unreadable file, or the server could not be reached";

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Flag files (.yaml, .yml or .json).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print diagnostics as a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Flags(args) => flags_cmd::run(&args),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Tokens(args) => tokens_cmd::run(&args),
        Command::Import(args) => transfer_cmd::import(&args),
        Command::Export(args) => transfer_cmd::export(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => remote::report(&err),
    }
}

fn validate(args: &ValidateArgs) -> Result<ExitCode> {
    let mut all = Vec::new();
    let mut invalid = 0usize;
    for path in &args.paths {
        let (ruleset, diagnostics) = check_file(path);
        match &ruleset {
            Some(ruleset) if !args.json => {
                println!("ok: {} ({} flags)", path.display(), ruleset.len());
            }
            Some(_) => {}
            None => invalid += 1,
        }
        all.extend(diagnostics);
    }
    if args.json {
        let items: Vec<serde_json::Value> = all.iter().map(diagnostic_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        for d in &all {
            println!("{d}");
        }
        if invalid > 0 {
            let errors = all.iter().filter(|d| d.is_error()).count();
            println!(
                "{invalid} of {} file{} invalid, {errors} error{}",
                args.paths.len(),
                if args.paths.len() == 1 { "" } else { "s" },
                if errors == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "file": d.file,
        "line": d.line,
        "flag": d.flag,
        "path": d.path.to_string(),
        "message": d.message,
    })
}
