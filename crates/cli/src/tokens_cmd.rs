//! `switchyard tokens ...`: create, list and revoke API tokens on a running server (admin
//! role). A new token's secret is printed once and never again.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_api_types::admin::{CreatedToken, NewToken, TokenInfo, TokenList};

use crate::remote::{segment, RemoteArgs};
use crate::table::{self, NONE};

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print it (only this once).
    Create(CreateArgs),
    /// List tokens, revoked ones included (never their secrets).
    List,
    /// Revoke a token by id (see `tokens list`); it stops working at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// What the token may do: sdk evaluates flags of one environment, viewer reads the admin
    /// API, editor also changes flags, admin also manages tokens.
    #[arg(long, value_name = "ROLE", value_parser = ["admin", "editor", "viewer", "sdk"])]
    role: String,
    /// The environment of an sdk token (required for sdk, refused for other roles).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// A name people recognise; it is the actor in the audit log. Default: ROLE-token-DATE.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// Token id (the ID column of `tokens list`).
    id: String,
}

/// What `tokens create --json` prints: the server's answer without the id.
#[derive(Serialize)]
struct CreatedJson<'a> {
    name: &'a str,
    role: &'a str,
    environment: Option<&'a str>,
    token: &'a str,
}

pub fn run(args: &TokensArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        TokensCommand::Create(a) => {
            let name = a.name.clone().unwrap_or_else(|| default_name(&a.role));
            let created: CreatedToken = client
                .post("/api/v1/tokens")
                .json(&NewToken {
                    name,
                    role: switchyard_api_types::Role::parse(&a.role).context("unknown role")?,
                    environment: a.env.clone(),
                })
                .send()
                .context("cannot create a token")?
                .parse()?;
            if json {
                let out = CreatedJson {
                    name: &created.name,
                    role: created.role.as_str(),
                    environment: created.environment.as_deref(),
                    token: &created.token,
                };
                outln!("{}", serde_json::to_string(&out)?);
            } else {
                let env = created
                    .environment
                    .as_deref()
                    .map(|e| format!(" for {e}"))
                    .unwrap_or_default();
                eprintln!(
                    "created {} token `{}`{env} (id {}); copy it now, it is not shown again:",
                    created.role, created.name, created.id
                );
                outln!("{}", created.token);
            }
        }
        TokensCommand::List => {
            let reply = client
                .get("/api/v1/tokens")
                .send()
                .context("cannot list tokens")?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let TokenList { tokens } = reply.parse()?;
            let rows: Vec<Vec<String>> = tokens.into_iter().map(row).collect();
            let headers = ["ID", "NAME", "ROLE", "ENV", "CREATED", "REVOKED"];
            out!("{}", table::render(&headers, &rows));
        }
        TokensCommand::Revoke(a) => {
            let reply = client
                .delete(format!("/api/v1/tokens/{}", segment(&a.id)))
                .send()
                .with_context(|| format!("cannot revoke token `{}`", a.id))?;
            if json {
                reply.print();
                return Ok(ExitCode::SUCCESS);
            }
            let token: TokenInfo = reply.parse()?;
            outln!("revoked token `{}` (id {})", token.name, token.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(t: TokenInfo) -> Vec<String> {
    vec![
        t.id,
        t.name,
        t.role.to_string(),
        t.environment.unwrap_or_else(|| NONE.to_owned()),
        t.created_at,
        t.revoked_at.unwrap_or_else(|| NONE.to_owned()),
    ]
}

fn default_name(role: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{role}-token-{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
