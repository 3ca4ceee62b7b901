//! Propagation between two replicas on one PostgreSQL, with the default configuration.
//!
//! Starts two `switchyard serve` processes (A and B) on a fresh schema, then N times: toggles a
//! flag on A (`PUT .../environments/production/enabled`), takes the time when A acknowledges,
//! and polls B's OFREP answer for that flag until it changes. Prints p50 / p99 / max of
//! (B's answer changed − A's acknowledgement).
//!
//! Usage: `cargo run --release --manifest-path bench/propagation/Cargo.toml -- [CHANGES]`
//! with `target/release/switchyard` built (`cargo build --release -p switchyard`), `psql` on
//! the PATH and PostgreSQL at `$SWITCHYARD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "propagation-bench-admin-token";

struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str, db: &str) -> Replica {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN)
        .env("SWITCHYARD_SEED_EXAMPLES", "false")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("switchyard starts (build it with `cargo build --release -p switchyard`)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server prints `listening on`")
            .expect("stdout");
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Replica { child, url }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn send(agent: &ureq::Agent, method: &str, url: &str, token: &str, body: &str) -> (u16, Value) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .unwrap();
    let mut r = agent.run(req).expect("request");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .status()
        .expect("psql");
    assert!(status.success(), "psql {sql}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let changes: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("CHANGES is a number"))
        .unwrap_or(1000);
    let binary = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| "target/release/switchyard".into());
    let base = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("sy_propagation_{}", std::process::id());
    psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let db = format!("{base}{sep}options=-c%20search_path%3D{schema}");

    let a = start(&binary, &db);
    let b = start(&binary, &db);
    let http = agent();
    let (status, created) = send(
        &http,
        "POST",
        &format!("{}/api/v1/tokens", a.url),
        ADMIN,
        r#"{"name": "bench", "role": "sdk", "environment": "production"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let sdk = created["token"].as_str().unwrap().to_owned();
    let (status, body) = send(&http, "POST", &format!("{}/api/v1/flags", a.url), ADMIN, r#"{"key": "propagated"}"#);
    assert_eq!(status, 201, "{body}");
    let eval_url = format!("{}/ofrep/v1/evaluate/flags/propagated", b.url);
    let ctx = r#"{"context": {"targetingKey": "u"}}"#;
    // Wait for B to know the SDK key and the flag.
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&http, "POST", &eval_url, &sdk, ctx).1["value"] != true {
        assert!(Instant::now() < deadline, "replica B never saw the flag");
        std::thread::sleep(Duration::from_millis(10));
    }

    let toggle = format!("{}/api/v1/flags/propagated/environments/production/enabled", a.url);
    let mut latencies = Vec::with_capacity(changes);
    let mut polls = 0u64;
    for i in 0..changes {
        let enabled = i % 2 == 1;
        let (status, body) = send(
            &http,
            "PUT",
            &toggle,
            ADMIN,
            &format!(r#"{{"enabled": {enabled}}}"#),
        );
        let acked = Instant::now();
        assert_eq!(status, 200, "{body}");
        loop {
            polls += 1;
            let (_, answer) = send(&http, "POST", &eval_url, &sdk, ctx);
            if answer["value"] == enabled {
                latencies.push(acked.elapsed());
                break;
            }
            assert!(acked.elapsed() < Duration::from_secs(10), "change {i} never reached B");
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{changes} changes acknowledged by A, time until B's OFREP answer changed: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (mean {:.2} polls per change)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        polls as f64 / changes as f64
    );
    drop(a);
    drop(b);
    psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
