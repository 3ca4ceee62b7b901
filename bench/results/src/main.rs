//! Experiment results at volume: an experiment on a flag, `UNITS` exposed units over 14 days
//! and `EVENTS` metric events (half `purchase` with a value, half `pageview`), loaded through
//! `Store::append_events`, then `Control::experiment_results` timed — three metrics
//! (conversion and revenue on `purchase`, pageviews per unit), all from one statement per
//! range of units — with the process's peak resident memory during the computation (VmHWM,
//! reset first).
//!
//! `cargo run --release --manifest-path bench/results/Cargo.toml [UNITS] [EVENTS] [sqlite|postgres|both]`
//! (defaults 1 000 000, 10 000 000, both). PostgreSQL: `postgres://postgres@127.0.0.1:5432/test`
//! or `$BENCH_PG_URL`, in a fresh schema dropped afterwards (`KEEP=1` keeps it, or SQLite's
//! directory; then `REUSE=<schema or directory> … postgres|sqlite` times the results again on
//! it without loading). `UNITS_PER_RANGE=N` sets the store's `summary_units_per_range`.

use std::time::Instant;

use sqlx::{Connection, Executor};
use switchyard_control::{Actor, Control, ExperimentAction, ImportMode, Settings, Source};
use switchyard_storage::{ExposureRow, MetricRow, Store, StoreOptions, DAY_MS};

const START_MS: i64 = 1_796_083_200_000; // 2026-12-01

fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn admin() -> Actor {
    Actor {
        id: "bench".into(),
        name: None,
    }
}

async fn bench(url: &str, units: usize, events: usize) {
    // `UNITS_PER_RANGE=N`: the store's `summary_units_per_range` (a huge value: one statement).
    let mut options = StoreOptions::default();
    if let Some(n) = std::env::var("UNITS_PER_RANGE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.summary_units_per_range = n;
    }
    let store = Store::connect_with(url, &options).await.expect("store");
    let control = Control::new(Source::Store, Settings::default());
    control.attach(store.clone()).await.expect("attach");
    control
        .bootstrap(&switchyard_control::BootstrapPlan {
            environments: vec!["production".into()],
            admin_token: switchyard_control::AdminToken::GenerateIfNone,
            seed: None,
            imports: vec![],
            overwrite_imports: false,
        })
        .await
        .expect("bootstrap");
    // `REUSE=<schema or directory>`: time the results again over data kept by an earlier run
    // (`KEEP=1`), without loading it again.
    let reuse = std::env::var_os("REUSE").is_some();
    let started = if reuse {
        control
            .experiment("bench")
            .await
            .expect("the kept experiment")
            .started_at_ms
            .unwrap()
    } else {
        load(&control, &store, url, units, events).await
    };
    // Reset the peak so VmHWM covers the computation only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = vm("VmRSS:");
    let now = started + 20 * DAY_MS;
    let timer = Instant::now();
    let results = control
        .experiment_results("bench", now)
        .await
        .expect("results");
    let took = timer.elapsed();
    let peak = vm("VmHWM:");
    let units_seen: u64 = results.variants.iter().map(|v| v.units).sum();
    println!(
        "  results: {:.2} s for {} units, {} metrics, {} daily points; RSS {:.1} MiB before, peak {:.1} MiB during",
        took.as_secs_f64(),
        units_seen,
        results.metrics.len(),
        results.series.len(),
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    store.close().await;
}

/// Creates and starts the experiment, loads its exposures and events, and returns its start.
async fn load(control: &Control, store: &Store, url: &str, units: usize, events: usize) -> i64 {
    control
        .import(
            "flags:\n  - key: checkout\n",
            switchyard_engine::Format::Yaml,
            "bench.yaml",
            ImportMode::Merge,
            &admin(),
            None,
        )
        .await
        .expect("flag");
    let spec = serde_json::from_value(serde_json::json!({
        "id": "bench", "environment": "production", "flag": "checkout", "control": "off",
        "variants": {"off": 50, "on": 50},
        "metrics": [
            {"event": "purchase", "role": "primary"},
            {"name": "revenue", "event": "purchase", "kind": "sum", "role": "secondary"},
            {"name": "pageviews", "event": "pageview", "kind": "count", "role": "guardrail", "higherIsBetter": true}
        ]
    }))
    .unwrap();
    control
        .create_experiment(spec, &admin(), None)
        .await
        .expect("create");
    control
        .transition_experiment("bench", ExperimentAction::Start, &admin(), None)
        .await
        .expect("start");
    let started = control
        .experiment("bench")
        .await
        .unwrap()
        .started_at_ms
        .unwrap();

    // Exposures spread over 14 days from the start; events after each unit's exposure.
    let load = Instant::now();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let per_unit = events / units;
    let mut exposures = Vec::with_capacity(10_000);
    let mut metrics = Vec::with_capacity(10_000);
    let mut id = 0u64;
    for u in 0..units {
        let at = started + (next() % (14 * DAY_MS as u64)) as i64;
        let unit = format!("user-{u}");
        exposures.push(ExposureRow {
            environment: "production".into(),
            flag: "checkout".into(),
            unit: unit.clone(),
            variant: if next() % 2 == 0 { "on" } else { "off" }.into(),
            at_ms: at,
            experiment: Some("bench".into()),
        });
        for k in 0..per_unit {
            id += 1;
            let purchase = k % 2 == 0;
            metrics.push(MetricRow {
                environment: "production".into(),
                id: format!("e{id}"),
                unit: unit.clone(),
                event: if purchase { "purchase" } else { "pageview" }.into(),
                value: purchase.then(|| (next() % 10_000) as f64 / 100.0),
                at_ms: at + (next() % (3 * DAY_MS as u64)) as i64,
            });
        }
        if metrics.len() >= 10_000 || u + 1 == units {
            store
                .append_events(&exposures, &metrics, START_MS)
                .await
                .expect("append");
            exposures.clear();
            metrics.clear();
        }
    }
    let loaded = load.elapsed();
    println!(
        "  loaded {units} exposures and {} metric events in {:.1} s",
        id,
        loaded.as_secs_f64()
    );
    // The tables as autovacuum leaves them within a minute or so of a bulk load like this one
    // (since PostgreSQL 13 inserts alone trigger it): statistics, without which PostgreSQL
    // plans the join for a few rows, and the visibility map, without which index-only scans
    // visit the heap.
    if store.backend() == switchyard_storage::Backend::Postgres {
        let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
        conn.execute("VACUUM ANALYZE metric_events")
            .await
            .expect("vacuum");
        conn.execute("VACUUM ANALYZE experiment_exposures")
            .await
            .expect("vacuum");
    }
    started
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let units: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let events: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let which = args.next().unwrap_or_else(|| "both".into());
    if which == "sqlite" || which == "both" {
        let reuse = std::env::var_os("REUSE").map(std::path::PathBuf::from);
        let dir = reuse.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sy-bench-results-{}", std::process::id()))
        });
        std::fs::create_dir_all(&dir).unwrap();
        println!("sqlite:");
        bench(
            &format!("sqlite://{}", dir.join("results.db").display()),
            units,
            events,
        )
        .await;
        if std::env::var_os("KEEP").is_none() && reuse.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            println!("  kept {}", dir.display());
        }
    }
    if which == "postgres" || which == "both" {
        let base = std::env::var("BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let reuse = std::env::var("REUSE").ok();
        let schema = reuse
            .clone()
            .unwrap_or_else(|| format!("sy_bench_results_{}", std::process::id()));
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base).await.expect("postgres");
        if reuse.is_none() {
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .unwrap();
        }
        println!("postgres:");
        bench(
            &format!("{base}?options=-c%20search_path%3D{schema}"),
            units,
            events,
        )
        .await;
        if std::env::var_os("KEEP").is_none() && reuse.is_none() {
            admin
                .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .unwrap();
        } else {
            println!("  kept schema {schema}");
        }
    }
}
