//! Progressive rollouts and guards through the control layer on the real stores: a plan
//! advancing on green traffic, waiting for a person's approval, rolling back on a burst of
//! errors in the new variant; two replicas checking at once taking one step; Prometheus and
//! HTTP gates (through a scripted probe: the real ones are tested end to end in the CLI
//! suite); a guard tripping the kill switch once and staying quiet through its cool-down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::json;
use switchyard_api_types::rollouts::{GuardSpec, RolloutPlan};
use switchyard_control::{Control, ControlError, ImportMode, Probe, RolloutAction, RolloutStatus};
use switchyard_engine::{Context, Format};
use switchyard_storage::{AuditQuery, ExposureRow, MetricRow};

use crate::harness::{person, plan, Db};

const FLAGS: &str = r#"
flags:
  - key: checkout
    environments:
      production:
        rules:
          - {id: staff, conditions: [{attribute: staff, operator: equals, value: true}], variant: "on"}
  - key: search
"#;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A probe answering from a script.
#[derive(Default)]
struct Scripted {
    prometheus: Mutex<Vec<Result<Option<f64>, String>>>,
    http: Mutex<Vec<Result<(), String>>>,
    calls: AtomicUsize,
}

impl Probe for Scripted {
    async fn prometheus(&self, _url: &str, _query: &str) -> Result<Option<f64>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut s = self.prometheus.lock().unwrap();
        if s.len() > 1 {
            s.remove(0)
        } else {
            s.first().cloned().unwrap_or(Ok(None))
        }
    }
    async fn http(&self, _url: &str) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut s = self.http.lock().unwrap();
        if s.len() > 1 {
            s.remove(0)
        } else {
            s.first().cloned().unwrap_or(Ok(()))
        }
    }
}

fn rollout_plan(value: serde_json::Value) -> RolloutPlan {
    serde_json::from_value(value).expect("a plan")
}

/// Users `units` evaluate `checkout` in production on `c`, their exposures recorded under
/// the rollout's current stage as OFREP would record them; `metric(i, variant)` says which
/// event (and value) user `i` then sends, if any. Returns how many were served `on`.
async fn stage_traffic(
    c: &Control,
    rollout: &str,
    units: std::ops::Range<usize>,
    mut metric: impl FnMut(usize, &str) -> Option<(&'static str, Option<f64>)>,
) -> usize {
    let key = c.rollout(rollout).await.unwrap().state.exposure_key();
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::now_utc());
    let now = now_ms();
    let (mut exposures, mut metrics, mut on) = (Vec::new(), Vec::new(), 0);
    for i in units {
        let unit = format!("user-{i}");
        let e = ev.evaluate("checkout", &Context::with_targeting_key(unit.as_str()));
        let variant = e.variant.unwrap_or_default().to_owned();
        on += usize::from(variant == "on");
        if let Some((event, value)) = metric(i, &variant) {
            metrics.push(MetricRow {
                environment: "production".into(),
                id: format!("{key}-{unit}-{event}"),
                unit: unit.clone(),
                event: event.into(),
                value,
                at_ms: now + 10,
            });
        }
        exposures.push(ExposureRow {
            environment: "production".into(),
            flag: "checkout".into(),
            unit,
            variant,
            at_ms: now,
            experiment: Some(key.clone()),
        });
    }
    c.append_events(&exposures, &metrics).await.unwrap();
    on
}

/// `n` users from `from`; those served `on` send an error at `error_rate` (deterministically:
/// every k-th of them).
async fn traffic(c: &Control, rollout: &str, from: usize, n: usize, error_rate: f64) -> usize {
    let mut on = 0;
    stage_traffic(c, rollout, from..from + n, |_, variant| {
        if variant != "on" {
            return None;
        }
        on += 1;
        (error_rate > 0.0 && (on as f64 * error_rate).fract() < error_rate)
            .then_some(("checkout_error", None))
    })
    .await
}

fn fallthrough_percentage(c: &Control) -> Option<f64> {
    let snap = c.snapshot();
    let flag = snap.flag("checkout")?;
    flag.definition
        .environments
        .get("production")?
        .fallthrough
        .as_ref()?
        .percentage
}

pub async fn a_rollout_advances_on_green_waits_for_approval_and_rolls_back_on_red(db: Db) {
    let a = db.replica().await;
    a.bootstrap(&plan()).await.unwrap();
    a.import(
        FLAGS,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    let b = db.replica().await;
    let probe = Scripted::default();
    let ops: switchyard_api_types::webhooks::WebhookSpec = serde_json::from_value(json!({
        "id": "ops",
        "url": "http://127.0.0.1:9/hook",
        "events": ["rollout.rolled_back", "rollout.awaiting_approval"]
    }))
    .unwrap();
    a.create_webhook(ops, &person("admin"), None).await.unwrap();

    // Mistakes are refused, each naming its field.
    for (bad, field) in [
        (
            json!({"flag": "checkot", "environment": "production"}),
            None,
        ),
        (json!({"flag": "checkout", "environment": "prod"}), None),
        (
            json!({"flag": "checkout", "environment": "production", "stages": [{"percentage": 50}, {"percentage": 25}]}),
            Some("stages[1].percentage"),
        ),
        (
            json!({"flag": "checkout", "environment": "production", "gates": [{"kind": "error_rate", "event": "e", "max": 0.1, "margin": 0.1}]}),
            Some("gates[0]"),
        ),
        (
            json!({"flag": "checkout", "environment": "production", "gates": [{"kind": "http", "url": "localhost:1"}]}),
            Some("gates[0].url"),
        ),
        (
            json!({"flag": "checkout", "environment": "production", "hold": "ten minutes"}),
            Some("hold"),
        ),
    ] {
        let err = a
            .start_rollout(rollout_plan(bad.clone()), &person("alice"), None)
            .await
            .unwrap_err();
        match (field, &err) {
            (Some(f), ControlError::BadRequest { .. }) => {
                assert!(format!("{err:?}").contains(f), "{bad}: {err:?}")
            }
            (None, ControlError::NotFound { hint: Some(h), .. }) => {
                assert!(h.contains("checkout") || h.contains("production"), "{h}")
            }
            _ => panic!("{bad}: {err:?}"),
        }
    }

    let started = a
        .start_rollout(
            rollout_plan(json!({
                "id": "checkout-canary",
                "flag": "checkout",
                "environment": "production",
                "stages": [
                    {"percentage": 20, "hold": 60},
                    {"percentage": 50, "hold": 1, "approval": true},
                    {"percentage": 100, "hold": 1}
                ],
                "minSample": 100,
                "gates": [{"kind": "error_rate", "event": "checkout_error", "max": 0.05}]
            })),
            &person("alice"),
            Some("canary for the new checkout".into()),
        )
        .await
        .unwrap();
    assert!(started.changed);
    assert_eq!(started.value.state.variant(), "on");
    assert_eq!(fallthrough_percentage(&a), Some(20.0));
    assert_eq!(
        a.rollout_exposures("production", "checkout").as_deref(),
        Some("rollout:checkout-canary:0")
    );
    // One rollout per flag and environment.
    let err = a
        .start_rollout(
            rollout_plan(json!({"flag": "checkout", "environment": "production"})),
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already rolls"), "{err}");

    // Not enough data: holds, even once the hold is over.
    traffic(&a, "checkout-canary", 0, 100, 0.0).await;
    let steps = a.check_rollouts(now_ms() + 61_000, &probe).await.unwrap();
    assert!(steps.is_empty(), "{steps:?}");
    let r = a.rollout("checkout-canary").await.unwrap();
    assert_eq!(r.readings[0].status, "hold", "{:?}", r.readings);

    // Healthy traffic: green; the hold not over yet: still holds.
    let on = traffic(&a, "checkout-canary", 100, 1000, 0.01).await;
    assert!(on > 150, "{on} units served on at 20 %");
    let steps = a.check_rollouts(now_ms(), &probe).await.unwrap();
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(
        a.rollout("checkout-canary").await.unwrap().readings[0].status,
        "green"
    );

    // Both replicas check at once after the hold: one step is taken, not two.
    let later = now_ms() + 61_000;
    let (sa, sb) = tokio::join!(
        a.check_rollouts(later, &probe),
        b.check_rollouts(later, &probe)
    );
    let taken = sa.unwrap().len() + sb.unwrap().len();
    assert_eq!(taken, 1, "exactly one replica takes the step");
    let r = a.rollout("checkout-canary").await.unwrap();
    assert_eq!(r.state.status, RolloutStatus::AwaitingApproval);
    assert_eq!(r.state.stage, 0);
    assert_eq!(
        fallthrough_percentage(&a),
        Some(20.0),
        "no change before approval"
    );

    // Waiting: no check advances it.
    assert!(a
        .check_rollouts(now_ms() + 120_000, &probe)
        .await
        .unwrap()
        .is_empty());

    // Bob approves on the other replica.
    let approved = b
        .rollout_action(
            "checkout-canary",
            RolloutAction::Advance,
            &person("bob"),
            Some("dashboards look fine".into()),
        )
        .await
        .unwrap();
    assert_eq!(approved.value.state.stage, 1);
    assert_eq!(approved.value.state.status, RolloutStatus::Running);
    let last = approved.value.state.history.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("approved", "token:bob")
    );
    assert_eq!(fallthrough_percentage(&b), Some(50.0));

    // A burst of errors in the new variant at 50 %: rolled back to 0 % at the next check.
    b.refresh_rollout_exposures().await.unwrap();
    traffic(&b, "checkout-canary", 2000, 600, 0.4).await;
    let steps = a.check_rollouts(now_ms(), &probe).await.unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].action, "rolled_back");
    assert!(
        steps[0].note.contains("checkout_error") || steps[0].note.contains("error"),
        "{}",
        steps[0].note
    );
    let r = b.rollout("checkout-canary").await.unwrap();
    assert_eq!(r.state.status, RolloutStatus::RolledBack);
    assert_eq!(r.state.percentage, 0.0);
    assert_eq!(fallthrough_percentage(&a), Some(0.0));
    assert!(a.rollout_exposures("production", "checkout").is_none());
    // The alerts are outbox rows of the steps' own transactions.
    let events: Vec<String> = a
        .deliveries("ops", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event)
        .collect();
    assert_eq!(
        events,
        ["rollout.rolled_back", "rollout.awaiting_approval"],
        "newest first"
    );
    // The rollback is audited as the rollout, naming who set it up, and with the readings.
    let log = a
        .store()
        .unwrap()
        .audit(&AuditQuery::default())
        .await
        .unwrap();
    let rollback = log
        .iter()
        .find(|e| e.action == "rollout.rolled_back")
        .expect("rollback audited");
    assert_eq!(rollback.actor, "rollout:checkout-canary");
    assert!(rollback
        .actor_name
        .as_deref()
        .unwrap_or_default()
        .contains("alice"));
    assert!(rollback
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("red"));
    let flag_change = log
        .iter()
        .find(|e| e.action == "flag.rollout" && e.actor == "rollout:checkout-canary")
        .expect("the flag change audited as the rollout");
    assert!(flag_change
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("0 %"));
    // It is over: a person cannot advance it any more.
    let err = a
        .rollout_action(
            "checkout-canary",
            RolloutAction::Advance,
            &person("bob"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rolled_back"), "{err}");
}

pub async fn probes_gate_rollouts_and_last_healthy_is_honoured(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.unwrap();
    c.import(
        FLAGS,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    c.start_rollout(
        rollout_plan(json!({
            "id": "search-rollout",
            "flag": "search",
            "environment": "production",
            "stages": [{"percentage": 10, "hold": 1}, {"percentage": 30, "hold": 1}, {"percentage": 100, "hold": 1}],
            "onRed": "last_healthy",
            "gates": [
                {"kind": "prometheus", "url": "http://prometheus.invalid:9090", "query": "errors", "max": 0.05},
                {"kind": "http", "url": "http://service.invalid/health", "failures": 3}
            ]
        })),
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    let probe = Scripted::default();
    // No sample yet from Prometheus: holds.
    *probe.prometheus.lock().unwrap() = vec![Ok(None)];
    assert!(c
        .check_rollouts(now_ms() + 2_000, &probe)
        .await
        .unwrap()
        .is_empty());
    // Both healthy: advances to 30 %.
    *probe.prometheus.lock().unwrap() = vec![Ok(Some(0.01))];
    let steps = c.check_rollouts(now_ms() + 2_000, &probe).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].percentage, 30.0);
    // Two failed health checks hold it; the third is red, and it goes back to 10 %.
    *probe.http.lock().unwrap() = vec![Err("answered 503".into())];
    for n in 1..=2 {
        assert!(
            c.check_rollouts(now_ms() + 2_000, &probe)
                .await
                .unwrap()
                .is_empty(),
            "check {n}"
        );
        let r = c.rollout("search-rollout").await.unwrap();
        assert_eq!(r.readings[1].status, "hold");
        assert_eq!(r.readings[1].failures, Some(n));
    }
    let steps = c.check_rollouts(now_ms() + 2_000, &probe).await.unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].action, "rolled_back");
    assert_eq!(steps[0].percentage, 10.0);
    assert!(
        steps[0].note.contains("3 consecutive failed checks"),
        "{}",
        steps[0].note
    );

    // A prometheus value above its limit is red at once (the query carries its own window).
    c.start_rollout(
        rollout_plan(json!({
            "id": "search-again",
            "flag": "search",
            "environment": "production",
            "gates": [{"kind": "prometheus", "url": "http://p.invalid", "query": "q", "max": 0.05}]
        })),
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    *probe.prometheus.lock().unwrap() = vec![Ok(Some(0.2))];
    let steps = c.check_rollouts(now_ms(), &probe).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert!(
        steps[0].note.contains("0.2 is above 0.05"),
        "{}",
        steps[0].note
    );

    // Pause holds a rollout whatever its gates say; abort sets it to 0 %.
    c.start_rollout(
        rollout_plan(json!({"id": "third", "flag": "search", "environment": "production"})),
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    c.rollout_action("third", RolloutAction::Pause, &person("bob"), None)
        .await
        .unwrap();
    assert!(c
        .check_rollouts(now_ms() + 3_600_000, &probe)
        .await
        .unwrap()
        .is_empty());
    let aborted = c
        .rollout_action(
            "third",
            RolloutAction::Abort,
            &person("bob"),
            Some("wrong flag".into()),
        )
        .await
        .unwrap();
    assert_eq!(aborted.value.state.status, RolloutStatus::Aborted);
    assert_eq!(aborted.value.state.percentage, 0.0);
}

pub async fn a_guard_trips_the_kill_switch_once_and_cools_down(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.unwrap();
    c.import(
        FLAGS,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    let probe = Scripted::default();
    let spec: GuardSpec = serde_json::from_value(json!({
        "id": "checkout-errors",
        "flag": "checkout",
        "environment": "production",
        "metric": {"kind": "error_rate", "errors": "checkout_error", "requests": "checkout_request"},
        "max": 0.05,
        "window": "10m",
        "minSample": 200,
        "cooldown": "1h"
    }))
    .unwrap();
    c.create_guard(spec, &person("alice"), None).await.unwrap();
    let events = |from: usize, requests: usize, errors: usize| {
        let now = now_ms();
        let mut rows = Vec::new();
        for i in from..from + requests {
            rows.push(MetricRow {
                environment: "production".into(),
                id: format!("req-{i}"),
                unit: format!("user-{i}"),
                event: "checkout_request".into(),
                value: None,
                at_ms: now,
            });
            if i - from < errors {
                rows.push(MetricRow {
                    environment: "production".into(),
                    id: format!("err-{i}"),
                    unit: format!("user-{i}"),
                    event: "checkout_error".into(),
                    value: None,
                    at_ms: now,
                });
            }
        }
        rows
    };
    let killed = |c: &Control| {
        c.snapshot()
            .flag("checkout")
            .unwrap()
            .definition
            .state_in(Some("production"))
            .1
    };
    // 3 % errors: below the limit.
    c.append_events(&[], &events(0, 300, 9)).await.unwrap();
    assert!(c.check_guards(now_ms(), &probe).await.unwrap().is_empty());
    assert!(!killed(&c));
    let g = &c.guards().await.unwrap()[0];
    assert_eq!(g.reading.as_ref().unwrap().status, "green");
    // A burst: 30 % of the next 300 requests fail.
    c.append_events(&[], &events(300, 300, 90)).await.unwrap();
    let trips = c.check_guards(now_ms(), &probe).await.unwrap();
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert!(killed(&c));
    let log = c
        .store()
        .unwrap()
        .audit(&AuditQuery::default())
        .await
        .unwrap();
    let kill = log.iter().find(|e| e.action == "flag.kill").unwrap();
    assert_eq!(kill.actor, "guard:checkout-errors");
    assert!(
        kill.reason.as_deref().unwrap().contains("limit 5.00 %"),
        "{:?}",
        kill.reason
    );
    // A person releases it; the errors are still in the window, but the guard cools down.
    c.change_flag(
        "checkout",
        switchyard_control::FlagChange::Kill {
            environment: Some("production".into()),
            on: false,
        },
        None,
        &person("bob"),
        Some("fix deployed".into()),
    )
    .await
    .unwrap();
    assert!(c.check_guards(now_ms(), &probe).await.unwrap().is_empty());
    assert!(
        !killed(&c),
        "no flapping: the release stands through the cool-down"
    );
    let g = &c.guards().await.unwrap()[0];
    assert_eq!(g.state.trips, 1);
    assert!(g.state.cooling_down(now_ms()));
    // After the cool-down it would trip again.
    assert_eq!(
        c.check_guards(now_ms() + 3_700_000, &probe)
            .await
            .unwrap()
            .len(),
        0,
        "the window (10 m) has emptied by then"
    );
}

/// 1 000 users from `from`, each sending one `latency_ms` value, 100–200 ms spread evenly;
/// the new variant's are `slow_ms` slower.
async fn latency_traffic(c: &Control, rollout: &str, slow_ms: f64, from: usize) {
    stage_traffic(c, rollout, from..from + 1000, |i, variant| {
        let base = 100.0 + (i % 100) as f64;
        let slow = if variant == "on" { slow_ms } else { 0.0 };
        Some(("latency_ms", Some(base + slow)))
    })
    .await;
}

pub async fn a_latency_gate_compares_the_percentile_with_the_baseline(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.unwrap();
    c.import(
        FLAGS,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    let probe = Scripted::default();
    // Seed 002: p95 at most the baseline's + 100 ms (red beyond doubt above it).
    c.start_rollout(
        rollout_plan(json!({
            "id": "latency",
            "flag": "checkout",
            "environment": "production",
            "stages": [{"percentage": 50, "hold": 60}, {"percentage": 100, "hold": 60}],
            "minSample": 200,
            "gates": [{"kind": "latency", "event": "latency_ms", "percentile": 95, "marginMs": 100}]
        })),
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    // As fast as the baseline (+20 ms): green, and it advances once the hold is over.
    latency_traffic(&c, "latency", 20.0, 0).await;
    let steps = c.check_rollouts(now_ms() + 61_000, &probe).await.unwrap();
    assert_eq!(
        steps.len(),
        1,
        "{:?}",
        c.rollout("latency").await.unwrap().readings
    );
    let r = c.rollout("latency").await.unwrap();
    assert_eq!(r.state.percentage, 100.0);
    let reading = &r.readings[0];
    assert_eq!(reading.status, "green", "{reading:?}");
    assert!(
        reading.value.unwrap() > reading.baseline.unwrap(),
        "{reading:?}"
    );
    // 300 ms slower at 100 %: nobody is left on the old variant, so the gate compares with
    // the units the previous stage kept on it — red, rolled back.
    latency_traffic(&c, "latency", 300.0, 5000).await;
    let steps = c.check_rollouts(now_ms(), &probe).await.unwrap();
    assert_eq!(
        steps.len(),
        1,
        "{:?}",
        c.rollout("latency").await.unwrap().readings
    );
    assert_eq!(steps[0].action, "rolled_back");
    assert!(
        steps[0].note.contains("the previous stage's other units"),
        "{}",
        steps[0].note
    );

    // A fresh rollout where the new variant is 300 ms slower at 50 %: red, rolled back.
    c.start_rollout(
        rollout_plan(json!({
            "id": "latency-2",
            "flag": "checkout",
            "environment": "production",
            "stages": [{"percentage": 50, "hold": 60}, {"percentage": 100}],
            "minSample": 200,
            "gates": [{"kind": "latency", "event": "latency_ms", "percentile": 95, "marginMs": 100}]
        })),
        &person("alice"),
        None,
    )
    .await
    .unwrap();
    latency_traffic(&c, "latency-2", 300.0, 10_000).await;
    let steps = c.check_rollouts(now_ms(), &probe).await.unwrap();
    assert_eq!(
        steps.len(),
        1,
        "{:?}",
        c.rollout("latency-2").await.unwrap().readings
    );
    assert_eq!(steps[0].action, "rolled_back");
    assert!(
        steps[0].note.contains("slower beyond doubt"),
        "{}",
        steps[0].note
    );
}
