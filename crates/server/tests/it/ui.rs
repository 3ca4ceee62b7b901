//! The web UI's server side through the real HTTP app: sign-in sessions, the anti-forgery
//! token, CORS, the page shell, the check and preview endpoints and dry runs.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::{TestServer, ADMIN};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Signs in with `token`: the session cookie (`sy_session=…`) and the page's CSRF token.
async fn sign_in(s: &TestServer, token: &str) -> (String, String) {
    let r = s
        .call(
            Method::POST,
            "/ui/login",
            None,
            Some(&format!("token={token}&next=/ui/flags")),
            &[FORM],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some("/ui/flags"));
    let set = r.header("set-cookie").expect("a session cookie").to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains(token), "the cookie is not the token");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = s
        .call(Method::GET, "/ui/flags", None, None, &[("cookie", &cookie)])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains(token), "the token is never in the page");
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let csrf = page
        .text
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("the shell carries the CSRF token")
        .to_owned();
    (cookie, csrf)
}

/// Signs out through the page's form (with its CSRF token).
async fn sign_out(s: &TestServer, cookie: &str, csrf: &str) -> crate::Reply {
    s.call(
        Method::POST,
        "/ui/logout",
        None,
        Some(&format!("csrf={csrf}")),
        &[FORM, ("cookie", cookie)],
    )
    .await
}

#[tokio::test]
async fn a_session_acts_only_with_its_csrf_token_and_ends_on_sign_out() {
    let s = TestServer::start().await;
    s.import("flags:\n  - key: f\n    enabled: false\n").await;
    // Signed out: the page is the sign-in form; the API refuses.
    let page = s.call(Method::GET, "/ui", None, None, &[]).await;
    assert!(page.text.contains("name=\"token\""), "{}", page.text);
    let root = s.call(Method::GET, "/", None, None, &[]).await;
    assert_eq!(root.header("location"), Some("/ui"));

    let (cookie, csrf) = sign_in(&s, ADMIN).await;
    let who = s
        .call(
            Method::GET,
            "/api/v1/session",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(who.json["via"], "session", "{}", who.text);
    assert_eq!(who.json["role"], "admin");

    let change = |headers: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.call(
                Method::PUT,
                "/api/v1/flags/f/enabled",
                None,
                Some(r#"{"enabled": true}"#),
                &[&[("content-type", "application/json")], h.as_slice()].concat(),
            )
            .await
        }
    };
    let r = change(vec![("cookie", cookie.clone())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("x-csrf-token"), "{}", r.text);
    let r = change(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", "0".repeat(64)),
    ])
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = change(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", csrf.clone()),
        ("sec-fetch-site", "cross-site".into()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another site never acts");
    let r = change(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", csrf.clone()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Audited as the token's principal.
    let audit = s.admin(Method::GET, "/api/v1/audit?flag=f", None).await;
    assert_eq!(audit.json["entries"][0]["actorName"], "bootstrap-admin");

    // Sign-out needs the page's token too; then the cookie is worth nothing.
    let r = s
        .call(
            Method::POST,
            "/ui/logout",
            None,
            Some("csrf=nope"),
            &[FORM, ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sign_out(&s, &cookie, &csrf).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = s
        .call(
            Method::GET,
            "/api/v1/flags",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("sign in again"), "{}", r.text);
}

#[tokio::test]
async fn sign_in_refuses_sdk_keys_wrong_tokens_and_other_sites_and_revoking_ends_sessions() {
    let s = TestServer::start().await;
    let sdk = s.token("sdk", Some("production")).await;
    for (token, says) in [
        ("sy_0000000000000000_nope", "unknown or revoked token"),
        (sdk.as_str(), "SDK key"),
    ] {
        let r = s
            .call(
                Method::POST,
                "/ui/login",
                None,
                Some(&format!("token={token}")),
                &[FORM],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.text.contains(says), "{}", r.text);
        assert!(r.header("set-cookie").is_none());
    }
    let r = s
        .call(
            Method::POST,
            "/ui/login",
            None,
            Some(&format!("token={ADMIN}")),
            &[
                FORM,
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8080"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a form on another site signs no one in"
    );
    // Only pages of the UI are followed after sign-in.
    let r = s
        .call(
            Method::POST,
            "/ui/login",
            None,
            Some(&format!("token={ADMIN}&next=https://evil.example/")),
            &[FORM],
        )
        .await;
    assert_eq!(r.header("location"), Some("/ui"));

    let viewer = s.token("viewer", None).await;
    let (cookie, csrf) = sign_in(&s, &viewer).await;
    let r = s
        .call(
            Method::PUT,
            "/api/v1/flags/x/enabled",
            None,
            Some(r#"{"enabled": true}"#),
            &[
                ("cookie", &cookie),
                ("x-csrf-token", &csrf),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a viewer's session changes nothing"
    );
    let id = viewer_token_id(&s).await;
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .call(
            Method::GET,
            "/api/v1/flags",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "revoking the token ends its sessions"
    );
}

#[tokio::test]
async fn idle_sessions_end() {
    let s = TestServer::with(|s| s.sessions.idle_ms = 500).await;
    let (cookie, _) = sign_in(&s, ADMIN).await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let r = s
        .call(
            Method::GET,
            "/api/v1/session",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_never_lets_another_origin_act_with_a_session() {
    let s = TestServer::start().await;
    let r = s
        .call(
            Method::OPTIONS,
            "/api/v1/flags/f/enabled",
            None,
            None,
            &[
                ("origin", "http://evil.example"),
                ("access-control-request-method", "PUT"),
                (
                    "access-control-request-headers",
                    "x-csrf-token, content-type",
                ),
            ],
        )
        .await;
    assert!(
        r.header("access-control-allow-credentials").is_none(),
        "{:?}",
        r.headers
    );
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(!methods.contains("PUT"), "{methods}");
    let headers = r.header("access-control-allow-headers").unwrap_or_default();
    assert!(!headers.contains("x-csrf-token"), "{headers}");
}

#[tokio::test]
async fn check_validates_yaml_with_lines_and_dry_runs_change_nothing() {
    let s = TestServer::start().await;
    s.import("flags:\n  - key: f\n    enabled: true\n").await;
    let check = |body: &'static str, kind: &'static str| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/v1/flags/f/check",
                Some(ADMIN),
                Some(body),
                &[("content-type", kind)],
            )
            .await
        }
    };
    let r = check(
        "key: f\nenabled: true\nrules:\n  - conditions: []\n    variant: nope\n",
        "application/yaml",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let problem = &r.json["error"]["details"]["problems"][0];
    assert_eq!(problem["path"], "rules[0].variant", "{}", r.text);
    assert_eq!(problem["line"], 5, "{}", r.text);
    let r = check("enabled: false\nowner: team-x\n", "application/yaml").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["exists"], true);
    let paths: Vec<&str> = r.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"enabled") && paths.contains(&"owner"),
        "{paths:?}"
    );
    assert!(r.json["yaml"].as_str().unwrap().contains("owner: team-x"));
    let r = check(r#"{"key": "f", "enabled": "yes"}"#, "application/json").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    // A dry run answers the difference and writes nothing; a stale one is a conflict.
    let r = s
        .call(
            Method::POST,
            "/api/v1/flags/f/environments/production/kill?dryRun=true",
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["version"], 1);
    assert!(r.text.contains("killSwitch"), "{}", r.text);
    let r = s
        .call(
            Method::POST,
            "/api/v1/flags/f/environments/production/kill?dryRun=true",
            Some(ADMIN),
            None,
            &[("if-match", "\"7\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // A dry run of a change that would not compile says why, as the change would.
    let r = s
        .call(
            Method::PUT,
            "/api/v1/flags/f/environments/production/rules?dryRun=true",
            Some(ADMIN),
            Some(r#"{"rules": [{"conditions": [{"attribute": "email", "operator": "regex", "value": "(unclosed"}], "variant": "on"}]}"#),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("regular expression"), "{}", r.text);
    let flag = s.admin(Method::GET, "/api/v1/flags/f", None).await;
    assert_eq!(flag.json["version"], 1, "nothing was written");
    let audit = s.admin(Method::GET, "/api/v1/audit?flag=f", None).await;
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn preview_counts_units_with_the_served_or_a_proposed_definition() {
    let s = TestServer::start().await;
    s.import("flags:\n  - key: f\n    enabled: true\n    fallthrough: {variant: \"on\", percentage: 30}\n").await;
    let units: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let preview = |definition: Option<Value>| {
        let s = &s;
        let mut body = serde_json::json!({"environment": "production", "units": units});
        if let Some(d) = definition {
            body["definition"] = d;
        }
        async move {
            s.admin(
                Method::POST,
                "/api/v1/flags/f/preview",
                Some(&body.to_string()),
            )
            .await
        }
    };
    let r = preview(None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["total"], 2000);
    let on = r.json["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == "on")
        .unwrap()["units"]
        .as_i64()
        .unwrap();
    assert!((500..700).contains(&on), "about 30 % of 2000, got {on}");
    // The same units an OFREP evaluation serves.
    let sdk = s.token("sdk", Some("production")).await;
    let mut served_on = 0;
    for u in units.iter().take(200) {
        let r = s
            .ofrep("f", &sdk, &format!(r#"{{"targetingKey": "{u}"}}"#))
            .await;
        served_on += i64::from(r.json["variant"] == "on");
    }
    let r200 = s
        .admin(
            Method::POST,
            "/api/v1/flags/f/preview",
            Some(
                &serde_json::json!({"environment": "production", "units": &units[..200]})
                    .to_string(),
            ),
        )
        .await;
    let preview_on = r200.json["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == "on")
        .map_or(0, |v| v["units"].as_i64().unwrap());
    assert_eq!(preview_on, served_on);
    let r = preview(Some(serde_json::json!({"key": "f", "enabled": true, "fallthrough": {"variant": "on", "percentage": 100}}))).await;
    assert_eq!(r.json["variants"][0]["units"], 2000, "{}", r.text);
    let r = preview(Some(
        serde_json::json!({"key": "f", "fallthrough": {"variant": "nope"}}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let flag = s.admin(Method::GET, "/api/v1/flags/f", None).await;
    assert_eq!(flag.json["version"], 1, "a preview writes nothing");
}

#[tokio::test]
async fn the_change_stream_announces_changes_and_ends_when_its_token_is_revoked() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let s = TestServer::start().await;
    s.import("flags:\n  - key: f\n").await;
    let viewer = s.token("viewer", None).await;
    let response = s
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/changes")
                .header("authorization", format!("Bearer {viewer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = next_event(&mut body)
        .await
        .expect("the current revision first");
    assert!(first.contains("\"revision\""), "{first}");
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/f/enabled",
            Some(r#"{"enabled": false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second = next_event(&mut body).await.expect("a change event");
    assert_ne!(first, second);
    // Revoking the stream's token ends it.
    let id = viewer_token_id(&s).await;
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(next_event(&mut body).await, None, "the stream ends");
}

#[tokio::test]
async fn a_change_stream_opened_by_a_session_ends_when_it_signs_out() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let s = TestServer::start().await;
    s.import("flags:\n  - key: f\n").await;
    let (cookie, csrf) = sign_in(&s, ADMIN).await;
    let response = s
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/changes")
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert!(
        next_event(&mut body).await.is_some(),
        "the current revision"
    );
    // The token stays valid: only the session ends, and with it the stream.
    let r = sign_out(&s, &cookie, &csrf).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(next_event(&mut body).await, None, "the stream ends");
    let who = s.admin(Method::GET, "/api/v1/session", None).await;
    assert_eq!(who.status, StatusCode::OK, "the token itself still works");
}

/// The next `change` event of an event-stream body (`None` once the stream has ended).
async fn next_event(body: &mut axum::body::Body) -> Option<String> {
    use http_body_util::BodyExt;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("an event or the end within 5 s")?;
        if let Ok(data) = frame.expect("a frame").into_data() {
            let text = String::from_utf8(data.to_vec()).unwrap();
            if text.contains("event: change") {
                return Some(text);
            }
        }
    }
}

/// The id of the (one) viewer token.
async fn viewer_token_id(s: &TestServer) -> String {
    let tokens = s.admin(Method::GET, "/api/v1/tokens", None).await;
    tokens.json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
