//! Admin API: auth and roles, flag lifecycle, optimistic concurrency, validation, audit,
//! per-environment operations, segments, tokens, import/export, seed, OpenAPI coverage.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{TestServer, ADMIN};

const FLAG: &str = r#"{"key": "new-search", "tags": ["search"], "rules": [{"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "value": "@acme.io"}], "variant": "on"}], "reason": "ticket SEARCH-1"}"#;

#[tokio::test]
async fn requests_need_a_token_with_the_right_role() {
    let s = TestServer::start().await;
    let r = s.call(Method::GET, "/api/v1/flags", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthorized");
    let r = s
        .call(
            Method::GET,
            "/api/v1/flags",
            Some("sy_0123456789abcdef_nope"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let viewer = s.token("viewer", None).await;
    assert_eq!(
        s.call(Method::GET, "/api/v1/flags", Some(&viewer), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let r = s
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(&viewer),
            Some(FLAG),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "forbidden");

    let editor = s.token("editor", None).await;
    assert_eq!(
        s.call(
            Method::POST,
            "/api/v1/flags",
            Some(&editor),
            Some(FLAG),
            &[]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/tokens", Some(&editor), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let sdk = s.token("sdk", Some("production")).await;
    assert_eq!(
        s.call(Method::GET, "/api/v1/flags", Some(&sdk), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // X-API-Key works as well as Bearer.
    let r = s
        .call(
            Method::GET,
            "/api/v1/flags",
            None,
            None,
            &[("x-api-key", ADMIN)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn flag_lifecycle_with_optimistic_concurrency_and_audit() {
    let s = TestServer::start().await;
    let r = s.admin(Method::POST, "/api/v1/flags", Some(FLAG)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("location"), Some("/api/v1/flags/new-search"));
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["definition"]["rules"][0]["id"], "staff");

    let dup = s.admin(Method::POST, "/api/v1/flags", Some(FLAG)).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    let update = r#"{"key": "new-search", "tags": ["search", "beta"], "fallthrough": {"percentage": 10, "variant": "on"}}"#;
    let ok = s
        .call(
            Method::PUT,
            "/api/v1/flags/new-search",
            Some(ADMIN),
            Some(update),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["version"], 2);

    // A stale write gets 409 and changes nothing.
    let audit_before = s
        .admin(Method::GET, "/api/v1/audit?flag=new-search", None)
        .await
        .json["entries"]
        .as_array()
        .unwrap()
        .len();
    let stale = s
        .call(
            Method::PUT,
            "/api/v1/flags/new-search",
            Some(ADMIN),
            Some(FLAG),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.error_code(), "conflict");
    assert_eq!(stale.json["error"]["details"]["currentVersion"], 2);
    let now = s.admin(Method::GET, "/api/v1/flags/new-search", None).await;
    assert_eq!(now.json["version"], 2);
    assert_eq!(now.json["definition"]["tags"], json!(["search", "beta"]));
    let audit_after = s
        .admin(Method::GET, "/api/v1/audit?flag=new-search", None)
        .await
        .json["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(audit_before, audit_after);

    // Audit: newest first, actor, reason, before/after.
    let audit = s
        .admin(Method::GET, "/api/v1/audit?flag=new-search", None)
        .await
        .json;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["action"], "flag.create");
    // The actor is the token's id (nobody can choose it), with the name it had.
    assert!(
        entries[1]["actor"].as_str().unwrap().starts_with("token:"),
        "{}",
        entries[1]
    );
    assert_eq!(entries[1]["actorName"], "bootstrap-admin");
    assert_eq!(entries[1]["reason"], "ticket SEARCH-1");
    assert_eq!(entries[1]["before"], serde_json::Value::Null);
    assert_eq!(entries[0]["action"], "flag.update");
    assert_eq!(entries[0]["before"]["tags"], json!(["search"]));
    assert_eq!(entries[0]["after"]["tags"], json!(["search", "beta"]));

    // Filters.
    let list = s
        .admin(Method::GET, "/api/v1/flags?tag=beta", None)
        .await
        .json;
    assert_eq!(list["flags"].as_array().unwrap().len(), 1);
    let list = s
        .admin(Method::GET, "/api/v1/flags?tag=nothing", None)
        .await
        .json;
    assert_eq!(list["flags"].as_array().unwrap().len(), 0);
    let bad = s
        .admin(Method::GET, "/api/v1/flags?state=sleepy", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Archive, then it is listed as archived and not served.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/flags/new-search/archive",
            Some(r#"{"reason": "done"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["archived"], true);
    let archived = s
        .admin(Method::GET, "/api/v1/flags?state=archived", None)
        .await
        .json;
    assert_eq!(archived["flags"][0]["key"], "new-search");
    let sdk = s.token("sdk", Some("production")).await;
    assert_eq!(
        s.ofrep("new-search", &sdk, "{}").await.status,
        StatusCode::NOT_FOUND
    );

    let del = s
        .admin(Method::DELETE, "/api/v1/flags/new-search", None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = s.admin(Method::GET, "/api/v1/flags/new-search", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "not_found");
}

#[tokio::test]
async fn invalid_definitions_are_rejected_with_every_problem() {
    let s = TestServer::start().await;
    let body = r#"{"key": "bad", "rules": [{"conditions": [{"attribute": "x", "operator": "regex", "value": "("}], "variant": "maybe"}], "fallthrough": {"split": {"on": 60, "off": 30}}}"#;
    let r = s.admin(Method::POST, "/api/v1/flags", Some(body)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.error_code(), "validation_failed");
    let problems = r.json["error"]["details"]["problems"].as_array().unwrap();
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "rules[0].conditions[0].value",
            "rules[0].variant",
            "fallthrough.split"
        ],
        "{}",
        r.text
    );

    let r = s
        .admin(
            Method::POST,
            "/api/v1/flags",
            Some(r#"{"key": "typo", "enabeld": true}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["error"]["details"]["problems"][0]["path"], "enabeld");

    // Cross-flag checks: a prerequisite must exist, and a required flag cannot be deleted.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/flags",
            Some(r#"{"key": "child", "prerequisites": [{"flag": "parent", "variant": "on"}]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text.contains("unknown prerequisite flag `parent`"),
        "{}",
        r.text
    );
    s.admin(Method::POST, "/api/v1/flags", Some(r#"{"key": "parent"}"#))
        .await;
    let r = s
        .admin(
            Method::POST,
            "/api/v1/flags",
            Some(r#"{"key": "child", "prerequisites": [{"flag": "parent", "variant": "on"}]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.admin(Method::DELETE, "/api/v1/flags/parent", None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        s.admin(Method::GET, "/api/v1/flags/parent", None)
            .await
            .status,
        StatusCode::OK
    );

    let r = s
        .admin(Method::POST, "/api/v1/flags", Some("not json"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/parent",
            Some(r#"{"key": "other"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn environment_operations_take_effect_at_once() {
    let s = TestServer::start().await;
    s.admin(Method::POST, "/api/v1/flags", Some(r#"{"key": "beta-ui"}"#))
        .await;
    let sdk = s.token("sdk", Some("production")).await;
    let ctx = r#"{"targetingKey": "user-1"}"#;
    assert_eq!(s.ofrep("beta-ui", &sdk, ctx).await.json["value"], true);

    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/beta-ui/environments/production/enabled",
            Some(r#"{"enabled": false, "reason": "not yet"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = s.ofrep("beta-ui", &sdk, ctx).await.json;
    assert_eq!(
        (e["value"].clone(), e["reason"].clone()),
        (json!(false), json!("DISABLED"))
    );
    // Other environments are untouched.
    let dev = s.token("sdk", Some("development")).await;
    assert_eq!(s.ofrep("beta-ui", &dev, ctx).await.json["value"], true);

    s.admin(
        Method::PUT,
        "/api/v1/flags/beta-ui/environments/production/enabled",
        Some(r#"{"enabled": true}"#),
    )
    .await;
    let r = s
        .admin(
            Method::POST,
            "/api/v1/flags/beta-ui/environments/production/kill",
            Some(r#"{"reason": "incident 42"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.ofrep("beta-ui", &sdk, ctx).await.json["reason"],
        "DISABLED"
    );
    s.admin(
        Method::DELETE,
        "/api/v1/flags/beta-ui/environments/production/kill",
        None,
    )
    .await;
    assert_eq!(s.ofrep("beta-ui", &sdk, ctx).await.json["value"], true);

    // The global kill switch wins over every environment.
    s.admin(Method::POST, "/api/v1/flags/beta-ui/kill", None)
        .await;
    assert_eq!(s.ofrep("beta-ui", &dev, ctx).await.json["value"], false);
    s.admin(Method::DELETE, "/api/v1/flags/beta-ui/kill", None)
        .await;

    // Rollout to 10 %: about a tenth of users, stable per user.
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/beta-ui/environments/production/rollout",
            Some(r#"{"percentage": 10}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut on = 0;
    for i in 0..400 {
        if s.ofrep(
            "beta-ui",
            &sdk,
            &format!(r#"{{"targetingKey": "user-{i}"}}"#),
        )
        .await
        .json["value"]
            == true
        {
            on += 1;
        }
    }
    assert!((20..=65).contains(&on), "10 % of 400 ≈ 40, got {on}");

    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/beta-ui/environments/production/targets",
            Some(r#"{"targets": [{"variant": "on", "values": ["vip"]}]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = s
        .ofrep("beta-ui", &sdk, r#"{"targetingKey": "vip"}"#)
        .await
        .json;
    assert_eq!(
        (e["value"].clone(), e["reason"].clone()),
        (json!(true), json!("TARGETING_MATCH"))
    );

    let r = s.admin(Method::PUT, "/api/v1/flags/beta-ui/environments/production/rules", Some(r#"{"rules": [{"id": "pro", "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "variant": "on"}]}"#)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = s
        .ofrep(
            "beta-ui",
            &sdk,
            r#"{"targetingKey": "user-3", "plan": "pro"}"#,
        )
        .await
        .json;
    assert_eq!(e["reason"], "TARGETING_MATCH");

    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/beta-ui/environments/nowhere/enabled",
            Some(r#"{"enabled": true}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("environment `nowhere`"));

    let audit = s
        .admin(Method::GET, "/api/v1/audit?flag=beta-ui&limit=100", None)
        .await
        .json;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "flag.create",
        "flag.disable",
        "flag.enable",
        "flag.kill",
        "flag.release",
        "flag.rollout",
        "flag.targets",
        "flag.rules",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let kill = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "flag.kill" && e["environment"] == "production")
        .unwrap();
    assert_eq!(kill["reason"], "incident 42");

    let metrics = s.call(Method::GET, "/metrics", None, None, &[]).await.text;
    assert!(
        metrics.contains(
            r#"switchyard_kill_switch_activations_total{environment="production",flag="beta-ui"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_flag_changes_total{action=\"flag.rollout\"} 1"));
    assert!(metrics.contains("switchyard_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn segments_tokens_and_environments() {
    let s = TestServer::start().await;
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/segments/beta",
            Some(r#"{"included": ["u1", "u2"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.admin(Method::POST, "/api/v1/flags", Some(r#"{"key": "f", "rules": [{"conditions": [{"operator": "in_segment", "value": "beta"}], "variant": "on"}]}"#)).await;
    let sdk = s.token("sdk", Some("staging")).await;
    assert_eq!(
        s.ofrep("f", &sdk, r#"{"targetingKey": "u2"}"#).await.json["value"],
        true
    );
    assert_eq!(
        s.ofrep("f", &sdk, r#"{"targetingKey": "u3"}"#).await.json["value"],
        false
    );
    // A segment in use cannot be deleted.
    let r = s.admin(Method::DELETE, "/api/v1/segments/beta", None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    let envs = s
        .admin(Method::GET, "/api/v1/environments", None)
        .await
        .json;
    let names: Vec<&str> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for e in ["development", "staging", "production"] {
        assert!(names.contains(&e));
    }
    assert_eq!(
        s.admin(
            Method::POST,
            "/api/v1/environments",
            Some(r#"{"name": "qa"}"#)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.admin(
            Method::POST,
            "/api/v1/environments",
            Some(r#"{"name": "qa"}"#)
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        s.admin(
            Method::POST,
            "/api/v1/environments",
            Some(r#"{"name": "no spaces"}"#)
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );

    let r = s
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "x", "role": "sdk"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "x", "role": "root"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "x", "role": "sdk", "environment": "mars"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let list = s.admin(Method::GET, "/api/v1/tokens", None).await;
    assert!(
        !list.text.contains("hash") && !list.text.contains(&sdk),
        "no secrets in listings"
    );
    let id = list.json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "sdk")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["revokedAt"].is_string());
    assert_eq!(
        s.ofrep("f", &sdk, "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    let audit = s
        .admin(Method::GET, "/api/v1/audit?limit=500", None)
        .await
        .text;
    assert!(!audit.contains("secret_hash") && !audit.contains("secretHash"));
}

#[tokio::test]
async fn export_import_and_seed_round_trip() {
    let s = TestServer::with(|c| c.seed_examples = true).await;
    let flags = s.admin(Method::GET, "/api/v1/flags", None).await.json;
    let count = flags["flags"].as_array().unwrap().len();
    assert!(count >= 8, "example flags seeded on first start");

    let yaml = s
        .admin(Method::GET, "/api/v1/export?format=yaml", None)
        .await;
    assert_eq!(yaml.status, StatusCode::OK);
    assert_eq!(yaml.header("content-type"), Some("application/yaml"));
    let json_export = s.admin(Method::GET, "/api/v1/export", None).await.json;

    let other = TestServer::start().await;
    let r = other
        .call(
            Method::POST,
            "/api/v1/import",
            Some(ADMIN),
            Some(&yaml.text),
            &[("content-type", "application/yaml")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["created"].as_array().unwrap().len(), count);
    let again = other.admin(Method::GET, "/api/v1/export", None).await.json;
    assert_eq!(again, json_export, "export → import → export is stable");
    let r = other
        .call(
            Method::POST,
            "/api/v1/import",
            Some(ADMIN),
            Some(&yaml.text),
            &[("content-type", "application/yaml")],
        )
        .await;
    assert_eq!(
        r.json["unchanged"].as_array().unwrap().len(),
        count,
        "re-importing changes nothing"
    );

    // Invalid imports name the line and change nothing.
    let bad = "flags:\n  - key: ok-one\n  - key: broken\n    rules:\n      - conditions: [{attribute: a, operator: nope, value: 1}]\n        variant: \"on\"\n";
    let r = other
        .call(
            Method::POST,
            "/api/v1/import?format=yaml",
            Some(ADMIN),
            Some(bad),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json["error"]["details"]["problems"][0]["line"], 5,
        "{}",
        r.text
    );
    assert_eq!(
        other
            .admin(Method::GET, "/api/v1/flags/ok-one", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Seeding again creates only what is missing.
    let first = s.admin(Method::GET, "/api/v1/flags", None).await.json["flags"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    s.admin(Method::DELETE, &format!("/api/v1/flags/{first}"), None)
        .await;
    let r = s.admin(Method::POST, "/api/v1/seed", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["created"], json!([first]));
}

#[tokio::test]
async fn openapi_lists_exactly_the_served_routes() {
    let s = TestServer::start().await;
    let doc = s
        .call(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await
        .json;
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, ops) in paths {
        for (method, _) in ops.as_object().unwrap() {
            documented += 1;
            let uri = path
                .replace("{key}", "no-such-flag")
                .replace("{env}", "production")
                .replace("{name}", "no-such")
                .replace("{id}", "no-such");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.admin(m.clone(), &uri, Some("{}")).await;
            // Every documented route is routed: never the router's own 404/405.
            assert!(
                r.status != StatusCode::METHOD_NOT_ALLOWED
                    && !(r.status == StatusCode::NOT_FOUND && r.text.is_empty()),
                "{method} {path} is documented but not served ({})",
                r.status
            );
        }
    }
    assert_eq!(documented, switchyard_server::ROUTES.len());
    let r = s.admin(Method::GET, "/api/v1/undocumented", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked_and_messages_read_well() {
    let s = TestServer::start().await;
    let tokens = s.admin(Method::GET, "/api/v1/tokens", None).await.json;
    let admin_id = tokens["tokens"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/tokens/{admin_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("last admin token"), "{}", r.text);
    assert_eq!(
        s.admin(Method::GET, "/api/v1/flags", None).await.status,
        StatusCode::OK
    );

    let second = s.token("admin", None).await;
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/tokens/{admin_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "with another admin it can go");
    let r = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{admin_id}"),
            Some(&second),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("already revoked"), "{}", r.text);

    let editor = s.token_with(&second, "editor").await;
    let r = s
        .call(Method::GET, "/api/v1/tokens", Some(&editor), None, &[])
        .await;
    assert!(
        r.text
            .contains("an editor token cannot do this; it needs the admin role"),
        "{}",
        r.text
    );
    s.call(
        Method::POST,
        "/api/v1/flags",
        Some(&second),
        Some(r#"{"key": "f"}"#),
        &[],
    )
    .await;
    let r = s
        .call(
            Method::PUT,
            "/api/v1/flags/f/environments/nope/enabled",
            Some(&second),
            Some(r#"{"enabled": true}"#),
            &[],
        )
        .await;
    assert_eq!(
        r.json["error"]["message"],
        "environment `nope` was not found; environments: development, production, staging"
    );
    let created = s
        .call(Method::GET, "/api/v1/flags/f", Some(&second), None, &[])
        .await
        .json["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created.len(), "2026-01-01T00:00:00.000Z".len(), "{created}");
}

/// Every route of the OpenAPI document, called with no token, an SDK key, a viewer, an editor
/// and an admin — each with a body that does not parse — answers exactly as the route table
/// says: 401 without a token, 403 for a role that may not, and otherwise whatever the handler
/// says about the body (so authorization happens before any body is read).
#[tokio::test]
async fn every_route_checks_its_role_before_reading_the_body() {
    use switchyard_server::auth::{Access, Role};
    let s = TestServer::start().await;
    let sdk = s.token("sdk", Some("production")).await;
    let viewer = s.token("viewer", None).await;
    let editor = s.token("editor", None).await;
    let callers: [(Option<&str>, Option<Role>); 5] = [
        (None, None),
        (Some(&sdk), Some(Role::Sdk)),
        (Some(&viewer), Some(Role::Viewer)),
        (Some(&editor), Some(Role::Editor)),
        (Some(ADMIN), Some(Role::Admin)),
    ];
    let doc = s
        .call(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await
        .json;
    let mut checked = 0;
    for route in switchyard_server::ROUTES {
        let documented = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(
            documented.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        assert_eq!(
            documented["x-switchyard-role"].as_str().unwrap_or("none"),
            route.access.as_str()
        );
        let uri = route
            .path
            .replace("{key}", "no-such-flag")
            .replace("{env}", "production")
            .replace("{name}", "no-such")
            .replace("{tenant}", "acme")
            .replace("{id}", "no-such");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        for (token, role) in callers {
            let r = s
                .call(method.clone(), &uri, token, Some("{this is not json"), &[])
                .await;
            let expected = match (route.access, role) {
                (Access::Public, _) => None,
                (Access::Role(_), None) => Some(StatusCode::UNAUTHORIZED),
                (Access::Role(needed), Some(role)) if !role.satisfies(needed) => {
                    Some(StatusCode::FORBIDDEN)
                }
                (Access::Role(_), Some(_)) => None,
                // Its credential is a signed `?token=`, which this call does not send.
                (Access::SignedStreamUrl, _) => Some(StatusCode::UNAUTHORIZED),
            };
            match expected {
                Some(status) => assert_eq!(
                    r.status, status,
                    "{} {} as {role:?}: {}",
                    route.method, route.path, r.text
                ),
                None => assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{} {} as {role:?} was refused: {} {}",
                    route.method,
                    route.path,
                    r.status,
                    r.text
                ),
            }
            // Refusals are JSON in the route's own shape.
            if expected.is_some() {
                let body: serde_json::Value = serde_json::from_str(&r.text).unwrap_or_else(|_| {
                    panic!("{} {}: not JSON: {}", route.method, route.path, r.text)
                });
                if route.path.starts_with("/ofrep/") {
                    assert_eq!(body["errorCode"], "GENERAL", "{body}");
                } else {
                    assert!(body["error"]["code"].is_string(), "{body}");
                }
            }
            checked += 1;
        }
        // axum answers HEAD with the GET handler: the guard must hold for it too.
        if route.method == "GET" && matches!(route.access, Access::Role(_)) {
            let r = s.call(Method::HEAD, &uri, None, None, &[]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "HEAD {}", route.path);
        }
    }
    assert_eq!(checked, switchyard_server::ROUTES.len() * 5);
}

/// An identical PUT changes nothing and says so; a PUT without If-Match is refused with 428
/// (naming the current version); `If-Match: *` forces it.
#[tokio::test]
async fn replacements_need_if_match_and_no_ops_change_nothing() {
    let s = TestServer::start().await;
    let r = s.admin(Method::POST, "/api/v1/flags", Some(FLAG)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body = r#"{"key": "new-search", "tags": ["search"], "rules": [{"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "value": "@acme.io"}], "variant": "on"}]}"#;
    let r = s
        .admin(Method::PUT, "/api/v1/flags/new-search", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{}", r.text);
    assert_eq!(r.error_code(), "precondition_required");
    assert_eq!(r.json["error"]["details"]["currentVersion"], 1);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/flags/new-search",
            Some(ADMIN),
            Some(body),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["unchanged"], true,
        "an identical replacement changes nothing"
    );
    assert_eq!(r.json["version"], 1);
    let audit = s
        .admin(Method::GET, "/api/v1/audit?flag=new-search", None)
        .await;
    assert_eq!(audit.json["entries"].as_array().unwrap().len(), 1);
    let changed = body.replace("[\"search\"]", "[\"search\", \"forced\"]");
    let r = s
        .call(
            Method::PUT,
            "/api/v1/flags/new-search",
            Some(ADMIN),
            Some(&changed),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["version"], 2);
    assert!(r.json.get("unchanged").is_none());
    // Releasing a kill switch that is not on: the first edit writes the implied
    // fallthrough out, the second changes nothing.
    s.admin(Method::DELETE, "/api/v1/flags/new-search/kill", None)
        .await;
    let r = s
        .admin(Method::DELETE, "/api/v1/flags/new-search/kill", None)
        .await;
    assert_eq!(r.json["unchanged"], true, "{}", r.text);
}

/// GitOps mode: the file's flags are visible to the admin API and the export.
#[tokio::test]
async fn a_flag_file_is_visible_to_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, "flags:\n  - key: from-file\n    owner: team-a\n").unwrap();
    let path = file.clone();
    let s = TestServer::with(move |c| {
        c.flag_source = switchyard_server::config::FlagSource::File(path)
    })
    .await;
    let list = s.admin(Method::GET, "/api/v1/flags", None).await;
    assert_eq!(list.json["flags"][0]["key"], "from-file", "{}", list.text);
    let one = s.admin(Method::GET, "/api/v1/flags/from-file", None).await;
    assert_eq!(one.json["definition"]["owner"], "team-a");
    let export = s
        .admin(Method::GET, "/api/v1/export?format=yaml", None)
        .await;
    assert!(export.text.contains("from-file"), "{}", export.text);
}

#[tokio::test]
async fn what_get_returns_can_be_edited_and_put_back_and_its_version_guards_the_write() {
    let s = TestServer::start().await;
    s.import("flags:\n  - key: round-trip\n    description: before\nsegments:\n  beta:\n    included: [u1]\n")
        .await;
    let got = s.admin(Method::GET, "/api/v1/flags/round-trip", None).await;
    assert_eq!(got.status, StatusCode::OK);
    let mut edited = got.json.clone();
    edited["definition"]["description"] = "after".into();
    edited["reason"] = "edited what GET returned".into();
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/round-trip",
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["definition"]["description"], "after");
    // The same body again is at a stale version now: refused, nothing overwritten.
    edited["definition"]["description"] = "lost update".into();
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/round-trip",
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // A stray field beside `definition` is named.
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/flags/round-trip",
            Some(r#"{"definition": {"key": "round-trip"}, "descripton": "typo"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("descripton"), "{}", r.text);

    // Segments the same way.
    let got = s.admin(Method::GET, "/api/v1/segments/beta", None).await;
    let mut edited = got.json.clone();
    edited["definition"]["included"] = serde_json::json!(["u1", "u2"]);
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/segments/beta",
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["definition"]["included"],
        serde_json::json!(["u1", "u2"])
    );
    let r = s
        .admin(
            Method::PUT,
            "/api/v1/segments/beta",
            Some(&edited.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn explain_says_why_a_unit_sees_what_it_sees() {
    let s = TestServer::start().await;
    s.import(
        r#"
flags:
  - key: checkout
    rules:
      - id: pro
        conditions:
          - {attribute: plan, operator: in, value: [pro, team]}
        value: true
    fallthrough: {percentage: 20, variant: "on"}
"#,
    )
    .await;
    let viewer = s.token("viewer", None).await;
    let explain = |body: &'static str| {
        let viewer = viewer.clone();
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/v1/flags/checkout/evaluate",
                Some(&viewer),
                Some(body),
                &[],
            )
            .await
        }
    };

    // A matching rule: the trace ends on it, with the value the context had.
    let r = explain(
        r#"{"environment": "production", "context": {"targetingKey": "u1", "plan": "pro"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["variant"], "on");
    assert_eq!(r.json["reason"], "TARGETING_MATCH");
    assert_eq!(r.json["ruleId"], "pro");
    let steps = r.json["steps"].as_array().unwrap();
    let last = steps.last().unwrap();
    assert_eq!(last["step"], "rule");
    assert_eq!(last["conditions"][0]["actual"], "pro");
    assert_eq!(last["conditions"][0]["holds"], true);

    // No rule: the fallthrough's bucket and threshold.
    let r = explain(
        r#"{"environment": "production", "context": {"targetingKey": "u1", "plan": "free"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let steps = r.json["steps"].as_array().unwrap();
    assert_eq!(steps[steps.len() - 2]["matched"], false);
    let rollout = &steps.last().unwrap()["serve"]["rollout"];
    assert_eq!(rollout["threshold"], 20_000);
    let inside = rollout["bucket"].as_u64().unwrap() < 20_000;
    assert_eq!(rollout["inside"], inside);
    assert_eq!(r.json["variant"], if inside { "on" } else { "off" });

    // Mistakes people make, each a JSON error that says what was wrong.
    let r = explain(r#"{"environment": "prod", "context": {}}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(
        r.text.contains("production"),
        "names the environments: {}",
        r.text
    );
    let r = explain(r#"{"context": {}}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("environment"), "{}", r.text);
    let r = explain(r#"{"environment": "production", "context": {"targetingKey": 1.5}}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = s
        .call(
            Method::POST,
            "/api/v1/flags/chekout/evaluate",
            Some(&viewer),
            Some(r#"{"environment": "production"}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("checkout"), "did you mean: {}", r.text);
    // SDK keys evaluate through OFREP, not the admin API.
    let sdk = s.token("sdk", Some("production")).await;
    let r = s
        .call(
            Method::POST,
            "/api/v1/flags/checkout/evaluate",
            Some(&sdk),
            Some(r#"{"environment": "production"}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
