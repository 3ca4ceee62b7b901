//! `Ruleset::apply` against a full `compile`: random rulesets (prerequisites between flags,
//! segments that use each other, environments, archived flags, invalid definitions), random
//! changes, and the incremental result must serve exactly what compiling the final definitions
//! from scratch serves, for every flag, environment and context. From a ruleset without errors,
//! one batch of changes reports an error exactly when the full compile does.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_engine::document::SegmentDef;
use switchyard_engine::{compile, Change, Context, Document, FieldPath, FlagDef, Ruleset};
use time::OffsetDateTime;

const KEYS: &[&str] = &["a", "b", "c", "d", "e"];
const SEGMENTS: &[&str] = &["s1", "s2", "s3"];
const ENVS: &[&str] = &["", "dev", "prod", "other"];

fn arb_condition() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(vec!["free", "pro", "team"])
            .prop_map(|plan| json!({"attribute": "plan", "operator": "equals", "value": plan})),
        prop::sample::select(SEGMENTS.to_vec())
            .prop_map(|s| json!({"operator": "in_segment", "value": s})),
        prop::sample::select(SEGMENTS.to_vec())
            .prop_map(|s| json!({"operator": "not_in_segment", "value": s})),
        Just(json!({"attribute": "age", "operator": "gte", "value": 30})),
        // Invalid: an unknown operator.
        Just(json!({"attribute": "age", "operator": "bigger", "value": 30})),
    ]
    .boxed()
}

fn arb_serve(string: bool) -> BoxedStrategy<Value> {
    let variants: Vec<&'static str> = if string {
        vec!["x", "y", "z"]
    } else {
        vec!["on", "off"]
    };
    let split = if string {
        json!({"x": 50, "y": 30, "z": 20})
    } else {
        json!({"on": 40, "off": 60})
    };
    (
        prop::sample::select(variants),
        prop::option::of(prop::sample::select(vec![0.0, 0.5, 25.0, 100.0])),
        any::<bool>(),
    )
        .prop_map(move |(variant, percentage, use_split)| {
            let mut serve = if use_split {
                json!({"split": split.clone()})
            } else {
                json!({"variant": variant})
            };
            if let Some(p) = percentage {
                serve["percentage"] = json!(p);
            }
            serve
        })
        .boxed()
}

fn arb_targeting(string: bool) -> BoxedStrategy<Value> {
    (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec(
            (
                prop::sample::select(KEYS.to_vec()),
                prop::sample::select(vec!["on", "off", "x", "y"]),
            ),
            0..2,
        )),
        prop::option::of(prop::collection::vec(
            (
                prop::collection::vec(arb_condition(), 0..3),
                arb_serve(string),
            ),
            0..3,
        )),
        prop::option::of(arb_serve(string)),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["u1", "u2", "u3"]),
            0..3,
        )),
    )
        .prop_map(
            move |(enabled, killed, prereqs, rules, fallthrough, targets)| {
                let mut t = serde_json::Map::new();
                if let Some(e) = enabled {
                    t.insert("enabled".into(), json!(e));
                }
                if let Some(k) = killed {
                    t.insert("killSwitch".into(), json!(k));
                }
                if let Some(list) = prereqs {
                    let list: Vec<Value> = list
                        .into_iter()
                        .map(|(flag, variant)| json!({"flag": flag, "variant": variant}))
                        .collect();
                    t.insert("prerequisites".into(), json!(list));
                }
                if let Some(rules) = rules {
                    let rules: Vec<Value> = rules
                        .into_iter()
                        .map(|(conditions, mut serve)| {
                            serve["conditions"] = json!(conditions);
                            serve
                        })
                        .collect();
                    t.insert("rules".into(), json!(rules));
                }
                if let Some(ft) = fallthrough {
                    t.insert("fallthrough".into(), ft);
                }
                if let Some(ids) = targets {
                    let variant = if string { "y" } else { "on" };
                    t.insert(
                        "targets".into(),
                        json!([{"variant": variant, "values": ids}]),
                    );
                }
                Value::Object(t)
            },
        )
        .boxed()
}

fn arb_flag(key: &'static str) -> BoxedStrategy<FlagDef> {
    any::<bool>()
        .prop_flat_map(move |string| {
            (
                Just(string),
                arb_targeting(string),
                prop::option::of(arb_targeting(string)),
                prop::option::of(arb_targeting(string)),
                prop::sample::select(vec![false, false, false, true]),
                prop::option::of(prop::sample::select(vec![10.0, 50.0])),
            )
        })
        .prop_map(move |(string, top, dev, prod, archived, compact)| {
            let mut flag = top;
            flag["key"] = json!(key);
            if string {
                flag["variants"] = json!({"x": "X", "y": "Y", "z": "Z"});
                flag["defaultVariant"] = json!("x");
            } else if let Some(p) = compact {
                // The compact layout (conflicts with an explicit fallthrough are errors).
                flag["percentage"] = json!(p);
            }
            let mut envs = serde_json::Map::new();
            if let Some(dev) = dev {
                envs.insert("dev".into(), dev);
            }
            if let Some(prod) = prod {
                envs.insert("prod".into(), prod);
            }
            if !envs.is_empty() {
                flag["environments"] = Value::Object(envs);
            }
            if archived {
                flag["archived"] = json!(true);
            }
            let mut def =
                FlagDef::from_value_at(flag, &FieldPath::root()).expect("generated shape");
            def.origin = FieldPath::root().key("flags").key(key);
            def
        })
        .boxed()
}

fn arb_segment() -> BoxedStrategy<SegmentDef> {
    (
        prop::collection::vec(prop::sample::select(vec!["u1", "u2", "u3", "u4"]), 0..3),
        prop::collection::vec(arb_condition(), 0..2),
    )
        .prop_map(|(included, conditions)| {
            serde_json::from_value(json!({"included": included, "conditions": conditions}))
                .expect("segment shape")
        })
        .boxed()
}

fn arb_change() -> BoxedStrategy<Change> {
    prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_flat_map(arb_flag).prop_map(|f| Change::Flag(Box::new(f))),
        1 => prop::sample::select(KEYS.to_vec()).prop_map(|k| Change::RemoveFlag(k.to_owned())),
        2 => (prop::sample::select(SEGMENTS.to_vec()), arb_segment())
            .prop_map(|(n, s)| Change::Segment(n.to_owned(), s)),
        1 => prop::sample::select(SEGMENTS.to_vec()).prop_map(|n| Change::RemoveSegment(n.to_owned())),
    ]
    .boxed()
}

/// The definitions as maps, so changes can be applied to them the plain way.
#[derive(Clone, Default)]
struct Defs {
    flags: BTreeMap<String, FlagDef>,
    segments: BTreeMap<String, SegmentDef>,
}

impl Defs {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Flag(def) => {
                self.flags.insert(def.key.clone(), (**def).clone());
            }
            Change::RemoveFlag(key) => {
                self.flags.remove(key);
            }
            Change::Segment(name, def) => {
                self.segments.insert(name.clone(), def.clone());
            }
            Change::RemoveSegment(name) => {
                self.segments.remove(name);
            }
        }
    }

    fn document(&self) -> Document {
        Document {
            version: 1,
            segments: self.segments.clone(),
            flags: self.flags.values().cloned().collect(),
        }
    }

    fn changes(&self) -> Vec<Change> {
        let mut changes: Vec<Change> = self
            .segments
            .iter()
            .map(|(n, s)| Change::Segment(n.clone(), s.clone()))
            .collect();
        changes.extend(
            self.flags
                .values()
                .cloned()
                .map(|f| Change::Flag(Box::new(f))),
        );
        changes
    }
}

fn contexts() -> Vec<Context> {
    let mut out = vec![Context::new()];
    for (i, plan) in ["free", "pro", "team"].iter().enumerate() {
        for user in ["u1", "u2", "u3", "u4", "someone-else", "x-17", "user-3"] {
            out.push(
                Context::with_targeting_key(user)
                    .with("plan", *plan)
                    .with("age", 20 + 10 * i as i64),
            );
        }
    }
    out
}

/// Every served answer of `a` and `b` is the same.
fn same_answers(a: &Ruleset, b: &Ruleset) -> Result<(), TestCaseError> {
    for key in KEYS {
        prop_assert_eq!(a.is_served(key), b.is_served(key), "is_served({})", key);
        for env in ENVS {
            let (ea, eb) = (
                a.evaluator(env, OffsetDateTime::UNIX_EPOCH),
                b.evaluator(env, OffsetDateTime::UNIX_EPOCH),
            );
            for ctx in contexts() {
                let (x, y) = (ea.evaluate(key, &ctx), eb.evaluate(key, &ctx));
                prop_assert_eq!(x.value, y.value, "{} in {:?}", key, env);
                prop_assert_eq!(x.variant, y.variant, "{} in {:?}", key, env);
                prop_assert_eq!(x.reason, y.reason, "{} in {:?}", key, env);
                prop_assert_eq!(
                    x.error.map(|e| e.code),
                    y.error.map(|e| e.code),
                    "{} in {:?}",
                    key,
                    env
                );
            }
        }
    }
    Ok(())
}

fn has_errors(diagnostics: &[switchyard_engine::Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.is_error())
}

proptest! {
    // Most random starts have errors; the batch property only uses those that do not.
    #![proptest_config(ProptestConfig {
        cases: 500,
        max_global_rejects: 200_000,
        ..ProptestConfig::default()
    })]

    /// Any start, any changes one at a time: the same answers as compiling the end state.
    #[test]
    fn applying_changes_one_by_one_serves_like_a_full_compile(
        start in prop::collection::vec(arb_change(), 0..10),
        changes in prop::collection::vec(arb_change(), 1..10),
    ) {
        let mut defs = Defs::default();
        for c in &start {
            defs.apply(c);
        }
        let (mut incremental, _) = compile(&defs.document());
        for c in &changes {
            defs.apply(c);
            (incremental, _) = incremental.apply(std::slice::from_ref(c));
        }
        let (full, _) = compile(&defs.document());
        same_answers(&incremental, &full)?;
    }

    /// From definitions without errors, one batch of changes reports errors exactly when the
    /// full compile of the result has them (what the server's validation relies on), and the
    /// served answers agree.
    #[test]
    fn one_batch_from_a_valid_ruleset_reports_errors_like_a_full_compile(
        start in prop::collection::vec(arb_change(), 0..12),
        changes in prop::collection::vec(arb_change(), 1..4),
    ) {
        let mut defs = Defs::default();
        for c in &start {
            defs.apply(c);
        }
        let (base, diagnostics) = compile(&defs.document());
        prop_assume!(!has_errors(&diagnostics));
        for c in &changes {
            defs.apply(c);
        }
        let (incremental, reported) = base.apply(&changes);
        let (full, expected) = compile(&defs.document());
        prop_assert_eq!(has_errors(&reported), has_errors(&expected), "reported {:?}\nexpected {:?}", reported, expected);
        same_answers(&incremental, &full)?;
    }

    /// Building everything from nothing in one batch is a full compile.
    #[test]
    fn one_batch_from_nothing_is_a_full_compile(start in prop::collection::vec(arb_change(), 0..12)) {
        let mut defs = Defs::default();
        for c in &start {
            defs.apply(c);
        }
        let (from_nothing, reported) = Ruleset::default().apply(&defs.changes());
        let (full, expected) = compile(&defs.document());
        prop_assert_eq!(has_errors(&reported), has_errors(&expected));
        same_answers(&from_nothing, &full)?;
    }
}

/// A change to one flag of many recompiles that flag and its dependents only (its cost does
/// not grow with the ruleset: the criterion bench measures it, this checks the dependents).
#[test]
fn a_change_recompiles_dependents_and_reports_their_problems() {
    let doc = serde_json::json!({"flags": [
        {"key": "base", "variants": {"on": true, "off": false, "beta": true}, "defaultVariant": "off"},
        {"key": "user", "prerequisites": [{"flag": "base", "variant": "beta"}]},
    ]});
    let ruleset = switchyard_engine::load_value(doc).expect("valid");
    let mut base = ruleset.definition("base").unwrap().clone();
    base.variants = serde_json::from_value(json!({"on": true, "off": false})).unwrap();
    let (next, diagnostics) = ruleset.apply(&[Change::Flag(Box::new(base))]);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.flag.as_deref() == Some("user")
                && d.message.contains("has no variant `beta`")),
        "{diagnostics:?}"
    );
    assert!(!next.is_served("user"));
    assert!(ruleset.is_served("user"), "the original is untouched");
    let (_, diagnostics) = ruleset.apply(&[Change::RemoveFlag("base".into())]);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("unknown prerequisite flag `base`")),
        "{diagnostics:?}"
    );
}

/// A cycle made of two changes arriving separately is caught by the second.
#[test]
fn a_cycle_through_a_changed_flag_is_reported() {
    let ruleset = switchyard_engine::load_value(serde_json::json!({"flags": [
        {"key": "a", "prerequisites": [{"flag": "b", "variant": "on"}]},
        {"key": "b"},
    ]}))
    .expect("valid");
    let mut b = ruleset.definition("b").unwrap().clone();
    b.targeting.prerequisites =
        Some(serde_json::from_value(json!([{"flag": "a", "variant": "on"}])).unwrap());
    let (_, diagnostics) = ruleset.apply(&[Change::Flag(Box::new(b))]);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("prerequisites form a cycle")),
        "{diagnostics:?}"
    );
}
