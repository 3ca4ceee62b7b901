//! Scheduled changes on the real stores: one run across two replicas racing for it, a
//! schedule missed while the servers were down runs late and says so, a schedule that no longer
//! applies is marked failed and changes nothing, a pending one can be cancelled.

use switchyard_control::{Actor, ControlError, ImportMode, ScheduledOp};
use switchyard_engine::Format;
use switchyard_storage::AuditQuery;

use crate::harness::{plan, Db};

fn who() -> Actor {
    Actor {
        id: "token:alice".into(),
        name: Some("alice".into()),
    }
}

const FLAGS: &str = "flags:\n  - key: launch\n    environments:\n      production: {enabled: false}\n  - key: doomed\n";

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub async fn schedules_run_once_late_or_fail_cleanly(db: Db) {
    let a = db.replica().await;
    a.bootstrap(&plan()).await.unwrap();
    a.import(
        FLAGS,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .unwrap();
    let b = db.replica().await;

    // Mistakes are refused when scheduling.
    let err = a
        .create_schedule(
            "lanch",
            "production",
            ScheduledOp::Enable,
            now_ms() + 60_000,
            &who(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ControlError::NotFound { hint: Some(h), .. } if h.contains("did you mean `launch`")),
        "{err:?}"
    );
    let err = a
        .create_schedule(
            "launch",
            "production",
            ScheduledOp::Rollout {
                percentage: 10.0,
                variant: Some("maybe".into()),
            },
            now_ms() + 60_000,
            &who(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Invalid { .. }), "{err}");
    let err = a
        .create_schedule(
            "launch",
            "production",
            ScheduledOp::Enable,
            now_ms() - 3_600_000,
            &who(),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in the past"), "{err}");

    // Due in a moment; both replicas race to run it.
    let due = now_ms() + 300;
    let s = a
        .create_schedule(
            "launch",
            "production",
            ScheduledOp::Enable,
            due,
            &who(),
            Some("launch day".into()),
        )
        .await
        .unwrap()
        .value;
    // Another, to be cancelled; and one on a flag deleted before it is due.
    let cancelled = a
        .create_schedule("launch", "production", ScheduledOp::Kill, due, &who(), None)
        .await
        .unwrap()
        .value;
    a.cancel_schedule(&cancelled.record.id, &who(), None)
        .await
        .unwrap();
    let err = a
        .cancel_schedule(&cancelled.record.id, &who(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is cancelled"), "{err}");
    let failing = a
        .create_schedule(
            "doomed",
            "production",
            ScheduledOp::Disable,
            due,
            &who(),
            None,
        )
        .await
        .unwrap()
        .value;
    a.delete_flag("doomed", None, &who(), None).await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (ra, rb) = tokio::join!(a.run_due_schedules(now_ms()), b.run_due_schedules(now_ms()));
    let mut runs: Vec<_> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    runs.sort_by(|x, y| x.id.cmp(&y.id));
    let ran: Vec<&str> = runs
        .iter()
        .filter(|r| r.id == s.record.id)
        .map(|r| r.state.as_str())
        .collect();
    assert_eq!(ran, ["done"], "exactly one replica ran it: {runs:?}");
    let failed: Vec<_> = runs.iter().filter(|r| r.id == failing.record.id).collect();
    assert_eq!(failed.len(), 1, "{runs:?}");
    assert_eq!(failed[0].state, "failed");
    assert!(
        failed[0].outcome.contains("flag `doomed` was not found"),
        "{:?}",
        failed[0]
    );

    // The change is made, by the scheduler, once, naming who set it up.
    let store = a.store().unwrap();
    let log = store
        .audit(&AuditQuery {
            subject_kind: Some("flag".into()),
            subject: Some("launch".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let by_scheduler: Vec<_> = log.iter().filter(|e| e.actor == "scheduler").collect();
    assert_eq!(by_scheduler.len(), 1, "{log:#?}");
    assert_eq!(by_scheduler[0].action, "flag.enable");
    let reason = by_scheduler[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("set up by alice: launch day; ran on time"),
        "{reason}"
    );
    // (Read from the store: either replica may have run it.)
    let stored = store.get_flag("launch").await.unwrap().unwrap();
    let env = &stored.definition["environments"]["production"];
    assert_eq!(env["enabled"], serde_json::json!(true));
    assert!(
        env.get("killSwitch").is_none_or(|k| k != true),
        "the cancelled kill did not run"
    );

    // Missed while every server was down: it runs at the next start, late, and says so.
    let late = a
        .create_schedule(
            "launch",
            "production",
            ScheduledOp::Disable,
            now_ms(),
            &who(),
            None,
        )
        .await
        .unwrap()
        .value;
    let runs = a.run_due_schedules(now_ms() + 2 * 3_600_000).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, late.record.id);
    assert_eq!(runs[0].state, "done");
    let all = a.schedules().await.unwrap();
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|s| (s.record.id.as_str(), s.record.state.as_str()))
        .collect();
    assert!(states.contains(&(cancelled.record.id.as_str(), "cancelled")));
    assert!(states.contains(&(failing.record.id.as_str(), "failed")));
    // Nothing is due any more.
    assert!(a.run_due_schedules(now_ms()).await.unwrap().is_empty());
    assert!(b.run_due_schedules(now_ms()).await.unwrap().is_empty());
}

/// The stale report lists exactly the stale flags of a prepared store.
pub async fn the_stale_report_lists_exactly_the_stale_flags(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.unwrap();
    let flags = r#"
flags:
  - key: done
  - key: off-everywhere
    enabled: false
  - key: partial
    fallthrough: {percentage: 25, variant: "on"}
  - key: with-rule
    rules: [{conditions: [{attribute: plan, operator: equals, value: pro}], variant: "off"}]
  - key: expired
    lifecycle: {expectedRemoval: 2020-01-01}
    rules: [{conditions: [{attribute: plan, operator: equals, value: pro}], variant: "off"}]
  - key: mixed
    environments:
      production: {fallthrough: {percentage: 50, variant: "on"}}
"#;
    c.import(
        flags,
        Format::Yaml,
        "f.yaml",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .unwrap();
    let later = now_ms() + 100 * 86_400_000;
    // Before evaluations are recorded, nothing is called unevaluated.
    let report = c.stale_flags(90, later).await.unwrap();
    let keys: Vec<&str> = report.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["done", "expired", "off-everywhere"], "{report:#?}");
    let done = &report[0];
    assert!(done.reasons[0].contains("production: `on`"), "{done:?}");
    // Recorded from now on: in 100 days, a flag evaluated the day before is fresh; one never
    // evaluated (`partial`) is stale, and so is `done` on a second count.
    let recent = later - 86_400_000;
    c.record_evaluations(&[
        ("production".into(), "with-rule".into(), recent),
        ("staging".into(), "mixed".into(), recent),
        ("production".into(), "expired".into(), recent),
    ])
    .await
    .unwrap();
    let report = c.stale_flags(90, later).await.unwrap();
    let keys: Vec<&str> = report.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        ["done", "expired", "off-everywhere", "partial"],
        "{report:#?}"
    );
    assert!(
        report[3].reasons[0].contains("never evaluated"),
        "{:?}",
        report[3]
    );
    assert!(report[0]
        .reasons
        .iter()
        .any(|r| r.contains("not evaluated in any environment for 90 days")));
    assert!(
        !report[1]
            .reasons
            .iter()
            .any(|r| r.contains("not evaluated")),
        "{:?}",
        report[1]
    );
    // Young flags are not stale for serving one variant; a past removal date still is.
    let now = c.stale_flags(90, now_ms()).await.unwrap();
    let keys: Vec<&str> = now.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["expired"], "{now:#?}");
    assert!(now[0].reasons[0].contains("past its expected removal date (2020-01-01)"));
}
