//! `switchyard audit`: who changed what, when and why, newest first, from a running server.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use switchyard_api_types::admin::AuditList;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::remote::RemoteArgs;
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes to this flag.
    #[arg(long, value_name = "KEY")]
    flag: Option<String>,
    /// Only changes made with this token: its name (as shown in the ACTOR column) or its id
    /// (`token:<id>`, as in `--json`; names can be reused once a token is revoked, ids never).
    #[arg(long, value_name = "NAME|ID")]
    actor: Option<String>,
    /// Only changes since this time: RFC 3339 (2026-01-31T09:00:00Z) or an age such as 30m,
    /// 12h or 7d.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// At most N entries (the server's default is 100).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(args: &AuditArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let since = args
        .since
        .as_deref()
        .map(|s| since(s, OffsetDateTime::now_utc()))
        .transpose()?;
    let reply = client
        .get("/api/v1/audit")
        .query("flag", args.flag.as_ref())
        .query("actor", args.actor.as_ref())
        .query("since", since)
        .query("limit", args.limit)
        .send()
        .context("cannot read the audit log")?;
    if args.remote.json {
        reply.print();
        return Ok(ExitCode::SUCCESS);
    }
    let AuditList { entries } = reply.parse()?;
    if entries.is_empty() {
        outln!("no audit entries match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = entries
        .into_iter()
        .map(|e| {
            vec![
                e.at,
                e.actor_name.unwrap_or(e.actor),
                e.action,
                e.subject,
                e.environment.unwrap_or_else(|| NONE.to_owned()),
                e.reason.unwrap_or_else(|| NONE.to_owned()),
            ]
        })
        .collect();
    let headers = ["AT", "ACTOR", "ACTION", "SUBJECT", "ENV", "REASON"];
    out!("{}", table::render(&headers, &rows));
    Ok(ExitCode::SUCCESS)
}

/// `--since` as RFC 3339: given as such, or as an age (`30m`, `12h`, `7d`, `2w`) before `now`.
fn since(text: &str, now: OffsetDateTime) -> Result<String> {
    let text = text.trim();
    if OffsetDateTime::parse(text, &Rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let unit_at = text.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = text.split_at(unit_at);
    let Ok(n) = number.parse::<i64>() else {
        bail!("--since `{text}` is neither an RFC 3339 time nor an age such as 30m, 12h or 7d");
    };
    let age = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("--since `{text}`: the unit must be s, m, h, d or w (as in 30m, 12h or 7d)"),
    };
    let at = now
        .checked_sub(age)
        .with_context(|| format!("--since `{text}` is too far back"))?;
    at.format(&Rfc3339)
        .with_context(|| format!("--since `{text}` is too far back"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let now = OffsetDateTime::parse("2026-02-01T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            since("2026-01-31T09:00:00Z", now).unwrap(),
            "2026-01-31T09:00:00Z"
        );
        assert_eq!(since("90m", now).unwrap(), "2026-02-01T10:30:00Z");
        assert_eq!(since("2d", now).unwrap(), "2026-01-30T12:00:00Z");
        assert!(since("yesterday", now).is_err());
        assert!(since("5y", now).is_err());
        assert!(since("é", now).is_err());
    }
}
