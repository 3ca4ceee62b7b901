//! Progressive rollouts and guards with the real binary: two replicas on PostgreSQL, a real
//! Prometheus (Debian's `prometheus`) scraping a small exporter this test controls, real
//! OFREP traffic and metric events.
//!
//! - A Prometheus-gated canary (seed 002's plan: 5 → 25 → 50 → 100 %, the 50 % stage waiting
//!   for approval) advances while the exporter's error ratio is low, waits for a person at
//!   50 %, and rolls back to 0 % when the ratio jumps; OFREP on the other replica answers the
//!   old value within a few seconds of the jump.
//! - An event-gated rollout rolls back when the units served the new variant start sending
//!   errors.
//! - A guard kills the flag on an error-rate burst.

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{agent, cli_as, get_json, send_json, start, PgSchema};

const ADMIN: &str = "rollouts-admin-token-0123";

fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    cli_as(url, ADMIN, args)
}

/// An exporter on a free port: `/metrics` shows `app_error_ratio` at the value in `ratio`.
fn exporter() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ratio = Arc::new(AtomicU64::new(0.01f64.to_bits()));
    let shown = Arc::clone(&ratio);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let body = format!(
                "# HELP app_error_ratio Share of failed checkouts.\n# TYPE app_error_ratio gauge\napp_error_ratio {}\n",
                f64::from_bits(shown.load(Ordering::SeqCst))
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, ratio)
}

/// A real Prometheus scraping `target` every 500 ms, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn prometheus(target: &str) -> Prometheus {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("these tests need a real Prometheus (Debian: apt-get install prometheus): {e}")
        });
    let url = format!("http://127.0.0.1:{port}");
    let p = Prometheus {
        child,
        url,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = agent()
            .get(format!("{}/api/v1/query?query=app_error_ratio", p.url))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .is_some_and(|v| {
                v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            });
        if ready {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the exporter"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ofrep(url: &str, key: &str, flag: &str, unit: &str) -> Value {
    let mut r = agent()
        .post(format!("{url}/ofrep/v1/evaluate/flags/{flag}"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(json!({"context": {"targetingKey": unit}}))
        .expect("OFREP answers");
    r.body_mut().read_json::<Value>().expect("json")
}

fn rollout(url: &str, id: &str) -> Value {
    let (status, r) = get_json(&format!("{url}/api/v1/rollouts/{id}"), ADMIN);
    assert_eq!(status, 200, "{r}");
    r
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// The share of 400 users OFREP serves `true` on `url`.
fn share_on(url: &str, key: &str, flag: &str) -> f64 {
    let on = (0..400)
        .filter(|i| ofrep(url, key, flag, &format!("probe-{i}"))["value"] == json!(true))
        .count();
    on as f64 / 400.0
}

#[test]
fn rollouts_advance_wait_for_approval_and_roll_back_from_real_metrics() {
    let (target, ratio) = exporter();
    let prom = prometheus(&target);
    let schema = PgSchema::new("rollouts");
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
        ("SWITCHYARD_ROLLOUT_CHECK_MS", "300"),
    ];
    let a = start(&["--db", &schema.url], &env);
    let b = start(&["--db", &schema.url], &env);
    for flag in ["new-checkout", "new-search", "payments", "discovery"] {
        let (status, r) = send_json(
            "POST",
            &format!("{}/api/v1/flags", a.url),
            ADMIN,
            &json!({"key": flag}).to_string(),
        );
        assert_eq!(status, 201, "{r}");
        // Off to begin with: the fallthrough at 0 %.
        let (status, r) = send_json(
            "PUT",
            &format!(
                "{}/api/v1/flags/{flag}/environments/production/rollout",
                a.url
            ),
            ADMIN,
            r#"{"percentage": 0}"#,
        );
        assert_eq!(status, 200, "{r}");
    }
    let (_, token) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", a.url),
        ADMIN,
        r#"{"name": "web", "role": "sdk", "environment": "production"}"#,
    );
    let key = token["token"].as_str().unwrap().to_owned();
    wait_for("B serves the flags", 10, || {
        ofrep(&b.url, &key, "payments", "u1")["value"] == json!(false)
    });

    // Seed 002's canary plan, gated on the exporter's error ratio through Prometheus.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("canary.yaml");
    std::fs::write(
        &plan,
        format!(
            "id: checkout-canary\nstages:\n  - {{percentage: 5, hold: 1s}}\n  - {{percentage: 25, hold: 1s}}\n  - {{percentage: 50, hold: 1s, approval: true}}\n  - {{percentage: 100, hold: 1h}}\ngates:\n  - kind: prometheus\n    url: {}\n    query: max(app_error_ratio)\n    max: 0.05\n",
            prom.url
        ),
    )
    .unwrap();
    // A mistake first: a gate without a limit.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "gates:\n  - {kind: prometheus, url: 'http://127.0.0.1:9', query: up}\n",
    )
    .unwrap();
    let (code, _, err) = cli(
        &a.url,
        &[
            "rollouts",
            "start",
            "new-checkout",
            "--env",
            "production",
            "--file",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("gates[0]") && err.contains("max"), "{err}");

    let (code, out, err) = cli(
        &a.url,
        &[
            "rollouts",
            "start",
            "new-checkout",
            "--env",
            "production",
            "--file",
            plan.to_str().unwrap(),
            "--reason",
            "canary per the release plan",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("started rollout checkout-canary"), "{out}");

    // Green: it climbs to 25 % and then waits for approval before 50 %.
    wait_for("the canary waits for approval", 30, || {
        rollout(&b.url, "checkout-canary")["status"] == "awaiting_approval"
    });
    let r = rollout(&b.url, "checkout-canary");
    assert_eq!(r["percentage"], 25.0, "{r}");
    assert_eq!(r["readings"][0]["status"], "green", "{r}");
    let (_, out, _) = cli(&b.url, &["rollouts", "list"]);
    assert!(out.contains("awaiting_approval"), "{out}");
    let share = share_on(&b.url, &key, "new-checkout");
    assert!((0.15..0.35).contains(&share), "25 % stage served {share}");

    // A person approves on the other replica.
    let (code, out, err) = cli(
        &b.url,
        &[
            "rollouts",
            "advance",
            "checkout-canary",
            "--reason",
            "error budget fine",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("serving 50 %"), "{out}");

    // The error ratio jumps: the rollout rolls back to 0 %, and OFREP on A says so.
    let unit_on = (0..200)
        .map(|i| format!("probe-{i}"))
        .find(|u| ofrep(&a.url, &key, "new-checkout", u)["value"] == json!(true))
        .expect("someone is served the new checkout at 50 %");
    ratio.store(0.2f64.to_bits(), Ordering::SeqCst);
    let jumped = Instant::now();
    wait_for("the rollback reaches OFREP on A", 30, || {
        ofrep(&a.url, &key, "new-checkout", &unit_on)["value"] == json!(false)
    });
    let took = jumped.elapsed();
    eprintln!("from the error-ratio jump to OFREP serving the old value: {took:?}");
    let r = rollout(&a.url, "checkout-canary");
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert_eq!(r["percentage"], 0.0);
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "rollout:checkout-canary");
    assert!(
        last["note"].as_str().unwrap().contains("above 0.05"),
        "{last}"
    );
    let (code, out, _) = cli(&a.url, &["rollouts", "get", "checkout-canary"]);
    assert_eq!(code, 0);
    for needle in ["rolled_back", "approved", "token:", "red"] {
        assert!(out.contains(needle), "`{needle}` in:\n{out}");
    }
    let (_, m) = agent()
        .get(format!("{}/metrics", a.url))
        .call()
        .map(|mut r| ((), r.body_mut().read_to_string().unwrap()))
        .unwrap();
    let (_, mb) = agent()
        .get(format!("{}/metrics", b.url))
        .call()
        .map(|mut r| ((), r.body_mut().read_to_string().unwrap()))
        .unwrap();
    let count = |text: &str, action: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "switchyard_rollout_steps_total{{action=\"{action}\"}}"
                ))
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        count(&m, "rolled_back") + count(&mb, "rolled_back"),
        1.0,
        "one rollback"
    );

    // A guard on a Prometheus query: the ratio (still 0.2) is above its 0.1, the kill switch
    // goes on (seen on the other replica).
    let (code, out, err) = cli(
        &a.url,
        &[
            "guards",
            "create",
            "discovery",
            "--env",
            "production",
            "--prometheus",
            &prom.url,
            "--query",
            "max(app_error_ratio)",
            "--max",
            "0.1",
            "--id",
            "discovery-errors",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    wait_for(
        "the Prometheus guard kills discovery, seen on B",
        30,
        || ofrep(&b.url, &key, "discovery", "u1")["reason"] == "DISABLED",
    );

    // An event-gated rollout: healthy traffic advances it from 20 % to 50 %; then units served
    // the new search send errors through the event API, and it rolls back.
    let search_plan = dir.path().join("search.yaml");
    std::fs::write(
        &search_plan,
        "stages:\n  - {percentage: 20, hold: 2s}\n  - {percentage: 50, hold: 1h}\n  - {percentage: 100}\nminSample: 50\ngates:\n  - {kind: error_rate, event: search_error, max: 0.05}\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        &a.url,
        &[
            "rollouts",
            "start",
            "new-search",
            "--env",
            "production",
            "--file",
            search_plan.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = out
        .split_whitespace()
        .nth(2)
        .expect("the rollout's id")
        .to_owned();
    // Both replicas learn of a stage at their next check; then traffic goes to B.
    let traffic = |from: usize, errors_every: usize| {
        std::thread::sleep(Duration::from_millis(1000));
        let mut on = Vec::new();
        for i in from..from + 600 {
            let unit = format!("searcher-{i}");
            if ofrep(&b.url, &key, "new-search", &unit)["value"] == json!(true) {
                on.push(unit);
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let errors: Vec<Value> = on
            .iter()
            .step_by(errors_every)
            .map(|u| json!({"type": "metric", "id": format!("{u}-err"), "event": "search_error", "unit": u, "timestampMs": now}))
            .collect();
        (on, errors)
    };
    // Healthy: one unit in 50 errs (2 %, under the 5 % limit).
    let (healthy, few) = traffic(0, 50);
    assert!(healthy.len() > 80, "{} of 600 on at 20 %", healthy.len());
    let (status, reply) = send_json(
        "POST",
        &format!("{}/sdk/v1/events", a.url),
        &key,
        &json!({"events": few}).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    wait_for("healthy traffic advances it to 50 %", 20, || {
        rollout(&a.url, &id)["stage"] == 1
    });
    let r = rollout(&a.url, &id);
    assert_eq!(r["history"][1]["action"], "advanced", "{r}");
    assert!(
        r["history"][1]["note"].as_str().unwrap().contains("green"),
        "{r}"
    );
    let (on, _) = traffic(1000, 1);
    assert!(on.len() > 200, "{} of 600 on at 50 %", on.len());
    wait_for("the exposures are counted and green", 15, || {
        let r = rollout(&a.url, &id);
        r["readings"][0]["status"] == "green" || r["readings"][0]["sample"].as_u64() > Some(50)
    });
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let errors: Vec<Value> = on
        .iter()
        .step_by(2)
        .map(|u| json!({"type": "metric", "id": format!("{u}-err"), "event": "search_error", "unit": u, "timestampMs": now}))
        .collect();
    let sent = Instant::now();
    let (status, reply) = send_json(
        "POST",
        &format!("{}/sdk/v1/events", a.url),
        &key,
        &json!({"events": errors}).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    wait_for("the event-gated rollback reaches OFREP on B", 30, || {
        ofrep(&b.url, &key, "new-search", &on[0])["value"] == json!(false)
    });
    let took = sent.elapsed();
    eprintln!("from the error events to OFREP serving the old value: {took:?}");
    let r = rollout(&b.url, &id);
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert!(
        r["history"].as_array().unwrap().last().unwrap()["note"]
            .as_str()
            .unwrap()
            .contains("had an error"),
        "{r}"
    );

    // A guard: 10 % of payments fail; the kill switch goes on, audited as the guard.
    let (code, out, err) = cli(
        &a.url,
        &[
            "guards",
            "create",
            "payments",
            "--env",
            "production",
            "--errors",
            "payment_error",
            "--requests",
            "payment_request",
            "--max",
            "0.05",
            "--min-sample",
            "100",
            "--id",
            "payments-errors",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut events = Vec::new();
    for i in 0..300 {
        events.push(json!({"type": "metric", "id": format!("pr-{i}"), "event": "payment_request", "unit": format!("payer-{i}"), "timestampMs": now}));
        if i % 3 == 0 {
            events.push(json!({"type": "metric", "id": format!("pe-{i}"), "event": "payment_error", "unit": format!("payer-{i}"), "timestampMs": now}));
        }
    }
    let (status, reply) = send_json(
        "POST",
        &format!("{}/sdk/v1/events", b.url),
        &key,
        &json!({"events": events}).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    wait_for("the guard kills payments, seen on A", 30, || {
        ofrep(&a.url, &key, "payments", "payer-1")["reason"] == "DISABLED"
    });
    let (_, log) = get_json(&format!("{}/api/v1/audit?flag=payments", b.url), ADMIN);
    let kill = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "flag.kill")
        .expect("the kill is audited")
        .clone();
    assert_eq!(kill["actor"], "guard:payments-errors", "{kill}");
    let (code, out, _) = cli(&b.url, &["guards", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("payments-errors") && out.contains("cooling_down"),
        "{out}"
    );
}
