//! Experiments through the control layer on the real stores: the lifecycle and its rules
//! (audited, the flag changed in the same transaction, a second replica serving it), a known
//! effect found, and A/A experiments over many seeds flagging no more than their false-positive
//! rate allows.

use serde_json::json;
use switchyard_api_types::experiments::{ExperimentSpec, ExperimentStatus};
use switchyard_control::{Actor, Control, ControlError, ExperimentAction, ImportMode};
use switchyard_engine::{Context, Detail, Format};
use switchyard_storage::{AuditQuery, ExposureRow, MetricRow};

use crate::harness::{plan, Db};

const FLAGS: &str = r#"
segments:
  staff: {included: [staff-1]}
flags:
  - key: checkout
    type: string
    variants: {control: old, green: green}
    defaultVariant: control
    environments:
      production:
        rules:
          - {id: vip, conditions: [{attribute: plan, operator: equals, value: vip}], variant: green}
        fallthrough: {variant: control}
  - key: banner
"#;

fn who() -> Actor {
    Actor {
        id: "token:test".into(),
        name: Some("test".into()),
    }
}

fn spec(id: &str, flag: &str) -> ExperimentSpec {
    serde_json::from_value(json!({
        "id": id,
        "environment": "production",
        "flag": flag,
        "control": if flag == "checkout" { "control" } else { "off" },
        "variants": if flag == "checkout" { json!({"control": 50, "green": 50}) } else { json!({"off": 50, "on": 50}) },
        "metrics": [{"event": "purchase", "role": "primary"}],
        "audience": {"excludeSegments": ["staff"]},
        "minDurationDays": 0,
        "minUnitsPerVariant": 100,
    }))
    .expect("a valid spec")
}

async fn setup(db: &Db) -> Control {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.expect("bootstrap");
    c.import(
        FLAGS,
        Format::Yaml,
        "flags.yaml",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .expect("import");
    c
}

fn assigned(c: &Control, flag: &str, unit: &str) -> Option<String> {
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let e = ev.evaluate(flag, &Context::with_targeting_key(unit));
    matches!(e.detail, Some(Detail::Experiment(_))).then(|| e.variant.unwrap().to_owned())
}

/// A production exposure of `unit` to `variant` of `flag`, for `experiment`.
fn exposure(
    flag: &str,
    experiment: &str,
    unit: String,
    variant: String,
    at_ms: i64,
) -> ExposureRow {
    ExposureRow {
        environment: "production".into(),
        flag: flag.into(),
        unit,
        variant,
        at_ms,
        experiment: Some(experiment.into()),
    }
}

/// A xorshift64 generator from `state` (not 0): the tests' random numbers, reproducible.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Draft → running → paused → running → completed (shipping), each audited, with the flag's
/// block written and removed in the same transaction; the rules between live experiments.
pub async fn the_lifecycle_changes_the_flag_in_the_same_transaction(db: Db) {
    let c = setup(&db).await;
    let other = db.syncing_replica().await;
    let created = c
        .create_experiment(spec("green-button", "checkout"), &who(), None)
        .await
        .expect("create");
    assert_eq!(created.value.status, ExperimentStatus::Draft);
    assert!(
        assigned(&c, "checkout", "u1").is_none(),
        "a draft serves nothing"
    );

    // Mistakes are refused before anything is written, with the field at fault.
    let mut bad = spec("bad", "checkout");
    bad.variants.insert("purple".into(), 0.0);
    let err = c.create_experiment(bad, &who(), None).await.unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `purple`"),
        "{err}"
    );
    let mut bad = spec("bad", "nope");
    bad.flag = "checkot".into();
    let err = c.create_experiment(bad, &who(), None).await.unwrap_err();
    assert!(
        matches!(&err, ControlError::BadRequest { field: Some(f), message } if f == "flag" && message.contains("did you mean `checkout`")),
        "{err}"
    );

    c.transition_experiment(
        "green-button",
        ExperimentAction::Start,
        &who(),
        Some("go".into()),
    )
    .await
    .expect("start");
    let units: Vec<String> = (0..400).map(|i| format!("u{i}")).collect();
    let served: Vec<Option<String>> = units.iter().map(|u| assigned(&c, "checkout", u)).collect();
    assert!(
        served.iter().all(Option::is_some),
        "everyone not on a rule is in"
    );
    let greens = served.iter().flatten().filter(|v| *v == "green").count();
    assert!((150..250).contains(&greens), "{greens} of 400 green");
    // Rules still decide for the units they match; the audience excludes staff.
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let vip = ev.evaluate(
        "checkout",
        &Context::with_targeting_key("u1").with("plan", "vip"),
    );
    assert_eq!(vip.rule_id(), Some("vip"));
    assert!(assigned(&c, "checkout", "staff-1").is_none());
    // The other replica serves the same assignment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while assigned(&other, "checkout", "u1").is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (u, v) in units.iter().zip(&served).take(50) {
        assert_eq!(&assigned(&other, "checkout", u), v);
    }

    // One live experiment per flag and environment.
    c.create_experiment(spec("second", "checkout"), &who(), None)
        .await
        .expect("a second draft is fine");
    let err = c
        .transition_experiment("second", ExperimentAction::Start, &who(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    // A replacement of the flag keeps the block; it cannot write one itself.
    let def = c.snapshot().flag("checkout").unwrap().definition.clone();
    let mut edited = def.clone();
    edited
        .environments
        .get_mut("production")
        .unwrap()
        .experiment = None;
    edited.description = Some("edited".into());
    c.replace_flag("checkout", edited, None, true, &who(), None)
        .await
        .expect("replace");
    assert!(
        assigned(&c, "checkout", "u1").is_some(),
        "the block was kept"
    );
    let err = c
        .delete_flag("checkout", None, &who(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("complete or cancel it first"),
        "{err}"
    );

    // Paused, its units get the control, unrecorded; resume restores the same assignment.
    c.transition_experiment("green-button", ExperimentAction::Pause, &who(), None)
        .await
        .expect("pause");
    assert!(assigned(&c, "checkout", "u1").is_none());
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    for u in &units {
        let e = ev.evaluate("checkout", &Context::with_targeting_key(u.as_str()));
        assert_eq!(
            (e.variant, e.detail),
            (
                Some("control"),
                Some(Detail::ExperimentPaused("green-button"))
            )
        );
    }
    let err = c
        .transition_experiment("green-button", ExperimentAction::Pause, &who(), None)
        .await
        .expect("asking again for where it is changes nothing");
    assert!(!err.changed);
    c.transition_experiment("green-button", ExperimentAction::Resume, &who(), None)
        .await
        .expect("resume");
    let again: Vec<Option<String>> = units.iter().map(|u| assigned(&c, "checkout", u)).collect();
    assert_eq!(again, served, "the same units get the same variants");
    let retried = c
        .transition_experiment("green-button", ExperimentAction::Resume, &who(), None)
        .await
        .expect("a retried resume");
    assert!(!retried.changed);

    let done = c
        .transition_experiment(
            "green-button",
            ExperimentAction::Complete {
                ship: Some("green".into()),
            },
            &who(),
            Some("green wins".into()),
        )
        .await
        .expect("complete");
    assert_eq!(done.value.shipped_variant.as_deref(), Some("green"));
    assert!(done.value.ended_at_ms.is_some());
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let e = ev.evaluate("checkout", &Context::with_targeting_key("u1"));
    assert_eq!(
        (e.variant, e.detail),
        (Some("green"), Some(Detail::Fallthrough))
    );
    let err = c
        .transition_experiment("green-button", ExperimentAction::Start, &who(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("`start` applies to a draft"),
        "{err}"
    );
    let statuses: Vec<ExperimentStatus> = done.value.timeline.iter().map(|t| t.status).collect();
    use ExperimentStatus::*;
    assert_eq!(statuses, vec![Draft, Running, Paused, Running, Completed]);
    // Each change names who made it: the token's id and its name at the time.
    for t in &done.value.timeline {
        assert_eq!(
            (t.actor.as_str(), t.actor_name.as_deref()),
            ("token:test", Some("test"))
        );
    }
    let body = done.value.to_resource();
    assert_eq!(body.timeline[0].actor_name.as_deref(), Some("test"));
    let err = c
        .update_experiment(
            "green-button",
            spec("green-button", "checkout"),
            None,
            &who(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only drafts can be edited"),
        "{err}"
    );

    let store = c.store().unwrap();
    let log = store
        .audit(&AuditQuery {
            subject_kind: Some("experiment".into()),
            subject: Some("green-button".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "experiment.create",
            "experiment.start",
            "experiment.pause",
            "experiment.resume",
            "experiment.complete"
        ]
    );
    let flag_log = store
        .audit(&AuditQuery {
            subject_kind: Some("flag".into()),
            subject: Some("checkout".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(flag_log.iter().any(|e| e.action == "experiment.complete"
        && e.reason.as_deref()
            == Some("experiment `green-button` completed, shipping `green`: green wins")));
}

/// Simulates one experiment on `flag`: `units` exposed (assigned by the engine, as OFREP
/// would), each converting with `p_control`, or `p_treatment` in the treatment.
async fn simulate(c: &Control, id: &str, flag: &str, units: usize, p: (f64, f64), seed: u64) {
    let mut next = xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut uniform = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut exposures = Vec::new();
    let mut metrics = Vec::new();
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    for i in 0..units {
        let unit = format!("{id}-u{i}");
        let e = ev.evaluate(flag, &Context::with_targeting_key(unit.as_str()));
        if !matches!(e.detail, Some(Detail::Experiment(_))) {
            continue;
        }
        let variant = e.variant.unwrap_or_default().to_owned();
        let rate = if variant == "control" || variant == "off" {
            p.0
        } else {
            p.1
        };
        if uniform() < rate {
            metrics.push(MetricRow {
                environment: "production".into(),
                id: format!("{unit}-m"),
                unit: unit.clone(),
                event: "purchase".into(),
                value: None,
                at_ms: now + 1000,
            });
        }
        exposures.push(exposure(flag, id, unit, variant, now));
    }
    c.append_events(&exposures, &metrics).await.expect("append");
}

/// A true 3-point lift on a 10 % conversion is found and recommended; the rest is honest.
pub async fn a_known_effect_is_detected(db: Db) {
    let c = setup(&db).await;
    c.create_experiment(spec("lift", "banner"), &who(), None)
        .await
        .unwrap();
    c.transition_experiment("lift", ExperimentAction::Start, &who(), None)
        .await
        .unwrap();
    simulate(&c, "lift", "banner", 8000, (0.10, 0.13), 42).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 5000;
    let r = c.experiment_results("lift", now).await.expect("results");
    let units: u64 = r.variants.iter().map(|v| v.units).sum();
    assert_eq!(
        units, 8000,
        "every unit is exposed (no holdout, no audience limit but staff)"
    );
    assert_eq!(r.srm.as_ref().unwrap().status, "ok");
    let arm = &r.metrics[0].arms[1];
    let cmp = arm.vs_control.as_ref().unwrap();
    assert_eq!(arm.variant, "on");
    assert_eq!(cmp.verdict, "better", "{cmp:?}");
    let [lo, hi] = cmp.ci_abs.unwrap();
    assert!(
        lo < 0.03 && 0.03 < hi,
        "the interval holds the true lift: {lo}..{hi}"
    );
    assert!(cmp.p_value.unwrap() < 0.001);
    assert!(cmp.chance_to_beat_control.unwrap() > 0.99);
    assert_eq!(r.recommendation.action, "ship", "{:?}", r.recommendation);
    assert_eq!(r.recommendation.variant.as_deref(), Some("on"));
    // The series' last day is the totals.
    let last = r.series.last().expect("a series");
    for (point, arm) in last
        .arms
        .iter()
        .zip([&r.metrics[0].arms[0], &r.metrics[0].arms[1]])
    {
        assert_eq!(
            (point.variant.as_str(), point.units),
            (arm.variant.as_str(), arm.units)
        );
        assert!((point.mean.unwrap() - arm.mean.unwrap()).abs() < 1e-12);
    }
}

/// CUPED: revenue before the exposure predicts revenue after it, so adjusting by it narrows
/// the interval; the figures are those of the formula computed here from the units' values.
pub async fn cuped_narrows_the_interval_with_the_pre_period(db: Db) {
    let c = setup(&db).await;
    let mut bad = spec("bad", "banner");
    bad.metrics = serde_json::from_value(json!([
        {"event": "latency", "kind": "mean", "role": "primary", "cupedDays": 7}
    ]))
    .unwrap();
    let err = c.create_experiment(bad, &who(), None).await.unwrap_err();
    assert!(
        matches!(&err, ControlError::BadRequest { field: Some(f), .. } if f == "metrics[0].cupedDays"),
        "the field is named: {err:?}"
    );

    let mut s = spec("spend", "banner");
    s.metrics = serde_json::from_value(json!([
        {"event": "revenue", "kind": "sum", "role": "primary", "cupedDays": 14},
        {"event": "signup", "kind": "conversion", "role": "secondary", "cupedDays": 7}
    ]))
    .unwrap();
    c.create_experiment(s, &who(), None).await.unwrap();
    c.transition_experiment("spend", ExperimentAction::Start, &who(), None)
        .await
        .unwrap();

    let mut next = xorshift(7);
    let mut uniform = move || ((next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut normal = move || {
        let (a, b) = (uniform(), uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let ev_snap = c.snapshot();
    let ev = ev_snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let (mut exposures, mut metrics) = (Vec::new(), Vec::new());
    // Per arm, each unit's (pre-period, post-exposure) revenue.
    let mut values: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for i in 0..3000 {
        let unit = format!("spend-u{i}");
        let e = ev.evaluate("banner", &Context::with_targeting_key(unit.as_str()));
        let variant = e.variant.unwrap_or_default().to_owned();
        let arm = usize::from(variant == "on");
        let habit = 50.0 + 20.0 * normal();
        // One unit in twenty is new: nothing before the experiment.
        let x = if i % 20 == 0 {
            0.0
        } else {
            habit + 5.0 * normal()
        };
        let y = habit + 5.0 * normal() + if arm == 1 { 2.0 } else { 0.0 };
        let event = |id: String, at_ms: i64, value: f64| MetricRow {
            environment: "production".into(),
            id,
            unit: unit.clone(),
            event: "revenue".into(),
            value: Some(value),
            at_ms,
        };
        if x != 0.0 {
            // Split over two days, one before the 14-day pre-period (not counted).
            metrics.push(event(format!("{unit}-p1"), now - 3 * 86_400_000, x - 10.0));
            metrics.push(event(format!("{unit}-p2"), now - 86_400_000, 10.0));
            metrics.push(event(format!("{unit}-old"), now - 20 * 86_400_000, 1000.0));
        }
        metrics.push(event(format!("{unit}-y"), now + 1000, y));
        values[arm].push((x, y));
        exposures.push(exposure("banner", "spend", unit, variant, now));
    }
    c.append_events(&exposures, &metrics).await.expect("append");
    let r = c
        .experiment_results("spend", now + 5000)
        .await
        .expect("results");

    // The formula, from the units' values: θ pooled over all units, each arm's adjusted mean
    // and variance, then Welch.
    let all: Vec<(f64, f64)> = values.iter().flatten().copied().collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let cov = |a: &[f64], b: &[f64]| {
        let (ma, mb) = (mean(a), mean(b));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - ma) * (y - mb))
            .sum::<f64>()
            / (a.len() - 1) as f64
    };
    let xs = |v: &[(f64, f64)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    let ys = |v: &[(f64, f64)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
    let theta = cov(&xs(&all), &ys(&all)) / cov(&xs(&all), &xs(&all));
    let mx_all = mean(&xs(&all));
    let adjusted = |v: &[(f64, f64)]| {
        let (x, y) = (xs(v), ys(v));
        let m = mean(&y) - theta * (mean(&x) - mx_all);
        let var = cov(&y, &y) + theta * theta * cov(&x, &x) - 2.0 * theta * cov(&x, &y);
        (m, var, v.len() as f64)
    };
    let (mc, vc, nc) = adjusted(&values[0]);
    let (mt, vt, nt) = adjusted(&values[1]);
    let diff = mt - mc;

    let m = &r.metrics[0];
    let cuped = m.cuped.as_ref().expect("CUPED reported");
    assert!(cuped.applied, "{cuped:?}");
    assert_eq!(cuped.pre_period_days, 14.0);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(close(cuped.theta.unwrap(), theta), "{cuped:?} vs θ {theta}");
    // In theory ρ² = cov(x, y)² / (var x · var y) = 380² / (522.5 · 425) = 0.65 (the new
    // units' zeros cost some of the habit's 400 / 425).
    let reduction = cuped.variance_reduction.unwrap();
    assert!(
        (0.58..0.72).contains(&reduction),
        "most of the variance is the habit: {cuped:?}"
    );
    assert!(close(m.arms[0].adjusted_mean.unwrap(), mc));
    assert!(close(m.arms[1].adjusted_mean.unwrap(), mt));
    let cmp = m.arms[1].vs_control.as_ref().unwrap();
    assert!(close(cmp.abs_lift.unwrap(), diff));
    let se = (vc / nc + vt / nt).sqrt();
    let [lo, hi] = cmp.ci_abs.unwrap();
    // Welch's t quantile at ~3 000 df is 1.9608.
    assert!(
        ((hi - lo) / 2.0 / (1.96 * se) - 1.0).abs() < 1e-3,
        "{lo}..{hi}, se {se}"
    );
    assert!(lo < 2.0 && 2.0 < hi, "the true lift is inside: {lo}..{hi}");
    // Without the covariate the interval is much wider (the raw Welch standard error).
    let raw_se = (cov(&ys(&values[0]), &ys(&values[0])) / nc
        + cov(&ys(&values[1]), &ys(&values[1])) / nt)
        .sqrt();
    assert!(se < 0.7 * raw_se, "CUPED se {se} vs raw {raw_se}");
    assert_eq!(cmp.verdict, "better", "{cmp:?}");
    // The raw means stay what the units did.
    assert!(close(m.arms[0].mean.unwrap(), mean(&ys(&values[0]))));
    // The chart's last day says what the table says.
    let last = r.series.last().expect("a series");
    assert!(close(last.arms[1].abs_lift.unwrap(), diff), "{last:?}");
    let (chart, table) = (last.arms[1].ci_abs.unwrap(), cmp.sequential_ci_abs.unwrap());
    assert!(
        close(chart[0], table[0]) && close(chart[1], table[1]),
        "{chart:?} {table:?}"
    );

    // Nobody signed up before: the covariate does not vary, so it is not applied, and says so.
    let signup = &r.metrics[1];
    let cuped = signup.cuped.as_ref().expect("reported");
    assert!(!cuped.applied && cuped.note.is_some(), "{cuped:?}");
    assert!(signup.arms.iter().all(|a| a.adjusted_mean.is_none()));
}

/// 120 A/A experiments (no effect, 600 units each): fixed-horizon p < 0.05 about 5 % of the time, the
/// always-valid test and the recommendation at most as often.
pub async fn a_a_experiments_keep_their_false_positive_rate(db: Db) {
    let c = setup(&db).await;
    let runs = 120;
    let mut flags = String::from("flags:\n");
    for i in 0..runs {
        flags.push_str(&format!("  - key: aa-{i}\n"));
    }
    c.import(
        &flags,
        Format::Yaml,
        "aa.yaml",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .unwrap();
    let (mut fixed, mut sequential, mut shipped) = (0, 0, 0);
    for i in 0..runs {
        let id = format!("aa-exp-{i}");
        c.create_experiment(spec(&id, &format!("aa-{i}")), &who(), None)
            .await
            .unwrap();
        c.transition_experiment(&id, ExperimentAction::Start, &who(), None)
            .await
            .unwrap();
        // The false-positive rate does not depend on the sample size (the normal
        // approximation holds at 300 units an arm and a 30 % rate); the number of runs sets
        // how tightly it is checked.
        simulate(&c, &id, &format!("aa-{i}"), 600, (0.3, 0.3), 1000 + i).await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 5000;
        let r = c.experiment_results(&id, now).await.unwrap();
        let cmp = r.metrics[0].arms[1].vs_control.clone().unwrap();
        fixed += usize::from(cmp.p_value.is_some_and(|p| p < 0.05));
        sequential += usize::from(cmp.verdict != "inconclusive");
        shipped += usize::from(r.recommendation.action == "ship");
    }
    // Binomial(120, 0.05): mean 6; P(X ≥ 16) < 0.1 %, P(X = 0) ≈ 0.2 %.
    assert!(
        (1..16).contains(&fixed),
        "fixed-horizon false positives: {fixed} of {runs}"
    );
    assert!(
        sequential <= fixed.max(6),
        "always-valid: {sequential} vs fixed {fixed}"
    );
    assert!(shipped <= sequential, "{shipped}");
}

/// A harmed guardrail and a sample-ratio mismatch each pause their experiment, as actors
/// `guardrail` and `srm`, audited with what was seen; healthy experiments keep running.
pub async fn guardrails_and_sample_ratio_mismatches_pause_experiments(db: Db) {
    let c = setup(&db).await;
    c.import(
        "flags:\n  - key: srm-flag\n  - key: healthy-flag\n",
        Format::Yaml,
        "more.yaml",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .unwrap();
    let mut harmful = spec("harmful", "banner");
    harmful.metrics = serde_json::from_value(json!([
        {"event": "purchase", "role": "primary"},
        {"name": "errors", "event": "error", "role": "guardrail", "higherIsBetter": false}
    ]))
    .unwrap();
    for (id, s) in [
        ("harmful", harmful),
        ("skewed", spec("skewed", "srm-flag")),
        ("healthy", spec("healthy", "healthy-flag")),
    ] {
        c.create_experiment(s, &who(), None).await.unwrap();
        c.transition_experiment(id, ExperimentAction::Start, &who(), None)
            .await
            .unwrap();
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    // `harmful`: errors for 20 % of the treatment, 2 % of the control.
    let mut exposures = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..2000 {
        let unit = format!("h{i}");
        let Some(variant) = assigned(&c, "banner", &unit) else {
            continue;
        };
        let erring = if variant == "on" {
            i % 5 == 0
        } else {
            i % 50 == 0
        };
        if erring {
            metrics.push(MetricRow {
                environment: "production".into(),
                id: format!("err-{i}"),
                unit: unit.clone(),
                event: "error".into(),
                value: None,
                at_ms: now + 10,
            });
        }
        exposures.push(exposure("banner", "harmful", unit, variant, now));
    }
    // `skewed`: the treatment's exposures are lost two times in three.
    for i in 0..3000 {
        let unit = format!("s{i}");
        let Some(variant) = assigned(&c, "srm-flag", &unit) else {
            continue;
        };
        if variant == "on" && i % 3 != 0 {
            continue;
        }
        exposures.push(exposure("srm-flag", "skewed", unit, variant, now));
    }
    c.append_events(&exposures, &metrics).await.unwrap();
    simulate(&c, "healthy", "healthy-flag", 2000, (0.2, 0.2), 7).await;

    let stopped = c.check_experiments(now + 1000).await.unwrap();
    let mut kinds: Vec<(&str, &str)> = stopped
        .iter()
        .map(|s| (s.experiment.as_str(), s.kind))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![("harmful", "guardrail"), ("skewed", "srm")],
        "{stopped:#?}"
    );
    assert!(stopped[0].reason.contains("errors") || stopped[1].reason.contains("errors"));
    for (id, actor) in [("harmful", "guardrail"), ("skewed", "srm")] {
        let e = c.experiment(id).await.unwrap();
        assert_eq!(e.status, ExperimentStatus::Paused);
        let last = e.timeline.last().unwrap();
        assert_eq!(last.actor, actor);
        assert!(last.reason.is_some(), "the reason is recorded");
    }
    assert_eq!(
        c.experiment("healthy").await.unwrap().status,
        ExperimentStatus::Running
    );
    // Paused, `harmful`'s units get the control.
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let e = ev.evaluate("banner", &Context::with_targeting_key("h1"));
    assert_eq!(e.variant, Some("off"));
    // A second check (or another replica's) stops nothing more.
    assert!(c.check_experiments(now + 2000).await.unwrap().is_empty());
}
