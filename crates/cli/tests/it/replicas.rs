//! Real `switchyard serve` processes sharing one PostgreSQL (two replicas) or one SQLite file
//! across restarts: the defects of the first version's HTTP/store seam, over HTTP.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{db, get_json, send_json, start, PgSchema, Server};

const ADMIN: &str = "replica-admin-token-0123";

fn env() -> [(&'static str, &'static str); 2] {
    [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
    ]
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    send_json("POST", &format!("{}{path}", server.url), ADMIN, body)
}

/// Replicas starting at the same moment on an empty database all start (the first start is
/// one transaction under the store's lock).
#[test]
fn replicas_starting_together_on_an_empty_database_all_start() {
    let schema = PgSchema::new("start");
    let url = schema.url.clone();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                start(&["--db", &url], &[("SWITCHYARD_SEED_EXAMPLES", "false")])
            })
        })
        .collect();
    let servers: Vec<Server> = handles
        .into_iter()
        .map(|h| h.join().expect("every replica starts"))
        .collect();
    let printed: usize = servers
        .iter()
        .filter(|s| {
            s.stdout_lines
                .iter()
                .any(|l| l.contains("first admin token"))
        })
        .count();
    assert_eq!(
        printed, 1,
        "one replica created (and printed) the admin token"
    );
    let token_server = servers
        .iter()
        .find(|s| {
            s.stdout_lines
                .iter()
                .any(|l| l.contains("first admin token"))
        })
        .unwrap();
    let i = token_server
        .stdout_lines
        .iter()
        .position(|l| l.contains("first admin token"))
        .unwrap();
    let token = token_server.stdout_lines[i + 1].trim().to_owned();
    for server in &servers {
        let (status, envs) = get_json(&format!("{}/api/v1/environments", server.url), &token);
        assert_eq!(status, 200, "{envs}");
        assert_eq!(envs.as_array().unwrap().len(), 3, "{envs}");
    }
}

/// While writers on replica B change a flag's rollout without If-Match (as the CLI does),
/// replica A kills it: the acknowledged kill is never undone.
#[test]
fn concurrent_writers_on_two_replicas_never_undo_a_kill_switch() {
    let schema = PgSchema::new("kill");
    let a = start(&["--db", &schema.url], &env());
    let b = start(&["--db", &schema.url], &env());
    for round in 0..5 {
        let key = format!("risky-{round}");
        let (status, body) = post(&a, "/api/v1/flags", &format!(r#"{{"key": "{key}"}}"#));
        assert_eq!(status, 201, "{body}");
        let b_url = b.url.clone();
        let writer_key = key.clone();
        let writers = std::thread::spawn(move || {
            for i in 0..10 {
                let (status, body) = send_json(
                    "PUT",
                    &format!("{b_url}/api/v1/flags/{writer_key}/environments/production/rollout"),
                    ADMIN,
                    &format!(r#"{{"percentage": {}}}"#, 10 + i),
                );
                assert!(status == 200 || status == 404, "{status} {body}");
            }
        });
        std::thread::sleep(Duration::from_millis(5));
        let (status, body) = post(
            &a,
            &format!("/api/v1/flags/{key}/environments/production/kill"),
            r#"{"reason": "incident"}"#,
        );
        assert_eq!(status, 200, "{body}");
        writers.join().unwrap();
        for server in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let (_, flag) = get_json(&format!("{}/api/v1/flags/{key}", server.url), ADMIN);
                let killed = flag["definition"]["environments"]["production"]["killSwitch"] == true;
                let rollouts_done = flag["definition"]["environments"]["production"]["fallthrough"]
                    ["percentage"]
                    == 19.0;
                if killed && rollouts_done {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: {} shows {flag}",
                    server.url
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A sets `x requires y` while B sets `y requires x`: one is refused, and every later write
/// still works on both replicas.
#[test]
fn a_cross_replica_cycle_is_refused_and_nothing_wedges() {
    let schema = PgSchema::new("cycle");
    let a = start(&["--db", &schema.url], &env());
    let b = start(&["--db", &schema.url], &env());
    assert_eq!(post(&a, "/api/v1/flags", r#"{"key": "x"}"#).0, 201);
    assert_eq!(post(&a, "/api/v1/flags", r#"{"key": "y"}"#).0, 201);
    let (a_url, b_url) = (a.url.clone(), b.url.clone());
    let ta = std::thread::spawn(move || {
        send_json(
            "PUT",
            &format!("{a_url}/api/v1/flags/x?force=true"),
            ADMIN,
            r#"{"key": "x", "prerequisites": [{"flag": "y", "variant": "on"}]}"#,
        )
    });
    let tb = std::thread::spawn(move || {
        send_json(
            "PUT",
            &format!("{b_url}/api/v1/flags/y?force=true"),
            ADMIN,
            r#"{"key": "y", "prerequisites": [{"flag": "x", "variant": "on"}]}"#,
        )
    });
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    let statuses = [ra.0, rb.0];
    assert!(
        statuses.contains(&200) && statuses.contains(&422),
        "{ra:?} {rb:?}"
    );
    let refused = if ra.0 == 422 { &ra.1 } else { &rb.1 };
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{refused}"
    );
    for (i, server) in [&a, &b].into_iter().enumerate() {
        assert_eq!(post(server, "/api/v1/flags/x/kill", "{}").0, 200);
        let created = post(
            server,
            "/api/v1/flags",
            &format!(r#"{{"key": "after-{i}"}}"#),
        );
        assert_eq!(created.0, 201, "{created:?}");
    }
}

/// A restart with `--import` creates what is missing and reports what differs: it never
/// undoes a change made at run time, a production kill switch included.
#[test]
fn a_restart_with_import_keeps_a_runtime_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(&file, "flags:\n  - key: payments\n  - key: search\n").unwrap();
    let url = db(dir.path());
    let args = ["--db", url.as_str(), "--import", file.to_str().unwrap()];
    {
        let server = start(&args, &env());
        let (status, body) = post(
            &server,
            "/api/v1/flags/payments/environments/production/kill",
            "{}",
        );
        assert_eq!(status, 200, "{body}");
    }
    let server = start(&args, &env());
    let (_, flag) = get_json(&format!("{}/api/v1/flags/payments", server.url), ADMIN);
    assert_eq!(
        flag["definition"]["environments"]["production"]["killSwitch"], true,
        "the restart kept the kill switch: {flag}"
    );
    drop(server);
    // Overwriting is an explicit, audited choice.
    let mut with_overwrite = args.to_vec();
    with_overwrite.push("--import-overwrite");
    let server = start(&with_overwrite, &env());
    let (_, flag) = get_json(&format!("{}/api/v1/flags/payments", server.url), ADMIN);
    assert!(flag["definition"].get("environments").is_none(), "{flag}");
    let (_, audit) = get_json(
        &format!("{}/api/v1/audit?flag=payments&limit=1", server.url),
        ADMIN,
    );
    assert_eq!(audit["entries"][0]["action"], "flag.import");
    assert!(
        audit["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("overwriting"),
        "{audit}"
    );
}

/// Every operation works on a flag written in seed 000's compact layout.
#[test]
fn a_compact_layout_flag_rolls_out_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = db(dir.path());
    let seed = crate::seeds("feature_flags.json");
    let server = start(&["--db", &url, "--import", seed.to_str().unwrap()], &env());
    let (code, out, err) = crate::run(
        crate::bin()
            .args([
                "flags",
                "rollout",
                "enhanced_risk_scoring",
                "50",
                "--reason",
                "stage 2",
            ])
            .env("SWITCHYARD_SERVER", &server.url)
            .env("SWITCHYARD_TOKEN", ADMIN),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, flag) = get_json(
        &format!("{}/api/v1/flags/enhanced_risk_scoring", server.url),
        ADMIN,
    );
    assert_eq!(
        flag["definition"]["fallthrough"]["percentage"], 50.0,
        "{flag}"
    );
    assert_eq!(
        flag["definition"]["targets"][0]["values"],
        json!([8527130908u64])
    );
    assert!(flag["definition"].get("percentage").is_none());
}

/// Two concurrent revocations cannot remove the last admin token.
#[test]
fn concurrent_revocations_keep_one_admin() {
    let schema = PgSchema::new("revoke");
    let a = start(&["--db", &schema.url], &env());
    let b = start(&["--db", &schema.url], &env());
    let (status, second) = post(
        &a,
        "/api/v1/tokens",
        r#"{"name": "second-admin", "role": "admin"}"#,
    );
    assert_eq!(status, 201, "{second}");
    let (_, tokens) = get_json(&format!("{}/api/v1/tokens", a.url), ADMIN);
    let first = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "bootstrap-admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let second_token = second["token"].as_str().unwrap().to_owned();
    let a_url = a.url.clone();
    let b_url = b.url.clone();
    let ta = std::thread::spawn(move || {
        send_json(
            "DELETE",
            &format!("{a_url}/api/v1/tokens/{first}"),
            ADMIN,
            "",
        )
    });
    let tb = std::thread::spawn(move || {
        send_json(
            "DELETE",
            &format!("{b_url}/api/v1/tokens/{second_id}"),
            &second_token,
            "",
        )
    });
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    let mut statuses = [ra.0, rb.0];
    statuses.sort_unstable();
    // One revocation wins; the other is refused (409, the last admin) or, when the token
    // it was sent with was the one just revoked, 401.
    assert_eq!(statuses[0], 200, "{ra:?} {rb:?}");
    assert!(statuses[1] == 409 || statuses[1] == 401, "{ra:?} {rb:?}");
}
