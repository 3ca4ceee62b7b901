//! Appends `BATCHES` batches of 1 000 events (half exposures of distinct units, half metric
//! events with distinct ids) through `Store::append_events`, the path `POST /sdk/v1/events`
//! takes, and prints events per second for SQLite (a temporary file) and PostgreSQL (a fresh
//! schema in `postgres://postgres@127.0.0.1:5432/test`, or `$BENCH_PG_URL`).
//!
//! Each store is measured with one writer (batches one after another) and with four
//! concurrent writers (as concurrent SDK requests arrive).
//!
//! `cargo run --release --manifest-path bench/events/Cargo.toml [BATCHES]`

use std::time::Instant;

use sqlx::Executor;
use switchyard_storage::{ExposureRow, MetricRow, Store};

const BATCH: usize = 1000;

fn batch(b: usize) -> (Vec<ExposureRow>, Vec<MetricRow>) {
    let half = BATCH / 2;
    let exposures = (0..half)
        .map(|i| ExposureRow {
            environment: "production".into(),
            flag: "checkout".into(),
            unit: format!("user-{b}-{i}"),
            variant: if i % 2 == 0 { "on" } else { "off" }.into(),
            at_ms: 1_764_576_000_000 + i as i64,
            experiment: None,
        })
        .collect();
    let metrics = (0..half)
        .map(|i| MetricRow {
            environment: "production".into(),
            id: format!("evt-{b}-{i}"),
            unit: format!("user-{b}-{i}"),
            event: "purchase".into(),
            value: Some(i as f64),
            at_ms: 1_764_576_000_000 + i as i64,
        })
        .collect();
    (exposures, metrics)
}

/// Appends `batches` batches from `writers` concurrent tasks (as concurrent SDK requests do);
/// events per second.
async fn run(store: &Store, batches: usize, writers: usize, offset: usize) -> f64 {
    let data: Vec<_> = (offset..offset + batches).map(batch).collect();
    let mut shares: Vec<Vec<_>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, b) in data.into_iter().enumerate() {
        shares[i % writers].push(b);
    }
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let store = store.clone();
            tokio::spawn(async move {
                for (e, m) in &share {
                    let appended = store.append_events(e, m, 0).await.expect("append");
                    assert_eq!(appended.exposures + appended.metrics, BATCH as u64);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (batches * BATCH) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("sy-bench-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = Store::connect(&format!("sqlite://{}", dir.join("events.db").display()))
        .await
        .expect("sqlite");
    for (i, writers) in [1, 4].into_iter().enumerate() {
        let rate = run(&sqlite, batches, writers, i * batches).await;
        println!("sqlite:   {rate:>9.0} events/s ({batches} batches of {BATCH}, {writers} writer(s))");
    }
    sqlite.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let base = std::env::var("BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("sy_bench_events_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.expect("postgres");
    admin
        .execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    let pg = Store::connect(&format!("{base}?options=-c%20search_path%3D{schema}"))
        .await
        .expect("postgres store");
    for (i, writers) in [1, 4].into_iter().enumerate() {
        let rate = run(&pg, batches, writers, i * batches).await;
        println!("postgres: {rate:>9.0} events/s ({batches} batches of {BATCH}, {writers} writer(s))");
    }
    pg.close().await;
    admin
        .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await
        .unwrap();
}
