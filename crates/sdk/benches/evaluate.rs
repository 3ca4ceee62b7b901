//! The SDK's evaluation cost beside the bare engine's, on the engine benchmark's flags.
//!
//! Run with `cargo bench -p switchyard-sdk`; a stand-in server on 127.0.0.1 (an ephemeral
//! port) serves the ruleset once, so the SDK evaluates what the engine benchmark does.
//! Results are in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use axum::routing::get;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use switchyard_engine::{load_str, Context, Format};
use time::OffsetDateTime;

const FLAGS: &str = include_str!("../../engine/benches/data/flags.yaml");

fn ruleset_body() -> serde_json::Value {
    let ruleset = load_str(FLAGS, Format::Yaml, None).expect("bench flags load");
    let doc = ruleset.to_document();
    json!({
        "format": "switchyard-ruleset", "version": 1, "revision": 1,
        "environment": "production",
        "flags": doc.flags, "segments": doc.segments,
    })
}

fn sdk(runtime: &tokio::runtime::Runtime) -> switchyard_sdk::Client {
    runtime.block_on(async {
        let body = ruleset_body();
        let app = axum::Router::new().route(
            "/sdk/v1/ruleset",
            get(move || {
                let body = body.clone();
                async move { axum::Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = switchyard_sdk::Client::builder(format!("http://{addr}"), "sy_bench_key")
            .streaming(false)
            .poll_interval(Duration::from_secs(3600))
            .env_overrides(false)
            .build()
            .await
            .expect("sdk");
        assert_eq!(client.source(), switchyard_sdk::Source::Server);
        client
    })
}

fn evaluation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let client = sdk(&runtime);
    let engine = load_str(FLAGS, Format::Yaml, None).expect("bench flags load");
    let eval = engine.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let ctx = Context::from_value(json!({
        "targetingKey": "user-123456",
        "account": "acct-0099",
        "email": "jane.doe@example.com",
        "app": {"version": "2.10.1"},
        "userAgent": "Mozilla/5.0 (iPhone; Mobile)",
        "age": 34,
        "plan": "pro"
    }))
    .expect("valid context");
    assert_eq!(
        client
            .bool_detail("five-conditions", &ctx, false)
            .rule_id
            .as_deref(),
        Some("targeted")
    );

    let mut group = c.benchmark_group("sdk_vs_engine");
    for key in ["plain", "rollout-25", "five-conditions"] {
        group.bench_function(format!("engine_typed_bool/{key}"), |b| {
            b.iter(|| {
                eval.evaluate_as(black_box(key), black_box(&ctx), false)
                    .value
            })
        });
        group.bench_function(format!("sdk_bool_value/{key}"), |b| {
            b.iter(|| client.bool_value(black_box(key), black_box(&ctx), false))
        });
    }
    group.bench_function("sdk_bool_detail/five-conditions", |b| {
        b.iter(|| client.bool_detail(black_box("five-conditions"), black_box(&ctx), false))
    });
    group.finish();
    runtime.block_on(client.shutdown());
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
