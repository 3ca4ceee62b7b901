//! The remote admin commands (`flags`, `audit`, `tokens`, `import`, `export`) against the real
//! binary serving on a free port with a temporary SQLite store; the server is stopped when the
//! test ends, pass or fail.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const ADMIN: &str = "admin-token-0123456789";

/// A running `switchyard serve`; dropping it kills the process.
struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command with no `SWITCHYARD_*` or proxy settings inherited from the caller.
fn clean_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("SWITCHYARD_") || upper.ends_with("_PROXY") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let mut child = clean_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &db])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // The guard exists before the first read, so a failed start still kills the process.
    let mut server = Server {
        child,
        url: String::new(),
        dir,
    };
    let mut lines = BufReader::new(stdout).lines();
    server.url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    break url.trim().to_owned();
                }
            }
            _ => panic!("the server stopped before printing `listening on`"),
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    server
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// The whitespace-separated cells of the table row whose first cell is `first`.
    fn row(&self, first: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&first))
            .unwrap_or_else(|| panic!("no row `{first}` in:\n{}", self.stdout))
    }
}

/// Runs the CLI against `server` with `token` from the environment variables.
fn cli(server: &Server, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = clean_command();
    cmd.args(args).env("SWITCHYARD_SERVER", &server.url);
    if let Some(token) = token {
        cmd.env("SWITCHYARD_TOKEN", token);
    }
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("the CLI runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

#[track_caller]
fn ok(out: Out) -> Out {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

#[test]
fn a_session_of_flag_changes_over_http() {
    let server = start();
    let admin = Some(ADMIN);

    // List: a table of the example flags, and the server's JSON.
    let out = ok(cli(&server, admin, &["flags", "list"]));
    let header = out.stdout.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["KEY", "TYPE", "ENABLED", "KILLED", "TAGS", "VERSION"]
    );
    assert_eq!(
        out.row("carrier-quotes-api"),
        [
            "carrier-quotes-api",
            "boolean",
            "yes",
            "no",
            "external-api,shipping",
            "1"
        ]
    );
    assert_eq!(out.row("search-page-size")[1], "number");
    assert_eq!(out.row("legacy-cart-endpoint")[2..4], ["no", "(archived)"]);
    // Aligned: every row's last cell starts under VERSION.
    let column = header.find("VERSION").unwrap();
    for line in out.stdout.lines() {
        let last = line.split_whitespace().last().unwrap();
        assert_eq!(line.len() - last.len(), column, "aligned:\n{}", out.stdout);
    }
    let listed = ok(cli(&server, admin, &["flags", "list", "--json"])).json();
    let keys: Vec<&str> = listed["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 12, "{keys:?}");
    let killed = ok(cli(
        &server,
        admin,
        &["flags", "list", "--env", "production", "--state", "killed"],
    ));
    assert_eq!(killed.row("carrier-quotes-api")[3], "yes");
    assert!(
        !killed.stdout.contains("checkout-redesign"),
        "{}",
        killed.stdout
    );

    // Get: per-environment state and the definition.
    let out = ok(cli(&server, admin, &["flags", "get", "checkout-redesign"]));
    assert_eq!(out.row("version"), ["version", "1"]);
    assert_eq!(
        out.row("production"),
        ["production", "yes", "no", "5%", "on"]
    );
    assert_eq!(out.row("development")[3..], ["everyone:", "on"]);
    assert!(out.stdout.contains("definition:\n"), "{}", out.stdout);
    let got = ok(cli(
        &server,
        admin,
        &["flags", "get", "checkout-redesign", "--json"],
    ))
    .json();
    assert_eq!(got["definition"]["owner"], "team-checkout");
    let missing = cli(&server, admin, &["flags", "get", "no-such-flag"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr,
        "error: cannot get flag `no-such-flag`: flag `no-such-flag` was not found\n"
    );

    // Create from a YAML flag document holding one flag.
    let dir = server.dir.path();
    let file = write(
        dir,
        "beta-banner.yaml",
        "# the banner\nflags:\n  - key: beta-banner\n    name: Beta banner\n    tags: [ui, beta]\n    environments:\n      production: {enabled: false}\n",
    );
    let out = ok(cli(
        &server,
        admin,
        &["flags", "create", "-f", &file, "--reason", "new banner"],
    ));
    assert_eq!(out.stdout, "created flag `beta-banner` (version 1)\n");
    let again = cli(&server, admin, &["flags", "create", "-f", &file]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    // An invalid flag: exit 1, every problem on its own line with its line in the file.
    let bad = write(
        dir,
        "bad.yaml",
        "key: broken\nrules:\n  - id: r1\n    conditions:\n      - {attribute: plan, operator: sounds_like, value: gold}\n    variant: \"on\"\nfallthrough:\n  variant: maybe\n",
    );
    let out = cli(&server, admin, &["flags", "create", "-f", &bad]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "error: cannot create flag `broken`: 2 problems:");
    assert!(
        lines[1].starts_with("  rules[0].conditions[0].operator: unknown operator `sounds_like`")
            && lines[1].ends_with(&format!("({bad}:5)")),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines[2],
        format!("  fallthrough.variant: unknown variant `maybe`; the flag's variants are: on, off ({bad}:8)")
    );
    assert_eq!(lines.len(), 3, "{}", out.stderr);

    // Toggle per environment and at the top level.
    let out = ok(cli(
        &server,
        admin,
        &[
            "flags",
            "toggle",
            "beta-banner",
            "--on",
            "--env",
            "production",
            "--reason",
            "launch",
        ],
    ));
    assert_eq!(out.stdout, "beta-banner: on in production (version 2)\n");
    let out = ok(cli(
        &server,
        admin,
        &[
            "flags",
            "toggle",
            "beta-banner",
            "--off",
            "--env",
            "staging",
        ],
    ));
    assert_eq!(out.stdout, "beta-banner: off in staging (version 3)\n");
    let staging = ok(cli(
        &server,
        admin,
        &["flags", "list", "--env", "staging", "--tag", "beta"],
    ));
    assert_eq!(staging.row("beta-banner")[2], "no");
    let production = ok(cli(
        &server,
        admin,
        &["flags", "list", "--env", "production", "--tag", "beta"],
    ));
    assert_eq!(production.row("beta-banner")[2], "yes");
    let out = ok(cli(
        &server,
        admin,
        &["flags", "toggle", "beta-banner", "--on"],
    ));
    assert_eq!(out.stdout, "beta-banner: on at the top level (version 4)\n");
    assert_eq!(
        out.stderr,
        "note: staging overrides this (it is off there); change it with --env staging\n"
    );
    let usage = cli(&server, admin, &["flags", "toggle", "beta-banner"]);
    assert_eq!(usage.code, 2, "--on or --off is required");

    // Kill switch in one environment, then everywhere, and release both.
    let out = ok(cli(
        &server,
        admin,
        &[
            "flags",
            "kill",
            "beta-banner",
            "--env",
            "production",
            "--reason",
            "error spike",
        ],
    ));
    assert_eq!(
        out.stdout,
        "beta-banner: killed in production (version 5)\n"
    );
    let killed = ok(cli(
        &server,
        admin,
        &["flags", "list", "--env", "production", "--state", "killed"],
    ));
    assert_eq!(killed.row("beta-banner")[3], "yes");
    let json = ok(cli(
        &server,
        admin,
        &["flags", "kill", "beta-banner", "--json"],
    ))
    .json();
    assert_eq!(json["definition"]["killSwitch"], true);
    assert_eq!(json["version"], 6);
    let out = ok(cli(
        &server,
        admin,
        &["flags", "kill", "beta-banner", "--release"],
    ));
    assert_eq!(
        out.stdout,
        "beta-banner: kill switch released at the top level (version 7)\n"
    );
    assert!(out
        .stderr
        .contains("still killed in production; release it with --env production"));
    ok(cli(
        &server,
        admin,
        &[
            "flags",
            "kill",
            "beta-banner",
            "--release",
            "--env",
            "production",
            "--reason",
            "fixed",
        ],
    ));

    // Rollout with --if-version: a stale version is refused, the current one applies.
    let stale = cli(
        &server,
        admin,
        &[
            "flags",
            "rollout",
            "beta-banner",
            "30",
            "--env",
            "production",
            "--if-version",
            "3",
        ],
    );
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("is at version 8, not 3"),
        "{}",
        stale.stderr
    );
    assert!(
        stale.stderr.contains("hint: the flag is now at version 8"),
        "{}",
        stale.stderr
    );
    let out = ok(cli(
        &server,
        admin,
        &[
            "flags",
            "rollout",
            "beta-banner",
            "30%",
            "--env",
            "production",
            "--if-version",
            "8",
            "--reason",
            "ramp up",
        ],
    ));
    assert_eq!(
        out.stdout,
        "beta-banner: fallthrough 30% on in production (version 9)\n"
    );
    let got = ok(cli(
        &server,
        admin,
        &["flags", "get", "beta-banner", "--json"],
    ))
    .json();
    assert_eq!(
        got["definition"]["environments"]["production"]["fallthrough"]["percentage"],
        30.0
    );
    let refused = cli(&server, admin, &["flags", "rollout", "beta-banner", "150"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("fallthrough.percentage: percentage 150 must be between 0 and 100"),
        "{}",
        refused.stderr
    );

    // Archive and undo.
    let out = ok(cli(
        &server,
        admin,
        &["flags", "archive", "beta-banner", "--reason", "done"],
    ));
    assert_eq!(
        out.stdout,
        "beta-banner: archived, no longer served (version 10)\n"
    );
    let archived = ok(cli(
        &server,
        admin,
        &["flags", "list", "--state", "archived"],
    ));
    assert_eq!(archived.row("beta-banner")[2..4], ["no", "(archived)"]);
    let out = ok(cli(
        &server,
        admin,
        &["flags", "archive", "beta-banner", "--undo"],
    ));
    assert_eq!(
        out.stdout,
        "beta-banner: unarchived, served again (version 11)\n"
    );

    // The audit log shows each change with its actor and reason, newest first.
    let out = ok(cli(
        &server,
        admin,
        &["audit", "--flag", "beta-banner", "--since", "1h"],
    ));
    assert_eq!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["AT", "ACTOR", "ACTION", "SUBJECT", "ENV", "REASON"]
    );
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect();
    assert_eq!(rows.len(), 11, "{}", out.stdout);
    assert_eq!(
        rows[0],
        ["bootstrap-admin", "flag.unarchive", "beta-banner", "-", "-"]
    );
    assert_eq!(
        rows[2],
        [
            "bootstrap-admin",
            "flag.rollout",
            "beta-banner",
            "production",
            "ramp",
            "up"
        ]
    );
    assert_eq!(
        rows[6],
        [
            "bootstrap-admin",
            "flag.kill",
            "beta-banner",
            "production",
            "error",
            "spike"
        ]
    );
    assert_eq!(
        rows[10],
        [
            "bootstrap-admin",
            "flag.create",
            "beta-banner",
            "-",
            "new",
            "banner"
        ]
    );
    let entries = ok(cli(
        &server,
        admin,
        &["audit", "--flag", "beta-banner", "--limit", "2", "--json"],
    ))
    .json();
    let entries = entries["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["reason"], "done");
    assert_eq!(entries[1]["actorName"], "bootstrap-admin");
    assert!(entries[1]["actor"].as_str().unwrap().starts_with("token:"));
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let server = start();
    let admin = Some(ADMIN);

    let out = ok(cli(
        &server,
        admin,
        &[
            "tokens", "create", "--role", "editor", "--name", "ci-bot", "--json",
        ],
    ));
    let created = out.json();
    let fields: BTreeSet<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["name", "role", "environment", "token"])
    );
    assert_eq!(created["name"], "ci-bot");
    assert_eq!(created["role"], "editor");
    assert_eq!(created["environment"], Value::Null);
    let editor = created["token"].as_str().unwrap().to_owned();

    // Without --json the token alone goes to stdout, the explanation to stderr.
    let out = ok(cli(
        &server,
        admin,
        &["tokens", "create", "--role", "sdk", "--env", "production"],
    ));
    assert!(
        out.stdout.starts_with("sy_") && out.stdout.lines().count() == 1,
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("it is not shown again"),
        "{}",
        out.stderr
    );
    let sdk_without_env = cli(&server, admin, &["tokens", "create", "--role", "sdk"]);
    assert_eq!(sdk_without_env.code, 1);
    assert!(
        sdk_without_env.stderr.contains("needs an `environment`"),
        "{}",
        sdk_without_env.stderr
    );

    let out = ok(cli(&server, admin, &["tokens", "list"]));
    let listed = ok(cli(&server, admin, &["tokens", "list", "--json"])).json();
    let id = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci-bot")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .expect("ci-bot is listed");
    assert_eq!(
        out.row(&id),
        [id.as_str(), "ci-bot", "editor", "-", out.row(&id)[4], "-"]
    );

    // The editor token works (and is the actor in the audit log) but cannot manage tokens.
    ok(cli(
        &server,
        Some(&editor),
        &[
            "flags",
            "toggle",
            "image-cdn",
            "--off",
            "--env",
            "staging",
            "--reason",
            "cdn incident",
        ],
    ));
    let audit = ok(cli(
        &server,
        admin,
        &["audit", "--actor", "ci-bot", "--json"],
    ))
    .json();
    assert_eq!(audit["entries"][0]["action"], "flag.disable");
    assert_eq!(audit["entries"][0]["reason"], "cdn incident");
    let forbidden = cli(&server, Some(&editor), &["tokens", "list"]);
    assert_eq!(forbidden.code, 1);
    assert!(
        forbidden.stderr.contains("needs the admin role"),
        "{}",
        forbidden.stderr
    );

    // Revoked: the next request gets 401, with a hint about --token / SWITCHYARD_TOKEN.
    let out = ok(cli(&server, admin, &["tokens", "revoke", &id]));
    assert_eq!(out.stdout, format!("revoked token `ci-bot` (id {id})\n"));
    let out = cli(&server, Some(&editor), &["flags", "list"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: cannot list flags: invalid or revoked token\n\
         hint: the token from --token or SWITCHYARD_TOKEN was refused (wrong or revoked); pass a valid one\n"
    );
    let out = cli(&server, None, &["flags", "list"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing token"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: pass an API token with --token TOKEN or set SWITCHYARD_TOKEN"),
        "{}",
        out.stderr
    );

    // --server and --token work as options too, before or after the subcommand.
    let out = ok(run(clean_command().args([
        "tokens",
        "--server",
        &server.url,
        "list",
        "--token",
        ADMIN,
    ])));
    assert!(out.stdout.contains("bootstrap-admin"), "{}", out.stdout);
}

#[test]
fn export_reimports_cleanly_and_import_reports_problems() {
    let server = start();
    let admin = Some(ADMIN);
    let dir = server.dir.path();

    let yaml = ok(cli(&server, admin, &["export"])).stdout;
    assert!(
        yaml.contains("flags:\n") && yaml.contains("segments:\n"),
        "{yaml}"
    );
    let json = ok(cli(&server, admin, &["export", "--json"])).json();
    assert_eq!(json["flags"].as_array().unwrap().len(), 12);

    let file = dir.join("export.yaml").display().to_string();
    let out = ok(cli(&server, admin, &["export", "-o", &file]));
    assert_eq!(out.stderr, format!("wrote {file} (yaml)\n"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), yaml);
    let out = ok(cli(
        &server,
        admin,
        &["import", &file, "--reason", "round trip"],
    ));
    assert_eq!(
        out.stdout,
        format!("imported {file}: 0 created, 0 updated, 12 unchanged, 0 segments written\n")
    );

    let changes = write(
        dir,
        "changes.yml",
        "flags:\n  - key: promo-banner\n    tags: [marketing]\n  - key: image-cdn\n    type: string\n    defaultValue: legacy\n",
    );
    let out = ok(cli(&server, admin, &["import", &changes]));
    assert_eq!(
        out.stdout,
        format!(
            "imported {changes}: 1 created, 1 updated, 0 unchanged, 0 segments written\n  created: promo-banner\n  updated: image-cdn\n"
        )
    );
    let result = ok(cli(&server, admin, &["import", &changes, "--json"])).json();
    assert_eq!(
        result["unchanged"],
        serde_json::json!(["promo-banner", "image-cdn"])
    );

    let bad = write(
        dir,
        "bad.json",
        "{\"flags\": [\n  {\"key\": \"q\", \"rules\": [{\"variant\": \"nope\"}]},\n  {\"key\": \"r\", \"fallthrough\": {\"variant\": \"zz\"}}\n]}\n",
    );
    let out = cli(&server, admin, &["import", &bad]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot import {bad}: 2 problems:\n  \
             flags[0].rules[0].variant: unknown variant `nope`; the flag's variants are: on, off ({bad}:2)\n  \
             flags[1].fallthrough.variant: unknown variant `zz`; the flag's variants are: on, off ({bad}:3)\n"
        )
    );
    let unknown = write(dir, "flags.txt", "flags: []\n");
    let out = cli(&server, admin, &["import", &unknown]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("name it .yaml, .yml or .json"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unreachable_server_exits_2_with_a_hint() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = run(clean_command()
        .args(["flags", "list", "--server", &url])
        .env("SWITCHYARD_TOKEN", ADMIN));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot reach the server at {url}: ")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--server URL or the SWITCHYARD_SERVER"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");

    let out = run(clean_command()
        .args(["audit"])
        .env("SWITCHYARD_SERVER", "localhost:8080"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--server `localhost:8080` is not a URL"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_documents_the_environment_and_exit_codes() {
    let out = ok(run(clean_command().arg("--help")));
    for needle in [
        "SWITCHYARD_SERVER",
        "SWITCHYARD_TOKEN",
        "last write wins",
        "--if-version N",
        "Exit status:",
        "1  the server refused the request",
        "2  usage error",
    ] {
        assert!(
            out.stdout.contains(needle),
            "`{needle}` in:\n{}",
            out.stdout
        );
    }
    let out = ok(run(clean_command()
        .args(["flags", "rollout", "--help"])
        .env("SWITCHYARD_TOKEN", "do-not-print-me")));
    assert!(
        out.stdout.contains("[env: SWITCHYARD_SERVER]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("[env: SWITCHYARD_TOKEN]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("last write wins"), "{}", out.stdout);
    assert!(!out.stdout.contains("do-not-print-me"), "{}", out.stdout);
    for command in ["audit", "tokens", "import", "export"] {
        let out = ok(run(clean_command().args([command, "--help"])));
        assert!(
            out.stdout.contains("--server <URL>"),
            "{command}: {}",
            out.stdout
        );
    }
}

#[test]
fn remote_options_may_come_before_the_subcommand() {
    let server = start();
    let mut cmd = clean_command();
    cmd.args([
        "--server",
        &server.url,
        "--token",
        ADMIN,
        "--json",
        "flags",
        "list",
    ]);
    let out = ok(run(&mut cmd));
    assert!(out.json()["flags"].is_array(), "{}", out.stdout);
    // Before a command that takes none, clap still says so.
    let mut cmd = clean_command();
    cmd.args(["--server", &server.url, "validate", "x.yaml"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--server"), "{}", out.stderr);
}

#[test]
fn every_flag_segment_and_environment_operation_has_a_command() {
    let server = start();
    let dir = server.dir.path().to_owned();
    let flag = write(
        &dir,
        "new-search.yaml",
        "key: new-search\ndescription: the new search page\nfallthrough: {percentage: 5, variant: \"on\"}\n",
    );
    // A one-flag file validates before it is applied.
    let mut cmd = clean_command();
    cmd.args(["validate", &flag]);
    ok(run(&mut cmd));
    let out = ok(cli(
        &server,
        Some(ADMIN),
        &["flags", "apply", "-f", &flag, "--reason", "first"],
    ));
    assert!(
        out.stdout.contains("created flag `new-search` (version 1)"),
        "{}",
        out.stdout
    );
    std::fs::write(
        &flag,
        "key: new-search\nfallthrough: {percentage: 25, variant: \"on\"}\n",
    )
    .unwrap();
    let out = ok(cli(&server, Some(ADMIN), &["flags", "apply", "-f", &flag]));
    assert!(
        out.stdout
            .contains("replaced flag `new-search` (version 2)"),
        "{}",
        out.stdout
    );
    let out = ok(cli(&server, Some(ADMIN), &["flags", "apply", "-f", &flag]));
    assert!(out.stdout.contains("nothing changed"), "{}", out.stdout);
    // A stale --if-version is refused.
    let out = cli(
        &server,
        Some(ADMIN),
        &["flags", "apply", "-f", &flag, "--if-version", "1"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);

    let targets = write(
        &dir,
        "t.yaml",
        "- {variant: \"on\", values: [alice, bob]}\n",
    );
    ok(cli(
        &server,
        Some(ADMIN),
        &[
            "flags",
            "targets",
            "new-search",
            "-f",
            &targets,
            "--env",
            "production",
        ],
    ));
    let rules = write(
        &dir,
        "r.yaml",
        "rules:\n  - id: staff\n    conditions: [{attribute: email, operator: ends_with, value: \"@corp.example\"}]\n    variant: \"on\"\n",
    );
    ok(cli(
        &server,
        Some(ADMIN),
        &["flags", "rules", "new-search", "-f", &rules],
    ));
    let bad_rules = write(
        &dir,
        "bad.yaml",
        "- conditions: [{attribute: a, operator: nope, value: 1}]\n",
    );
    let out = cli(
        &server,
        Some(ADMIN),
        &["flags", "rules", "new-search", "-f", &bad_rules],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    ok(cli(
        &server,
        Some(ADMIN),
        &[
            "flags",
            "tenant",
            "new-search",
            "acme",
            "--on",
            "--env",
            "production",
        ],
    ));
    let got = ok(cli(
        &server,
        Some(ADMIN),
        &["--json", "flags", "get", "new-search"],
    ))
    .json();
    let def = &got["definition"];
    assert_eq!(
        def["environments"]["production"]["targets"][0]["values"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(def["rules"][0]["id"], "staff");
    assert_eq!(
        def["environments"]["production"]["tenants"]["acme"]["enabled"],
        true
    );
    ok(cli(
        &server,
        Some(ADMIN),
        &[
            "flags",
            "tenant",
            "new-search",
            "acme",
            "--clear",
            "--env",
            "production",
        ],
    ));
    ok(cli(
        &server,
        Some(ADMIN),
        &["flags", "delete", "new-search", "--reason", "cleanup"],
    ));
    let out = cli(&server, Some(ADMIN), &["flags", "get", "new-search"]);
    assert_eq!(out.code, 1);

    let seg = write(
        &dir,
        "s.yaml",
        "included: [u1]\nconditions: [{attribute: plan, operator: in, value: [pro]}]\n",
    );
    let out = ok(cli(
        &server,
        Some(ADMIN),
        &[
            "segments",
            "apply",
            "pro-users",
            "-f",
            &seg,
            "--reason",
            "x",
        ],
    ));
    assert!(
        out.stdout.contains("created segment `pro-users`"),
        "{}",
        out.stdout
    );
    let out = ok(cli(&server, Some(ADMIN), &["segments", "list"]));
    out.row("pro-users");
    let out = cli(
        &server,
        Some(ADMIN),
        &[
            "segments",
            "apply",
            "pro-users",
            "-f",
            &seg,
            "--if-version",
            "7",
        ],
    );
    assert_eq!(
        out.code, 1,
        "a stale --if-version is refused: {}",
        out.stdout
    );
    let out = ok(cli(
        &server,
        Some(ADMIN),
        &["--json", "segments", "get", "pro-users"],
    ));
    assert_eq!(
        out.json()["definition"]["included"],
        serde_json::json!(["u1"])
    );
    ok(cli(
        &server,
        Some(ADMIN),
        &["segments", "delete", "pro-users"],
    ));

    ok(cli(
        &server,
        Some(ADMIN),
        &["envs", "create", "qa", "--reason", "testing"],
    ));
    let out = ok(cli(&server, Some(ADMIN), &["envs", "list"]));
    out.row("qa");
    let out = cli(&server, Some(ADMIN), &["envs", "create", "qa"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

#[test]
fn flags_explain_prints_each_step_readably_and_as_json() {
    let server = start();
    let viewer = ok(cli(
        &server,
        Some(ADMIN),
        &["tokens", "create", "--role", "viewer", "--json"],
    ))
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The example split: the unit, its bucket and every variant's range are shown.
    let out = ok(cli(
        &server,
        Some(&viewer),
        &[
            "flags",
            "explain",
            "pricing-experiment",
            "--env",
            "production",
            "--context",
            r#"{"targetingKey": "user-42"}"#,
        ],
    ));
    assert!(
        out.stdout.starts_with("pricing-experiment in production\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("reason SPLIT"), "{}", out.stdout);
    assert!(out.stdout.contains("unit: \"user-42\""), "{}", out.stdout);
    assert!(out.stdout.contains("split: bucket "), "{}", out.stdout);
    assert!(out.stdout.contains("control [0, 50000)"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("rule no-experiments-for-enterprise: no match"),
        "{}",
        out.stdout
    );

    // A failed condition names the value the context had; --json is the server's answer.
    let json = ok(cli(
        &server,
        Some(&viewer),
        &[
            "flags",
            "explain",
            "pricing-experiment",
            "--env",
            "production",
            "--context",
            r#"{"targetingKey": "user-42", "tenant": {"id": "t1", "plan": "enterprise"}}"#,
            "--json",
        ],
    ))
    .json();
    assert_eq!(json["ruleId"], "no-experiments-for-enterprise");
    let rule = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "rule")
        .unwrap();
    assert_eq!(rule["matched"], true);

    // Mistakes: an unknown environment, a context that is not an object, an unknown flag.
    let out = cli(
        &server,
        Some(&viewer),
        &["flags", "explain", "pricing-experiment", "--env", "prod"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("environments: development, production, staging"),
        "{}",
        out.stderr
    );
    let out = cli(
        &server,
        Some(&viewer),
        &[
            "flags",
            "explain",
            "pricing-experiment",
            "--env",
            "production",
            "--context",
            "[1]",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--context must be a JSON object"),
        "{}",
        out.stderr
    );
    let out = cli(
        &server,
        Some(&viewer),
        &[
            "flags",
            "explain",
            "pricing-experimnt",
            "--env",
            "production",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("pricing-experiment"),
        "did you mean: {}",
        out.stderr
    );
}
