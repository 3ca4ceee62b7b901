//! Typed access, bulk evaluation and robustness of the evaluator.

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_engine::{load_str, Context, ErrorCode, Format, Reason, Ruleset};
use time::OffsetDateTime;

const FLAGS: &str = r#"
flags:
  - key: dark-mode
  - key: greeting
    type: string
    variants: {formal: "Good day", casual: "Hi"}
    defaultVariant: formal
    rules:
      - id: young
        conditions: [{attribute: age, operator: lt, value: 30}]
        variant: casual
  - key: limit
    type: number
    defaultValue: 4
    rules:
      - {id: big, conditions: [{attribute: plan, operator: equals, value: big}], value: 15}
      - {id: fraction, conditions: [{attribute: plan, operator: equals, value: odd}], value: 2.5}
  - key: layout
    type: json
    defaultValue: {columns: 2}
"#;

fn ruleset() -> Ruleset {
    load_str(FLAGS, Format::Yaml, None).expect("valid")
}

#[test]
fn typed_access_reports_type_mismatch_instead_of_coercing() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let ctx = Context::with_targeting_key("u").with("plan", "big");

    let b = ev.evaluate_as("dark-mode", &ctx, false);
    assert!(b.value);
    assert_eq!(b.variant, Some("on"));

    let s = ev.evaluate_as("greeting", &ctx, "fallback");
    assert_eq!(s.value, "Good day");

    let n = ev.evaluate_as::<i64>("limit", &ctx, 0);
    assert_eq!((n.value, n.reason), (15, Reason::TargetingMatch));
    let f = ev.evaluate_as::<f64>("limit", &ctx, 0.0);
    assert_eq!(f.value, 15.0);

    let odd = Context::with_targeting_key("u").with("plan", "odd");
    let n = ev.evaluate_as::<i64>("limit", &odd, -1);
    assert_eq!(n.value, -1, "2.5 is not an integer");
    assert_eq!(
        n.error.as_ref().map(|e| e.code),
        Some(ErrorCode::TypeMismatch)
    );
    assert_eq!(n.reason, Reason::Error);

    let wrong = ev.evaluate_as("greeting", &ctx, true);
    assert!(wrong.value, "caller's default");
    assert_eq!(wrong.variant, None);
    let err = wrong.error.expect("type mismatch");
    assert_eq!(err.code, ErrorCode::TypeMismatch);
    assert!(
        err.message.contains("flag `greeting` is of type string"),
        "{}",
        err.message
    );

    let empty = serde_json::Map::new();
    let obj = ev.evaluate_as::<&serde_json::Map<String, Value>>("layout", &ctx, &empty);
    assert_eq!(obj.value.get("columns"), Some(&json!(2)));

    let missing = ev.evaluate_as("nope", &ctx, 7i64);
    assert_eq!(missing.value, 7);
    assert_eq!(missing.error.map(|e| e.code), Some(ErrorCode::FlagNotFound));
}

#[test]
fn evaluate_all_covers_every_served_flag_in_order() {
    let rs = ruleset();
    let ev = rs.evaluator("", OffsetDateTime::UNIX_EPOCH);
    let ctx = Context::with_targeting_key("u").with("age", 20);
    let all: Vec<(&str, Value)> = ev
        .evaluate_all(&ctx)
        .map(|(k, e)| (k, e.value.clone()))
        .collect();
    assert_eq!(
        all,
        vec![
            ("dark-mode", json!(true)),
            ("greeting", json!("Hi")),
            ("limit", json!(4)),
            ("layout", json!({"columns": 2})),
        ]
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC*".prop_map(Value::from),
        prop_oneof![
            Just("1.2.3"),
            Just("2026-01-01T00:00:00Z"),
            Just("beta"),
            Just("")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No context, however odd, makes evaluation panic or serve a value of the wrong type.
    #[test]
    fn any_context_evaluates_without_panicking(attrs in prop::collection::btree_map(
        prop_oneof![Just("targetingKey".to_owned()), Just("plan".to_owned()), Just("age".to_owned()), "[a-z.]{0,10}"],
        arb_json(), 0..8))
    {
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seeds/default-flags.yaml")).unwrap();
        for rs in [ruleset(), load_str(&example, Format::Yaml, None).unwrap()] {
            let map: serde_json::Map<String, Value> = attrs.clone().into_iter().collect();
            let Ok(ctx) = Context::from_map(map) else { continue };
            for env in ["", "production"] {
                let ev = rs.evaluator(env, OffsetDateTime::UNIX_EPOCH);
                for (key, eval) in ev.evaluate_all(&ctx) {
                    let def_type = rs.definition(key).and_then(|d| d.flag_type);
                    if eval.error.is_none() {
                        prop_assert!(eval.variant.is_some());
                        if let Some(t) = def_type {
                            prop_assert!(t.accepts(eval.value), "{key} served {}", eval.value);
                        }
                    }
                }
            }
        }
    }
}

/// When a flag does not compile, the flags after it are renumbered; prerequisites must follow
/// them, and flags requiring the broken one are not served either (the server serves what
/// still compiles after an engine change).
#[test]
fn prerequisites_survive_a_flag_that_does_not_compile() {
    use switchyard_engine::{compile, Document};
    let value = serde_json::json!({"flags": [
        {"key": "broken", "rules": [{"variant": "nope"}]},
        {"key": "needs-broken", "prerequisites": [{"flag": "broken", "variant": "on"}]},
        {"key": "parent", "enabled": false},
        {"key": "child", "prerequisites": [{"flag": "parent", "variant": "on"}]},
    ]});
    let (doc, d) = Document::from_value(value);
    assert!(d.is_empty());
    let (rs, diagnostics) = compile(&doc);
    assert!(diagnostics
        .iter()
        .any(|d| d.flag.as_deref() == Some("needs-broken")
            && d.message
                .contains("prerequisite flag `broken` does not compile")));
    assert_eq!(rs.keys().collect::<Vec<_>>(), ["parent", "child"]);
    let ev = rs.evaluator("", OffsetDateTime::UNIX_EPOCH);
    let child = ev.evaluate("child", &Context::with_targeting_key("u"));
    assert_eq!(child.reason, Reason::Default);
    assert_eq!(
        child.detail,
        Some(switchyard_engine::Detail::PrerequisiteFailed("parent"))
    );
}

#[test]
fn uniform_variants_are_the_flags_that_serve_one_thing_to_everyone() {
    let rs = load_str(
        r#"
flags:
  - key: on-everywhere
  - key: killed
    killSwitch: true
  - key: off
    enabled: false
  - key: full-rollout
    fallthrough: {percentage: 100, variant: "on"}
  - key: partial
    fallthrough: {percentage: 25, variant: "on"}
  - key: zero
    fallthrough: {percentage: 0, variant: "on"}
  - key: with-rule
    rules: [{conditions: [{attribute: plan, operator: equals, value: pro}], variant: "on"}]
    fallthrough: {variant: "off"}
  - key: split
    fallthrough: {split: {"on": 50, "off": 50}}
  - key: per-env
    environments:
      production: {fallthrough: {percentage: 10, variant: "on"}}
"#,
        Format::Yaml,
        None,
    )
    .unwrap();
    let got = |key: &str, env: &str| rs.uniform_variant(key, env);
    assert_eq!(got("on-everywhere", "production"), Some("on"));
    assert_eq!(got("killed", "production"), Some("off"));
    assert_eq!(got("off", "production"), Some("off"));
    assert_eq!(got("full-rollout", "production"), Some("on"));
    assert_eq!(got("partial", "production"), None);
    assert_eq!(got("zero", "production"), Some("off"));
    assert_eq!(got("with-rule", "production"), None);
    assert_eq!(got("split", "production"), None);
    assert_eq!(got("per-env", "production"), None);
    assert_eq!(got("per-env", "staging"), Some("on"));
    assert_eq!(got("missing", "production"), None);
}
