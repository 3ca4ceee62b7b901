//! `switchyard serve` as a process: first start, crash safety, graceful shutdown, config errors.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub stdout_lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `switchyard serve` with `args` and `env`, waiting for its `listening on` line; on
/// a free port unless `args` has a `--listen`.
pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("serve");
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(args);
    cmd.env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let url = url.trim().to_owned();
                    lines.push(line);
                    return Server {
                        child,
                        url,
                        stdout_lines: lines,
                    };
                }
                lines.push(line);
            }
            Err(_) if Instant::now() > deadline => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("server did not start; stdout: {lines:?}; stderr: {err}");
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!("server exited with {status}; stdout: {lines:?}; stderr: {err}");
                }
            }
        }
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn db(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("switchyard.db").display())
}

/// Runs the CLI against `url` with `token`: exit code, stdout, stderr.
pub(crate) fn cli_as(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_SERVER", url)
        .env("SWITCHYARD_TOKEN", token)
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub(crate) fn get_json(url: &str, token: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("request");
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

pub(crate) fn send_json(
    method: &str,
    url: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .unwrap();
    let mut r = agent().run(req).expect("request");
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn first_start_prints_an_admin_token_once_and_loads_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let url_db = db(dir.path());
    let token = {
        let server = start(&["--db", &url_db], &[]);
        let token_line = server
            .stdout_lines
            .iter()
            .position(|l| l.contains("first admin token"))
            .expect("token announced");
        let token = server.stdout_lines[token_line + 1].trim().to_owned();
        assert!(token.starts_with("sy_"), "{token}");
        let (status, flags) = get_json(&format!("{}/api/v1/flags", server.url), &token);
        assert_eq!(status, 200);
        assert!(
            flags["flags"].as_array().unwrap().len() >= 8,
            "example flags loaded"
        );
        let (status, _) = get_json(&format!("{}/readyz", server.url), &token);
        assert_eq!(status, 200);
        token
    };
    // Second start: the same token still works, none is printed, examples are not re-added.
    let server = start(&["--db", &url_db], &[]);
    assert!(
        !server
            .stdout_lines
            .iter()
            .any(|l| l.contains("first admin token")),
        "{:?}",
        server.stdout_lines
    );
    let (status, _) = get_json(&format!("{}/api/v1/flags", server.url), &token);
    assert_eq!(status, 200);
}

#[test]
fn an_acknowledged_change_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url_db = db(dir.path());
    let admin = "crash-test-admin-token-0123";
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", admin),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
    ];
    {
        let server = start(&["--db", &url_db], &env);
        for i in 0..20 {
            let (status, body) = send_json(
                "POST",
                &format!("{}/api/v1/flags", server.url),
                admin,
                &format!(r#"{{"key": "durable-{i}"}}"#),
            );
            assert_eq!(status, 201, "{body}");
        }
        let (status, _) = send_json(
            "POST",
            &format!("{}/api/v1/flags/durable-7/kill", server.url),
            admin,
            "{}",
        );
        assert_eq!(status, 200);
        // SIGKILL: no shutdown hook runs.
        let mut server = server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let server = start(&["--db", &url_db], &env);
    let (_, flags) = get_json(&format!("{}/api/v1/flags", server.url), admin);
    assert_eq!(flags["flags"].as_array().unwrap().len(), 20);
    let (_, flag) = get_json(&format!("{}/api/v1/flags/durable-7", server.url), admin);
    assert_eq!(flag["definition"]["killSwitch"], true);
    let (_, audit) = get_json(&format!("{}/api/v1/audit?limit=1000", server.url), admin);
    let actions = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subjectKind"] == "flag")
        .count();
    assert_eq!(actions, 21);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        &["--db", &db(dir.path())],
        &[("SWITCHYARD_SEED_EXAMPLES", "false")],
    );
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_fails_at_start_with_a_clear_message() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve")
            .args(args)
            .env_remove("SWITCHYARD_ADMIN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--listen", "nowhere"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("invalid listen address `nowhere` (from --listen)"),
        "{err}"
    );
    let (code, err) = run(&[], &[("SWITCHYARD_DB", "mysql://u:pw@h/db")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("$SWITCHYARD_DB") && !err.contains("pw@"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 1\n").unwrap();
    let (code, err) = run(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field `listen_port`"), "{err}");
    assert_eq!(
        err.matches("unknown field `listen_port`").count(),
        1,
        "said once: {err}"
    );
    // A port in use: said once, and no admin token printed for a server that never ran.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let busy_db = format!("sqlite://{}", dir.path().join("busy.db").display());
    let (code, err) = run(&["--listen", &busy_addr, "--db", &busy_db], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "said once: {err}"
    );
    assert!(
        !err.contains("sy_") && !err.contains("admin token"),
        "{err}"
    );
    drop(busy);
    let (code, err) = run(&["--import", "/no/such/flags.yaml"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no such file"), "{err}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "flags:\n  - key: x\n    rules: [{variant: nope}]\n").unwrap();
    let (code, err) = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db(dir.path()),
            "--import",
            bad.to_str().unwrap(),
        ],
        &[("SWITCHYARD_SEED_EXAMPLES", "false")],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown variant `nope`"), "{err}");
}

/// The PostgreSQL server tests use (`SWITCHYARD_TEST_POSTGRES_URL` overrides it).
pub(crate) fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs SQL with `psql` (the PostgreSQL client); fails loudly when it is missing.
pub(crate) fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([&postgres_url(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql (the PostgreSQL client) must be installed to run the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh schema in the test PostgreSQL, dropped when this is dropped (even on panic).
pub(crate) struct PgSchema {
    /// A storage URL that selects the schema.
    pub(crate) url: String,
    name: String,
}

impl PgSchema {
    pub(crate) fn new(tag: &str) -> PgSchema {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "sy_{tag}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        psql(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ));
        let sep = if postgres_url().contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}options=-c%20search_path%3D{name}", postgres_url());
        PgSchema { url, name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

#[test]
fn a_change_on_one_replica_reaches_the_other_through_postgres() {
    let schema = PgSchema::new("serve");
    let url = schema.url.clone();
    let admin = "replica-admin-token-0123";
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", admin),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
    ];
    let a = start(&["--db", &url], &env);
    let b = start(&["--db", &url], &env);

    let (status, created) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", b.url),
        admin,
        r#"{"name": "app", "role": "sdk", "environment": "production"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let sdk = created["token"].as_str().unwrap().to_owned();
    let (status, body) = send_json(
        "POST",
        &format!("{}/api/v1/flags", a.url),
        admin,
        r#"{"key": "replicated"}"#,
    );
    assert_eq!(status, 201, "{body}");

    let eval = |server: &Server| {
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/ofrep/v1/evaluate/flags/replicated", server.url))
            .header("Authorization", format!("Bearer {sdk}"))
            .body(r#"{"context": {"targetingKey": "u"}}"#.to_owned())
            .unwrap();
        let mut r = agent().run(req).unwrap();
        (
            r.status().as_u16(),
            r.body_mut()
                .read_json::<serde_json::Value>()
                .unwrap_or_default(),
        )
    };
    // A write on A reaches B (and a token made on B works on A) within a few sync intervals.
    let wait_for = |server: &Server, want: serde_json::Value| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = eval(server);
            if status == 200 && body["value"] == want {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "replica never saw the change: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&a, serde_json::json!(true));
    wait_for(&b, serde_json::json!(true));
    let (status, _) = send_json(
        "POST",
        &format!("{}/api/v1/flags/replicated/kill", a.url),
        admin,
        "{}",
    );
    assert_eq!(status, 200);
    let killed_at = Instant::now();
    let seen = wait_for(&b, serde_json::json!(false));
    assert!(
        seen - killed_at < Duration::from_secs(2),
        "kill switch took {:?} to reach the other replica",
        seen - killed_at
    );
}

#[test]
fn logs_written_to_a_file_or_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&["--db", &db(dir.path())], &[("SWITCHYARD_LOG", "info")]);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("serving"), "the log was read: {err}");
    assert!(!err.contains('\u{1b}'), "no ANSI escapes: {err:?}");
}
