//! Propagation, with the default configuration: how long after the admin API acknowledges a
//! change the answer an application sees changes.
//!
//! N times: toggles a flag on replica A (`PUT .../environments/production/enabled`), takes the
//! time when A acknowledges, then waits for the new value where the application looks. Prints
//! p50 / p99 / max of (answer changed − A's acknowledgement).
//!
//! Usage: `cargo run --release --manifest-path bench/propagation/Cargo.toml -- [CHANGES] [MODE]`
//! with `target/release/switchyard` built (`cargo build --release -p switchyard`). MODE:
//! - `ofrep` (default): two replicas on PostgreSQL; B's OFREP answer, polled;
//! - `sdk`: two replicas on PostgreSQL; a Rust SDK client streaming from B, evaluating
//!   in-process (woken by each revision it receives);
//! - `sdk-single`: one replica on SQLite; the SDK streams from it.
//!
//! PostgreSQL modes need `psql` on the PATH and the server at `$SWITCHYARD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use switchyard_bench_propagation::{agent, psql, send, start, ADMIN};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ofrep,
    Sdk,
    SdkSingle,
}

/// Where the application looks.
enum View {
    Ofrep { url: String, sdk: String },
    Sdk { client: switchyard_sdk::Client, runtime: tokio::runtime::Runtime },
}

impl View {
    /// Waits until the flag answers `enabled`; how many looks it took.
    fn wait_for(&self, http: &ureq::Agent, enabled: bool, acked: Instant) -> u64 {
        let mut looks = 0;
        match self {
            View::Ofrep { url, sdk } => loop {
                looks += 1;
                let (_, answer) = send(http, "POST", url, sdk, r#"{"context": {"targetingKey": "u"}}"#);
                if answer["value"] == enabled {
                    return looks;
                }
                assert!(acked.elapsed() < Duration::from_secs(10), "the change never arrived");
            },
            View::Sdk { client, runtime } => runtime.block_on(async {
                let ctx = switchyard_sdk::Context::with_targeting_key("u");
                let mut revisions = client.watch_revision();
                loop {
                    looks += 1;
                    if client.bool_value("propagated", &ctx, !enabled) == enabled {
                        return looks;
                    }
                    tokio::time::timeout(Duration::from_secs(10), revisions.changed())
                        .await
                        .expect("the change never arrived")
                        .expect("the client runs");
                }
            }),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let changes: usize = args
        .next()
        .map(|n| n.parse().expect("CHANGES is a number"))
        .unwrap_or(1000);
    let mode = match args.next().as_deref() {
        None | Some("ofrep") => Mode::Ofrep,
        Some("sdk") => Mode::Sdk,
        Some("sdk-single") => Mode::SdkSingle,
        Some(other) => panic!("MODE is ofrep, sdk or sdk-single, not {other:?}"),
    };
    let binary = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| "target/release/switchyard".into());
    let base = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("sy_propagation_{}", std::process::id());
    let dir = std::env::temp_dir().join(&schema);
    let db = if mode == Mode::SdkSingle {
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}", dir.join("bench.db").display())
    } else {
        psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"));
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{schema}")
    };

    let a = start(&binary, &db);
    let b = (mode != Mode::SdkSingle).then(|| start(&binary, &db));
    let viewed = b.as_ref().unwrap_or(&a).url.clone();
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
    let eval_url = format!("{viewed}/ofrep/v1/evaluate/flags/propagated");
    let ctx = r#"{"context": {"targetingKey": "u"}}"#;
    // Wait for B to know the SDK key and the flag.
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&http, "POST", &eval_url, &sdk, ctx).1["value"] != true {
        assert!(Instant::now() < deadline, "replica B never saw the flag");
        std::thread::sleep(Duration::from_millis(10));
    }
    let view = match mode {
        Mode::Ofrep => View::Ofrep { url: eval_url, sdk },
        Mode::Sdk | Mode::SdkSingle => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let client = runtime
                .block_on(switchyard_sdk::Client::builder(viewed.clone(), sdk).build())
                .expect("the SDK starts");
            runtime.block_on(async {
                let mut state = client.watch_connection();
                tokio::time::timeout(
                    Duration::from_secs(10),
                    state.wait_for(|s| *s == switchyard_sdk::ConnectionState::Streaming),
                )
                .await
                .expect("the SDK streams")
                .unwrap();
            });
            View::Sdk { client, runtime }
        }
    };

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
        assert_eq!(status, 200, "change {i}: {body}");
        polls += view.wait_for(&http, enabled, acked);
        latencies.push(acked.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let what = match mode {
        Mode::Ofrep => "B's OFREP answer",
        Mode::Sdk => "the answer of an SDK streaming from B",
        Mode::SdkSingle => "the answer of an SDK streaming from A (one replica, SQLite)",
    };
    println!(
        "{changes} changes acknowledged by A, time until {what} changed: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (mean {:.2} looks per change)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        polls as f64 / changes as f64
    );
    if let View::Sdk { client, runtime } = view {
        runtime.block_on(client.shutdown());
    }
    drop(a);
    drop(b);
    if mode == Mode::SdkSingle {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}
