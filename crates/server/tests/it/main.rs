//! The server in process: the real axum app over a real SQLite store, driven with `oneshot`.

mod admin;
mod edge;
mod events;
mod gitops;
mod ofrep;
mod rollouts;
mod ui;

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use switchyard_server::config::{FlagSource, LogFormat, Settings};
use switchyard_server::state::AppState;
use tower::ServiceExt;

pub(crate) const ADMIN: &str = "admin-token-0123456789";

/// A server on a fresh SQLite file, without the example flags unless asked.
pub(crate) struct TestServer {
    pub(crate) state: AppState,
    pub(crate) app: Router,
    _dir: tempfile::TempDir,
}

pub(crate) fn settings(dir: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        storage_url: format!("sqlite://{}", dir.join("db.sqlite").display()),
        import: vec![],
        import_overwrite: false,
        snapshot_file: None,
        storage_timeout_ms: 2000,
        streams: switchyard_server::stream::StreamSettings::default(),
        limits: switchyard_server::listen::Limits::default(),
        flag_source: FlagSource::Store,
        seed_examples: false,
        sync_interval_ms: 50,
        rate_limit: None,
        cors_origins: None,
        admin_token: Some(ADMIN.to_owned()),
        log_format: LogFormat::Text,
        log_level: "warn".to_owned(),
        unit_hash_key: None,
        experiment_check_secs: 60,
        rollout_check_ms: 10_000,
        probe_timeout_ms: 5_000,
        evaluation_flush_ms: 60_000,
        sessions: Default::default(),
        webhook_retry_base_ms: 1000,
        webhook_max_attempts: 8,
    }
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub(crate) async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        tweak(&mut s);
        let state = switchyard_server::prepare(s).await.expect("server starts");
        let app = switchyard_server::app(state.clone());
        Self {
            state,
            app,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        // An event stream never ends: its body is read by the stream tests, not here.
        let bytes = if streaming {
            Default::default()
        } else {
            response.into_body().collect().await.unwrap().to_bytes()
        };
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub(crate) async fn admin(&self, method: Method, uri: &str, body: Option<&str>) -> Reply {
        self.call(method, uri, Some(ADMIN), body, &[]).await
    }

    /// Creates a token and returns it.
    pub(crate) async fn token(&self, role: &str, env: Option<&str>) -> String {
        let body = match env {
            Some(e) => format!(r#"{{"name":"{role}-{e}","role":"{role}","environment":"{e}"}}"#),
            None => format!(r#"{{"name":"{role}-token","role":"{role}"}}"#),
        };
        let r = self
            .admin(Method::POST, "/api/v1/tokens", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["token"].as_str().unwrap().to_owned()
    }

    /// Creates a token of `role` using `admin` as the caller.
    pub(crate) async fn token_with(&self, admin: &str, role: &str) -> String {
        let body = format!(r#"{{"name":"{role}-by-other","role":"{role}"}}"#);
        let r = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(admin),
                Some(&body),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["token"].as_str().unwrap().to_owned()
    }

    /// Imports a YAML flag file.
    pub(crate) async fn import(&self, yaml: &str) {
        let r = self
            .call(
                Method::POST,
                "/api/v1/import?format=yaml",
                Some(ADMIN),
                Some(yaml),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    pub(crate) async fn ofrep(&self, key: &str, sdk: &str, context: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/ofrep/v1/evaluate/flags/{key}"),
            Some(sdk),
            Some(&format!(r#"{{"context": {context}}}"#)),
            &[],
        )
        .await
    }
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) text: String,
    pub(crate) json: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the admin API's one error shape and returns its code.
    pub(crate) fn error_code(&self) -> &str {
        let e = &self.json["error"];
        assert!(e["message"].is_string(), "error body shape: {}", self.text);
        e["code"].as_str().expect("error.code")
    }
}
