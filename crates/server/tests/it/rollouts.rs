//! A progressive rollout's exposures through the real HTTP app: OFREP records the units the
//! fallthrough decided for — at 100 % too, where nobody is randomized any more — under the
//! stage's key, by the fallthrough's own bucketing attribute, and not those a rule served.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::TestServer;

async fn evaluate(s: &TestServer, key: &str, ctx: Value) {
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/search",
            Some(key),
            Some(&json!({ "context": ctx }).to_string()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn stage_units(s: &TestServer, stage: &str) -> Vec<(String, i64)> {
    let store = s.state.control.store().unwrap();
    // The recorder appends within its batch window.
    for _ in 0..100 {
        let counts = store
            .experiment_exposure_counts(stage, i64::MAX)
            .await
            .unwrap();
        if !counts.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let counts = store
                .experiment_exposure_counts(stage, i64::MAX)
                .await
                .unwrap();
            return counts.into_iter().map(|c| (c.variant, c.units)).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ofrep_records_a_stages_units_at_every_percentage() {
    let s = TestServer::start().await;
    let flag = json!({
        "key": "search",
        "bucketBy": ["org", "targetingKey"],
        "environments": {"production": {
            "rules": [{"id": "staff", "conditions": [{"attribute": "staff", "operator": "equals", "value": true}], "variant": "on"}]
        }}
    });
    let r = s
        .admin(Method::POST, "/api/v1/flags", Some(&flag.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let sdk = s.token("sdk", Some("production")).await;
    let plan = json!({
        "id": "search-rollout",
        "flag": "search",
        "environment": "production",
        "stages": [{"percentage": 50, "hold": "1h"}, {"percentage": 100, "hold": "1h"}]
    });
    let r = s
        .admin(Method::POST, "/api/v1/rollouts", Some(&plan.to_string()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    for i in 0..40 {
        evaluate(
            &s,
            &sdk,
            json!({"targetingKey": format!("u{i}"), "org": format!("org-{}", i % 10)}),
        )
        .await;
    }
    // A rule's unit is not the rollout's.
    evaluate(
        &s,
        &sdk,
        json!({"targetingKey": "boss", "org": "org-staff", "staff": true}),
    )
    .await;
    let units = stage_units(&s, "rollout:search-rollout:0").await;
    let total: i64 = units.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total, 10,
        "units are the ten organizations, not the 40 users: {units:?}"
    );
    assert!(
        units.iter().any(|(v, _)| v == "on") && units.iter().any(|(v, _)| v == "off"),
        "{units:?}"
    );

    // At 100 % every unit is served without randomization: still recorded.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/rollouts/search-rollout/advance",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for i in 0..20 {
        evaluate(
            &s,
            &sdk,
            json!({"targetingKey": format!("v{i}"), "org": format!("org-{i}")}),
        )
        .await;
    }
    let units = stage_units(&s, "rollout:search-rollout:1").await;
    assert_eq!(units, [("on".to_owned(), 20)], "{units:?}");
}
