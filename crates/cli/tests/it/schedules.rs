//! A scheduled change with two real replicas on PostgreSQL: set up with the CLI on one, run
//! once (one audit entry by `scheduler`), served by both; mistakes refused with the field.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{agent, cli_as, get_json, send_json, start, PgSchema};

const ADMIN: &str = "schedules-admin-token-012";

fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    cli_as(url, ADMIN, args)
}

fn ofrep_value(url: &str, key: &str) -> Value {
    let mut r = agent()
        .post(format!("{url}/ofrep/v1/evaluate/flags/launch"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(json!({"context": {"targetingKey": "u1"}}))
        .expect("OFREP answers");
    r.body_mut().read_json::<Value>().expect("json")["value"].clone()
}

#[test]
fn a_schedule_runs_once_across_two_replicas() {
    let schema = PgSchema::new("schedules");
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
    ];
    let a = start(&["--db", &schema.url], &env);
    let b = start(&["--db", &schema.url], &env);
    let (status, _) = send_json(
        "POST",
        &format!("{}/api/v1/flags", a.url),
        ADMIN,
        r#"{"key": "launch", "environments": {"production": {"enabled": false}}}"#,
    );
    assert_eq!(status, 201);
    let (_, token) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", a.url),
        ADMIN,
        r#"{"name": "web", "role": "sdk", "environment": "production"}"#,
    );
    let key = token["token"].as_str().unwrap().to_owned();
    // B serves the new flag once the change reaches it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ofrep_value(&b.url, &key) != json!(false) {
        assert!(Instant::now() < deadline, "B never served the new flag");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, _, err) = cli(
        &a.url,
        &[
            "schedule",
            "create",
            "launch",
            "enabel",
            "--env",
            "production",
            "--at",
            "2030-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("unknown action `enabel`"), "{err}");
    let (code, _, err) = cli(
        &a.url,
        &[
            "schedule",
            "create",
            "launch",
            "enable",
            "--env",
            "production",
            "--at",
            "tomorrow",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("RFC 3339"), "{err}");

    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, out, err) = cli(
        &a.url,
        &[
            "schedule",
            "create",
            "launch",
            "enable",
            "--env",
            "production",
            "--at",
            &at,
            "--reason",
            "launch day",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("scheduled enable of launch in production"),
        "{out}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    while ofrep_value(&b.url, &key) != json!(true) {
        assert!(Instant::now() < deadline, "the schedule did not reach B");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give both replicas' schedulers another tick or two, then count the runs.
    std::thread::sleep(Duration::from_millis(2500));
    let (_, log) = get_json(&format!("{}/api/v1/audit?flag=launch", b.url), ADMIN);
    let runs = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "scheduler")
        .count();
    assert_eq!(runs, 1, "exactly one run: {log}");
    let (code, out, _) = cli(&b.url, &["schedule", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("done") && out.contains("ran on time"), "{out}");
}
