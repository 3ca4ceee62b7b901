//! Running experiments in a flag environment: audience, holdout, layers, allocation, split,
//! opt-out, and what units outside the experiment get.

use serde_json::json;
use switchyard_engine::{check_str, load_str, Context, Detail, Format, Reason, Ruleset};
use time::OffsetDateTime;

const FLAGS: &str = r#"
segments:
  staff:
    included: [staff-1, staff-2]
flags:
  - key: checkout
    type: string
    variants: {control: old, blue: blue, green: green}
    defaultVariant: control
    environments:
      production:
        rules:
          - {id: vip, conditions: [{attribute: plan, operator: equals, value: vip}], variant: green}
        fallthrough: {variant: control}
        experiment:
          id: checkout-colors
          control: control
          split: {control: 34, blue: 33, green: 33}
          audience:
            - {operator: not_in_segment, value: staff}
          holdout: {name: global, percentage: 10}
          layer: {name: checkout-page, from: 0, to: 50}
  - key: banner
    environments:
      production:
        fallthrough: {variant: "off"}
        experiment:
          id: banner-test
          control: "off"
          split: {"off": 50, "on": 50}
          holdout: {name: global, percentage: 10}
          layer: {name: checkout-page, from: 50, to: 100}
  - key: search
    environments:
      production:
        fallthrough: {variant: "off"}
        experiment:
          id: search-ranking
          control: "off"
          split: {"off": 50, "on": 50}
          allocation: 20
"#;

fn ruleset() -> Ruleset {
    load_str(FLAGS, Format::Yaml, None).expect("valid")
}

fn user(i: usize) -> Context {
    Context::with_targeting_key(format!("user-{i}"))
}

const UNITS: usize = 40_000;

#[test]
fn layers_are_mutually_exclusive_and_holdouts_are_shared() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let (mut checkout, mut banner, mut both, mut neither) = (0, 0, 0, 0);
    for i in 0..UNITS {
        let ctx = user(i);
        let a = ev
            .evaluate("checkout", &ctx)
            .detail
            .and_then(|d| d.experiment_id().map(str::to_owned));
        let b = ev
            .evaluate("banner", &ctx)
            .detail
            .and_then(|d| d.experiment_id().map(str::to_owned));
        match (a.is_some(), b.is_some()) {
            (true, true) => both += 1,
            (true, false) => checkout += 1,
            (false, true) => banner += 1,
            (false, false) => neither += 1,
        }
    }
    assert_eq!(
        both, 0,
        "one layer: a unit is in at most one of its experiments"
    );
    // Each has half the layer of the 90 % not held out: 45 % ± 1.5 points.
    for (name, n) in [("checkout", checkout), ("banner", banner)] {
        let share = n as f64 / UNITS as f64;
        assert!((share - 0.45).abs() < 0.015, "{name}: {share}");
    }
    // The 10 % holdout is in neither: the same units for both experiments.
    let share = neither as f64 / UNITS as f64;
    assert!((share - 0.10).abs() < 0.01, "held out of both: {share}");
}

#[test]
fn the_split_follows_the_weights_and_is_stable() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut assigned = 0;
    for i in 0..UNITS {
        let e = ev.evaluate("checkout", &user(i));
        if e.detail == Some(Detail::Experiment("checkout-colors")) {
            assert_eq!(e.reason, Reason::Split);
            *counts.entry(e.variant.unwrap()).or_default() += 1;
            assigned += 1;
            // Stable: the same unit gets the same variant on every evaluation.
            assert_eq!(ev.evaluate("checkout", &user(i)).variant, e.variant);
        }
    }
    for (variant, weight) in [("control", 0.34), ("blue", 0.33), ("green", 0.33)] {
        let share = counts[variant] as f64 / assigned as f64;
        assert!((share - weight).abs() < 0.015, "{variant}: {share}");
    }
}

#[test]
fn allocation_admits_its_percentage_and_the_rest_fall_through() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let mut inside = 0;
    for i in 0..UNITS {
        let e = ev.evaluate("search", &user(i));
        match e.detail {
            Some(Detail::Experiment(id)) => {
                assert_eq!(id, "search-ranking");
                inside += 1;
            }
            other => {
                assert_eq!(other, Some(Detail::Fallthrough));
                assert_eq!(e.variant, Some("off"));
            }
        }
    }
    let share = inside as f64 / UNITS as f64;
    assert!((share - 0.20).abs() < 0.01, "{share}");
}

#[test]
fn audience_opt_out_and_missing_units() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);

    // Staff are excluded by the audience and get the flag's own targeting.
    let staff = Context::with_targeting_key("staff-1");
    let e = ev.evaluate("checkout", &staff);
    assert_eq!(
        (e.variant, e.detail),
        (Some("control"), Some(Detail::Fallthrough))
    );
    let vip_staff = Context::with_targeting_key("staff-2").with("plan", "vip");
    assert_eq!(ev.evaluate("checkout", &vip_staff).rule_id(), Some("vip"));

    // An opted-out unit gets control, marked so that no exposure is recorded.
    let mut opted = 0;
    for i in 0..200 {
        let ctx = user(i).with("experimentOptOut", true);
        for key in ["checkout", "banner", "search"] {
            let e = ev.evaluate(key, &ctx);
            assert!(
                matches!(e.detail, Some(Detail::ExperimentOptOut(_))),
                "{key}"
            );
            assert_eq!(
                e.detail.and_then(|d| d.experiment_id().map(str::to_owned)),
                None
            );
            assert_eq!(e.reason, Reason::TargetingMatch);
            let control = if key == "checkout" { "control" } else { "off" };
            assert_eq!(e.variant, Some(control));
            opted += 1;
        }
    }
    assert_eq!(opted, 600);
    // `experimentOptOut: false` is not an opt-out.
    let e = ev.evaluate("search", &user(3).with("experimentOptOut", false));
    assert!(!matches!(e.detail, Some(Detail::ExperimentOptOut(_))));

    // No unit: not in the experiment, and not an error (the fallthrough needs none).
    let e = ev.evaluate("banner", &Context::new());
    assert_eq!(
        (e.variant, e.detail, e.error),
        (Some("off"), Some(Detail::Fallthrough), None)
    );
}

#[test]
fn other_environments_do_not_run_the_experiment() {
    let rs = ruleset();
    let ev = rs.evaluator("staging", OffsetDateTime::UNIX_EPOCH);
    for i in 0..500 {
        let e = ev.evaluate("search", &user(i));
        assert!(e
            .detail
            .and_then(|d| d.experiment_id().map(str::to_owned))
            .is_none());
    }
}

#[test]
fn the_unit_of_an_exposure_is_the_experiments_bucketing_unit() {
    let rs = load_str(
        r#"
flags:
  - key: f
    bucketBy: [accountId, targetingKey]
    environments:
      production:
        fallthrough: {variant: "off"}
        experiment: {id: e, control: "off", split: {"off": 50, "on": 50}}
"#,
        Format::Yaml,
        None,
    )
    .unwrap();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let ctx = Context::with_targeting_key("u1").with("accountId", "acct-9");
    assert_eq!(ev.experiment_unit("f", &ctx), Some(&json!("acct-9")));
    assert_eq!(
        ev.experiment_unit("f", &Context::with_targeting_key("u1")),
        Some(&json!("u1"))
    );
    assert_eq!(
        rs.evaluator("dev", OffsetDateTime::UNIX_EPOCH)
            .experiment_unit("f", &ctx),
        None
    );
}

#[test]
fn explain_says_what_the_experiment_did() {
    let rs = ruleset();
    let ev = rs.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..2_000 {
        let ctx = user(i);
        let eval = ev.evaluate("checkout", &ctx);
        let explanation = ev.explain("checkout", &ctx);
        let step = explanation
            .steps
            .iter()
            .find_map(|s| match s {
                switchyard_engine::explain::Step::Experiment {
                    outcome,
                    variant,
                    holdout_bucket,
                    ..
                } => Some((outcome.clone(), variant.clone(), *holdout_bucket)),
                _ => None,
            })
            .expect("an experiment step");
        assert!(step.2.is_some(), "the holdout bucket is shown");
        match step.0.as_str() {
            "assigned" => {
                assert_eq!(step.1.as_deref(), eval.variant);
                assert_eq!(explanation.decided_by.as_deref(), Some("EXPERIMENT"));
            }
            "held out" => assert!(step.2.unwrap() < 10_000),
            "not allocated" => {}
            other => panic!("unexpected outcome {other}"),
        }
        seen.insert(step.0);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn mistakes_are_reported_where_they_are() {
    let cases = [
        (
            "experiment: {id: e, control: nope, split: {\"off\": 50, \"on\": 50}}",
            "environments.production.experiment.control",
            "unknown variant `nope`",
        ),
        (
            "experiment: {id: e, control: \"off\", split: {\"off\": 50, \"on\": 40}}",
            "environments.production.experiment.split",
            "add up to 90",
        ),
        (
            "experiment: {id: e, control: \"off\", split: {\"on\": 100}}",
            "environments.production.experiment.split",
            "the control `off` has no weight",
        ),
        (
            "experiment: {id: e, control: \"off\", split: {\"off\": 50, \"on\": 50}, allocation: 120}",
            "environments.production.experiment.allocation",
            "between 0 and 100",
        ),
        (
            "experiment: {id: e, control: \"off\", split: {\"off\": 50, \"on\": 50}, layer: {name: l, from: 60, to: 40}}",
            "environments.production.experiment.layer",
            "`from` below `to`",
        ),
        (
            "experiment: {id: e, control: \"off\", split: {\"off\": 50, \"on\": 50}, audience: [{operator: in_segment, value: ghosts}]}",
            "environments.production.experiment.audience",
            "ghosts",
        ),
        (
            "variant: \"on\"\n        experiment: {id: e, control: \"off\", split: {\"off\": 50, \"on\": 50}}",
            "environments.production.variant",
            "would never run",
        ),
    ];
    for (yaml, path, message) in cases {
        let text =
            format!("flags:\n  - key: f\n    environments:\n      production:\n        {yaml}\n");
        let (ruleset, diagnostics) = check_str(&text, Format::Yaml, None);
        assert!(ruleset.is_none(), "{yaml}");
        assert!(
            diagnostics
                .iter()
                .any(|d| d.path.to_string().contains(path) && d.message.contains(message)),
            "{yaml}: {diagnostics:#?}"
        );
    }
}
