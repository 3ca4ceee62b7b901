//! Switchyard's engine beside Unleash's `unleash-yggdrasil` 0.21.7, in one process run.
//!
//! The same four cases on both sides (a plain on/off flag, a 25 % rollout, one rule of five
//! conditions — a 100-item list, a suffix, a semver compare, a substring and a numeric compare
//! — and a 3-variant split), plus every one of 20 flags for one context. Contexts are built
//! once and cycled over 1 024 users so buckets vary. Before anything is timed, both sides'
//! answers are checked: identical for every context where the answer does not depend on the
//! hash (plain, the rule), and the shares the definitions promise where it does (the two
//! engines hash differently by design, so rollout and split units are not the same units).
//! Timing alternates the two sides round by round and reports each side's median.
//!
//! Run: `cargo run --release --manifest-path bench/compare/Cargo.toml` (docs/benchmarks.md).
//! `CYCLE=N` times over the first `N` users only (all of them fit in the first-level cache:
//! what is left is computation, not waiting for memory).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use serde_json::{json, Value};
use switchyard_engine::{load_str, Context, Format, Ruleset};
use unleash_types::client_features::ClientFeatures;
use unleash_yggdrasil::{Context as UContext, EngineState};

const USERS: usize = 1024;
const ROUNDS: usize = 9;
/// Evaluations per timed round and side.
const PER_ROUND: usize = 400_000;

/// The 100 accounts the rule's list holds (of the 150 the contexts use).
fn accounts() -> Vec<String> {
    (0..100).map(|i| format!("acct-{i:04}")).collect()
}

/// The extra flags that make up 20 for the evaluate-all case: plain toggles and 5 % rollouts.
const EXTRAS: usize = 16;

fn switchyard_flags() -> Ruleset {
    let list: Vec<Value> = accounts().into_iter().map(Value::String).collect();
    let mut flags = vec![
        json!({"key": "plain", "enabled": true}),
        json!({"key": "rollout-25", "fallthrough": {"percentage": 25, "variant": "on"}}),
        json!({"key": "five-conditions",
               "rules": [{"id": "targeted", "conditions": [
                   {"attribute": "account", "operator": "in", "value": list},
                   {"attribute": "email", "operator": "ends_with", "value": "@example.com"},
                   {"attribute": "appVersion", "operator": "semver_gt", "value": "2.3.0"},
                   {"attribute": "userAgent", "operator": "contains", "value": "Mobile"},
                   {"attribute": "age", "operator": "gte", "value": 18}],
                   "variant": "on"}],
               "fallthrough": {"variant": "off"}}),
        json!({"key": "split-3", "type": "string",
               "variants": {"control": "control", "treatment-a": "treatment-a", "treatment-b": "treatment-b"},
               "defaultVariant": "control",
               "fallthrough": {"split": {"control": 50, "treatment-a": 25, "treatment-b": 25}}}),
    ];
    for i in 0..EXTRAS {
        flags.push(if i % 2 == 0 {
            json!({"key": format!("extra-{i}")})
        } else {
            json!({"key": format!("extra-{i}"), "fallthrough": {"percentage": 5, "variant": "on"}})
        });
    }
    let doc = json!({"flags": flags}).to_string();
    load_str(&doc, Format::Json, Some("compare")).expect("the Switchyard flags compile")
}

fn unleash_flags() -> EngineState {
    let list: Vec<String> = accounts();
    let variant = |name: &str, weight: u32| json!({"name": name, "weight": weight, "weightType": "variable", "stickiness": "userId"});
    let mut features = vec![
        json!({"name": "plain", "enabled": true, "strategies": [{"name": "default", "parameters": {}}]}),
        json!({"name": "rollout-25", "enabled": true, "strategies": [{"name": "flexibleRollout",
               "parameters": {"rollout": "25", "stickiness": "userId", "groupId": "rollout-25"}}]}),
        json!({"name": "five-conditions", "enabled": true, "strategies": [{"name": "default", "parameters": {}, "constraints": [
               {"contextName": "account", "operator": "IN", "values": list},
               {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@example.com"]},
               {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.3.0"},
               {"contextName": "userAgent", "operator": "STR_CONTAINS", "values": ["Mobile"]},
               {"contextName": "age", "operator": "NUM_GTE", "value": "18"}]}]}),
        json!({"name": "split-3", "enabled": true, "strategies": [{"name": "flexibleRollout",
               "parameters": {"rollout": "100", "stickiness": "userId", "groupId": "split-3"}}],
               "variants": [variant("control", 500), variant("treatment-a", 250), variant("treatment-b", 250)]}),
    ];
    for i in 0..EXTRAS {
        features.push(if i % 2 == 0 {
            json!({"name": format!("extra-{i}"), "enabled": true, "strategies": [{"name": "default", "parameters": {}}]})
        } else {
            json!({"name": format!("extra-{i}"), "enabled": true, "strategies": [{"name": "flexibleRollout",
                   "parameters": {"rollout": "5", "stickiness": "userId", "groupId": format!("extra-{i}")}}]})
        });
    }
    let features: ClientFeatures =
        serde_json::from_value(json!({"version": 2, "features": features}))
            .expect("Unleash features parse");
    let engine = EngineState::default();
    let warnings = engine.apply_client_features(features);
    assert!(
        warnings.as_ref().is_none_or(|w| w.is_empty()),
        "yggdrasil warnings: {warnings:?}"
    );
    engine
}

/// One user's attributes, as each side takes them.
struct User {
    switchyard: Context,
    unleash: UContext,
}

fn users() -> Vec<User> {
    (0..USERS)
        .map(|i| {
            let id = format!("user-{i}");
            let account = format!("acct-{:04}", i % 150);
            let email = if i % 5 == 0 {
                format!("u{i}@other.org")
            } else {
                format!("u{i}@example.com")
            };
            let version = format!("2.{}.0", i % 8);
            let agent = if i % 3 == 0 {
                "Mozilla/5.0 (X11; Linux)"
            } else {
                "Mozilla/5.0 (iPhone; Mobile)"
            };
            let age = 10 + i % 40;
            let switchyard = Context::from_value(json!({
                "targetingKey": id, "account": account, "email": email,
                "appVersion": version, "userAgent": agent, "age": age,
            }))
            .expect("a valid context");
            let properties = HashMap::from([
                ("account".to_owned(), account),
                ("email".to_owned(), email),
                ("appVersion".to_owned(), version),
                ("userAgent".to_owned(), agent.to_owned()),
                ("age".to_owned(), age.to_string()),
            ]);
            let unleash = UContext {
                user_id: Some(id),
                session_id: None,
                environment: None,
                app_name: None,
                current_time: None,
                remote_address: None,
                properties: Some(properties),
            };
            User {
                switchyard,
                unleash,
            }
        })
        .collect()
}

fn share(n: usize) -> f64 {
    100.0 * n as f64 / USERS as f64
}

/// Both sides answer what their definitions say, before anything is timed.
fn check_answers(ruleset: &Ruleset, engine: &EngineState, users: &[User]) {
    let eval = ruleset.evaluator("production", time::OffsetDateTime::UNIX_EPOCH);
    let on = |key: &str, u: &User| eval.evaluate(key, &u.switchyard).variant == Some("on");
    let mut matched = 0;
    for u in users {
        assert!(
            on("plain", u) && engine.is_enabled("plain", &u.unleash, &None),
            "plain"
        );
        let (s, y) = (
            on("five-conditions", u),
            engine.is_enabled("five-conditions", &u.unleash, &None),
        );
        assert_eq!(s, y, "five-conditions disagree for {:?}", u.unleash.user_id);
        matched += usize::from(s);
    }
    assert!(
        matched > 50 && matched < USERS - 50,
        "the rule must sometimes match and sometimes not ({matched})"
    );
    for (key, target) in [("rollout-25", 25.0)] {
        let s = users.iter().filter(|u| on(key, u)).count();
        let y = users
            .iter()
            .filter(|u| engine.is_enabled(key, &u.unleash, &None))
            .count();
        for (side, n) in [("switchyard", s), ("yggdrasil", y)] {
            assert!(
                (share(n) - target).abs() < 5.0,
                "{key}: {side} serves {:.1} %",
                share(n)
            );
        }
    }
    for (variant, target) in [
        ("control", 50.0),
        ("treatment-a", 25.0),
        ("treatment-b", 25.0),
    ] {
        let s = users
            .iter()
            .filter(|u| eval.evaluate("split-3", &u.switchyard).variant == Some(variant))
            .count();
        let y = users
            .iter()
            .filter(|u| engine.get_variant("split-3", &u.unleash, &None).name == variant)
            .count();
        for (side, n) in [("switchyard", s), ("yggdrasil", y)] {
            assert!(
                (share(n) - target).abs() < 6.0,
                "split-3 {variant}: {side} serves {:.1} %",
                share(n)
            );
        }
    }
    assert_eq!(eval.evaluate_all(&users[0].switchyard).count(), 4 + EXTRAS);
    assert_eq!(
        engine
            .resolve_all(&users[0].unleash, &None)
            .map(|m| m.len()),
        Some(4 + EXTRAS)
    );
    println!(
        "answers checked on {USERS} users: plain and five-conditions identical ({matched} match the rule); \
         rollout and split within the promised shares on both sides"
    );
}

/// Nanoseconds per call of `f` over `n` calls (cycling the users).
fn time_ns(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let cycle: usize = std::env::var("CYCLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(USERS, |n: usize| n.clamp(1, USERS));
    let start = Instant::now();
    for i in 0..n {
        f(i % cycle);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let ruleset = switchyard_flags();
    let engine = unleash_flags();
    let users = users();
    check_answers(&ruleset, &engine, &users);
    let eval = ruleset.evaluator("production", time::OffsetDateTime::UNIX_EPOCH);

    type Side<'a> = Box<dyn FnMut(usize) + 'a>;
    let cases: Vec<(&str, usize, Side, Side)> = vec![
        (
            "plain on/off",
            PER_ROUND,
            Box::new(|i| {
                black_box(eval.evaluate(black_box("plain"), &users[i].switchyard));
            }),
            Box::new(|i| {
                black_box(engine.is_enabled(black_box("plain"), &users[i].unleash, &None));
            }),
        ),
        (
            "25 % rollout",
            PER_ROUND,
            Box::new(|i| {
                black_box(eval.evaluate(black_box("rollout-25"), &users[i].switchyard));
            }),
            Box::new(|i| {
                black_box(engine.is_enabled(black_box("rollout-25"), &users[i].unleash, &None));
            }),
        ),
        (
            "rule of 5 conditions (100-item list)",
            PER_ROUND,
            Box::new(|i| {
                black_box(eval.evaluate(black_box("five-conditions"), &users[i].switchyard));
            }),
            Box::new(|i| {
                black_box(engine.is_enabled(
                    black_box("five-conditions"),
                    &users[i].unleash,
                    &None,
                ));
            }),
        ),
        (
            "3-variant split",
            PER_ROUND,
            Box::new(|i| {
                black_box(eval.evaluate(black_box("split-3"), &users[i].switchyard));
            }),
            Box::new(|i| {
                black_box(engine.get_variant(black_box("split-3"), &users[i].unleash, &None));
            }),
        ),
        (
            "all 20 flags for one context",
            PER_ROUND / 20,
            Box::new(|i| {
                for item in eval.evaluate_all(&users[i].switchyard) {
                    black_box(item);
                }
            }),
            Box::new(|i| {
                black_box(engine.resolve_all(&users[i].unleash, &None));
            }),
        ),
    ];
    println!("{ROUNDS} rounds per case, the two sides alternating; median ns per evaluation\n");
    println!(
        "{:<40} {:>12} {:>12} {:>8}",
        "case", "switchyard", "yggdrasil", "ratio"
    );
    // For profiling one side of one case: `COMPARE_ONLY=<part of a case name>` and
    // `COMPARE_SIDE=switchyard|yggdrasil` (the other side is then not run).
    let only = std::env::var("COMPARE_ONLY").ok();
    let side = std::env::var("COMPARE_SIDE").ok();
    for (name, n, mut ours, mut theirs) in cases {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        if let Some(side) = side.as_deref() {
            let f: &mut Side = if side == "yggdrasil" {
                &mut theirs
            } else {
                &mut ours
            };
            let ns = median((0..ROUNDS * 4).map(|_| time_ns(n, &mut *f)).collect());
            println!("{name:<40} {side}: {ns:.1} ns");
            continue;
        }
        // Warm up both.
        time_ns(n / 4, &mut ours);
        time_ns(n / 4, &mut theirs);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            a.push(time_ns(n, &mut ours));
            b.push(time_ns(n, &mut theirs));
        }
        let (a, b) = (median(a), median(b));
        println!("{name:<40} {a:>12.1} {b:>12.1} {:>7.1}×", b / a);
    }
}
