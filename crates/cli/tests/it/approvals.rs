//! Four-eyes approvals with the real binary on two PostgreSQL replicas: in an environment that
//! requires approval an editor's change waits as a change request (the CLI says so and exits
//! 3), its author cannot approve it, someone else can (on the other replica), a request whose
//! flag changed meanwhile is refused as stale, and the kill switch never waits.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{agent, cli_as, get_json, send_json, start, PgSchema};

const ADMIN: &str = "approvals-admin-token-0123";

fn token(url: &str, name: &str, role: &str) -> String {
    let (status, t) = send_json(
        "POST",
        &format!("{url}/api/v1/tokens"),
        ADMIN,
        &json!({"name": name, "role": role}).to_string(),
    );
    assert_eq!(status, 201, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

fn served(url: &str, key: &str) -> Value {
    let mut r = agent()
        .post(format!("{url}/ofrep/v1/evaluate/flags/checkout"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(json!({"context": {"targetingKey": "u1"}}))
        .expect("OFREP answers");
    r.body_mut().read_json::<Value>().expect("json")
}

fn pending_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("see it with: switchyard requests get "))
        .expect("the request id is printed")
        .trim()
        .to_owned()
}

#[test]
fn changes_in_a_guarded_environment_wait_for_someone_else() {
    let schema = PgSchema::new("approvals");
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
    ];
    let a = start(&["--db", &schema.url], &env);
    let b = start(&["--db", &schema.url], &env);
    let (status, r) = send_json(
        "POST",
        &format!("{}/api/v1/flags", a.url),
        ADMIN,
        r#"{"key": "checkout", "environments": {"production": {"enabled": false}, "staging": {"enabled": false}}}"#,
    );
    assert_eq!(status, 201, "{r}");
    let alice = token(&a.url, "alice", "editor");
    let bob = token(&a.url, "bob", "editor");
    let viewer = token(&a.url, "vera", "viewer");
    let (_, sdk) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", a.url),
        ADMIN,
        r#"{"name": "web", "role": "sdk", "environment": "production"}"#,
    );
    let sdk = sdk["token"].as_str().unwrap().to_owned();

    // Only an admin sets the policy.
    let (code, _, err) = cli_as(
        &a.url,
        &alice,
        &["envs", "update", "production", "--require-approval", "true"],
    );
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = cli_as(
        &a.url,
        ADMIN,
        &[
            "envs",
            "update",
            "production",
            "--require-approval",
            "true",
            "--reason",
            "SOX",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, envs) = get_json(&format!("{}/api/v1/environments", b.url), ADMIN);
        if envs
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "production" && e["requireApproval"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never learned the policy: {envs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Staging has no policy: alice's change applies at once.
    let (code, out, err) = cli_as(
        &b.url,
        &alice,
        &["flags", "toggle", "checkout", "--on", "--env", "staging"],
    );
    assert_eq!(code, 0, "{out}{err}");

    // In production (asked on B, where the policy arrived through the feed) it waits.
    let (code, out, err) = cli_as(
        &b.url,
        &alice,
        &[
            "flags",
            "toggle",
            "checkout",
            "--on",
            "--env",
            "production",
            "--reason",
            "launch",
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("pending approval") && out.contains("production requires approval"),
        "{out}"
    );
    let id = pending_id(&out);
    assert_eq!(served(&a.url, &sdk)["value"], json!(false), "not applied");

    let (code, out, _) = cli_as(&a.url, &viewer, &["requests", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&id) && out.contains("environments.production.enabled: false → true"),
        "{out}"
    );
    let (code, _, err) = cli_as(&a.url, &viewer, &["requests", "approve", &id]);
    assert_eq!(code, 1, "a viewer cannot approve: {err}");
    let (code, _, err) = cli_as(&a.url, &alice, &["requests", "approve", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("someone else"), "{err}");

    let (code, out, err) = cli_as(
        &a.url,
        &bob,
        &["requests", "approve", &id, "--reason", "checked"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is applied"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&b.url, &sdk)["value"] != json!(true) {
        assert!(
            Instant::now() < deadline,
            "the approved change never reached B"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, log) = get_json(&format!("{}/api/v1/audit?flag=checkout", a.url), ADMIN);
    let enable = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "flag.enable" && e["environment"] == "production")
        .expect("the change is audited")
        .clone();
    assert!(
        enable["actorName"]
            .as_str()
            .unwrap()
            .contains("approving alice's request"),
        "{enable}"
    );

    // Two requests on the same version: the second approved is stale.
    let (code, out, _) = cli_as(
        &a.url,
        &alice,
        &["flags", "rollout", "checkout", "50", "--env", "production"],
    );
    assert_eq!(code, 3, "{out}");
    let first = pending_id(&out);
    let (code, out, _) = cli_as(
        &a.url,
        &bob,
        &["flags", "rollout", "checkout", "10", "--env", "production"],
    );
    assert_eq!(code, 3, "{out}");
    let second = pending_id(&out);
    let (code, _, err) = cli_as(&b.url, &bob, &["requests", "approve", &first]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_as(&b.url, &alice, &["requests", "approve", &second]);
    assert_eq!(code, 1);
    assert!(err.contains("changed since the request"), "{err}");
    let (_, r) = get_json(&format!("{}/api/v1/requests/{second}", a.url), ADMIN);
    assert_eq!(r["status"], "stale", "{r}");

    // The kill switch never waits.
    let (code, out, err) = cli_as(
        &a.url,
        &alice,
        &["flags", "kill", "checkout", "--env", "production"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&b.url, &sdk)["reason"] != "DISABLED" {
        assert!(Instant::now() < deadline, "the kill never reached B");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Releasing it does.
    let (code, out, _) = cli_as(
        &a.url,
        &alice,
        &[
            "flags",
            "kill",
            "checkout",
            "--env",
            "production",
            "--release",
        ],
    );
    assert_eq!(code, 3, "{out}");
    let released = pending_id(&out);
    let (code, out, _) = cli_as(
        &a.url,
        &alice,
        &["requests", "reject", &released, "--reason", "withdrawn"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is rejected"), "{out}");
}

#[test]
fn promotion_bulk_changes_and_last_evaluated_times() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/s.db", dir.path().display());
    let s = start(
        &["--db", &db],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHYARD_SEED_EXAMPLES", "false"),
            ("SWITCHYARD_EVALUATION_FLUSH_MS", "200"),
        ],
    );
    for body in [
        r#"{"key": "checkout", "environments": {"staging": {"fallthrough": {"percentage": 50, "variant": "on"}}, "production": {"enabled": false}}}"#,
        r#"{"key": "old-banner", "tags": ["marketing"]}"#,
        r#"{"key": "old-search"}"#,
    ] {
        let (status, r) = send_json("POST", &format!("{}/api/v1/flags", s.url), ADMIN, body);
        assert_eq!(status, 201, "{r}");
    }
    let (code, out, err) = cli_as(
        &s.url,
        ADMIN,
        &[
            "flags",
            "promote",
            "checkout",
            "--from",
            "staging",
            "--to",
            "production",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("environments.production.enabled") && out.contains("dry run"),
        "{out}"
    );
    let (_, f) = get_json(&format!("{}/api/v1/flags/checkout", s.url), ADMIN);
    assert_eq!(f["version"], 1, "a dry run changes nothing: {f}");
    let (code, out, err) = cli_as(
        &s.url,
        ADMIN,
        &[
            "flags",
            "promote",
            "checkout",
            "--from",
            "staging",
            "--to",
            "production",
            "--reason",
            "staging soaked",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("promoted checkout from staging to production (version 2)"),
        "{out}"
    );

    // Bulk: a mistyped flag refuses the whole change.
    let (code, _, err) = cli_as(
        &s.url,
        ADMIN,
        &["flags", "bulk", "archive", "old-banner", "old-serch"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("old-serch") && err.contains("old-search"),
        "{err}"
    );
    let (code, out, err) = cli_as(
        &s.url,
        ADMIN,
        &[
            "flags",
            "bulk",
            "archive",
            "old-banner",
            "old-search",
            "--reason",
            "cleanup",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 flags changed in one transaction"), "{out}");
    for flag in ["old-banner", "old-search"] {
        let (_, log) = get_json(&format!("{}/api/v1/audit?flag={flag}", s.url), ADMIN);
        let archived = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "flag.archive")
            .count();
        assert_eq!(archived, 1, "{log}");
    }

    // Evaluations are recorded per environment, off the request path.
    let (_, sdk) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", s.url),
        ADMIN,
        r#"{"name": "web", "role": "sdk", "environment": "production"}"#,
    );
    let sdk = sdk["token"].as_str().unwrap().to_owned();
    assert_eq!(served(&s.url, &sdk)["key"], "checkout");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = get_json(&format!("{}/api/v1/reports/evaluations", s.url), ADMIN);
        let rows = r["evaluations"].as_array().unwrap();
        if rows
            .iter()
            .any(|e| e["flag"] == "checkout" && e["environment"] == "production")
        {
            assert!(r["recordedSince"].is_string(), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "no evaluation recorded: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
