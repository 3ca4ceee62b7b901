//! Defects of the first version's seam between HTTP and the store, each reproduced with two
//! replicas (two control layers, each with its own connection pool) on one database and
//! concurrent writers on both.

use std::collections::BTreeSet;

use serde_json::json;
use switchyard_api_types::Role;
use switchyard_control::{Actor, ControlError, FlagChange, NewTokenRequest};
use switchyard_engine::{FieldPath, FlagDef};

use crate::harness::{eventually, plan, Db};

fn who(name: &str) -> Actor {
    Actor {
        id: format!("test:{name}"),
        name: Some(name.to_owned()),
    }
}

fn flag(value: serde_json::Value) -> FlagDef {
    FlagDef::from_value_at(value, &FieldPath::root()).expect("flag shape")
}

/// Replica A kills a flag while writers on replica B change its rollout without `If-Match`
/// (as the CLI does): the kill must survive every round.
pub async fn an_acknowledged_kill_switch_is_never_undone(db: Db) {
    let a = db.replica().await;
    let b = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    for round in 0..10 {
        let key = format!("risky-{round}");
        a.create_flag(flag(json!({"key": key})), &who("setup"), None)
            .await
            .expect("create");
        let mut writers = Vec::new();
        for i in 0..6 {
            let b = b.clone();
            let key = key.clone();
            writers.push(tokio::spawn(async move {
                b.change_flag(
                    &key,
                    FlagChange::Rollout {
                        environment: Some("production".into()),
                        percentage: f64::from(10 + i),
                        variant: None,
                    },
                    None,
                    &who("b"),
                    None,
                )
                .await
            }));
        }
        tokio::task::yield_now().await;
        let killed = a
            .change_flag(
                &key,
                FlagChange::Kill {
                    environment: Some("production".into()),
                    on: true,
                },
                None,
                &who("a"),
                Some("incident".into()),
            )
            .await
            .expect("kill acknowledged");
        assert!(killed.changed);
        for w in writers {
            w.await
                .expect("task")
                .expect("rollout applies to the latest version");
        }
        for replica in [&a, &b] {
            replica.catch_up().await.expect("catch up");
            let snap = replica.snapshot();
            let def = snap.flag(&key).expect("flag").definition;
            assert_eq!(
                def.environments["production"].kill_switch,
                Some(true),
                "round {round}: the kill switch was undone"
            );
        }
    }
}

/// A full replacement without `If-Match` is refused instead of overwriting what it did not see.
pub async fn a_replacement_without_if_match_is_refused(db: Db) {
    let a = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    let created = a
        .create_flag(flag(json!({"key": "f"})), &who("a"), None)
        .await
        .expect("create");
    let replacement = flag(json!({"key": "f", "description": "new"}));
    match a
        .replace_flag("f", replacement.clone(), None, false, &who("a"), None)
        .await
    {
        Err(ControlError::PreconditionRequired { current, .. }) => {
            assert_eq!(current, created.value.meta.version)
        }
        other => panic!("expected PreconditionRequired, got {other:?}"),
    }
    match a
        .replace_flag("f", replacement.clone(), Some(99), false, &who("a"), None)
        .await
    {
        Err(ControlError::Stale {
            expected: 99,
            current,
            ..
        }) => assert_eq!(current, 1),
        other => panic!("expected Stale, got {other:?}"),
    }
    let replaced = a
        .replace_flag("f", replacement, Some(1), false, &who("a"), None)
        .await
        .expect("replace with If-Match");
    assert_eq!(replaced.value.meta.version, 2);
}

/// A sets `a requires b` while B sets `b requires a`: at most one may win, the stored
/// ruleset always compiles, and every later write (the kill switch included) still works.
pub async fn a_cross_replica_cycle_cannot_wedge_the_store(db: Db) {
    let a = db.replica().await;
    let b = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    for round in 0..5 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        a.create_flag(flag(json!({"key": x})), &who("setup"), None)
            .await
            .expect("x");
        a.create_flag(flag(json!({"key": y})), &who("setup"), None)
            .await
            .expect("y");
        b.catch_up().await.expect("b catches up");
        let requires = |other: &str| {
            let other = other.to_owned();
            move |mut def: FlagDef| {
                def.targeting.prerequisites = Some(
                    serde_json::from_value(json!([{"flag": other, "variant": "on"}])).unwrap(),
                );
                def
            }
        };
        let def_x = requires(&y)(a.snapshot().flag(&x).unwrap().definition.clone());
        let def_y = requires(&x)(b.snapshot().flag(&y).unwrap().definition.clone());
        let (wa, wb) = (who("a"), who("b"));
        let (ra, rb) = tokio::join!(
            a.replace_flag(&x, def_x, None, true, &wa, None),
            b.replace_flag(&y, def_y, None, true, &wb, None),
        );
        let wins = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(
            wins, 1,
            "round {round}: exactly one of the two may win: {ra:?} / {rb:?}"
        );
        let loser = ra.err().or(rb.err()).expect("a loser");
        match loser {
            ControlError::Invalid { diagnostics } => assert!(
                diagnostics.iter().any(|d| d.message.contains("cycle")),
                "{diagnostics:?}"
            ),
            other => panic!("expected a cycle error, got {other:?}"),
        }
        // Everything still writes, on both replicas.
        for (replica, key) in [(&a, &x), (&b, &y)] {
            replica
                .change_flag(
                    key,
                    FlagChange::Kill {
                        environment: None,
                        on: true,
                    },
                    None,
                    &who("oncall"),
                    None,
                )
                .await
                .expect("the kill switch still works");
        }
        assert_stored_ruleset_compiles(&db).await;
    }
}

/// A deletes `p` while B creates `c requires p`: never both.
pub async fn a_deleted_prerequisite_cannot_be_required_concurrently(db: Db) {
    let a = db.replica().await;
    let b = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    for round in 0..5 {
        let p = format!("p{round}");
        let c = format!("c{round}");
        a.create_flag(flag(json!({"key": p})), &who("setup"), None)
            .await
            .expect("p");
        b.catch_up().await.expect("catch up");
        let child = flag(json!({"key": c, "prerequisites": [{"flag": p, "variant": "on"}]}));
        let (wa, wb) = (who("a"), who("b"));
        let (deleted, created) = tokio::join!(
            a.delete_flag(&p, None, &wa, None),
            b.create_flag(child, &wb, None),
        );
        assert!(
            deleted.is_ok() != created.is_ok(),
            "round {round}: exactly one succeeds: {deleted:?} / {created:?}"
        );
        assert_stored_ruleset_compiles(&db).await;
    }
}

/// Two concurrent revocations cannot remove the last admin token.
pub async fn the_last_admin_token_survives_concurrent_revokes(db: Db) {
    let a = db.replica().await;
    let b = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    let second = a
        .create_token(
            NewTokenRequest {
                name: "second-admin".into(),
                role: Role::Admin,
                environment: None,
            },
            &who("a"),
        )
        .await
        .expect("second admin");
    b.catch_up().await.expect("catch up");
    let first = a
        .snapshot()
        .tokens()
        .find(|t| t.name == "bootstrap-admin")
        .expect("bootstrap admin")
        .id
        .clone();
    let (wa, wb) = (who("a"), who("b"));
    let (ra, rb) = tokio::join!(
        a.revoke_token(&first, &wa, None),
        b.revoke_token(&second.value.record.id, &wb, None),
    );
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} / {rb:?}");
    let refused = ra.err().or(rb.err()).unwrap();
    assert!(
        matches!(refused, ControlError::Refused { .. }),
        "{refused:?}"
    );
    a.catch_up().await.expect("catch up");
    let admins = a
        .snapshot()
        .tokens()
        .filter(|t| t.role == Role::Admin && t.revoked_at_ms.is_none())
        .count();
    assert_eq!(admins, 1);
}

/// Replicas starting together on an empty database bootstrap it exactly once between them.
pub async fn replicas_starting_together_bootstrap_once(db: Db) {
    let (a, b, c) = tokio::join!(db.replica(), db.replica(), db.replica());
    let plan = plan();
    let (ra, rb, rc) = tokio::join!(a.bootstrap(&plan), b.bootstrap(&plan), c.bootstrap(&plan));
    let generated = [ra, rb, rc]
        .into_iter()
        .map(|r| r.expect("every replica starts"))
        .filter(|r| r.generated_admin_token.is_some())
        .count();
    assert_eq!(generated, 1, "one admin token in all");
    a.catch_up().await.expect("catch up");
    let snap = a.snapshot();
    let envs: BTreeSet<String> = snap.environments().map(|e| e.name.clone()).collect();
    let expected: BTreeSet<String> = ["development", "production", "staging"]
        .map(String::from)
        .into();
    assert_eq!(envs, expected);
    assert_eq!(snap.tokens().count(), 1);
}

/// A change through one replica reaches the other's snapshot by itself (woken by the store),
/// and snapshots only ever move forward.
pub async fn a_change_reaches_the_other_replica(db: Db) {
    let a = db.replica().await;
    a.bootstrap(&plan()).await.expect("bootstrap");
    let b = db.syncing_replica().await;
    let mut seen = b.subscribe();
    a.create_flag(flag(json!({"key": "live"})), &who("a"), None)
        .await
        .expect("create");
    let mut last = b.snapshot().revision;
    for i in 0..20 {
        a.change_flag(
            "live",
            FlagChange::Enabled {
                environment: None,
                enabled: i % 2 == 0,
            },
            None,
            &who("a"),
            None,
        )
        .await
        .expect("toggle");
    }
    let target = a.snapshot().revision;
    eventually(10, "replica B catching up", || {
        b.snapshot().revision >= target
    })
    .await;
    // Every snapshot B published was newer than the one before.
    while seen.has_changed().unwrap_or(false) {
        let revision = seen.borrow_and_update().revision;
        assert!(revision >= last, "{revision} after {last}");
        last = revision;
    }
    let def = b.snapshot().flag("live").unwrap().definition.clone();
    assert_eq!(def.targeting.enabled, Some(false));
}

/// The store's whole ruleset compiles, read fresh by a new replica.
async fn assert_stored_ruleset_compiles(db: &Db) {
    let store = switchyard_storage::Store::connect(&db.url)
        .await
        .expect("connect");
    let state = store.state().await.expect("state");
    let (_, diagnostics) =
        switchyard_control::Snapshot::from_state(&state, switchyard_control::Source::Store, None);
    assert!(
        diagnostics.iter().all(|d| !d.is_error()),
        "the stored ruleset does not compile: {diagnostics:?}"
    );
    store.close().await;
}
