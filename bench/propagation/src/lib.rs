//! What the propagation and stream benchmarks share: starting `switchyard serve` processes
//! and talking to their admin API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const ADMIN: &str = "propagation-bench-admin-token";

pub struct Replica {
    pub child: Child,
    pub url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(binary: &str, db: &str) -> Replica {
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

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn send(agent: &ureq::Agent, method: &str, url: &str, token: &str, body: &str) -> (u16, Value) {
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

pub fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .status()
        .expect("psql");
    assert!(status.success(), "psql {sql}");
}

