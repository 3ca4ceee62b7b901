//! Explanations agree with evaluation: the step a trace ends on serves what `evaluate` served,
//! over every conformance fixture case (see `conformance.rs`) and over random contexts.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchyard_engine::explain::{Explanation, Step};
use switchyard_engine::{load_str, load_value, Context, Format, Ruleset};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What the last step of a trace says was served.
#[derive(Debug, PartialEq)]
enum Conclusion {
    Variant(String),
    /// The flag's off / default variant.
    Default,
    Error,
}

fn conclusion(e: &Explanation) -> Option<Conclusion> {
    let serve_outcome = |s: &switchyard_engine::explain::ServeTrace| match s.outcome.as_str() {
        "served" => s.variant.clone().map(Conclusion::Variant),
        "no unit" => Some(Conclusion::Error),
        _ => Some(Conclusion::Default),
    };
    Some(match e.steps.last()? {
        Step::Archived => Conclusion::Error,
        Step::KillSwitch { on } => {
            assert!(*on, "a trace cannot end on a kill switch that is off");
            Conclusion::Default
        }
        Step::Tenant {
            outcome, variant, ..
        } => match outcome.as_str() {
            "off" => Conclusion::Default,
            "variant" => Conclusion::Variant(variant.clone()?),
            other => panic!("a trace cannot end on tenant outcome {other}"),
        },
        Step::Enabled { enabled } => {
            assert!(!enabled, "a trace cannot end on an enabled flag");
            Conclusion::Default
        }
        Step::Static { variant } => Conclusion::Variant(variant.clone()),
        Step::Prerequisite { passed, .. } => {
            assert!(!passed, "a trace cannot end on a passed prerequisite");
            Conclusion::Default
        }
        Step::Targets {
            matched, variant, ..
        } => {
            assert!(
                matched,
                "a trace cannot end on a target list that did not match"
            );
            Conclusion::Variant(variant.clone())
        }
        Step::Experiment {
            outcome, variant, ..
        } => {
            assert!(
                outcome == "assigned" || outcome == "opted out" || outcome == "paused",
                "a trace cannot end on experiment outcome {outcome}"
            );
            Conclusion::Variant(variant.clone()?)
        }
        Step::Rule { serve, .. } => serve_outcome(serve.as_ref()?)?,
        Step::Fallthrough { serve } => match serve {
            None => Conclusion::Default,
            Some(s) => serve_outcome(s)?,
        },
    })
}

/// Why the explanation of `flag` for `ctx` disagrees with its evaluation, if it does.
fn check(
    ruleset: &Ruleset,
    env: &str,
    now: OffsetDateTime,
    flag: &str,
    ctx: &Context,
) -> Option<String> {
    let evaluator = ruleset.evaluator(env, now);
    let eval = evaluator.evaluate(flag, ctx);
    let e = evaluator.explain(flag, ctx);
    if e.variant.as_deref() != eval.variant || e.reason != eval.reason.as_str() {
        return Some(format!("explain's result differs from evaluate's: {e:?}"));
    }
    let Some(end) = conclusion(&e) else {
        return (eval.error.is_none()).then(|| format!("no trace for a served flag: {e:?}"));
    };
    let agrees = match &end {
        Conclusion::Variant(v) => eval.error.is_none() && eval.variant == Some(v.as_str()),
        Conclusion::Default => {
            eval.rule_id().is_none()
                && !matches!(eval.detail.map(|d| d.tag()), Some("TARGET" | "RULE"))
        }
        Conclusion::Error => eval.error.is_some(),
    };
    let rule_agrees = match e.steps.last() {
        Some(Step::Rule { id, .. }) if matches!(end, Conclusion::Variant(_)) => {
            eval.rule_id() == Some(id.as_str())
        }
        _ => true,
    };
    (!agrees || !rule_agrees).then(|| {
        format!(
            "the trace ends on {end:?} but evaluation served {:?} ({}, {:?}): {:#?}",
            eval.variant,
            eval.reason.as_str(),
            eval.detail,
            e.steps
        )
    })
}

/// For the conformance runner: the case's explanation agrees with its evaluation.
pub fn disagreement(ruleset: &Ruleset, case: &Map<String, Value>) -> Option<String> {
    let env = case.get("env").and_then(Value::as_str).unwrap_or("");
    let now = case
        .get("now")
        .and_then(Value::as_str)
        .map(|t| OffsetDateTime::parse(t, &Rfc3339).expect("case `now` is RFC 3339"))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let flag = case["flag"].as_str()?;
    let ctx = Context::from_value(case.get("context").cloned().unwrap_or(Value::Null)).ok()?;
    check(ruleset, env, now, flag, &ctx)
}

fn seeds() -> Ruleset {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seeds/default-flags.yaml"
    ))
    .unwrap();
    load_str(&text, Format::Yaml, None).unwrap()
}

#[test]
fn a_rollout_trace_shows_the_bucket_and_the_threshold() {
    let doc = json!({"flags": [{"key": "f", "percentage": 25}]});
    let ruleset = load_value(doc).unwrap();
    let ctx = Context::from_value(json!({"targetingKey": "user-1"})).unwrap();
    let e = ruleset
        .evaluator("", OffsetDateTime::UNIX_EPOCH)
        .explain("f", &ctx);
    let Some(Step::Fallthrough { serve: Some(serve) }) = e.steps.last() else {
        panic!("{e:?}");
    };
    let rollout = serve.rollout.as_ref().expect("a rollout");
    assert_eq!(rollout.threshold, 25_000);
    assert_eq!(rollout.inside, rollout.bucket < 25_000);
    assert_eq!(serve.unit, Some(json!("user-1")));
    let bucket =
        switchyard_engine::bucket::Bucketer::new(switchyard_engine::bucket::Domain::Rollout, "f")
            .bucket(b"user-1");
    assert_eq!(rollout.bucket, bucket);
}

#[test]
fn a_failed_condition_names_the_value_the_context_had() {
    let doc = json!({"flags": [{"key": "f", "rules": [
        {"id": "pro", "conditions": [
            {"attribute": "plan", "operator": "in", "value": ["pro", "team"]},
            {"attribute": "country", "operator": "equals", "value": "US"}
        ], "value": true}
    ]}]});
    let ruleset = load_value(doc).unwrap();
    let ctx = Context::from_value(json!({"targetingKey": "u", "plan": "pro"})).unwrap();
    let e = ruleset
        .evaluator("", OffsetDateTime::UNIX_EPOCH)
        .explain("f", &ctx);
    let Some(Step::Rule {
        id,
        matched,
        conditions,
        ..
    }) = e.steps.iter().find(|s| matches!(s, Step::Rule { .. }))
    else {
        panic!("{e:?}");
    };
    assert_eq!(id, "pro");
    assert!(!matched);
    assert!(conditions[0].holds);
    assert_eq!(conditions[0].actual, Some(json!("pro")));
    assert_eq!(conditions[0].text, r#"plan is one of ["pro", "team"]"#);
    assert!(!conditions[1].holds);
    assert_eq!(conditions[1].actual, None);
    assert_eq!(
        conditions[1].why.as_deref(),
        Some("the context has no `country`")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn explanations_agree_with_evaluation_for_any_context(
        key in "[a-z0-9-]{0,12}",
        plan in prop::sample::select(vec!["free", "pro", "enterprise", "team"]),
        tenant in prop::sample::select(vec!["acme", "tenant-beta-1", "globex", "tenant-42"]),
        country in prop::sample::select(vec!["US", "DE", "FR", "JP"]),
        version in prop::sample::select(vec!["4.9.0", "5.0.0", "5.2.1", "banana"]),
        platform in prop::sample::select(vec!["ios", "android", "web"]),
        env in prop::sample::select(vec!["", "production", "staging", "development"]),
    ) {
        let ruleset = seeds();
        let ctx = Context::from_value(json!({
            "targetingKey": key, "plan": plan, "country": country,
            "tenant": {"id": tenant, "plan": plan},
            "app": {"version": version, "platform": platform},
            "email": format!("{key}@acme.example"),
        })).unwrap();
        let flags: Vec<String> = ruleset.keys().map(str::to_owned).collect();
        for flag in flags {
            let problem = check(&ruleset, env, OffsetDateTime::now_utc(), &flag, &ctx);
            prop_assert!(problem.is_none(), "{flag}: {}", problem.unwrap_or_default());
        }
    }
}
