//! `switchyard flags ...`: list, show, create and change flags on a running server through the
//! admin API. Tables for people, the server's JSON with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Map, Value};
use switchyard_api_types::admin::{
    Environment, FlagList, FlagResource, Reason, SetEnabled, SetRollout, SetTenant,
};
use switchyard_engine::document::ServeDef;
use switchyard_engine::source::Positions;
use switchyard_engine::{FieldPath, FlagDef, FlagType, Format, PathSegment};

use crate::remote::{segment, Client, RemoteArgs, RemoteError, Reply};
use crate::table::{self, yes_no, NONE};

#[derive(Debug, Args)]
pub struct FlagsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
enum FlagsCommand {
    /// List flags: key, type, enabled, killed, tags and version (for --env or the top level).
    List(ListArgs),
    /// Stale flags: serving one variant everywhere for N days, past their expected removal,
    /// archived but still required.
    Stale {
        /// Age threshold in days.
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
    /// Show one flag: its state in every environment and its definition.
    Get(GetArgs),
    /// Create a flag from a YAML or JSON file (one flag, or a flag document with one flag).
    Create(CreateArgs),
    /// Turn a flag on or off, at the top level or in one environment.
    Toggle(ToggleArgs),
    /// Kill switch on (serve the default variant), or off with --release.
    Kill(KillArgs),
    /// Set the percentage of units that get the fallthrough variant.
    Rollout(RolloutArgs),
    /// Archive a flag (kept but not served), or serve it again with --undo.
    Archive(ArchiveArgs),
    /// Create a flag from a file, or replace it if it exists (validated like `validate`).
    Apply(ApplyArgs),
    /// Delete a flag (its audit history stays).
    Delete(KeyArgs),
    /// Turn a flag on or off (or serve a variant) for one tenant / organization, or --clear.
    Tenant(TenantArgs),
    /// Replace a flag's individual targets from a YAML or JSON file (a list, or `targets:`).
    Targets(ListFileArgs),
    /// Replace a flag's rules from a YAML or JSON file (a list, or `rules:`).
    Rules(ListFileArgs),
    /// Copy a flag's configuration from one environment to another, showing the difference
    /// (only the difference with --dry-run).
    Promote {
        /// Flag key.
        key: String,
        /// The environment copied from.
        #[arg(long, value_name = "ENV")]
        from: String,
        /// The environment copied to.
        #[arg(long, value_name = "ENV")]
        to: String,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        /// Why (recorded in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// One operation on many flags in one transaction (all or none): archive, unarchive,
    /// enable, disable (--env for one environment), tag, untag (--tag).
    Bulk {
        /// The operation.
        op: String,
        /// The flags.
        #[arg(required = true)]
        keys: Vec<String>,
        /// For enable / disable: only in this environment.
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// For tag / untag: a tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Why (recorded on every flag's audit entry).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Evaluate a flag for one context and show why: each step, rule and condition checked,
    /// the bucket and threshold of rollouts and splits, prerequisites followed.
    Explain(crate::explain_cmd::ExplainArgs),
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// File holding the flag (.yaml, .yml or .json; `-` reads standard input).
    #[arg(short = 'f', long, value_name = "FILE")]
    file: PathBuf,
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Replace only if the flag is still at version N; without it, at the version read just
    /// before (a change made in between is refused, not overwritten).
    #[arg(long, value_name = "N")]
    if_version: Option<i64>,
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// Flag key.
    key: String,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["on", "off", "variant", "clear"])))]
struct TenantArgs {
    /// Flag key.
    key: String,
    /// The tenant (organization) id, as in the context's tenant attribute.
    tenant: String,
    /// On for this tenant, whatever the flag's own state.
    #[arg(long)]
    on: bool,
    /// Off for this tenant.
    #[arg(long)]
    off: bool,
    /// Serve this variant to the tenant.
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// Remove the tenant's override.
    #[arg(long)]
    clear: bool,
    /// Only in this environment; without it, the top level.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
struct ListFileArgs {
    /// Flag key.
    key: String,
    /// File with the list (.yaml, .yml or .json; `-` reads standard input).
    #[arg(short = 'f', long, value_name = "FILE")]
    file: PathBuf,
    /// Only in this environment; without it, the top level.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only flags with this tag.
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Show (and filter by) the state in this environment instead of the top level.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Only flags in this state.
    #[arg(long, value_name = "STATE",
          value_parser = ["enabled", "disabled", "killed", "archived", "active"])]
    state: Option<String>,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Flag key.
    key: String,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// File holding the flag (.yaml, .yml or .json).
    #[arg(short = 'f', long, value_name = "FILE")]
    file: PathBuf,
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// Options of every change to an existing flag.
#[derive(Debug, Args)]
struct WriteArgs {
    /// Why (recorded in the audit log).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Change the flag only if it is still at version N (sent as If-Match; see `flags get`).
    /// Without it the change applies to whatever the current version is: last write wins.
    #[arg(long, value_name = "N")]
    if_version: Option<i64>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("switch").required(true).args(["on", "off"])))]
struct ToggleArgs {
    /// Flag key.
    key: String,
    /// Turn the flag on.
    #[arg(long)]
    on: bool,
    /// Turn the flag off (it serves its default variant).
    #[arg(long)]
    off: bool,
    /// Only in this environment; without it, the top-level setting, used by every environment
    /// that does not override it.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
struct KillArgs {
    /// Flag key.
    key: String,
    /// Only in this environment; without it, everywhere.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Release the kill switch instead.
    #[arg(long)]
    release: bool,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
struct RolloutArgs {
    /// Flag key.
    key: String,
    /// Percentage of units (0 to 100, steps of 0.001; `25` or `25%`).
    #[arg(value_name = "PERCENT", value_parser = parse_percent, allow_negative_numbers = true)]
    percent: f64,
    /// Only in this environment; without it, the top-level fallthrough.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Variant rolled out; default: the fallthrough's current variant, or `on`.
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, Args)]
struct ArchiveArgs {
    /// Flag key.
    key: String,
    /// Unarchive: serve the flag again.
    #[arg(long)]
    undo: bool,
    #[command(flatten)]
    write: WriteArgs,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    number
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite())
        .ok_or_else(|| format!("`{text}` is not a percentage such as 25 or 12.5%"))
}

pub fn run(args: &FlagsArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match &args.command {
        FlagsCommand::List(a) => list(&client, json, a),
        FlagsCommand::Get(a) => get(&client, json, a),
        FlagsCommand::Create(a) => create(&client, json, a),
        FlagsCommand::Toggle(a) => toggle(&client, json, a),
        FlagsCommand::Kill(a) => kill(&client, json, a),
        FlagsCommand::Rollout(a) => rollout(&client, json, a),
        FlagsCommand::Archive(a) => archive(&client, json, a),
        FlagsCommand::Apply(a) => apply(&client, json, a),
        FlagsCommand::Delete(a) => delete(&client, json, a),
        FlagsCommand::Tenant(a) => tenant(&client, json, a),
        FlagsCommand::Targets(a) => replace_list(&client, json, a, "targets"),
        FlagsCommand::Rules(a) => replace_list(&client, json, a, "rules"),
        FlagsCommand::Explain(a) => crate::explain_cmd::run(&client, json, a),
        FlagsCommand::Stale { days } => stale(&client, json, *days),
        FlagsCommand::Promote {
            key,
            from,
            to,
            dry_run,
            reason,
        } => promote(&client, json, key, (from, to), *dry_run, reason),
        FlagsCommand::Bulk {
            op,
            keys,
            env,
            tags,
            reason,
        } => bulk(&client, json, op, keys, env, tags, reason),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn stale(client: &Client, json: bool, days: i64) -> Result<()> {
    let reply = client
        .get("/api/v1/reports/stale-flags")
        .query("days", Some(days))
        .send()
        .context("cannot read the stale-flag report")?;
    if json {
        reply.print();
        return Ok(());
    }
    let report: switchyard_api_types::admin::StaleReport = reply.parse()?;
    if report.flags.is_empty() {
        outln!("no stale flags (threshold {} days)", report.days);
        return Ok(());
    }
    for f in &report.flags {
        outln!(
            "{} (owner {}, {} days old)",
            f.key,
            f.owner.as_deref().unwrap_or("-"),
            f.age_days
        );
        for r in &f.reasons {
            outln!("  - {r}");
        }
    }
    Ok(())
}

fn flag_path(key: &str, env: Option<&str>, action: &str) -> String {
    match env {
        Some(env) => format!(
            "/api/v1/flags/{}/environments/{}/{action}",
            segment(key),
            segment(env)
        ),
        None => format!("/api/v1/flags/{}/{action}", segment(key)),
    }
}

fn place(env: Option<&str>) -> String {
    env.map_or_else(|| "at the top level".to_owned(), |e| format!("in {e}"))
}

/// The declared type, else the type of the first value found (variants, default, rules,
/// fallthrough), else boolean: close to the compiler's inference, enough for a listing.
fn type_of(def: &FlagDef) -> &'static str {
    if let Some(t) = def.flag_type {
        return t.as_str();
    }
    let variants = def
        .variants
        .iter()
        .flat_map(|v| v.iter().map(|(_, v, _)| v));
    let rules = def
        .targeting
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.value.as_ref());
    let fallthrough = def
        .targeting
        .fallthrough
        .iter()
        .filter_map(|s| s.value.as_ref());
    variants
        .chain(def.targeting.default_value.as_ref())
        .chain(rules)
        .chain(fallthrough)
        .find_map(FlagType::of_value)
        .map_or("boolean", FlagType::as_str)
}

fn list(client: &Client, json: bool, args: &ListArgs) -> Result<()> {
    let reply = client
        .get("/api/v1/flags")
        .query("tag", args.tag.as_ref())
        .query("environment", args.env.as_ref())
        .query("state", args.state.as_ref())
        .send()
        .context("cannot list flags")?;
    if json {
        reply.print();
        return Ok(());
    }
    let FlagList { flags } = reply.parse()?;
    if flags.is_empty() {
        outln!("no flags match");
        return Ok(());
    }
    let env = args.env.as_deref();
    let rows: Vec<Vec<String>> = flags
        .iter()
        .map(|f| {
            let def = &f.definition;
            let (enabled, killed) = def.state_in(env);
            let enabled = match (f.archived, enabled) {
                (true, _) => "no (archived)".to_owned(),
                (false, on) => yes_no(on),
            };
            let tags = match def.tags.is_empty() {
                true => NONE.to_owned(),
                false => def.tags.join(","),
            };
            vec![
                f.key.clone(),
                type_of(def).to_owned(),
                enabled,
                yes_no(killed),
                tags,
                f.version.to_string(),
            ]
        })
        .collect();
    let headers = ["KEY", "TYPE", "ENABLED", "KILLED", "TAGS", "VERSION"];
    out!("{}", table::render(&headers, &rows));
    Ok(())
}

fn describe_serve(serve: &ServeDef) -> String {
    let what = if let Some(variant) = &serve.variant {
        variant.clone()
    } else if let Some(value) = &serve.value {
        format!("value {value}")
    } else if let Some(split) = &serve.split {
        let parts: Vec<String> = split.iter().map(|(k, w)| format!("{k} {w}%")).collect();
        format!("split {}", parts.join(" / "))
    } else {
        NONE.to_owned()
    };
    match serve.percentage {
        Some(p) => format!("{p}% {what}"),
        None => what,
    }
}

fn fallthrough_in(def: &FlagDef, env: Option<&str>) -> String {
    let e = env.and_then(|e| def.environments.get(e));
    if let Some(variant) = e.and_then(|e| e.variant.as_ref()) {
        return format!("everyone: {variant}");
    }
    if let Some(value) = e.and_then(|e| e.value.as_ref()) {
        return format!("everyone: value {value}");
    }
    match (
        e.and_then(|e| e.fallthrough.as_ref()),
        &def.targeting.fallthrough,
    ) {
        (Some(serve), _) | (None, Some(serve)) => describe_serve(serve),
        (None, None) => match def.percentage {
            Some(p) => format!("{p}% true"),
            None => NONE.to_owned(),
        },
    }
}

fn get(client: &Client, json: bool, args: &GetArgs) -> Result<()> {
    let reply = client
        .get(format!("/api/v1/flags/{}", segment(&args.key)))
        .send()
        .with_context(|| format!("cannot get flag `{}`", args.key))?;
    if json {
        reply.print();
        return Ok(());
    }
    let flag: FlagResource = reply.parse()?;
    let environments: Vec<Environment> = client
        .get("/api/v1/environments")
        .send()
        .context("cannot list environments")?
        .parse()?;
    let def = &flag.definition;
    let mut fields = vec![
        ("key", flag.key.clone()),
        ("version", flag.version.to_string()),
    ];
    let optional = [
        ("name", def.name.clone()),
        ("description", def.description.clone()),
        ("owner", def.owner.clone()),
    ];
    fields.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    fields.push(("type", type_of(def).to_owned()));
    if !def.tags.is_empty() {
        fields.push(("tags", def.tags.join(", ")));
    }
    fields.push(("archived", yes_no(flag.archived)));
    fields.push(("created", flag.created_at.clone()));
    fields.push(("updated", flag.updated_at.clone()));
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (name, value) in &fields {
        outln!("{name:<width$}  {value}");
    }
    outln!();

    let mut names: Vec<&str> = environments.iter().map(|e| e.name.as_str()).collect();
    for name in def.environments.keys() {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let row = |label: String, env: Option<&str>| {
        let (enabled, killed) = def.state_in(env);
        vec![
            label,
            yes_no(enabled),
            yes_no(killed),
            fallthrough_in(def, env),
        ]
    };
    let mut rows = vec![row("(top level)".to_owned(), None)];
    rows.extend(names.iter().map(|n| row((*n).to_owned(), Some(n))));
    let headers = ["ENVIRONMENT", "ENABLED", "KILLED", "FALLTHROUGH"];
    out!("{}", table::render(&headers, &rows));
    outln!();

    let value = serde_json::to_value(def).context("cannot render the definition")?;
    outln!("definition:");
    for line in switchyard_engine::source::to_yaml(&value)
        .lines()
        .filter(|l| *l != "---")
    {
        outln!("  {line}");
    }
    Ok(())
}

/// The one flag in a parsed file: its fields, and where it sits in the file (for line numbers).
fn one_flag(value: Value, shown: &str) -> Result<(Map<String, Value>, FieldPath)> {
    let root = FieldPath::root();
    let Value::Object(mut top) = value else {
        bail!(
            "expected one flag definition (an object with `key`) or a flag document with one flag"
        );
    };
    let Some(flags) = top.remove("flags") else {
        return Ok((top, root));
    };
    let has_segments = top
        .get("segments")
        .is_some_and(|s| s.as_object().map_or(!s.is_null(), |m| !m.is_empty()));
    if has_segments {
        bail!(
            "it also defines segments, which `flags create` does not send; use `switchyard import {shown}`"
        );
    }
    let flags_path = root.key("flags");
    let mut found = match flags {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (item, flags_path.index(i), None))
            .collect::<Vec<_>>(),
        Value::Object(map) => map
            .into_iter()
            .map(|(key, item)| (item, flags_path.key(key.clone()), Some(key)))
            .collect(),
        _ => bail!("`flags` must be a list of flags or a map of flag key to flag"),
    };
    if found.len() != 1 {
        bail!(
            "it holds {} flags; `flags create` takes exactly one (`switchyard import {shown}` takes many)",
            found.len()
        );
    }
    match found.pop() {
        Some((Value::Object(mut flag), path, listed_as)) => {
            if let Some(key) = listed_as {
                flag.entry("key").or_insert(Value::String(key));
            }
            Ok((flag, path))
        }
        _ => bail!("the flag must be an object"),
    }
}

/// Reads a path as the server prints it (`rules[0].conditions[1]["odd key"]`).
fn parse_path(text: &str) -> Option<Vec<PathSegment>> {
    let mut segments = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            if inner.starts_with('"') {
                let mut de = serde_json::Deserializer::from_str(inner).into_iter::<String>();
                let key = de.next()?.ok()?;
                rest = inner[de.byte_offset()..].strip_prefix(']')?;
                segments.push(PathSegment::Key(key));
            } else {
                let (index, after) = inner.split_once(']')?;
                segments.push(PathSegment::Index(index.parse().ok()?));
                rest = after;
            }
        } else {
            let body = match (segments.is_empty(), rest.strip_prefix('.')) {
                (true, _) => rest,
                (false, Some(body)) => body,
                (false, None) => return None,
            };
            let end = body.find(['.', '[']).unwrap_or(body.len());
            if end == 0 {
                return None;
            }
            segments.push(PathSegment::Key(body[..end].to_owned()));
            rest = &body[end..];
        }
    }
    Some(segments)
}

/// Gives the server's problems (paths relative to the flag) the lines they have in the file.
fn with_lines(err: RemoteError, positions: &Positions, base: &FieldPath, key: &str) -> RemoteError {
    let RemoteError::Refused(mut failure) = err else {
        return err;
    };
    for problem in &mut failure.problems {
        if problem.line.is_some() || problem.flag.as_deref().is_some_and(|f| f != key) {
            continue;
        }
        if let Some(relative) = parse_path(&problem.path) {
            let mut full = base.segments().to_vec();
            full.extend(relative);
            problem.line = positions.line_of(&FieldPath::from(full));
        }
    }
    RemoteError::Refused(failure)
}

/// Reads a YAML or JSON file (`-`: standard input), with the positions of its fields.
pub fn read_source(file: &std::path::Path) -> Result<(switchyard_engine::source::Source, String)> {
    let shown = file.display().to_string();
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?
    };
    let format = Format::from_path(file).unwrap_or(if text.trim_start().starts_with(['{', '[']) {
        Format::Json
    } else {
        Format::Yaml
    });
    let source = switchyard_engine::source::parse(&text, format).map_err(|d| match d.line {
        Some(line) => anyhow!("cannot read {shown}:{line}: {}", d.message),
        None => anyhow!("cannot read {shown}: {}", d.message),
    })?;
    Ok((source, shown))
}

fn create(client: &Client, json: bool, args: &CreateArgs) -> Result<()> {
    let (source, shown) = read_source(&args.file)?;
    let (mut body, base) = one_flag(source.value, &shown)
        .with_context(|| format!("cannot create a flag from {shown}"))?;
    let key = body
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(reason) = &args.reason {
        body.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    let reply = client
        .post("/api/v1/flags")
        .json(&body)
        .send()
        .map_err(|e| with_lines(e, &source.positions, &base, &key).in_file(&shown))
        .with_context(|| match key.as_str() {
            "" => format!("cannot create a flag from {shown}"),
            key => format!("cannot create flag `{key}`"),
        })?;
    if json {
        reply.print();
        return Ok(());
    }
    let flag: FlagResource = reply.parse()?;
    outln!("created flag `{}` (version {})", flag.key, flag.version);
    Ok(())
}

/// Prints a changed flag: the server's JSON, or a line saying what changed and notes.
fn changed(
    reply: &Reply,
    json: bool,
    summary: impl FnOnce(&FlagResource) -> (String, Vec<String>),
) -> Result<()> {
    if json {
        reply.print();
        return Ok(());
    }
    let flag: FlagResource = reply.parse()?;
    let (line, notes) = summary(&flag);
    if flag.unchanged {
        outln!(
            "{}: already {line}; nothing changed (version {})",
            flag.key,
            flag.version
        );
    } else {
        outln!("{}: {line} (version {})", flag.key, flag.version);
    }
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

fn toggle(client: &Client, json: bool, args: &ToggleArgs) -> Result<()> {
    let enabled = args.on;
    let env = args.env.as_deref();
    let word = if enabled { "on" } else { "off" };
    let reply = client
        .put(flag_path(&args.key, env, "enabled"))
        .if_match(args.write.if_version)
        .json(&SetEnabled {
            enabled,
            reason: args.write.reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot turn `{}` {word} {}", args.key, place(env)))?;
    changed(&reply, json, |flag| {
        let def = &flag.definition;
        let mut notes = Vec::new();
        if env.is_none() {
            for (name, e) in &def.environments {
                if let Some(own) = e.enabled.filter(|own| *own != enabled) {
                    let own = if own { "on" } else { "off" };
                    notes.push(format!(
                        "{name} overrides this (it is {own} there); change it with --env {name}"
                    ));
                }
            }
        }
        if enabled && def.state_in(env).1 {
            notes.push(format!(
                "the flag is killed {}; it serves its default until the kill switch is released",
                place(env)
            ));
        }
        (format!("{word} {}", place(env)), notes)
    })
}

fn kill(client: &Client, json: bool, args: &KillArgs) -> Result<()> {
    let env = args.env.as_deref();
    let path = flag_path(&args.key, env, "kill");
    let call = match args.release {
        true => client.delete(path),
        false => client.post(path),
    };
    let reply = call
        .if_match(args.write.if_version)
        .json(&Reason {
            reason: args.write.reason.clone(),
        })
        .send()
        .with_context(|| match args.release {
            true => format!(
                "cannot release the kill switch of `{}` {}",
                args.key,
                place(env)
            ),
            false => format!("cannot kill `{}` {}", args.key, place(env)),
        })?;
    changed(&reply, json, |flag| {
        let def = &flag.definition;
        let mut notes = Vec::new();
        if !args.release {
            let what = match env {
                Some(e) => format!("killed in {e}"),
                None => "killed everywhere".to_owned(),
            };
            return (what, notes);
        }
        match env {
            Some(_) if def.targeting.kill_switch == Some(true) => notes.push(
                "the top-level kill switch is still on, so the flag stays killed everywhere; \
                 release it without --env"
                    .to_owned(),
            ),
            Some(_) => {}
            None => {
                for (name, e) in &def.environments {
                    if e.kill_switch == Some(true) {
                        notes.push(format!(
                            "still killed in {name}; release it with --env {name}"
                        ));
                    }
                }
            }
        }
        (format!("kill switch released {}", place(env)), notes)
    })
}

fn rollout(client: &Client, json: bool, args: &RolloutArgs) -> Result<()> {
    let env = args.env.as_deref();
    let reply = client
        .put(flag_path(&args.key, env, "rollout"))
        .if_match(args.write.if_version)
        .json(&SetRollout {
            percentage: args.percent,
            variant: args.variant.clone(),
            reason: args.write.reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot set the rollout of `{}` {}", args.key, place(env)))?;
    changed(&reply, json, |flag| {
        let def = &flag.definition;
        let serve = env
            .and_then(|e| def.environments.get(e))
            .and_then(|e| e.fallthrough.as_ref())
            .or(def.targeting.fallthrough.as_ref());
        let what = serve.map_or_else(|| format!("{}%", args.percent), describe_serve);
        (format!("fallthrough {what} {}", place(env)), Vec::new())
    })
}

fn archive(client: &Client, json: bool, args: &ArchiveArgs) -> Result<()> {
    let action = if args.undo { "unarchive" } else { "archive" };
    let reply = client
        .post(flag_path(&args.key, None, action))
        .if_match(args.write.if_version)
        .json(&Reason {
            reason: args.write.reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot {action} `{}`", args.key))?;
    changed(&reply, json, |_| {
        let what = if args.undo {
            "unarchived, served again"
        } else {
            "archived, no longer served"
        };
        (what.to_owned(), Vec::new())
    })
}

fn promote(
    client: &Client,
    json: bool,
    key: &str,
    (from, to): (&str, &str),
    dry_run: bool,
    reason: &Option<String>,
) -> Result<()> {
    let reply = client
        .post(flag_path(key, None, "promote"))
        .json(&switchyard_api_types::changes::PromoteRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            dry_run,
            reason: reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot promote `{key}` from {from} to {to}"))?;
    if json {
        reply.print();
        return Ok(());
    }
    let r: switchyard_api_types::changes::PromoteResult = reply.parse()?;
    if r.changes.is_empty() {
        outln!("{key}: {to} already has {from}'s configuration; nothing to promote");
        return Ok(());
    }
    let show = |v: &Option<Value>| v.as_ref().map_or("~".to_owned(), Value::to_string);
    let rows: Vec<Vec<String>> = r
        .changes
        .iter()
        .map(|c| vec![c.path.clone(), show(&c.before), show(&c.after)])
        .collect();
    out!(
        "{}",
        crate::table::render(&["FIELD", "BEFORE", "AFTER"], &rows)
    );
    if r.applied {
        outln!("promoted {key} from {from} to {to} (version {})", r.version);
    } else {
        outln!("dry run: nothing changed (run without --dry-run to promote)");
    }
    Ok(())
}

fn bulk(
    client: &Client,
    json: bool,
    op: &str,
    keys: &[String],
    env: &Option<String>,
    tags: &[String],
    reason: &Option<String>,
) -> Result<()> {
    let reply = client
        .post("/api/v1/bulk/flags")
        .json(&switchyard_api_types::changes::BulkChange {
            flags: keys.to_vec(),
            op: op.to_owned(),
            environment: env.clone(),
            tags: tags.to_vec(),
            reason: reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot {op} {} flags", keys.len()))?;
    if json {
        reply.print();
        return Ok(());
    }
    let r: switchyard_api_types::changes::BulkResult = reply.parse()?;
    if r.changed {
        outln!("{op}: {} flags changed in one transaction", r.flags.len());
    } else {
        outln!("{op}: nothing to change");
    }
    Ok(())
}

/// `flags apply -f FILE`: create the flag, or replace it at the version just read (so a
/// change made in between is refused, not overwritten), or at `--if-version`.
fn apply(client: &Client, json: bool, args: &ApplyArgs) -> Result<()> {
    let (source, shown) = read_source(&args.file)?;
    let (mut body, base) =
        one_flag(source.value, &shown).with_context(|| format!("cannot apply {shown}"))?;
    let key = body
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if key.is_empty() {
        bail!("cannot apply {shown}: the flag has no `key`");
    }
    if let Some(reason) = &args.reason {
        body.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    let path = format!("/api/v1/flags/{}", segment(&key));
    let current = match client.get(path.clone()).send() {
        Ok(reply) => Some(reply.parse::<FlagResource>()?.version),
        Err(RemoteError::Refused(failure)) if failure.status == 404 => None,
        Err(err) => return Err(err).with_context(|| format!("cannot read flag `{key}`")),
    };
    let (call, verb) = match current {
        None => (client.post("/api/v1/flags"), "created"),
        Some(version) => (
            client
                .put(path)
                .if_match(Some(args.if_version.unwrap_or(version))),
            "replaced",
        ),
    };
    let reply = call
        .json(&body)
        .send()
        .map_err(|e| with_lines(e, &source.positions, &base, &key).in_file(&shown))
        .with_context(|| format!("cannot apply flag `{key}`"))?;
    if json {
        reply.print();
        return Ok(());
    }
    let flag: FlagResource = reply.parse()?;
    if flag.unchanged {
        outln!(
            "{}: already as in {shown}; nothing changed (version {})",
            flag.key,
            flag.version
        );
    } else {
        outln!("{verb} flag `{}` (version {})", flag.key, flag.version);
    }
    Ok(())
}

fn delete(client: &Client, json: bool, args: &KeyArgs) -> Result<()> {
    let reply = client
        .delete(format!("/api/v1/flags/{}", segment(&args.key)))
        .if_match(args.write.if_version)
        .json(&Reason {
            reason: args.write.reason.clone(),
        })
        .send()
        .with_context(|| format!("cannot delete `{}`", args.key))?;
    if json {
        reply.print();
    } else {
        outln!("deleted flag `{}`", args.key);
    }
    Ok(())
}

fn tenant(client: &Client, json: bool, args: &TenantArgs) -> Result<()> {
    let env = args.env.as_deref();
    let path = flag_path(
        &args.key,
        env,
        &format!("tenants/{}", segment(&args.tenant)),
    );
    let call = if args.clear {
        client.delete(path).json(&Reason {
            reason: args.write.reason.clone(),
        })
    } else {
        client.put(path).json(&SetTenant {
            enabled: (args.on || args.off).then_some(args.on),
            variant: args.variant.clone(),
            reason: args.write.reason.clone(),
        })
    };
    let what = match (&args.variant, args.on, args.clear) {
        (_, _, true) => "override removed".to_owned(),
        (Some(v), _, _) => format!("serves `{v}`"),
        (None, true, _) => "on".to_owned(),
        (None, false, _) => "off".to_owned(),
    };
    let reply = call
        .if_match(args.write.if_version)
        .send()
        .with_context(|| {
            format!(
                "cannot change `{}` for tenant `{}` {}",
                args.key,
                args.tenant,
                place(env)
            )
        })?;
    changed(&reply, json, |_| {
        (
            format!("for tenant `{}`: {what} {}", args.tenant, place(env)),
            Vec::new(),
        )
    })
}

/// `flags targets` / `flags rules`: replace the list from a file.
fn replace_list(client: &Client, json: bool, args: &ListFileArgs, what: &str) -> Result<()> {
    let (source, shown) = read_source(&args.file)?;
    let list = match source.value {
        Value::Array(items) => Value::Array(items),
        Value::Object(mut map) => match map.remove(what) {
            Some(list @ Value::Array(_)) => list,
            _ => bail!("{shown}: expected a list of {what}, or an object with a `{what}` list"),
        },
        _ => bail!("{shown}: expected a list of {what}, or an object with a `{what}` list"),
    };
    let n = list.as_array().map_or(0, Vec::len);
    let mut body = Map::new();
    body.insert(what.to_owned(), list);
    if let Some(reason) = &args.write.reason {
        body.insert("reason".to_owned(), Value::String(reason.clone()));
    }
    let env = args.env.as_deref();
    let reply = client
        .put(flag_path(&args.key, env, what))
        .if_match(args.write.if_version)
        .json(&body)
        .send()
        .map_err(|e| e.in_file(&shown))
        .with_context(|| format!("cannot replace the {what} of `{}` {}", args.key, place(env)))?;
    changed(&reply, json, |_| {
        (format!("{n} {what} {}", place(env)), Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_read_back() {
        let key = |k: &str| PathSegment::Key(k.to_owned());
        assert_eq!(
            parse_path("rules[0].conditions[12].operator"),
            Some(vec![
                key("rules"),
                PathSegment::Index(0),
                key("conditions"),
                PathSegment::Index(12),
                key("operator"),
            ])
        );
        assert_eq!(
            parse_path(r#"environments["eu west"].enabled"#),
            Some(vec![key("environments"), key("eu west"), key("enabled")])
        );
        assert_eq!(parse_path(""), Some(vec![]));
        assert_eq!(parse_path("a..b"), None);
        assert_eq!(parse_path("a[x]"), None);
        // The server's own rendering round-trips.
        let path = FieldPath::root()
            .key("tenants")
            .key("a.b")
            .index(3)
            .key("x");
        let segments = parse_path(&path.to_string()).unwrap();
        assert_eq!(FieldPath::from(segments), path);
    }

    #[test]
    fn one_flag_accepts_a_flag_or_a_one_flag_document() {
        let (flag, at) = one_flag(serde_json::json!({"key": "a"}), "f").unwrap();
        assert_eq!(
            (flag["key"].as_str(), at.to_string()),
            (Some("a"), "(document)".to_owned())
        );
        let (_, at) = one_flag(serde_json::json!({"flags": [{"key": "a"}]}), "f").unwrap();
        assert_eq!(at.to_string(), "flags[0]");
        let (flag, at) = one_flag(serde_json::json!({"flags": {"b": {}}}), "f").unwrap();
        assert_eq!(
            (flag["key"].as_str(), at.to_string()),
            (Some("b"), "flags.b".to_owned())
        );
        let err = one_flag(serde_json::json!({"flags": [{}, {}]}), "f").unwrap_err();
        assert!(err.to_string().contains("holds 2 flags"), "{err}");
        assert!(one_flag(serde_json::json!([1]), "f").is_err());
    }

    #[test]
    fn percentages_accept_a_percent_sign() {
        assert_eq!(parse_percent("25"), Ok(25.0));
        assert_eq!(parse_percent("12.5%"), Ok(12.5));
        assert!(parse_percent("half").is_err());
    }
}
