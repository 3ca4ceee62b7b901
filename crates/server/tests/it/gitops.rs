//! Read-only GitOps mode: flags come from a watched file.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use switchyard_server::config::FlagSource;

use crate::TestServer;

#[tokio::test]
async fn serves_a_watched_file_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(
        &file,
        "flags:\n  - key: from-file\n    type: string\n    defaultValue: one\n",
    )
    .unwrap();
    let path = file.clone();
    let s = TestServer::with(move |c| c.flag_source = FlagSource::File(path)).await;
    let sdk = s.token("sdk", Some("production")).await;
    assert_eq!(s.ofrep("from-file", &sdk, "{}").await.json["value"], "one");

    let r = s
        .admin(Method::POST, "/api/v1/flags", Some(r#"{"key": "x"}"#))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code(), "read_only");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let control = s.state.control.clone();
    let sync = tokio::spawn(async move { control.run(stop_rx).await });
    // An invalid edit keeps the previous flags.
    std::fs::write(
        &file,
        "flags:\n  - key: from-file\n    type: string\n    defaultValue: 2\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.ofrep("from-file", &sdk, "{}").await.json["value"], "one");
    std::fs::write(
        &file,
        "flags:\n  - key: from-file\n    type: string\n    defaultValue: three-and-longer\n",
    )
    .unwrap();
    let mut value = serde_json::Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        value = s.ofrep("from-file", &sdk, "{}").await.json["value"].clone();
        if value == "three-and-longer" {
            break;
        }
    }
    assert_eq!(value, "three-and-longer");
    let _ = stop_tx.send(true);
    sync.await.unwrap();
}
