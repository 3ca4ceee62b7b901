//! Operations on one replica: no-op writes, every layout, imports at start, audit actors,
//! the GitOps file source and the snapshot file.

use serde_json::json;
use switchyard_control::{
    Actor, AdminToken, BootstrapPlan, Control, ControlError, FlagChange, ImportMode, Served,
    Settings, Source, StartImport, TenantSetting,
};
use switchyard_engine::{Context, FieldPath, FlagDef, Format};
use switchyard_storage::AuditQuery;

use crate::harness::{plan, settings, Db};

fn who() -> Actor {
    Actor {
        id: "token:0123456789abcdef".into(),
        name: Some("deploy-bot".into()),
    }
}

fn flag(value: serde_json::Value) -> FlagDef {
    FlagDef::from_value_at(value, &FieldPath::root()).expect("flag shape")
}

const SEED_000: &str = include_str!("../../../engine/tests/fixtures/seeds/feature_flags.json");

async fn audit_count(control: &Control) -> usize {
    control
        .store()
        .unwrap()
        .audit(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .len()
}

/// An identical replacement and releasing a kill switch that is not on change nothing: no
/// version, no audit entry, no revision, and they say so.
pub async fn no_op_writes_change_nothing_and_say_so(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.expect("bootstrap");
    let created = c
        .create_flag(flag(json!({"key": "f", "description": "d"})), &who(), None)
        .await
        .expect("create");
    let entries = audit_count(&c).await;
    let revision = c.store().unwrap().revision().await.unwrap();

    let same = c
        .replace_flag(
            "f",
            flag(json!({"key": "f", "description": "d"})),
            Some(created.value.meta.version),
            false,
            &who(),
            None,
        )
        .await
        .expect("identical replace");
    assert!(!same.changed);
    let released = c
        .change_flag(
            "f",
            FlagChange::Kill {
                environment: None,
                on: false,
            },
            None,
            &who(),
            None,
        )
        .await
        .expect("release");
    // The first real edit of a plain toggle writes its implied fallthrough out; releasing a
    // kill switch that is not on is then a no-op.
    let again = c
        .change_flag(
            "f",
            FlagChange::Kill {
                environment: None,
                on: false,
            },
            None,
            &who(),
            None,
        )
        .await
        .expect("release again");
    assert!(!again.changed, "releasing twice changes nothing");
    assert_eq!(again.value.meta.version, released.value.meta.version);
    let entries_after = audit_count(&c).await;
    assert_eq!(
        entries_after,
        entries + usize::from(released.changed),
        "only a real change is audited"
    );
    let revision_after = c.store().unwrap().revision().await.unwrap();
    assert_eq!(revision_after, revision + i64::from(released.changed));
}

/// Every operation works on a flag written in the compact layout (seed 000's own file).
pub async fn operations_work_on_compact_layout_flags(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.expect("bootstrap");
    c.import(
        SEED_000,
        Format::Json,
        "feature_flags.json",
        ImportMode::Merge,
        &who(),
        None,
    )
    .await
    .expect("seed 000 imports");
    let on = |c: &Control| -> Vec<u32> {
        let snap = c.snapshot();
        let ev = snap
            .ruleset
            .evaluator("production", time::OffsetDateTime::UNIX_EPOCH);
        (0..2000)
            .filter(|i| {
                ev.evaluate(
                    "enhanced_risk_scoring",
                    &Context::with_targeting_key(i.to_string()),
                )
                .value
                    == &json!(true)
            })
            .collect()
    };
    let before = on(&c);
    assert!(
        (400..600).contains(&before.len()),
        "25 % of 2000: {}",
        before.len()
    );
    c.change_flag(
        "enhanced_risk_scoring",
        FlagChange::Rollout {
            environment: None,
            percentage: 50.0,
            variant: None,
        },
        None,
        &who(),
        Some("stage 2".into()),
    )
    .await
    .expect("top-level rollout of a compact flag");
    let after = on(&c);
    assert!(
        (900..1100).contains(&after.len()),
        "50 % of 2000: {}",
        after.len()
    );
    // Raising the percentage kept everyone who had it (same bucketing, now canonical).
    assert!(before.iter().all(|u| after.contains(u)));
    let snap = c.snapshot();
    let ev = snap
        .ruleset
        .evaluator("production", time::OffsetDateTime::UNIX_EPOCH);
    let listed = Context::with_targeting_key("8527130908");
    assert_eq!(
        ev.evaluate("enhanced_risk_scoring", &listed).value,
        &json!(true)
    );
    for change in [
        FlagChange::Enabled {
            environment: Some("staging".into()),
            enabled: false,
        },
        FlagChange::Tenant {
            environment: None,
            tenant: "acme".into(),
            setting: TenantSetting::On,
        },
        FlagChange::Targets {
            environment: Some("production".into()),
            targets: serde_json::from_value(json!([{"variant": "on", "values": ["u1"]}])).unwrap(),
        },
    ] {
        c.change_flag("dexter_react_agent", change, None, &who(), None)
            .await
            .expect("an operation on a compact flag");
    }
}

/// Restarting with `--import` never undoes a runtime change (a production kill switch):
/// what differs is reported as drift; overwriting is explicit and audited.
pub async fn an_import_at_start_keeps_runtime_changes(db: Db) {
    let file = StartImport {
        name: "flags.yaml".into(),
        text: "flags:\n  - key: payments\n  - key: search\n".into(),
        format: Format::Yaml,
    };
    let start = |overwrite: bool| BootstrapPlan {
        imports: vec![file.clone()],
        overwrite_imports: overwrite,
        ..plan()
    };
    let c = db.replica().await;
    let first = c.bootstrap(&start(false)).await.expect("first start");
    assert_eq!(first.imports[0].1.created, vec!["payments", "search"]);
    c.change_flag(
        "payments",
        FlagChange::Kill {
            environment: Some("production".into()),
            on: true,
        },
        None,
        &who(),
        Some("incident".into()),
    )
    .await
    .expect("kill");

    let restarted = db.replica().await;
    let second = restarted.bootstrap(&start(false)).await.expect("restart");
    assert_eq!(second.imports[0].1.drifted, vec!["payments"]);
    assert!(second.imports[0].1.created.is_empty());
    let killed = restarted
        .snapshot()
        .flag("payments")
        .unwrap()
        .definition
        .environments["production"]
        .kill_switch;
    assert_eq!(killed, Some(true), "the restart kept the kill switch");

    let overwritten = db.replica().await;
    let third = overwritten
        .bootstrap(&start(true))
        .await
        .expect("overwrite");
    assert_eq!(third.imports[0].1.updated, vec!["payments"]);
    assert!(overwritten
        .snapshot()
        .flag("payments")
        .unwrap()
        .definition
        .environments
        .is_empty());
    let log = overwritten
        .store()
        .unwrap()
        .audit(&AuditQuery {
            subject: Some("payments".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].action, "flag.import");
    assert_eq!(log[0].actor, "system");
    assert!(
        log[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("overwriting"),
        "{:?}",
        log[0].reason
    );
}

/// The audit log records who by a stable id, and keeps the name it had.
pub async fn the_audit_log_records_the_actor_id(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.expect("bootstrap");
    c.create_flag(flag(json!({"key": "f"})), &who(), Some("why".into()))
        .await
        .expect("create");
    let log = c
        .store()
        .unwrap()
        .audit(&AuditQuery {
            subject: Some("f".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].actor, "token:0123456789abcdef");
    assert_eq!(log[0].actor_name.as_deref(), Some("deploy-bot"));
    assert_eq!(log[0].reason.as_deref(), Some("why"));
}

/// Mistakes get errors that say what exists.
pub async fn mistakes_name_what_exists(db: Db) {
    let c = db.replica().await;
    c.bootstrap(&plan()).await.expect("bootstrap");
    c.create_flag(flag(json!({"key": "checkout-redesign"})), &who(), None)
        .await
        .expect("create");
    match c
        .change_flag(
            "checkout-redsign",
            FlagChange::Archive(true),
            None,
            &who(),
            None,
        )
        .await
    {
        Err(ControlError::NotFound {
            hint: Some(hint), ..
        }) => {
            assert!(hint.contains("checkout-redesign"), "{hint}")
        }
        other => panic!("expected a hint, got {other:?}"),
    }
    match c
        .change_flag(
            "checkout-redesign",
            FlagChange::Enabled {
                environment: Some("prod".into()),
                enabled: true,
            },
            None,
            &who(),
            None,
        )
        .await
    {
        Err(ControlError::NotFound {
            what,
            hint: Some(hint),
        }) => {
            assert!(what.contains("prod"), "{what}");
            assert!(hint.contains("production"), "{hint}");
        }
        other => panic!("expected not found, got {other:?}"),
    }
    // A segment in use cannot be deleted, and the error names the flag using it.
    c.put_segment(
        "beta",
        serde_json::from_value(json!({"included": ["u1"]})).unwrap(),
        None,
        false,
        &who(),
        None,
    )
    .await
    .expect("segment");
    c.create_flag(
        flag(json!({"key": "uses-beta", "rules": [{"conditions": [{"operator": "in_segment", "value": "beta"}], "variant": "on"}]})),
        &who(),
        None,
    )
    .await
    .expect("flag using it");
    match c.delete_segment("beta", None, &who(), None).await {
        Err(ControlError::Invalid { diagnostics }) => {
            assert!(
                diagnostics
                    .iter()
                    .any(|d| d.flag.as_deref() == Some("uses-beta")),
                "{diagnostics:?}"
            )
        }
        other => panic!("expected the segment in use, got {other:?}"),
    }
    // Replacing a segment needs its version, like a flag.
    assert!(matches!(
        c.put_segment("beta", Default::default(), None, false, &who(), None)
            .await,
        Err(ControlError::PreconditionRequired { .. })
    ));
}

/// GitOps mode: the file's flags are visible (not only over OFREP) and writes are refused.
pub async fn a_flag_file_is_served_and_read_only(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.yaml");
    std::fs::write(&path, "flags:\n  - key: from-file\n    owner: team-a\n").unwrap();
    let store = switchyard_storage::Store::connect(&db.url).await.unwrap();
    let c = Control::new(Source::File(path.clone()), settings());
    c.attach(store).await.expect("attach");
    c.bootstrap(&plan()).await.expect("bootstrap");
    let snap = c.snapshot();
    let f = snap.flag("from-file").expect("the file's flag is visible");
    assert_eq!(f.definition.owner.as_deref(), Some("team-a"));
    assert_eq!(
        snap.client_metadata("from-file").unwrap()["owner"],
        "team-a"
    );
    assert!(matches!(
        c.create_flag(flag(json!({"key": "x"})), &who(), None).await,
        Err(ControlError::ReadOnly { .. })
    ));
    // Tokens still work in file mode (they live in the store).
    assert_eq!(snap.tokens().count(), 1);
}

/// The snapshot file lets a replica serve (and authenticate SDK keys) before the store
/// answers; a corrupt one is reported and ignored.
pub async fn the_snapshot_file_serves_until_the_store_answers(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    let with_file = Settings {
        snapshot_file: Some(file.clone()),
        ..settings()
    };
    let store = switchyard_storage::Store::connect(&db.url).await.unwrap();
    let c = Control::new(Source::Store, with_file.clone());
    c.attach(store).await.unwrap();
    c.bootstrap(&BootstrapPlan {
        admin_token: AdminToken::Given("the-admin-token-of-this-test".into()),
        ..plan()
    })
    .await
    .unwrap();
    c.create_flag(flag(json!({"key": "kept"})), &who(), None)
        .await
        .unwrap();
    c.write_snapshot_file().expect("written");

    let cold = Control::new(Source::Store, with_file.clone());
    assert_eq!(cold.served(), Served::Nothing);
    let revision = cold.load_snapshot_file().expect("reads").expect("served");
    assert_eq!(revision, c.snapshot().revision);
    assert_eq!(cold.served(), Served::SnapshotFile);
    assert!(cold.is_ready());
    assert!(cold.snapshot().ruleset.is_served("kept"));
    assert!(cold
        .snapshot()
        .token_cache()
        .verify("the-admin-token-of-this-test")
        .is_some());
    // Writes wait for the store.
    assert!(matches!(
        cold.create_flag(flag(json!({"key": "x"})), &who(), None)
            .await,
        Err(ControlError::Unavailable { .. })
    ));

    std::fs::write(
        &file,
        b"{\"format\": \"switchyard-snapshot\", \"version\": 1, \"revis",
    )
    .unwrap();
    let corrupt = Control::new(Source::Store, with_file);
    let err = corrupt
        .load_snapshot_file()
        .expect_err("a truncated file is not used");
    assert!(err.to_string().contains("not usable"), "{err}");
    assert_eq!(corrupt.served(), Served::Nothing);
}
