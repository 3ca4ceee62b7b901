//! `switchyard import` and `switchyard export`: a whole flag file into or out of a running
//! server. An export imports back unchanged.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use switchyard_api_types::admin::ImportResult;
use switchyard_engine::Format;

use crate::remote::{print_text, RemoteArgs};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Flag file (.yaml, .yml or .json): new flags are created, changed ones replaced,
    /// identical ones left alone, all or nothing.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format; default: from the -o file's extension, json with --json, else yaml.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<ExportFormat>,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Yaml,
    Json,
}

pub fn import(args: &ImportArgs) -> Result<ExitCode> {
    let shown = args.file.display().to_string();
    let content_type = match Format::from_path(&args.file) {
        Some(Format::Yaml) => "application/yaml",
        Some(Format::Json) => "application/json",
        None => bail!("cannot tell the format of {shown}: name it .yaml, .yml or .json"),
    };
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {shown}"))?;
    let client = args.remote.client()?;
    let reply = client
        .post("/api/v1/import")
        .query("reason", args.reason.as_ref())
        .text(content_type, text)
        .send()
        .map_err(|e| e.in_file(&shown))
        .with_context(|| format!("cannot import {shown}"))?;
    if args.remote.json {
        reply.print();
        return Ok(ExitCode::SUCCESS);
    }
    let result: ImportResult = reply.parse()?;
    summarize(&format!("imported {shown}"), &result);
    Ok(ExitCode::SUCCESS)
}

/// `switchyard seed`: create the example flags (and segments) that do not exist yet.
#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn seed(args: &SeedArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let reply = client
        .post("/api/v1/seed")
        .send()
        .context("cannot seed the example flags")?;
    if args.remote.json {
        reply.print();
        return Ok(ExitCode::SUCCESS);
    }
    let result: ImportResult = reply.parse()?;
    if result.created.is_empty() && result.segments.is_empty() {
        outln!("every example flag exists already; nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    summarize("seeded the example flags", &result);
    Ok(ExitCode::SUCCESS)
}

fn summarize(headline: &str, result: &ImportResult) {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    outln!(
        "{headline}: {} created, {} updated, {} unchanged, {} written",
        result.created.len(),
        result.updated.len(),
        result.unchanged.len(),
        plural(result.segments.len(), "segment"),
    );
    for (label, keys) in [
        ("created", &result.created),
        ("updated", &result.updated),
        ("segments", &result.segments),
    ] {
        if !keys.is_empty() {
            outln!("  {label}: {}", keys.join(", "));
        }
    }
}

pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    let from_file = args
        .output
        .as_deref()
        .and_then(Format::from_path)
        .map(|f| match f {
            Format::Yaml => ExportFormat::Yaml,
            Format::Json => ExportFormat::Json,
        });
    let format = match (args.format, args.remote.json) {
        (Some(ExportFormat::Yaml), true) => {
            bail!("--json asks for JSON but --format is yaml; drop one of them")
        }
        (Some(format), _) => format,
        (None, true) => ExportFormat::Json,
        (None, false) => from_file.unwrap_or(ExportFormat::Yaml),
    };
    let name = match format {
        ExportFormat::Yaml => "yaml",
        ExportFormat::Json => "json",
    };
    let client = args.remote.client()?;
    let reply = client
        .get("/api/v1/export")
        .query("format", Some(name))
        .send()
        .context("cannot export")?;
    match &args.output {
        None => print_text(reply.text()),
        Some(path) => {
            std::fs::write(path, reply.text())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({name})", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
