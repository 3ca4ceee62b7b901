//! The edge, in process: every error status the app produces is JSON in its API's shape,
//! per-route body limits, context limits, and a Prometheus series only for flags that exist.

use axum::http::{Method, StatusCode};

use crate::{TestServer, ADMIN};

const FLAGS: &str = "flags:\n  - key: on\n";

#[tokio::test]
async fn errors_from_outside_the_handlers_are_json_in_the_shape_of_their_api() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;

    // 405: admin shape, and OFREP shape with the key.
    let r = s.admin(Method::PATCH, "/api/v1/flags", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PATCH"),
        "{}",
        r.text
    );
    let r = s
        .call(
            Method::GET,
            "/ofrep/v1/evaluate/flags/on",
            Some(&sdk),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json["errorCode"], "GENERAL", "{}", r.text);
    assert_eq!(r.json["key"], "on");

    // 404 for an unknown route.
    let r = s.admin(Method::GET, "/api/v1/nothing-here", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");

    // 400 for a query string axum cannot parse (text/plain from the extractor before).
    let r = s.admin(Method::GET, "/api/v1/audit?limit=lots", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error_code(), "bad_request");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{}",
        r.text
    );

    // 414 and 431 with JSON bodies.
    let long = format!("/api/v1/flags?tag={}", "x".repeat(9000));
    let r = s.admin(Method::GET, &long, None).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.error_code(), "uri_too_long");
    let big = "y".repeat(70 * 1024);
    let r = s
        .call(
            Method::GET,
            "/api/v1/flags",
            Some(ADMIN),
            None,
            &[("x-padding", &big)],
        )
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.error_code(), "headers_too_large");
}

#[tokio::test]
async fn body_limits_are_per_route_and_answer_in_json() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;
    // OFREP: 64 KiB.
    let padding = "p".repeat(100 * 1024);
    let body = format!(r#"{{"context": {{"targetingKey": "u", "pad": "{padding}"}}}}"#);
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/on",
            Some(&sdk),
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.json["errorCode"], "PARSE_ERROR");
    assert_eq!(r.json["key"], "on");
    // The admin API takes the same body (1 MiB)...
    let flag = format!(r#"{{"key": "padded", "description": "{padding}"}}"#);
    let r = s.admin(Method::POST, "/api/v1/flags", Some(&flag)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // ...but not 2 MiB.
    let huge = format!(
        r#"{{"key": "huge", "description": "{}"}}"#,
        "h".repeat(2 << 20)
    );
    let r = s.admin(Method::POST, "/api/v1/flags", Some(&huge)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");
    // Imports take more.
    let many: String = (0..300)
        .map(|i| {
            format!(
                "  - key: imported-{i}\n    description: \"{}\"\n",
                "d".repeat(4000)
            )
        })
        .collect();
    assert!(many.len() > (1 << 20));
    s.import(&format!("flags:\n{many}")).await;
}

#[tokio::test]
async fn contexts_beyond_the_limits_get_a_clear_400() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;
    let wide: Vec<String> = (0..1500).map(|i| format!(r#""a{i}": {i}"#)).collect();
    let r = s
        .ofrep("on", &sdk, &format!("{{{}}}", wide.join(",")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["errorCode"], "INVALID_CONTEXT");
    assert!(
        r.json["errorDetails"]
            .as_str()
            .unwrap()
            .contains("more than 1000 values"),
        "{}",
        r.text
    );
    let deep = format!("{}1{}", r#"{"a":"#.repeat(20), "}".repeat(20));
    let r = s.ofrep("on", &sdk, &deep).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json["errorDetails"]
            .as_str()
            .unwrap()
            .contains("levels deep"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn unknown_flag_keys_share_one_metrics_series() {
    let s = TestServer::start().await;
    s.import(FLAGS).await;
    let sdk = s.token("sdk", Some("production")).await;
    for i in 0..500 {
        let r = s.ofrep(&format!("no-such-flag-{i}"), &sdk, "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        s.ofrep("on", &sdk, r#"{"targetingKey": "u"}"#).await.status,
        StatusCode::OK
    );
    let metrics = s.call(Method::GET, "/metrics", None, None, &[]).await.text;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_evaluations_total{"))
        .collect();
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"flag="(unknown)""#) && l.ends_with(" 500")),
        "{series:?}"
    );
    assert!(
        series.iter().any(|l| l.contains(r#"flag="on""#)),
        "{series:?}"
    );
    assert_eq!(series.len(), 2, "{series:?}");
}
