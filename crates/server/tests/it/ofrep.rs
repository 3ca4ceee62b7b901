//! OFREP as the spec and the real clients need it.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{TestServer, ADMIN};

const FLAGS: &str = r#"
flags:
  - key: ratio
    type: number
    variants: {one: 1.0, half: 0.5, three: 3}
    defaultVariant: one
    fallthrough: {variant: one}
    metadata: {team: growth}
  - key: rollout
    fallthrough: {percentage: 50, variant: "on"}
  - key: colour
    type: string
    defaultValue: blue
    enabled: false
"#;

#[tokio::test]
async fn single_flag_shapes() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;

    let r = s.ofrep("ratio", &sdk, r#"{"targetingKey": "u"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.text.contains(r#""value":1.0"#),
        "floats stay floats: {}",
        r.text
    );
    assert_eq!(
        r.json,
        json!({"key": "ratio", "value": 1.0, "reason": "STATIC", "variant": "one", "metadata": {"team": "growth"}})
    );

    let r = s.ofrep("colour", &sdk, "{}").await;
    assert_eq!(
        r.json,
        json!({"key": "colour", "value": "blue", "reason": "DISABLED", "variant": "blue"})
    );

    let r = s.ofrep("missing", &sdk, "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["key"], "missing");
    assert_eq!(r.json["errorCode"], "FLAG_NOT_FOUND");
    assert!(r.json["errorDetails"].is_string());

    let r = s.ofrep("rollout", &sdk, "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["errorCode"], "TARGETING_KEY_MISSING");

    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/ratio",
            Some(&sdk),
            Some("{not json"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (r.json["key"].clone(), r.json["errorCode"].clone()),
        (json!("ratio"), json!("PARSE_ERROR"))
    );
    let r = s.ofrep("ratio", &sdk, r#"{"targetingKey": 7}"#).await;
    assert_eq!(r.json["errorCode"], "INVALID_CONTEXT");
    // No body at all, or no context: an empty context.
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/ratio",
            Some(&sdk),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Auth: none → 401, an admin token → 403; both with the OFREP error shape.
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/ratio",
            None,
            Some("{}"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["key"], "ratio");
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/ratio",
            Some(ADMIN),
            Some("{}"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/ratio",
            None,
            Some("{}"),
            &[("x-api-key", &sdk)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn bulk_with_etag_and_per_flag_errors() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;
    let body = r#"{"context": {"plan": "free"}}"#;
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(&sdk),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let flags = r.json["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 3);
    let rollout = flags.iter().find(|f| f["key"] == "rollout").unwrap();
    assert_eq!(rollout["errorCode"], "TARGETING_KEY_MISSING");
    assert!(r.json["metadata"].is_object());
    let etag = r.header("etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );

    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(&sdk),
            Some(body),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.text.is_empty());
    // A change to a flag changes the ETag.
    s.admin(
        Method::PUT,
        "/api/v1/flags/colour/enabled",
        Some(r#"{"enabled": true}"#),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(&sdk),
            Some(body),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.header("etag").unwrap(), etag);

    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(&sdk),
            Some("[]"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["errorCode"], "PARSE_ERROR");
    assert!(r.json.get("key").is_none());
}

#[tokio::test]
async fn cors_preflight_and_rate_limit() {
    let s = TestServer::with(|c| c.rate_limit = Some((2, 2))).await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;
    let r = s
        .call(
            Method::OPTIONS,
            "/ofrep/v1/evaluate/flags",
            None,
            None,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,authorization,if-none-match",
                ),
            ],
        )
        .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("if-none-match"),
        "{allowed}"
    );

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(s.ofrep("ratio", &sdk, "{}").await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .expect("a burst of 2 is exceeded");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(limited.json["errorCode"], "GENERAL");
}
