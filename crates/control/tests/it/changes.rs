//! Environment promotion and bulk changes through the control layer: a promotion copies one
//! environment's block to another (previewed first, audited, approval-aware); a bulk change
//! is one transaction — every flag or none, one audit entry each.

use switchyard_control::{ControlError, FlagChange, ImportMode};
use switchyard_engine::Format;
use switchyard_storage::AuditQuery;

use crate::harness::{person, plan, Db};

const FLAGS: &str = r#"
flags:
  - key: checkout
    environments:
      staging:
        fallthrough: {percentage: 50, variant: "on"}
        rules:
          - {id: beta, conditions: [{attribute: beta, operator: equals, value: true}], variant: "on"}
      production: {enabled: false}
  - key: search
  - key: banner
    tags: [marketing]
"#;

pub async fn promotion_copies_an_environment_and_bulk_changes_are_all_or_nothing(db: Db) {
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
    let promote = FlagChange::Promote {
        from: "staging".into(),
        to: "production".into(),
    };
    let (before, after) = c
        .preview_change("checkout", &promote, None)
        .unwrap()
        .expect("a change");
    assert_eq!(before.environments["production"].enabled, Some(false));
    assert_eq!(
        after.environments["production"], after.environments["staging"],
        "production gets staging's block"
    );
    // The preview wrote nothing.
    let snap = c.snapshot();
    assert_eq!(snap.flag("checkout").unwrap().meta.version, 1);
    let written = c
        .change_flag(
            "checkout",
            promote.clone(),
            Some(1),
            &person("alice"),
            Some("ship it".into()),
        )
        .await
        .unwrap();
    assert!(written.changed);
    let prod = &written.value.definition.environments["production"];
    assert_eq!(prod.rules.as_ref().map(Vec::len), Some(1));
    // Mistakes: an unknown source, the same environment twice.
    let err = c
        .change_flag(
            "checkout",
            FlagChange::Promote {
                from: "stagin".into(),
                to: "production".into(),
            },
            None,
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NotFound { .. }), "{err}");
    let err = c
        .change_flag(
            "checkout",
            FlagChange::Promote {
                from: "staging".into(),
                to: "staging".into(),
            },
            None,
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("itself"), "{err}");

    // Bulk: one unknown flag, nothing changes.
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = c
        .bulk_change(
            &keys(&["search", "banerr"]),
            FlagChange::Archive(true),
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("banerr"), "{err}");
    assert!(!c.snapshot().flag("search").unwrap().meta.archived);
    // Then every named flag, in one transaction, one audit entry each.
    let before = c.store().unwrap().revision().await.unwrap();
    let written = c
        .bulk_change(
            &keys(&["search", "banner", "search"]),
            FlagChange::Tags {
                add: vec!["q4-cleanup".into()],
                remove: vec!["marketing".into()],
            },
            &person("alice"),
            Some("quarterly cleanup".into()),
        )
        .await
        .unwrap();
    assert!(written.changed);
    assert_eq!(written.value.len(), 2, "duplicates named once");
    assert_eq!(written.revision, before + 1, "one transaction");
    assert_eq!(
        c.snapshot().flag("banner").unwrap().definition.tags,
        ["q4-cleanup"]
    );
    let log = c
        .store()
        .unwrap()
        .audit(&AuditQuery::default())
        .await
        .unwrap();
    let tagged: Vec<_> = log.iter().filter(|e| e.action == "flag.tags").collect();
    assert_eq!(tagged.len(), 2);
    assert!(tagged[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("bulk change of 2 flags"));

    // Where approval is required, a person's bulk change is refused as a whole.
    c.set_environment_policy("production", true, &person("admin"), None)
        .await
        .unwrap();
    let err = c
        .bulk_change(
            &keys(&["search", "banner"]),
            FlagChange::Enabled {
                environment: Some("production".into()),
                enabled: false,
            },
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requires approval"), "{err}");
    // And a promotion into it waits as a request.
    let err = c
        .change_flag(
            "search",
            FlagChange::Promote {
                from: "staging".into(),
                to: "production".into(),
            },
            None,
            &person("alice"),
            None,
        )
        .await;
    // `search` has no staging block: promoting copies "nothing" onto nothing, no change.
    assert!(err.is_ok(), "{err:?}");
    let err = c
        .change_flag(
            "checkout",
            FlagChange::Enabled {
                environment: Some("production".into()),
                enabled: false,
            },
            None,
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    let ControlError::ApprovalRequired { request } = err else {
        panic!("{err:?}")
    };
    assert_eq!(request.environments, ["production"]);
    let err = c
        .approve_request(&request.id, &person("alice"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("someone else"), "{err}");
    let approved = c
        .approve_request(&request.id, &person("bob"), Some("ok".into()))
        .await
        .unwrap();
    assert_eq!(approved.value.status, "applied");
    assert_eq!(
        c.snapshot()
            .flag("checkout")
            .unwrap()
            .definition
            .environments["production"]
            .enabled,
        Some(false)
    );

    // No way around it: a new flag waits too (approved, it is created) …
    let def: switchyard_engine::FlagDef =
        serde_json::from_value(serde_json::json!({"key": "new-flag"})).unwrap();
    let err = c
        .create_flag(def, &person("alice"), None)
        .await
        .unwrap_err();
    let ControlError::ApprovalRequired { request } = err else {
        panic!("{err:?}")
    };
    assert!(c.snapshot().flag("new-flag").is_none());
    c.approve_request(&request.id, &person("bob"), None)
        .await
        .unwrap();
    assert!(c.snapshot().flag("new-flag").is_some());
    // … deleting a served flag is refused (archive it: that waits), …
    let err = c
        .delete_flag("search", None, &person("alice"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("archive it first"), "{err}");
    // … and what would change flags later without approval is refused: a schedule, a
    // progressive rollout, an import.
    let in_a_minute = (time::OffsetDateTime::now_utc().unix_timestamp() + 60) * 1000;
    let err = c
        .create_schedule(
            "search",
            "production",
            switchyard_control::ScheduledOp::Enable,
            in_a_minute,
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a scheduled change would change flags there"),
        "{err}"
    );
    let plan: switchyard_api_types::rollouts::RolloutPlan =
        serde_json::from_value(serde_json::json!({"flag": "search", "environment": "production"}))
            .unwrap();
    let err = c
        .start_rollout(plan, &person("alice"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a progressive rollout"), "{err}");
    let err = c
        .import(
            FLAGS,
            Format::Yaml,
            "f.yaml",
            ImportMode::Merge,
            &person("alice"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("an import"), "{err}");
    // A staging-only schedule is fine.
    c.create_schedule(
        "search",
        "staging",
        switchyard_control::ScheduledOp::Enable,
        in_a_minute,
        &person("alice"),
        None,
    )
    .await
    .unwrap();
}
