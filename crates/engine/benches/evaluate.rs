//! Criterion benchmarks of the engine's hot paths (inputs in `benches/data/`).
//!
//! Run with `cargo bench -p switchyard-engine`; results and the machine are recorded in
//! `docs/benchmarks.md`. Contexts are built once, outside the timed loop.

use std::hint::black_box;

#[path = "support/generated_flags.rs"]
mod generated_flags;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use switchyard_engine::{compile, load_str, Change, Context, Document, Format};
use time::OffsetDateTime;

const FLAGS: &str = include_str!("data/flags.yaml");

fn evaluation(c: &mut Criterion) {
    let ruleset =
        load_str(FLAGS, Format::Yaml, Some("benches/data/flags.yaml")).expect("bench flags load");
    let eval = ruleset.evaluator("production", OffsetDateTime::UNIX_EPOCH);
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

    // Sanity: the benchmarked paths are the ones intended.
    assert_eq!(
        eval.evaluate("five-conditions", &ctx).rule_id(),
        Some("targeted")
    );
    assert_eq!(eval.evaluate_all(&ctx).count(), 20);

    let mut group = c.benchmark_group("evaluate");
    group.bench_function("plain_boolean", |b| {
        b.iter(|| eval.evaluate(black_box("plain"), black_box(&ctx)))
    });
    group.bench_function("rollout_25_percent", |b| {
        b.iter(|| eval.evaluate(black_box("rollout-25"), black_box(&ctx)))
    });
    group.bench_function("rule_5_conditions_100_item_list_regex_semver", |b| {
        b.iter(|| eval.evaluate(black_box("five-conditions"), black_box(&ctx)))
    });
    group.bench_function("split_3_variants", |b| {
        b.iter(|| eval.evaluate(black_box("split-3"), black_box(&ctx)))
    });
    group.bench_function("typed_bool_plain", |b| {
        b.iter(|| {
            eval.evaluate_as(black_box("plain"), black_box(&ctx), false)
                .value
        })
    });
    group.bench_function("all_20_flags", |b| {
        b.iter(|| {
            let mut on = 0usize;
            for (_, e) in eval.evaluate_all(black_box(&ctx)) {
                on += usize::from(e.value == &serde_json::Value::Bool(true));
            }
            on
        })
    });
    group.finish();
}

fn compilation(c: &mut Criterion) {
    let text = generated_flags::generated_flags(10_000, false);
    let value = switchyard_engine::source::parse(&text, Format::Yaml)
        .expect("yaml")
        .value;
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10k_flags_from_value", |b| {
        b.iter_batched(
            || value.clone(),
            |v| {
                let (doc, d1) = Document::from_value(v);
                let (rs, d2) = compile(&doc);
                assert!(d1.is_empty() && d2.is_empty());
                rs
            },
            BatchSize::LargeInput,
        )
    });
    // The ruleset produced is dropped outside the timing: a replica swaps the new snapshot in
    // and frees the old one after, off the path of the change.
    group.bench_function("10k_flags_from_yaml_text", |b| {
        b.iter_with_large_drop(|| load_str(black_box(&text), Format::Yaml, None).expect("valid"))
    });
    // One change to one flag of 10 000 (what a replica does per change): incremental.
    let ruleset = load_str(&text, Format::Yaml, None).expect("valid");
    let mut changed = ruleset.definition("flag-5001").expect("flag").clone();
    changed.targeting.fallthrough = Some(
        serde_json::from_value(serde_json::json!({"percentage": 50, "variant": "on"}))
            .expect("serve"),
    );
    let change = [Change::Flag(Box::new(changed))];
    group.bench_function("apply_one_change_to_10k_flags", |b| {
        b.iter(|| {
            let (next, diagnostics) = ruleset.apply(black_box(&change));
            assert!(diagnostics.is_empty());
            next
        })
    });
    group.finish();
}

criterion_group!(benches, evaluation, compilation);
criterion_main!(benches);
