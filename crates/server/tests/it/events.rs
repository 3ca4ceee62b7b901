//! `POST /sdk/v1/events` and `GET /api/v1/exposures` over the in-process app.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{TestServer, ADMIN};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn post(s: &TestServer, token: &str, body: &Value) -> crate::Reply {
    s.call(
        Method::POST,
        "/sdk/v1/events",
        Some(token),
        Some(&body.to_string()),
        &[],
    )
    .await
}

#[tokio::test]
async fn events_are_stored_once_and_bad_ones_refused_one_by_one() {
    let s = TestServer::start().await;
    let sdk = s.token("sdk", Some("production")).await;
    let t = now_ms();
    let batch = json!({"events": [
        {"type": "exposure", "id": "x1", "flag": "checkout", "variant": "on", "unit": "u1", "timestampMs": t},
        {"type": "exposure", "id": "x2", "flag": "checkout", "variant": "off", "unit": "u2", "timestampMs": t},
        {"type": "metric", "id": "m1", "event": "purchase", "unit": "u1", "value": 12.5, "timestampMs": t},
        {"type": "metric", "id": "m2", "event": "purchase", "unit": "u2", "timestampMs": t},
        {"type": "metric", "id": "m3", "event": "", "unit": "u2", "timestampMs": t},
        {"type": "metric", "id": "m4", "event": "purchase", "unit": "u2", "timestampMs": t / 1000},
        {"type": "click", "id": "c1"},
        {"type": "metric", "id": "m5", "event": "purchase", "unit": "u2", "value": "12", "timestampMs": t},
        "not an event"
    ]});
    let r = post(&s, &sdk, &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["accepted"], 4);
    assert_eq!(r.json["duplicates"], 0);
    let rejected = r.json["rejected"].as_array().unwrap();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [4, 5, 6, 7, 8], "{}", r.text);
    assert!(rejected[0]["message"]
        .as_str()
        .unwrap()
        .contains("`event` is empty"));
    assert!(rejected[1]["message"]
        .as_str()
        .unwrap()
        .contains("milliseconds, not seconds"));
    assert!(
        rejected[2]["message"].as_str().unwrap().contains("click"),
        "{}",
        rejected[2]
    );
    assert!(
        rejected[3]["message"].as_str().unwrap().contains("value"),
        "{}",
        rejected[3]
    );
    assert_eq!(rejected[3]["id"], "m5");

    // A retry stores nothing again.
    let r = post(&s, &sdk, &batch).await;
    assert_eq!(r.json["accepted"], 4);
    assert_eq!(r.json["duplicates"], 4, "{}", r.text);

    // Units per variant, for viewers.
    let viewer = s.token("viewer", None).await;
    let r = s
        .call(
            Method::GET,
            "/api/v1/exposures?environment=production&flag=checkout",
            Some(&viewer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["variants"],
        json!([{"variant": "off", "units": 1}, {"variant": "on", "units": 1}])
    );
    let r = s
        .call(
            Method::GET,
            "/api/v1/exposures?environment=prod&flag=checkout",
            Some(&viewer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("production"), "{}", r.text);

    // Counted in /metrics.
    let m = s.call(Method::GET, "/metrics", None, None, &[]).await.text;
    assert!(
        m.contains(r#"switchyard_events_total{kind="metric",outcome="stored"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"switchyard_events_total{kind="metric",outcome="duplicate"} 2"#),
        "{m}"
    );
    // Five refused per batch, twice (anything not an exposure counts as a metric event).
    assert!(
        m.contains(r#"switchyard_events_total{kind="metric",outcome="rejected"} 10"#),
        "{m}"
    );
    assert!(
        m.contains(r#"switchyard_events_total{kind="exposure",outcome="stored"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_batch_that_is_not_a_batch_is_a_json_400_and_admin_tokens_are_refused() {
    let s = TestServer::start().await;
    let sdk = s.token("sdk", Some("production")).await;
    for body in [
        json!([1, 2]),
        json!({"events": 5}),
        json!({"events": [], "extra": 1}),
    ] {
        let r = post(&s, &sdk, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json["error"]["code"], "bad_request", "{}", r.text);
    }
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"type": "metric", "id": i.to_string()}))
        .collect();
    let r = post(&s, &sdk, &json!({"events": too_many})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("at most 10000"), "{}", r.text);
    let r = post(&s, ADMIN, &json!({"events": []})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
