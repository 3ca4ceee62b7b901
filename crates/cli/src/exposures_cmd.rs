//! `switchyard exposures FLAG --env E`: units per variant of a flag, by first exposure (what
//! SDKs reported to `POST /sdk/v1/events`).

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use switchyard_api_types::admin::ExposureCounts;

use crate::remote::RemoteArgs;
use crate::table;

#[derive(Debug, Args)]
pub struct ExposuresArgs {
    /// Flag key.
    flag: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    env: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(args: &ExposuresArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let reply = client
        .get("/api/v1/exposures")
        .query("environment", Some(&args.env))
        .query("flag", Some(&args.flag))
        .send()
        .with_context(|| {
            format!(
                "cannot read the exposures of `{}` in {}",
                args.flag, args.env
            )
        })?;
    if args.remote.json {
        reply.print();
        return Ok(ExitCode::SUCCESS);
    }
    let counts: ExposureCounts = reply.parse()?;
    if counts.variants.is_empty() {
        outln!(
            "no unit has been exposed to `{}` in {} yet",
            counts.flag,
            counts.environment
        );
        return Ok(ExitCode::SUCCESS);
    }
    let total: i64 = counts.variants.iter().map(|v| v.units).sum();
    let rows: Vec<Vec<String>> = counts
        .variants
        .iter()
        .map(|v| {
            vec![
                v.variant.clone(),
                v.units.to_string(),
                format!("{:.2} %", 100.0 * v.units as f64 / total as f64),
            ]
        })
        .collect();
    out!("{}", table::render(&["VARIANT", "UNITS", "SHARE"], &rows));
    Ok(ExitCode::SUCCESS)
}
