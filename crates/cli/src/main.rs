//! `switchyard`: the one binary. This file is glue: argument parsing, I/O and exit codes;
//! the work is done by the library crates.

/// `print!` for a command's output, through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// `println!` for a command's output, through [`write_out`].
macro_rules! outln {
    () => {
        $crate::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod audit_cmd;
mod eval_cmd;
mod experiments_cmd;
mod explain_cmd;
mod exposures_cmd;
mod flags_cmd;
mod remote;
mod requests_cmd;
mod rollouts_cmd;
mod schedule_cmd;
mod segments_cmd;
mod serve_cmd;
mod stats_cmd;
mod table;
mod tokens_cmd;
mod transfer_cmd;
mod webhooks_cmd;

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
    /// List, show, apply and delete segments (reusable audiences) on a running server.
    Segments(segments_cmd::SegmentsArgs),
    /// List and create environments on a running server.
    Envs(segments_cmd::EnvsArgs),
    /// Show a running server's audit log: who changed what, when and why.
    Audit(audit_cmd::AuditArgs),
    /// Create, list and revoke a running server's API tokens (admin token needed).
    Tokens(tokens_cmd::TokensArgs),
    /// Import a flag file into a running server (all or nothing).
    Import(transfer_cmd::ImportArgs),
    /// Export a running server's flags and segments as a flag file.
    Export(transfer_cmd::ExportArgs),
    /// Create the example flags that a running server does not have yet (an empty store's
    /// "initialize flags").
    Seed(transfer_cmd::SeedArgs),
    /// Units per variant of a flag in an environment, by first exposure.
    Exposures(exposures_cmd::ExposuresArgs),
    /// Create, start, pause, resume, complete and cancel experiments on a running server, and
    /// read their results.
    Experiments(experiments_cmd::ExperimentsArgs),
    /// Erase every exposure and metric event of one unit in an environment (privacy; admin).
    EraseUnit(experiments_cmd::EraseArgs),
    /// Create, list and delete webhook subscriptions and read their deliveries (admin).
    Webhooks(webhooks_cmd::WebhooksArgs),
    /// Schedule a flag operation for a time in one environment; list and cancel schedules.
    Schedule(schedule_cmd::ScheduleArgs),
    /// Progressive rollouts: start one (stages, holds, health gates), follow, pause, resume,
    /// advance (approve), abort.
    Rollouts(rollouts_cmd::RolloutsArgs),
    /// Guards (automatic kill switches on an error rate or a Prometheus query): create, list,
    /// delete.
    Guards(rollouts_cmd::GuardsArgs),
    /// Change requests (four-eyes approvals): list, show with the diff, approve, reject.
    Requests(requests_cmd::RequestsArgs),
    /// Print the server's OpenAPI 3.1 document (what `GET /api/v1/openapi.json` serves).
    Openapi,
    /// Experiment calculator on summary numbers, offline: proportions, means, srm, adjust,
    /// sample-size.
    Stats(stats_cmd::StatsArgs),
}

const AFTER_HELP: &str = "\
Remote commands (flags, segments, envs, audit, tokens, import, export, seed, exposures,
experiments, erase-unit, webhooks, schedule, rollouts, guards, requests) talk
to a running server over its HTTP API and take these options before or after the subcommand:
  --server URL   the server [env: SWITCHYARD_SERVER] [default: http://127.0.0.1:8080]
  --token TOKEN  an API token [env: SWITCHYARD_TOKEN]
  --json         print the server's JSON instead of tables
Changes apply to a flag's current version (last write wins); add --if-version N to change
it only if it is still at version N.

Exit status:
  0  success
  1  the server refused the request (HTTP 4xx or 5xx), or `validate` found invalid files,
     or `eval` met invalid context lines
  2  usage error, unreadable file, or the server could not be reached
  3  the change was not applied: its environment requires approval, and it waits as a
     change request (switchyard requests list)";

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Flag files (.yaml, .yml or .json).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print diagnostics as a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

/// The subcommands that talk to a server, which take the remote options.
const REMOTE_COMMANDS: &[&str] = &[
    "flags",
    "segments",
    "envs",
    "audit",
    "tokens",
    "import",
    "export",
    "seed",
    "exposures",
];

/// Moves remote options given before a remote subcommand (`switchyard --server URL flags
/// list`) to just after it, where clap defines them (they are global within each remote
/// subcommand, so any later position works). Anything else is left for clap to judge.
fn hoist_remote_options(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut leading = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        let takes_value = arg == "--server" || arg == "--token";
        let inline = arg.starts_with("--server=") || arg.starts_with("--token=") || arg == "--json";
        if takes_value && i + 1 < args.len() {
            leading.extend_from_slice(&args[i..i + 2]);
            i += 2;
        } else if inline {
            leading.push(args[i].clone());
            i += 1;
        } else {
            break;
        }
    }
    let is_remote = args
        .get(i)
        .is_some_and(|a| REMOTE_COMMANDS.contains(&a.to_string_lossy().as_ref()));
    if leading.is_empty() || !is_remote {
        return args;
    }
    let mut out = vec![args[0].clone(), args[i].clone()];
    out.extend(leading);
    out.extend_from_slice(&args[i + 1..]);
    out
}

/// Writes a command's output to stdout. A reader that has gone away (`switchyard flags list |
/// head`) ends the command quietly, with success, as it ends other Unix tools, instead of the
/// panic `println!` raises; any other failure to write is reported and exits with 1.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output: {err}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(hoist_remote_options(std::env::args_os().collect()));
    let outcome = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Flags(args) => flags_cmd::run(&args),
        Command::Segments(args) => segments_cmd::segments(&args),
        Command::Envs(args) => segments_cmd::envs(&args),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Tokens(args) => tokens_cmd::run(&args),
        Command::Import(args) => transfer_cmd::import(&args),
        Command::Export(args) => transfer_cmd::export(&args),
        Command::Seed(args) => transfer_cmd::seed(&args),
        Command::Stats(args) => stats_cmd::run(&args),
        Command::Exposures(args) => exposures_cmd::run(&args),
        Command::Experiments(args) => experiments_cmd::run(&args),
        Command::EraseUnit(args) => experiments_cmd::erase(&args),
        Command::Webhooks(args) => webhooks_cmd::run(&args),
        Command::Schedule(args) => schedule_cmd::run(&args),
        Command::Rollouts(args) => rollouts_cmd::run(&args),
        Command::Guards(args) => rollouts_cmd::guards(&args),
        Command::Requests(args) => requests_cmd::run(&args),
        Command::Openapi => {
            out!("{}", switchyard_server::openapi::rendered());
            Ok(ExitCode::SUCCESS)
        }
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
                outln!("ok: {} ({} flags)", path.display(), ruleset.len());
            }
            Some(_) => {}
            None => invalid += 1,
        }
        all.extend(diagnostics);
    }
    if args.json {
        let items: Vec<serde_json::Value> = all.iter().map(diagnostic_json).collect();
        outln!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        for d in &all {
            outln!("{d}");
        }
        if invalid > 0 {
            let errors = all.iter().filter(|d| d.is_error()).count();
            outln!(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        hoist_remote_options(args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn remote_options_before_the_subcommand_move_after_it() {
        assert_eq!(
            hoisted(&["sy", "--server", "http://h", "--json", "flags", "list"]),
            ["sy", "flags", "--server", "http://h", "--json", "list"]
        );
        assert_eq!(
            hoisted(&["sy", "--token=t", "tokens", "list"]),
            ["sy", "tokens", "--token=t", "list"]
        );
        // Not a remote command, or nothing to move: untouched, for clap to judge.
        assert_eq!(
            hoisted(&["sy", "--server", "x", "validate", "f.yaml"]),
            ["sy", "--server", "x", "validate", "f.yaml"]
        );
        assert_eq!(hoisted(&["sy", "flags", "list"]), ["sy", "flags", "list"]);
        assert_eq!(hoisted(&["sy", "--server"]), ["sy", "--server"]);
    }

    #[test]
    fn the_remote_command_list_matches_the_cli() {
        let cli = <Cli as clap::CommandFactory>::command();
        for name in REMOTE_COMMANDS {
            let sub = cli.find_subcommand(name).expect("a subcommand");
            assert!(
                sub.get_arguments().any(|a| a.get_id() == "server"),
                "{name} takes --server"
            );
        }
    }
}
