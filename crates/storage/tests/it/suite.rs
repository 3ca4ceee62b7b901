//! The storage test suite: every function here runs once per backend (see `main.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Executor, Row};
use switchyard_storage::{
    Appended, AuditEntry, AuditInfo, AuditQuery, Backend, Expect, ExposureRow, FeedKind, FeedOp,
    ItemKind, ListenerState, MetricRow, NewToken, Role, SessionRecord, Store, StoreError, Write,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{chain, Ctx, Kind, CRASH_URL_VAR};

// ---------------------------------------------------------------------------------------
// helpers

fn who(actor: &str, action: &str) -> AuditInfo {
    AuditInfo::new(actor, action)
}

fn write(key: &str, expect: Expect, definition: Option<Value>) -> Write {
    Write {
        key: key.into(),
        expect,
        definition,
        archived: false,
        audit: who("alice", "test.write"),
    }
}

fn create(key: &str, definition: Value) -> Write {
    write(key, Expect::Absent, Some(definition))
}

fn update(key: &str, version: i64, definition: Value) -> Write {
    write(key, Expect::Version(version), Some(definition))
}

fn delete(key: &str, expect: Expect) -> Write {
    write(key, expect, None)
}

async fn whole_log(store: &Store) -> Vec<AuditEntry> {
    store
        .audit(&AuditQuery {
            limit: AuditQuery::MAX_LIMIT,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
}

fn token(id: &str, role: &str, environment: Option<&str>) -> NewToken {
    NewToken {
        id: id.into(),
        name: format!("{id} token"),
        role: Role::parse(role).expect("a role"),
        environment: environment.map(str::to_owned),
        secret_hash: format!("argon2-secret-hash-of-{id}"),
    }
}

fn assert_conflict(
    result: Result<impl std::fmt::Debug, StoreError>,
    e: Option<i64>,
    a: Option<i64>,
) {
    match result {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (e, a)),
        other => panic!("expected Conflict({e:?}, {a:?}), got {other:?}"),
    }
}

fn assert_not_found(result: Result<impl std::fmt::Debug, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// connection and schema

pub async fn connect_reports_backend_and_pings(ctx: Ctx) {
    let expected = match ctx.kind {
        Kind::Sqlite => Backend::Sqlite,
        Kind::Postgres => Backend::Postgres,
    };
    assert_eq!(ctx.store.backend(), expected);
    ctx.store.ping().await.expect("ping");
    let clone = ctx.store.clone();
    clone.ping().await.expect("ping a clone");
    assert!(format!("{:?}", ctx.store).contains("backend"));
    ctx.store.close().await;
    let err = clone.ping().await.expect_err("ping after close");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}

pub async fn migrations_are_idempotent(ctx: Ctx) {
    ctx.store
        .write_flag(&create("survivor", json!({ "v": 1 })))
        .await
        .expect("create");
    let revision = ctx.store.revision().await.expect("revision");
    for _ in 0..2 {
        let again = ctx.reconnect().await;
        assert_eq!(again.list_flags().await.expect("list").len(), 1);
        assert_eq!(again.revision().await.expect("revision"), revision);
        again.close().await;
    }
    let mut raw = ctx.raw().await;
    let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .expect("schema_migrations");
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7],
        "each migration recorded exactly once"
    );
}

pub async fn newer_schema_is_refused(ctx: Ctx) {
    let mut raw = ctx.raw().await;
    raw.execute("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (999, 0)")
        .await
        .expect("insert");
    match Store::connect(&ctx.url).await {
        Err(
            err @ StoreError::SchemaTooNew {
                found: 999,
                supported: 7,
            },
        ) => {
            assert!(
                err.to_string().contains("newer than this build supports"),
                "{err}"
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// environments

pub async fn environments_create_list_conflict(ctx: Ctx) {
    let store = &ctx.store;
    assert!(store.list_environments().await.expect("list").is_empty());
    let staging = store
        .create_environment("staging", &who("alice", "environment.create"))
        .await
        .expect("create staging");
    assert_eq!(staging.name, "staging");
    assert!(staging.created_at_ms > 1_600_000_000_000);
    store
        .create_environment("production", &who("alice", "environment.create"))
        .await
        .expect("create production");
    let names: Vec<String> = store
        .list_environments()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["production", "staging"]);

    let log_before = whole_log(store).await.len();
    let revision = store.revision().await.expect("revision");
    let again = store
        .create_environment("staging", &who("bob", "environment.create"))
        .await;
    assert_conflict(again, None, None);
    assert_eq!(whole_log(store).await.len(), log_before);
    assert_eq!(store.revision().await.expect("revision"), revision);

    let log = whole_log(store).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].subject_kind, "environment");
    assert_eq!(log[0].subject, "production");
    assert_eq!(log[0].before, None);
    assert_eq!(log[0].after, Some(json!({ "name": "production" })));
}

// ---------------------------------------------------------------------------------------
// flags

pub async fn flag_lifecycle_versions_and_timestamps(ctx: Ctx) {
    let store = &ctx.store;
    assert_eq!(store.get_flag("checkout").await.expect("get"), None);

    let created = store
        .write_flag(&create("checkout", json!({ "default": "off" })))
        .await
        .expect("create")
        .expect("record");
    assert_eq!(created.key, "checkout");
    assert_eq!(created.version, 1);
    assert!(!created.archived);
    assert_eq!(created.created_at_ms, created.updated_at_ms);
    assert_eq!(
        store.get_flag("checkout").await.expect("get"),
        Some(created.clone())
    );

    store
        .write_flag(&create("banner", json!({})))
        .await
        .expect("create banner");
    let keys: Vec<String> = store
        .list_flags()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.key)
        .collect();
    assert_eq!(keys, ["banner", "checkout"], "ordered by key");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let updated = store
        .write_flag(&update("checkout", 1, json!({ "default": "on" })))
        .await
        .expect("update")
        .expect("record");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.definition, json!({ "default": "on" }));
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert!(updated.updated_at_ms > created.updated_at_ms);
    assert_eq!(
        store.get_flag("checkout").await.expect("get"),
        Some(updated.clone())
    );

    // Writing the same definition again still counts as a write.
    let same = store
        .write_flag(&update("checkout", 2, json!({ "default": "on" })))
        .await
        .expect("same again")
        .expect("record");
    assert_eq!(same.version, 3);

    let archived = store
        .write_flag(&Write {
            archived: true,
            ..update("checkout", 3, json!({ "default": "on" }))
        })
        .await
        .expect("archive")
        .expect("record");
    assert!(archived.archived);
    assert_eq!(archived.version, 4);
    let fetched = store
        .get_flag("checkout")
        .await
        .expect("get")
        .expect("exists");
    assert!(fetched.archived);
    assert_eq!(store.list_flags().await.expect("list")[1], fetched);

    let deleted = store
        .write_flag(&delete("checkout", Expect::Version(4)))
        .await
        .expect("delete");
    assert_eq!(deleted, None);
    assert_eq!(store.get_flag("checkout").await.expect("get"), None);
    assert_eq!(store.list_flags().await.expect("list").len(), 1);

    // A re-created flag starts again at version 1.
    let recreated = store
        .write_flag(&create("checkout", json!({ "default": "off" })))
        .await
        .expect("recreate")
        .expect("record");
    assert_eq!(recreated.version, 1);
}

pub async fn stale_version_is_a_conflict_that_changes_nothing(ctx: Ctx) {
    let store = &ctx.store;
    store
        .write_flag(&create("f", json!({ "v": 1 })))
        .await
        .expect("create");
    store
        .write_flag(&update("f", 1, json!({ "v": 2 })))
        .await
        .expect("update");
    let before = store.get_flag("f").await.expect("get");
    let log = whole_log(store).await;
    let revision = store.revision().await.expect("revision");

    let stale = store
        .write_flag(&update("f", 1, json!({ "v": "lost" })))
        .await;
    assert_conflict(stale, Some(1), Some(2));
    let stale_delete = store.write_flag(&delete("f", Expect::Version(1))).await;
    assert_conflict(stale_delete, Some(1), Some(2));
    let future = store
        .write_flag(&update("f", 7, json!({ "v": "lost" })))
        .await;
    assert_conflict(future, Some(7), Some(2));

    assert_eq!(store.get_flag("f").await.expect("get"), before);
    assert_eq!(
        whole_log(store).await,
        log,
        "no audit entry for a failed write"
    );
    assert_eq!(store.revision().await.expect("revision"), revision);
}

pub async fn expectations(ctx: Ctx) {
    let store = &ctx.store;
    store
        .write_flag(&create("x", json!(1)))
        .await
        .expect("create");
    let log = whole_log(store).await.len();

    assert_conflict(
        store.write_flag(&create("x", json!(2))).await,
        None,
        Some(1),
    );
    assert_not_found(store.write_flag(&update("missing", 1, json!(1))).await);
    assert_not_found(
        store
            .write_flag(&write("missing", Expect::Exists, Some(json!(1))))
            .await,
    );
    assert_not_found(store.write_flag(&delete("missing", Expect::Any)).await);
    assert_not_found(store.write_flag(&delete("missing", Expect::Exists)).await);
    assert_not_found(
        store
            .write_flag(&delete("missing", Expect::Version(1)))
            .await,
    );
    assert_eq!(whole_log(store).await.len(), log);
    assert_eq!(store.list_flags().await.expect("list").len(), 1);

    let exists = store
        .write_flag(&write("x", Expect::Exists, Some(json!(2))))
        .await
        .expect("exists")
        .expect("record");
    assert_eq!(exists.version, 2);
    let upsert_new = store
        .write_flag(&write("y", Expect::Any, Some(json!("y"))))
        .await
        .expect("upsert new")
        .expect("record");
    assert_eq!(upsert_new.version, 1);
    let upsert_old = store
        .write_flag(&write("y", Expect::Any, Some(json!("y2"))))
        .await
        .expect("upsert existing")
        .expect("record");
    assert_eq!(upsert_old.version, 2);
    assert_eq!(
        store
            .write_flag(&delete("y", Expect::Any))
            .await
            .expect("delete"),
        None
    );
    assert_eq!(
        store
            .write_flag(&delete("x", Expect::Exists))
            .await
            .expect("delete"),
        None
    );
    assert!(store.list_flags().await.expect("list").is_empty());
}

pub async fn batch_is_all_or_nothing(ctx: Ctx) {
    let store = &ctx.store;
    store
        .write_flag(&create("existing", json!(0)))
        .await
        .expect("create");
    let log = whole_log(store).await;
    let revision = store.revision().await.expect("revision");

    let batch = [
        create("a", json!(1)),
        update("existing", 1, json!(1)),
        create("b", json!(2)),
        update("c", 5, json!(3)), // missing: NotFound
        create("d", json!(4)),
    ];
    assert_not_found(store.write_flags(&batch).await);
    let batch = [create("a", json!(1)), create("existing", json!(1))];
    assert_conflict(store.write_flags(&batch).await, None, Some(1));

    let flags = store.list_flags().await.expect("list");
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].version, 1);
    assert_eq!(flags[0].definition, json!(0));
    assert_eq!(
        whole_log(store).await,
        log,
        "no audit entries from a failed batch"
    );
    assert_eq!(store.revision().await.expect("revision"), revision);
}

pub async fn batch_applies_in_order_and_audits_each_item(ctx: Ctx) {
    let store = &ctx.store;
    let revision = store.revision().await.expect("revision");
    let written = store
        .write_flags(&[
            create("a", json!(1)),
            create("b", json!(2)),
            update("a", 1, json!(11)),
            delete("b", Expect::Version(1)),
        ])
        .await
        .expect("batch");
    assert_eq!(written.len(), 4);
    assert_eq!(written[0].as_ref().map(|f| f.version), Some(1));
    assert_eq!(
        written[2]
            .as_ref()
            .map(|f| (f.version, f.definition.clone())),
        Some((2, json!(11)))
    );
    assert_eq!(written[3], None);
    assert_eq!(
        store.revision().await.expect("revision"),
        revision + 1,
        "one transaction"
    );
    let log = whole_log(store).await;
    assert_eq!(log.len(), 4);
    let order: Vec<(&str, Option<Value>, Option<Value>)> = log
        .iter()
        .rev()
        .map(|e| (e.subject.as_str(), e.before.clone(), e.after.clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("a", None, Some(json!(1))),
            ("b", None, Some(json!(2))),
            ("a", Some(json!(1)), Some(json!(11))),
            ("b", Some(json!(2)), None),
        ]
    );
    assert!(store
        .write_flags(&[])
        .await
        .expect("empty batch")
        .is_empty());
}

// ---------------------------------------------------------------------------------------
// segments and documents

pub async fn segments_lifecycle(ctx: Ctx) {
    let store = &ctx.store;
    let beta = store
        .write_segment(&Write {
            archived: true, // ignored for segments
            ..create("beta-users", json!({ "rules": [] }))
        })
        .await
        .expect("create")
        .expect("record");
    assert_eq!((beta.name.as_str(), beta.version), ("beta-users", 1));
    store
        .write_segment(&create("alpha", json!({})))
        .await
        .expect("create alpha");
    let names: Vec<String> = store
        .list_segments()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["alpha", "beta-users"]);

    let updated = store
        .write_segment(&update("beta-users", 1, json!({ "rules": [1] })))
        .await
        .expect("update")
        .expect("record");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at_ms, beta.created_at_ms);
    assert_eq!(
        store.get_segment("beta-users").await.expect("get"),
        Some(updated)
    );
    assert_conflict(
        store
            .write_segment(&update("beta-users", 1, json!({})))
            .await,
        Some(1),
        Some(2),
    );
    assert_conflict(
        store.write_segment(&create("alpha", json!({}))).await,
        None,
        Some(1),
    );
    assert_not_found(store.write_segment(&update("gamma", 1, json!({}))).await);

    assert_eq!(
        store
            .write_segment(&delete("alpha", Expect::Version(1)))
            .await
            .expect("delete"),
        None
    );
    assert_eq!(store.get_segment("alpha").await.expect("get"), None);
    assert!(
        store.list_flags().await.expect("flags").is_empty(),
        "segments are not flags"
    );

    let log = whole_log(store).await;
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|e| e.subject_kind == "segment"));
}

pub async fn write_document_is_all_or_nothing(ctx: Ctx) {
    let store = &ctx.store;
    let revision = store.revision().await.expect("revision");
    store
        .write_document(
            &[create("s1", json!({ "rules": [] }))],
            &[
                create("f1", json!({ "segment": "s1" })),
                create("f2", json!({})),
            ],
        )
        .await
        .expect("document");
    assert_eq!(store.revision().await.expect("revision"), revision + 1);
    assert_eq!(store.list_segments().await.expect("segments").len(), 1);
    assert_eq!(store.list_flags().await.expect("flags").len(), 2);
    let kinds: Vec<String> = whole_log(store)
        .await
        .into_iter()
        .rev()
        .map(|e| e.subject_kind)
        .collect();
    assert_eq!(kinds, ["segment", "flag", "flag"]);

    // A bad flag undoes the segments written before it.
    let log = whole_log(store).await;
    let result = store
        .write_document(
            &[
                create("s2", json!({})),
                update("s1", 1, json!({ "rules": [1] })),
            ],
            &[create("f3", json!({})), create("f1", json!({}))],
        )
        .await;
    assert_conflict(result, None, Some(1));
    assert_eq!(store.get_segment("s2").await.expect("get"), None);
    assert_eq!(
        store
            .get_segment("s1")
            .await
            .expect("get")
            .map(|s| s.version),
        Some(1)
    );
    assert_eq!(store.get_flag("f3").await.expect("get"), None);
    assert_eq!(whole_log(store).await, log);
    assert_eq!(store.revision().await.expect("revision"), revision + 1);
}

// ---------------------------------------------------------------------------------------
// audit

pub async fn audit_records_who_what_why(ctx: Ctx) {
    let store = &ctx.store;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    store
        .write_flag(&Write {
            audit: AuditInfo {
                actor_name: None,
                actor: "alice@example.com".into(),
                action: "flag.create".into(),
                environment: Some("production".into()),
                reason: Some("launch the new checkout (JIRA-12)".into()),
            },
            ..create("checkout", json!({ "default": "off" }))
        })
        .await
        .expect("create");
    store
        .write_flag(&Write {
            audit: who("bob", "flag.update"),
            ..update("checkout", 1, json!({ "default": "on" }))
        })
        .await
        .expect("update");
    store
        .write_flag(&Write {
            audit: who("carol", "flag.delete"),
            ..delete("checkout", Expect::Version(2))
        })
        .await
        .expect("delete");

    let log = whole_log(store).await;
    assert_eq!(log.len(), 3);
    assert!(
        log[0].id > log[1].id && log[1].id > log[2].id,
        "newest first"
    );
    let (deleted, updated, created) = (&log[0], &log[1], &log[2]);

    assert_eq!(created.actor, "alice@example.com");
    assert_eq!(created.action, "flag.create");
    assert_eq!(created.subject_kind, "flag");
    assert_eq!(created.subject, "checkout");
    assert_eq!(created.environment.as_deref(), Some("production"));
    assert_eq!(
        created.reason.as_deref(),
        Some("launch the new checkout (JIRA-12)")
    );
    assert_eq!(created.before, None);
    assert_eq!(created.after, Some(json!({ "default": "off" })));
    assert!(created.at_ms >= started - 1000);

    assert_eq!(updated.actor, "bob");
    assert_eq!(updated.environment, None);
    assert_eq!(updated.reason, None);
    assert_eq!(updated.before, Some(json!({ "default": "off" })));
    assert_eq!(updated.after, Some(json!({ "default": "on" })));

    assert_eq!(deleted.action, "flag.delete");
    assert_eq!(deleted.before, Some(json!({ "default": "on" })));
    assert_eq!(deleted.after, None);
}

pub async fn audit_filters_and_pagination(ctx: Ctx) {
    let store = &ctx.store;
    for (i, actor) in ["alice", "bob", "alice", "bob", "alice"].iter().enumerate() {
        store
            .write_flag(&Write {
                audit: who(actor, "flag.create"),
                ..create(&format!("flag-{i}"), json!(i))
            })
            .await
            .expect("flag");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    store
        .write_segment(&Write {
            audit: who("alice", "segment.create"),
            ..create("flag-0", json!("a segment with a flag's name"))
        })
        .await
        .expect("segment");
    store
        .create_environment("qa", &who("bob", "environment.create"))
        .await
        .expect("environment");

    let all = whole_log(store).await;
    assert_eq!(all.len(), 7);
    let query = |q: AuditQuery| async move { store.audit(&q).await.expect("audit") };
    let ids = |entries: &[AuditEntry]| entries.iter().map(|e| e.id).collect::<Vec<_>>();

    let flags = query(AuditQuery {
        subject_kind: Some("flag".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(flags.len(), 5);

    let subject = query(AuditQuery {
        subject: Some("flag-0".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(subject.len(), 2, "the flag and the segment named flag-0");
    let flag_0 = query(AuditQuery {
        subject_kind: Some("flag".into()),
        subject: Some("flag-0".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(flag_0.len(), 1);
    assert_eq!(flag_0[0].after, Some(json!(0)));

    let alice = query(AuditQuery {
        actor: Some("alice".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(alice.len(), 4);
    assert!(alice.iter().all(|e| e.actor == "alice"));
    let alice_flags = query(AuditQuery {
        actor: Some("alice".into()),
        subject_kind: Some("flag".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(alice_flags.len(), 3);

    // Time range: since is inclusive, until exclusive.
    let oldest = all.last().expect("entries").at_ms;
    let newest = all[0].at_ms;
    assert!(newest > oldest);
    let range = query(AuditQuery {
        since_ms: Some(oldest),
        until_ms: Some(newest),
        ..AuditQuery::default()
    })
    .await;
    let expected: Vec<i64> = all
        .iter()
        .filter(|e| e.at_ms >= oldest && e.at_ms < newest)
        .map(|e| e.id)
        .collect();
    assert_eq!(ids(&range), expected);
    assert!(!range.is_empty() && range.len() < all.len());
    let future = query(AuditQuery {
        since_ms: Some(newest + 1),
        ..AuditQuery::default()
    })
    .await;
    assert!(future.is_empty());

    // Pages of two, following before_id, walk the whole log newest first.
    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let page = query(AuditQuery {
            before_id,
            limit: 2,
            ..AuditQuery::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before_id = page.last().map(|e| e.id);
        pages.extend(page);
    }
    assert_eq!(ids(&pages), ids(&all));

    // The limit is clamped to 1..=1000.
    let one = query(AuditQuery {
        limit: 0,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(ids(&one), ids(&all[..1]));
    let many = query(AuditQuery {
        limit: u32::MAX,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(many.len(), 7);
    assert_eq!(AuditQuery::default().limit, 100);
}

pub async fn audit_log_is_append_only(ctx: Ctx) {
    ctx.store
        .write_flag(&create("f", json!(1)))
        .await
        .expect("create");
    let mut raw = ctx.raw().await;
    for statement in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ] {
        let err = raw.execute(statement).await.expect_err(statement);
        assert!(
            chain(&err).contains("append-only"),
            "{statement}: {}",
            chain(&err)
        );
    }
    let log = whole_log(&ctx.store).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].actor, "alice");
}

// ---------------------------------------------------------------------------------------
// tokens

pub async fn tokens_lifecycle(ctx: Ctx) {
    let store = &ctx.store;
    assert!(store.list_tokens().await.expect("list").is_empty());
    assert_eq!(store.count_active_tokens(None).await.expect("count"), 0);

    let admin = store
        .create_token(
            &token("tok-admin", "admin", None),
            &who("root", "token.create"),
        )
        .await
        .expect("create admin");
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(admin.secret_hash, "argon2-secret-hash-of-tok-admin");
    assert_eq!(admin.revoked_at_ms, None);
    store
        .create_token(
            &token("tok-sdk-1", "sdk", Some("production")),
            &who("root", "token.create"),
        )
        .await
        .expect("create sdk 1");
    store
        .create_token(
            &token("tok-sdk-2", "sdk", Some("staging")),
            &who("root", "token.create"),
        )
        .await
        .expect("create sdk 2");
    assert_conflict(
        store
            .create_token(
                &token("tok-sdk-1", "admin", None),
                &who("root", "token.create"),
            )
            .await,
        None,
        None,
    );

    assert_eq!(
        store.find_token("tok-admin").await.expect("find"),
        Some(admin.clone())
    );
    assert_eq!(store.find_token("nope").await.expect("find"), None);
    let sdk = store
        .find_token("tok-sdk-1")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(sdk.environment.as_deref(), Some("production"));
    assert_eq!(store.count_active_tokens(None).await.expect("count"), 3);
    assert_eq!(
        store
            .count_active_tokens(Some(Role::Sdk))
            .await
            .expect("count"),
        2
    );
    assert_eq!(
        store
            .count_active_tokens(Some(Role::Admin))
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .count_active_tokens(Some(Role::Viewer))
            .await
            .expect("count"),
        0
    );

    let revoked = store
        .revoke_token("tok-sdk-1", &who("root", "token.revoke"))
        .await
        .expect("revoke");
    let at = revoked.revoked_at_ms.expect("revoked_at");
    assert!(at >= sdk.created_at_ms);
    assert_eq!(
        store.find_token("tok-sdk-1").await.expect("find"),
        Some(revoked.clone())
    );
    assert_eq!(
        store
            .count_active_tokens(Some(Role::Sdk))
            .await
            .expect("count"),
        1
    );
    assert_eq!(store.count_active_tokens(None).await.expect("count"), 2);

    let log_len = whole_log(store).await.len();
    let again = store
        .revoke_token("tok-sdk-1", &who("root", "token.revoke"))
        .await;
    assert_conflict(again, None, None);
    assert_not_found(
        store
            .revoke_token("nope", &who("root", "token.revoke"))
            .await,
    );
    assert_eq!(whole_log(store).await.len(), log_len);
    assert_eq!(
        store
            .find_token("tok-sdk-1")
            .await
            .expect("find")
            .and_then(|t| t.revoked_at_ms),
        Some(at),
        "revoking twice keeps the first time"
    );

    let ids: Vec<String> = store
        .list_tokens()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        ids,
        ["tok-admin", "tok-sdk-1", "tok-sdk-2"],
        "revoked tokens are listed"
    );

    let log = store
        .audit(&AuditQuery {
            subject_kind: Some("token".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].action, "token.revoke");
    assert_eq!(
        log[0].before.as_ref().map(|b| b["revoked_at_ms"].clone()),
        Some(Value::Null)
    );
    assert_eq!(
        log[0].after.as_ref().map(|a| a["revoked_at_ms"].clone()),
        Some(json!(at))
    );
}

pub async fn token_audit_never_contains_the_secret_hash(ctx: Ctx) {
    let store = &ctx.store;
    let new = token("t1", "sdk", Some("production"));
    store
        .create_token(&new, &who("root", "token.create"))
        .await
        .expect("create");
    store
        .revoke_token("t1", &who("root", "token.revoke"))
        .await
        .expect("revoke");
    let log = whole_log(store).await;
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].after,
        Some(json!({
            "id": "t1", "name": "t1 token", "role": "sdk",
            "environment": "production", "revoked_at_ms": null
        }))
    );
    // Neither the entries nor the raw rows carry the hash.
    let serialized = serde_json::to_string(&log).expect("serialize");
    assert!(!serialized.contains(&new.secret_hash), "{serialized}");
    assert!(!serialized.contains("secret"), "{serialized}");
    let mut raw = ctx.raw().await;
    let rows = sqlx::query("SELECT before_json, after_json FROM audit_log")
        .fetch_all(&mut raw)
        .await
        .expect("raw audit");
    for row in rows {
        for column in [0, 1] {
            let text: Option<String> = row.get(column);
            assert!(!text.unwrap_or_default().contains(&new.secret_hash));
        }
    }
    // Nor does a serialized token record.
    let record = store.find_token("t1").await.expect("find").expect("exists");
    assert!(!serde_json::to_string(&record)
        .expect("json")
        .contains(&new.secret_hash));
}

// ---------------------------------------------------------------------------------------
// revision and meta

pub async fn revision_counts_writes_not_reads(ctx: Ctx) {
    let store = &ctx.store;
    let r0 = store.revision().await.expect("revision");
    let audit = who("alice", "x");
    let expect_revision = |expected: i64| async move {
        assert_eq!(store.revision().await.expect("revision"), expected);
    };

    store
        .write_flag(&create("f", json!(1)))
        .await
        .expect("flag");
    expect_revision(r0 + 1).await;
    store
        .write_segment(&create("s", json!(1)))
        .await
        .expect("segment");
    expect_revision(r0 + 2).await;
    store
        .create_environment("e", &audit)
        .await
        .expect("environment");
    expect_revision(r0 + 3).await;
    store
        .create_token(&token("t", "sdk", None), &audit)
        .await
        .expect("token");
    expect_revision(r0 + 4).await;
    store.revoke_token("t", &audit).await.expect("revoke");
    expect_revision(r0 + 5).await;
    store.set_meta("k", "v").await.expect("meta");
    expect_revision(r0 + 6).await;
    store
        .write_flags(&[create("g", json!(1)), create("h", json!(1))])
        .await
        .expect("batch");
    expect_revision(r0 + 7).await;
    store
        .write_document(&[], &[update("g", 1, json!(2))])
        .await
        .expect("document");
    expect_revision(r0 + 8).await;

    // Reads and failed writes leave it alone.
    store.list_flags().await.expect("read");
    store.get_flag("f").await.expect("read");
    store.list_segments().await.expect("read");
    store.get_segment("s").await.expect("read");
    store.list_environments().await.expect("read");
    store.list_tokens().await.expect("read");
    store.find_token("t").await.expect("read");
    store.count_active_tokens(None).await.expect("read");
    store.get_meta("k").await.expect("read");
    whole_log(store).await;
    store.ping().await.expect("ping");
    store
        .write_flag(&create("f", json!(1)))
        .await
        .expect_err("conflict");
    store.revoke_token("t", &audit).await.expect_err("conflict");
    expect_revision(r0 + 8).await;

    // Another connection sees the same counter.
    assert_eq!(
        ctx.reconnect().await.revision().await.expect("revision"),
        r0 + 8
    );
}

pub async fn meta_get_set(ctx: Ctx) {
    let store = &ctx.store;
    assert_eq!(store.get_meta("instance").await.expect("get"), None);
    store.set_meta("instance", "a").await.expect("set");
    assert_eq!(
        store.get_meta("instance").await.expect("get").as_deref(),
        Some("a")
    );
    store.set_meta("instance", "b").await.expect("overwrite");
    assert_eq!(
        store.get_meta("instance").await.expect("get").as_deref(),
        Some("b")
    );
    store
        .set_meta("ключ \"'", "värde 🚀 \\ '")
        .await
        .expect("set unicode");
    assert_eq!(
        store.get_meta("ключ \"'").await.expect("get").as_deref(),
        Some("värde 🚀 \\ '")
    );
    store.set_meta("empty", "").await.expect("set empty");
    assert_eq!(
        store.get_meta("empty").await.expect("get").as_deref(),
        Some("")
    );
    assert!(whole_log(store).await.is_empty(), "meta is not audited");
}

pub async fn sessions_are_shared_touched_and_expire(ctx: Ctx) {
    let store = &ctx.store;
    let revision = store.revision().await.expect("revision");
    let record = SessionRecord {
        token_id: "tok1".into(),
        csrf: "c".repeat(43),
        created_at_ms: 1_000,
        last_seen_ms: 1_000,
    };
    store.create_session("h1", &record).await.expect("create");
    store
        .create_session("h1", &record)
        .await
        .expect_err("one session per id");
    // Another connection (another replica) sees it.
    let other = ctx.reconnect().await;
    assert_eq!(
        other.session("h1").await.expect("read"),
        Some(record.clone())
    );
    assert_eq!(store.session("h2").await.expect("read"), None);
    store.touch_session("h1", 5_000).await.expect("touch");
    assert_eq!(
        other
            .session("h1")
            .await
            .expect("read")
            .map(|r| r.last_seen_ms),
        Some(5_000)
    );
    store
        .create_session(
            "h2",
            &SessionRecord {
                last_seen_ms: 2_000,
                ..record.clone()
            },
        )
        .await
        .expect("create");
    assert_eq!(store.delete_idle_sessions(3_000).await.expect("purge"), 1);
    assert!(store.session("h2").await.expect("read").is_none());
    assert!(other.delete_session("h1").await.expect("delete"));
    assert!(!store.delete_session("h1").await.expect("delete"));
    assert!(store.session("h1").await.expect("read").is_none());
    assert_eq!(
        store.revision().await.expect("revision"),
        revision,
        "sessions are not a revision"
    );
    assert!(
        whole_log(store).await.is_empty(),
        "sessions are not audited"
    );
}

// ---------------------------------------------------------------------------------------
// concurrency, awkward data, corruption, durability

pub async fn concurrent_writers_exactly_one_wins(ctx: Ctx) {
    let store = ctx.store.clone();
    store
        .write_flag(&create("contended", json!(0)))
        .await
        .expect("create");

    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write_flag(&Write {
                    audit: who(&format!("writer-{i}"), "flag.update"),
                    ..update("contended", 1, json!(i))
                })
                .await
        }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Some(flag)) => {
                assert_eq!(flag.version, 2);
                wins += 1;
            }
            Err(StoreError::Conflict {
                expected: Some(1),
                actual: Some(2),
                ..
            }) => conflicts += 1,
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 7));
    let stored = store
        .get_flag("contended")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.version, 2);
    let updates = store
        .audit(&AuditQuery {
            subject: Some("contended".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(updates.len(), 2, "the create and the one winning update");
    assert_eq!(updates[0].after, Some(stored.definition));

    // Concurrent creates of one key: one wins, the rest see it exists.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.write_flag(&create("raced", json!(i))).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::Conflict {
                expected: None,
                actual: Some(1),
                ..
            }) => {}
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(created, 1);

    // Concurrent writers to different keys all succeed, each revision bump counted once.
    let revision = store.revision().await.expect("revision");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write_flag(&create(&format!("parallel-{i}"), json!(i)))
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("write");
    }
    assert_eq!(store.revision().await.expect("revision"), revision + 8);
}

pub async fn awkward_strings_survive(ctx: Ctx) {
    let store = &ctx.store;
    let keys = [
        "plain",
        "with space",
        "quote'single",
        "quote\"double",
        "back\\slash",
        "'; DROP TABLE flags; --",
        "$1",
        "%_like",
        "ümlaut-ß",
        "Ω-omega",
        "日本語",
        "🚀-emoji",
        "tab\tnew\nline",
        "",
    ];
    let definition = json!({
        "quotes": "it's \"quoted\"",
        "backslash": "C:\\path\\",
        "nul": "a\u{0}b",
        "control": "\u{1}\u{1f}",
        "unicode": "日本語 🚀 ÿ \u{2028}",
        "nested": [{ "deep": [null, true, 1.5, -0.0, 1e300, 12345678901234567i64] }],
        "empty": {},
    });
    for key in keys {
        store
            .write_flag(&Write {
                audit: AuditInfo {
                    actor_name: None,
                    actor: format!("actor {key}"),
                    action: "flag.create".into(),
                    environment: Some(format!("env {key}")),
                    reason: Some(format!("reason {key}")),
                },
                ..create(key, definition.clone())
            })
            .await
            .unwrap_or_else(|err| panic!("create {key:?}: {}", chain(&err)));
        let stored = store.get_flag(key).await.expect("get").expect("exists");
        assert_eq!(stored.key, key);
        assert_eq!(stored.definition, definition, "{key:?}");
    }
    let listed: Vec<String> = store
        .list_flags()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.key)
        .collect();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort(); // code point order, the same on both backends
    assert_eq!(listed, sorted);

    let found = store
        .audit(&AuditQuery {
            subject: Some("'; DROP TABLE flags; --".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].actor, "actor '; DROP TABLE flags; --");
    assert_eq!(found[0].after, Some(definition.clone()));
    let by_actor = store
        .audit(&AuditQuery {
            actor: Some("actor 🚀-emoji".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(by_actor.len(), 1);
    assert_eq!(by_actor[0].environment.as_deref(), Some("env 🚀-emoji"));

    store
        .create_environment("prød 'x'", &who("a", "b"))
        .await
        .expect("environment");
    store
        .write_segment(&create("seg \"ü\"", definition.clone()))
        .await
        .expect("segment");
    assert_eq!(
        store
            .get_segment("seg \"ü\"")
            .await
            .expect("get")
            .map(|s| s.definition),
        Some(definition)
    );
    let distinct: BTreeSet<String> = store
        .list_environments()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(distinct.contains("prød 'x'"));
}

pub async fn corrupt_json_is_reported(ctx: Ctx) {
    ctx.store
        .write_flag(&create("broken", json!(1)))
        .await
        .expect("create");
    let mut raw = ctx.raw().await;
    raw.execute("UPDATE flags SET definition = '{not json' WHERE key = 'broken'")
        .await
        .expect("corrupt it");
    for result in [
        ctx.store.get_flag("broken").await.map(|_| ()),
        ctx.store.list_flags().await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::Corrupt { subject, reason }) => {
                assert_eq!(subject, "flag \"broken\"");
                assert!(reason.contains("not JSON"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// A child process writes flags and reports each acknowledged write; it is killed with
/// SIGKILL mid-stream, and every write it reported must be there afterwards.
pub async fn acknowledged_writes_survive_kill_9(ctx: Ctx) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_URL_VAR, &ctx.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.len() < 40 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("child too slow")
            .expect("read child");
        let Some(line) = line else {
            panic!("child exited after {} acknowledged writes", acked.len());
        };
        if let Some(n) = line.strip_prefix("acked ") {
            acked.push(n.parse::<i64>().expect("number"));
        }
    }
    child.start_kill().expect("kill -9"); // SIGKILL on Unix
    let status = child.wait().await.expect("wait");
    assert!(
        !status.success(),
        "the child was killed, not finished: {status}"
    );

    let store = ctx.reconnect().await;
    for n in &acked {
        let flag = store
            .get_flag(&format!("crash-{n}"))
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write crash-{n} was lost"));
        assert_eq!(flag.definition, json!({ "n": n }));
    }
    let log = store
        .audit(&AuditQuery {
            actor: Some("crash-child".into()),
            limit: AuditQuery::MAX_LIMIT,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    let flags = store.list_flags().await.expect("list");
    assert_eq!(
        log.len(),
        flags.len(),
        "every stored write has its audit entry"
    );
    assert!(flags.len() >= acked.len());
    // And the store still takes writes.
    store
        .write_flag(&create("after-crash", json!(true)))
        .await
        .expect("write after crash");
}

// ---------------------------------------------------------------------------------------
// The change feed, the write lock, wake-ups

pub async fn every_change_is_in_the_feed_with_its_current_row(ctx: Ctx) {
    let store = &ctx.store;
    let start = store.revision().await.expect("revision");
    store
        .write_flag(&create("a", json!({ "v": 1 })))
        .await
        .expect("create a");
    store
        .write_flags(&[
            create("b", json!({ "v": 1 })),
            update("a", 1, json!({ "v": 2 })),
        ])
        .await
        .expect("batch");
    store
        .write_segment(&write(
            "beta",
            Expect::Any,
            Some(json!({ "included": ["u1"] })),
        ))
        .await
        .expect("segment");
    let (before_token, ruleset_before_token) = store.revisions().await.expect("revisions");
    store
        .create_token(
            &token("t1", "sdk", Some("production")),
            &who("admin", "token.create"),
        )
        .await
        .expect("token");
    store
        .write_flag(&delete("b", Expect::Exists))
        .await
        .expect("delete b");

    let changes = store
        .changes_since(start)
        .await
        .expect("changes")
        .expect("the feed reaches back");
    let got: Vec<(FeedKind, &str, FeedOp)> = changes
        .entries
        .iter()
        .map(|e| (e.kind, e.key.as_str(), e.op))
        .collect();
    assert_eq!(
        got,
        vec![
            (FeedKind::Flag, "a", FeedOp::Put),
            (FeedKind::Flag, "b", FeedOp::Put),
            (FeedKind::Flag, "a", FeedOp::Put),
            (FeedKind::Segment, "beta", FeedOp::Put),
            (FeedKind::Token, "t1", FeedOp::Put),
            (FeedKind::Flag, "b", FeedOp::Delete),
        ]
    );
    // One batch is one revision, in order.
    assert_eq!(changes.entries[1].revision, changes.entries[2].revision);
    assert_eq!((changes.entries[1].seq, changes.entries[2].seq), (1, 2));
    // The current rows of what changed and still exists.
    assert_eq!(changes.flags.len(), 1);
    assert_eq!(changes.flags[0].key, "a");
    assert_eq!(changes.flags[0].version, 2);
    assert_eq!(changes.segments[0].name, "beta");
    assert_eq!(changes.tokens[0].id, "t1");
    assert_eq!(changes.revision, store.revision().await.expect("revision"));
    // A token changes the store revision but not the ruleset revision.
    let (after_token, ruleset_after_token) = store.revisions().await.expect("revisions");
    assert!(after_token > before_token);
    assert!(
        ruleset_after_token > ruleset_before_token,
        "the delete after it moved it"
    );
    assert_eq!(changes.ruleset_revision, after_token);

    // From the newest revision, nothing.
    let none = store
        .changes_since(after_token)
        .await
        .expect("changes")
        .expect("reaches");
    assert!(none.is_empty());
    // The whole state agrees.
    let state = store.state().await.expect("state");
    assert_eq!(state.revision, after_token);
    assert_eq!(
        state
            .flags
            .iter()
            .map(|f| f.key.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
    assert_eq!(state.tokens.len(), 1);
}

pub async fn a_pruned_feed_asks_for_a_full_reload(ctx: Ctx) {
    let store = &ctx.store;
    store
        .write_flag(&create("a", json!(1)))
        .await
        .expect("create");
    let revision = store.revision().await.expect("revision");
    let mut raw = ctx.raw().await;
    raw.execute(format!("UPDATE store_revision SET feed_floor = {revision}").as_str())
        .await
        .expect("prune");
    assert!(store
        .changes_since(revision - 1)
        .await
        .expect("changes")
        .is_none());
    assert!(store
        .changes_since(revision)
        .await
        .expect("changes")
        .is_some());
}

pub async fn a_write_transaction_holds_the_lock_for_every_store(ctx: Ctx) {
    let first = ctx.store.clone();
    let second = ctx.reconnect().await;
    first
        .write_flag(&create("f", json!({ "n": 0 })))
        .await
        .expect("create");
    let mut tx = first.begin_write().await.expect("begin");
    let current = tx.flag("f").await.expect("read").expect("exists");
    // Another store (another node) tries to write meanwhile: it must wait for us.
    let contender = tokio::spawn(async move {
        let mut tx = second.begin_write().await.expect("begin 2");
        let seen = tx.flag("f").await.expect("read 2").expect("exists");
        tx.write_flag(&Write {
            expect: Expect::Version(seen.version),
            ..update("f", seen.version, json!({ "n": seen.version * 10 }))
        })
        .await
        .expect("write 2");
        tx.commit().await.expect("commit 2");
        seen.version
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !contender.is_finished(),
        "the second writer waits for the lock"
    );
    tx.write_flag(&update("f", current.version, json!({ "n": 1 })))
        .await
        .expect("write");
    tx.commit().await.expect("commit");
    let seen_by_second = contender.await.expect("contender");
    assert_eq!(
        seen_by_second, 2,
        "the second writer read our committed write"
    );
    let stored = first.get_flag("f").await.expect("get").expect("exists");
    assert_eq!((stored.version, stored.definition), (3, json!({ "n": 20 })));
}

pub async fn a_transaction_that_writes_nothing_leaves_the_revision(ctx: Ctx) {
    let store = &ctx.store;
    let before = store.revision().await.expect("revision");
    let mut tx = store.begin_write().await.expect("begin");
    assert_eq!(tx.revision(), before + 1);
    assert!(tx.flag("nothing").await.expect("read").is_none());
    let committed = tx.commit().await.expect("commit");
    assert_eq!(committed.revision, before);
    assert_eq!(committed.changes, 0);
    assert_eq!(store.revision().await.expect("revision"), before);
}

pub async fn commits_wake_subscribers_of_every_store(ctx: Ctx) {
    let watcher = ctx.reconnect().await;
    let mut woken = watcher.subscribe();
    // The SQLite store only hears its own commits; PostgreSQL stores hear each other.
    let writer = match ctx.kind {
        Kind::Sqlite => watcher.clone(),
        Kind::Postgres => ctx.store.clone(),
    };
    if ctx.kind == Kind::Postgres {
        // The listener connects in the background; wait until it is listening.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while watcher.listener_state() != ListenerState::Connected {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener connects"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    woken.borrow_and_update();
    writer
        .write_flag(&create("wake", json!(true)))
        .await
        .expect("write");
    let revision = writer.revision().await.expect("revision");
    tokio::time::timeout(Duration::from_secs(5), async {
        while *woken.borrow_and_update() < revision {
            woken.changed().await.expect("signal");
        }
    })
    .await
    .expect("woken within 5 s");
    assert_eq!(
        watcher.listener_state(),
        match ctx.kind {
            Kind::Sqlite => ListenerState::Local,
            Kind::Postgres => ListenerState::Connected,
        }
    );
}

pub async fn active_token_names_are_unique(ctx: Ctx) {
    let store = &ctx.store;
    let mut first = token("t1", "editor", None);
    first.name = "ci".into();
    store
        .create_token(&first, &who("admin", "token.create"))
        .await
        .expect("first");
    let mut second = token("t2", "admin", None);
    second.name = "ci".into();
    assert!(matches!(
        store
            .create_token(&second, &who("admin", "token.create"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    // Once the first is revoked, the name is free again.
    store
        .revoke_token("t1", &who("admin", "token.revoke"))
        .await
        .expect("revoke");
    store
        .create_token(&second, &who("admin", "token.create"))
        .await
        .expect("name reused after revocation");
}

pub async fn audit_entries_keep_the_actor_id_and_its_name(ctx: Ctx) {
    let store = &ctx.store;
    let info = AuditInfo {
        actor: "token:0123456789abcdef".into(),
        actor_name: Some("deploy-bot".into()),
        ..who("ignored", "flag.create")
    };
    store
        .write_flag(&Write {
            audit: info,
            ..create("f", json!(1))
        })
        .await
        .expect("create");
    let log = whole_log(store).await;
    assert_eq!(log[0].actor, "token:0123456789abcdef");
    assert_eq!(log[0].actor_name.as_deref(), Some("deploy-bot"));
    for filter in ["token:0123456789abcdef", "deploy-bot"] {
        let found = store
            .audit(&AuditQuery {
                actor: Some(filter.into()),
                ..AuditQuery::default()
            })
            .await
            .expect("audit");
        assert_eq!(found.len(), 1, "{filter}");
    }
}

pub async fn a_closed_store_is_unavailable(ctx: Ctx) {
    let other = ctx.reconnect().await;
    other.close().await;
    let err = other.list_flags().await.expect_err("closed");
    assert!(err.is_unavailable(), "{err:?}");
    let err = other.begin_write().await.expect_err("closed");
    assert!(err.is_unavailable(), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// events

fn exposure(env: &str, flag: &str, unit: &str, variant: &str, at_ms: i64) -> ExposureRow {
    ExposureRow {
        environment: env.into(),
        flag: flag.into(),
        unit: unit.into(),
        variant: variant.into(),
        at_ms,
        experiment: None,
    }
}

fn metric(env: &str, id: &str, unit: &str, event: &str, value: Option<f64>) -> MetricRow {
    MetricRow {
        environment: env.into(),
        id: id.into(),
        unit: unit.into(),
        event: event.into(),
        value,
        at_ms: 1_000,
    }
}

/// Exposures keep the earliest per unit, metric events are idempotent on their id, and an
/// append moves no revision (it is not a change).
pub async fn events_append_in_batches_deduplicated_outside_the_write_path(ctx: Ctx) {
    let store = &ctx.store;
    let revision = store.revision().await.unwrap();
    let mut exposures: Vec<ExposureRow> = (0..1200)
        .map(|i| {
            exposure(
                "production",
                "checkout",
                &format!("u{i}"),
                if i % 2 == 0 { "on" } else { "off" },
                10_000 + i,
            )
        })
        .collect();
    // A repeat in the same batch, earlier: it wins.
    exposures.push(exposure("production", "checkout", "u1", "on", 5));
    // Another environment and flag are separate.
    exposures.push(exposure("staging", "checkout", "u1", "on", 7));
    let metrics: Vec<MetricRow> = (0..1100)
        .map(|i| {
            metric(
                "production",
                &format!("e{i}"),
                &format!("u{}", i % 50),
                "purchase",
                Some(i as f64),
            )
        })
        .chain([metric("production", "e1", "u1", "purchase", Some(99.0))])
        .collect();
    let appended = store
        .append_events(&exposures, &metrics, 50_000)
        .await
        .unwrap();
    assert_eq!(appended.exposures, 1201);
    assert_eq!(appended.metrics, 1100);
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "events are not changes"
    );

    let counts = store
        .exposure_counts("production", "checkout")
        .await
        .unwrap();
    let get = |v: &str| {
        counts
            .iter()
            .find(|c| c.variant == v)
            .map_or(0, |c| c.units)
    };
    // u1 moved to `on` by its earlier exposure.
    assert_eq!((get("on"), get("off")), (601, 599));
    assert_eq!(
        store
            .exposure_counts("staging", "checkout")
            .await
            .unwrap()
            .len(),
        1
    );

    // Retrying the same batch stores nothing new; a later exposure does not replace the first.
    let again = store
        .append_events(&exposures, &metrics, 60_000)
        .await
        .unwrap();
    assert_eq!(again, Appended::default());
    let later = store
        .append_events(
            &[exposure("production", "checkout", "u0", "off", 999_999)],
            &[],
            70_000,
        )
        .await
        .unwrap();
    assert_eq!(later.exposures, 0);
    assert_eq!(
        store
            .metric_event_count("production", Some("purchase"))
            .await
            .unwrap(),
        1100
    );
    assert_eq!(
        store
            .metric_event_count("production", Some("refund"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.metric_event_count("staging", None).await.unwrap(), 0);
}

/// Experiments are versioned, audited records outside the feed; their exposures keep the
/// earliest per unit; `unit_days` streams per-unit, per-day aggregates within the window;
/// erasure removes one unit's rows everywhere.
pub async fn experiments_records_exposures_and_unit_days(ctx: Ctx) {
    let store = &ctx.store;
    let mut tx = store.begin_write().await.unwrap();
    let record = tx
        .write_item(
            ItemKind::Experiment,
            &Write {
                key: "exp-1".into(),
                expect: Expect::Absent,
                definition: Some(json!({"spec": {"environment": "production"}})),
                archived: false,
                audit: AuditInfo::new("token:t1", "experiment.create"),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, 1);
    let committed = tx.commit().await.unwrap();
    assert!(
        !committed.ruleset_changed,
        "an experiment record is not served"
    );
    assert_eq!(committed.changes, 0, "not in the change feed");
    let log = store
        .audit(&AuditQuery {
            subject_kind: Some("experiment".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "experiment.create");
    assert_eq!(
        store.list_items(ItemKind::Experiment).await.unwrap().len(),
        1
    );

    let day = switchyard_storage::DAY_MS;
    let start = 1_000 * day;
    let mut exposures = Vec::new();
    for (unit, variant, at) in [
        ("a", "control", start + 10),
        ("b", "treatment", start + day + 5),
        ("c", "treatment", start + 3 * day),
        ("late", "control", start + 9 * day),
    ] {
        let mut e = exposure("production", "f", unit, variant, at);
        e.experiment = Some("exp-1".into());
        exposures.push(e);
    }
    // A later exposure of `a` to another variant does not replace its first.
    let mut again = exposure("production", "f", "a", "treatment", start + 2 * day);
    again.experiment = Some("exp-1".into());
    exposures.push(again);
    let metric_at = |id: &str, unit: &str, at: i64, value: f64| MetricRow {
        at_ms: at,
        ..metric("production", id, unit, "purchase", Some(value))
    };
    let metrics = vec![
        metric_at("m1", "a", start + 20, 5.0),
        metric_at("m2", "a", start + 20 + day, 7.0),
        // Two minutes before its exposure: not counted; two milliseconds before (a client
        // clock a little behind the server's): counted, on the exposure's day.
        metric_at("m3", "a", start + 10 - 120_000, 100.0),
        metric_at("m8", "a", start + 8, 0.5),
        metric_at("m4", "b", start + day + 6, 1.0),
        metric_at("m5", "b", start + 4 * day, 2.0), // outside a 2-day window
        metric_at("m6", "c", start + 3 * day + 1, 3.0),
        MetricRow {
            environment: "staging".into(),
            ..metric_at("m7", "c", start + 3 * day + 1, 50.0)
        },
    ];
    store
        .append_events(&exposures, &metrics, start)
        .await
        .unwrap();
    let counts = store
        .experiment_exposure_counts("exp-1", start + 5 * day)
        .await
        .unwrap();
    let units: Vec<(String, i64)> = counts.into_iter().map(|c| (c.variant, c.units)).collect();
    assert_eq!(
        units,
        vec![("control".into(), 1), ("treatment".into(), 2)],
        "`late` is after the end"
    );

    let mut seen = Vec::new();
    store
        .unit_days(
            &switchyard_storage::MetricQuery {
                experiment: "exp-1",
                environment: "production",
                event: "purchase",
                window_ms: Some(2 * day),
                start_ms: start,
                end_ms: start + 5 * day,
                pre_period_ms: None,
            },
            |u| seen.push(u.clone()),
        )
        .await
        .unwrap();
    assert!(
        seen.iter().all(|u| u.pre == (0, 0.0)),
        "no pre-period asked"
    );
    type Days = Vec<(i64, u64, f64)>;
    let summary: Vec<(String, i64, Days)> = seen
        .into_iter()
        .map(|u| (u.variant, u.exposed_day, u.days))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("control".into(), 0, vec![(0, 2, 5.5), (1, 1, 7.0)]),
            ("treatment".into(), 1, vec![(1, 1, 1.0)]),
            ("treatment".into(), 3, vec![(3, 1, 3.0)]),
        ]
    );

    // With a pre-period, `a`'s purchase two minutes before its exposure is its covariate;
    // the days after are the same.
    let mut with_pre = Vec::new();
    store
        .unit_days(
            &switchyard_storage::MetricQuery {
                experiment: "exp-1",
                environment: "production",
                event: "purchase",
                window_ms: Some(2 * day),
                start_ms: start,
                end_ms: start + 5 * day,
                pre_period_ms: Some(day),
            },
            |u| with_pre.push(u.clone()),
        )
        .await
        .unwrap();
    let pre: Vec<(u64, f64)> = with_pre.iter().map(|u| u.pre).collect();
    assert_eq!(pre, vec![(1, 100.0), (0, 0.0), (0, 0.0)]);
    let days: Vec<Days> = with_pre.into_iter().map(|u| u.days).collect();
    assert_eq!(
        days,
        summary.iter().map(|s| s.2.clone()).collect::<Vec<_>>()
    );

    // The one-pass summary: per arm, exposure day and first-event day.
    use switchyard_storage::{Aggregate, SummaryMetric, SummaryQuery};
    // The experiment's summary over its first five days.
    async fn five_days(
        store: &Store,
        start: i64,
        metrics: &[SummaryMetric<'_>],
        first_day_of: Option<usize>,
    ) -> Vec<switchyard_storage::SummaryRow> {
        let day = switchyard_storage::DAY_MS;
        store
            .experiment_summary(&SummaryQuery {
                experiment: "exp-1",
                environment: "production",
                start_ms: start,
                end_ms: start + 5 * day,
                metrics,
                first_day_of,
            })
            .await
            .unwrap()
    }
    let metrics = [
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Converted,
            window_ms: Some(2 * day),
            pre_period_ms: None,
        },
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Sum,
            window_ms: None,
            pre_period_ms: None,
        },
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Mean,
            window_ms: None,
            pre_period_ms: None,
        },
        SummaryMetric {
            event: "refund",
            aggregate: Aggregate::Count,
            window_ms: None,
            pre_period_ms: None,
        },
    ];
    let rows = five_days(store, start, &metrics, Some(0)).await;
    type Sums = Vec<(u64, f64, f64)>;
    let got: Vec<(String, i64, Option<i64>, u64, Sums)> = rows
        .into_iter()
        .map(|r| (r.variant, r.exposed_day, r.first_day, r.units, r.sums))
        .collect();
    assert_eq!(
        got,
        vec![
            // a: 5.5 on day 0 and 7 on day 1 (12.5 in all; its mean 12.5 / 3).
            (
                "control".into(),
                0,
                Some(0),
                1,
                vec![
                    (1, 1.0, 1.0),
                    (1, 12.5, 156.25),
                    (1, 12.5 / 3.0, (12.5 / 3.0) * (12.5 / 3.0)),
                    (1, 0.0, 0.0)
                ]
            ),
            // b: 1 on day 1 (and 2 on day 4, outside the 2-day window of the conversion).
            (
                "treatment".into(),
                1,
                Some(1),
                1,
                vec![(1, 1.0, 1.0), (1, 3.0, 9.0), (1, 1.5, 2.25), (1, 0.0, 0.0)]
            ),
            (
                "treatment".into(),
                3,
                Some(3),
                1,
                vec![(1, 1.0, 1.0), (1, 3.0, 9.0), (1, 3.0, 9.0), (1, 0.0, 0.0)]
            ),
        ]
    );

    // CUPED's covariate: the same aggregate before each unit's exposure. `a`'s purchase two
    // minutes before its exposure is its pre-period (and still not a post-exposure one).
    let with_pre = [
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Sum,
            window_ms: None,
            pre_period_ms: Some(day),
        },
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Converted,
            window_ms: Some(2 * day),
            pre_period_ms: Some(day),
        },
        SummaryMetric {
            event: "purchase",
            aggregate: Aggregate::Count,
            window_ms: None,
            // 30 s (+ the minute of clock skew) does not reach back two minutes.
            pre_period_ms: Some(30_000),
        },
    ];
    let rows = five_days(store, start, &with_pre, None).await;
    type Pre = Vec<Option<(f64, f64, f64)>>;
    let got: Vec<(String, i64, Sums, Pre)> = rows
        .into_iter()
        .map(|r| (r.variant, r.exposed_day, r.sums, r.pre))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "control".into(),
                0,
                vec![(1, 12.5, 156.25), (1, 1.0, 1.0), (1, 3.0, 9.0)],
                vec![
                    Some((100.0, 10_000.0, 1_250.0)),
                    Some((1.0, 1.0, 1.0)),
                    Some((0.0, 0.0, 0.0))
                ]
            ),
            (
                "treatment".into(),
                1,
                vec![(1, 3.0, 9.0), (1, 1.0, 1.0), (1, 2.0, 4.0)],
                vec![Some((0.0, 0.0, 0.0)); 3]
            ),
            (
                "treatment".into(),
                3,
                vec![(1, 3.0, 9.0), (1, 1.0, 1.0), (1, 1.0, 1.0)],
                vec![Some((0.0, 0.0, 0.0)); 3]
            ),
        ]
    );

    // Grouped by the conversion's first day, the rows also split on its pre-period value.
    let rows = five_days(store, start, &with_pre, Some(1)).await;
    let got: Vec<(String, Option<i64>, Option<bool>)> = rows
        .into_iter()
        .map(|r| (r.variant, r.first_day, r.pre_converted))
        .collect();
    assert_eq!(
        got,
        vec![
            ("control".into(), Some(0), Some(true)),
            ("treatment".into(), Some(1), Some(false)),
            ("treatment".into(), Some(3), Some(false)),
        ]
    );

    let erased = store
        .erase_unit("production", "a", &["exp-1".to_owned()])
        .await
        .unwrap();
    // Its flag exposure, its experiment exposure and its four metric events.
    assert_eq!(erased, 6);
    let counts = store
        .experiment_exposure_counts("exp-1", start + 5 * day)
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.units).sum::<i64>(), 2);
}

/// A large experiment's summary is summed by concurrent statements over ranges of its units;
/// their rows add up to what one statement over every unit gives.
pub async fn summaries_in_ranges_add_up_to_one_statement(ctx: Ctx) {
    use switchyard_storage::{Aggregate, StoreOptions, SummaryMetric, SummaryQuery, DAY_MS};
    let start = 1_800_000_000_000i64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut exposures, mut metrics) = (Vec::new(), Vec::new());
    for u in 0..900u64 {
        let unit = format!("u-{u:04}");
        let at = start + next(5 * DAY_MS as u64) as i64;
        let variant = ["control", "a", "b"][next(3) as usize];
        let mut e = exposure("production", "f", &unit, variant, at);
        e.experiment = Some("exp-r".into());
        exposures.push(e);
        // Events from three days before the exposure (the pre-period) to six after it (past
        // the windows), some units with none.
        for k in 0..next(6) {
            let when = at - 3 * DAY_MS + next(9 * DAY_MS as u64) as i64;
            let buy = next(2) == 0;
            metrics.push(MetricRow {
                environment: "production".into(),
                id: format!("{unit}-{k}"),
                unit: unit.clone(),
                event: if buy { "buy" } else { "view" }.into(),
                value: buy.then(|| next(400) as f64 / 4.0),
                at_ms: when,
            });
        }
    }
    ctx.store
        .append_events(&exposures, &metrics, start)
        .await
        .expect("append");
    let metrics = [
        SummaryMetric {
            event: "buy",
            aggregate: Aggregate::Converted,
            window_ms: Some(DAY_MS),
            pre_period_ms: Some(2 * DAY_MS),
        },
        SummaryMetric {
            event: "buy",
            aggregate: Aggregate::Sum,
            window_ms: None,
            pre_period_ms: Some(2 * DAY_MS),
        },
        SummaryMetric {
            event: "buy",
            aggregate: Aggregate::Mean,
            window_ms: Some(3 * DAY_MS),
            pre_period_ms: None,
        },
        SummaryMetric {
            event: "view",
            aggregate: Aggregate::Count,
            window_ms: Some(3 * DAY_MS),
            pre_period_ms: None,
        },
    ];
    let query = SummaryQuery {
        experiment: "exp-r",
        environment: "production",
        start_ms: start,
        end_ms: start + 7 * DAY_MS,
        metrics: &metrics,
        first_day_of: Some(0),
    };
    let whole = ctx
        .store
        .experiment_summary(&query)
        .await
        .expect("one range");
    let ranged = Store::connect_with(
        &ctx.url,
        &StoreOptions {
            summary_units_per_range: 100,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("connect")
    .experiment_summary(&query)
    .await
    .expect("in ranges");
    assert_eq!(whole.iter().map(|r| r.units).sum::<u64>(), 900);
    assert!(
        whole.len() > 20,
        "groups by arm, exposure day and first day"
    );
    assert!(whole.iter().any(|r| r.pre_converted == Some(true)));
    // The same groups and counts; sums equal up to the order of additions (a unit's mean is
    // not a multiple of 1/4).
    let key = |r: &switchyard_storage::SummaryRow| {
        let counts: Vec<u64> = r.sums.iter().map(|s| s.0).collect();
        (
            r.variant.clone(),
            r.exposed_day,
            r.first_day,
            r.pre_converted,
            r.units,
            counts,
        )
    };
    assert_eq!(
        ranged.iter().map(key).collect::<Vec<_>>(),
        whole.iter().map(key).collect::<Vec<_>>()
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for (r, w) in ranged.iter().zip(&whole) {
        let floats = |x: &switchyard_storage::SummaryRow| -> Vec<f64> {
            let sums = x.sums.iter().flat_map(|s| [s.1, s.2]);
            let pre = x.pre.iter().flatten().flat_map(|p| [p.0, p.1, p.2]);
            sums.chain(pre).collect()
        };
        let (a, b) = (floats(r), floats(w));
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| close(*x, *y)), "{r:?}\n{w:?}");
    }
}
