//! An experiment end to end with real `switchyard serve` processes: two replicas on the real
//! PostgreSQL, the experiment created and started with the CLI on one, traffic evaluated
//! through OFREP on both (exposures recorded by the servers themselves), conversions sent
//! through the event API, and the results — a known effect found, an A/A experiment beside it
//! found to have none — read with the CLI.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::{agent, cli_as, send_json, start, PgSchema, Server};

const ADMIN: &str = "experiments-admin-token-01";

fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    cli_as(&server.url, ADMIN, args)
}

#[track_caller]
fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "stdout:\n{}\nstderr:\n{}", out.1, out.2);
    out.1
}

fn admin(server: &Server, method: &str, path: &str, body: Value) -> Value {
    let (status, reply) = send_json(
        method,
        &format!("{}{path}", server.url),
        ADMIN,
        &body.to_string(),
    );
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {reply}"
    );
    reply
}

/// An OFREP evaluation's body, whatever its status (a replica that has not heard of a flag
/// yet answers 404 with FLAG_NOT_FOUND).
fn ofrep(server: &Server, key: &str, flag: &str, unit: &str) -> Value {
    let mut r = agent()
        .post(format!("{}/ofrep/v1/evaluate/flags/{flag}", server.url))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(json!({"context": {"targetingKey": unit}}))
        .expect("OFREP answers");
    r.body_mut().read_json().expect("json")
}

fn experiment_file(dir: &std::path::Path, id: &str, flag: &str, event: &str) -> String {
    let path = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &path,
        format!(
            "id: {id}\nenvironment: production\nflag: {flag}\ncontrol: \"off\"\n\
             variants: {{\"off\": 50, \"on\": 50}}\n\
             hypothesis: the new banner raises sign-ups\n\
             metrics:\n  - {{event: {event}, role: primary, windowHours: 24}}\n\
             minDurationDays: 0\nminUnitsPerVariant: 500\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn results(server: &Server, id: &str) -> Value {
    let (status, r) = crate::serve::get_json(
        &format!("{}/api/v1/experiments/{id}/results", server.url),
        ADMIN,
    );
    assert_eq!(status, 200, "{r}");
    r
}

#[test]
fn an_experiment_across_two_replicas_finds_a_known_effect_and_no_effect_in_an_a_a_test() {
    let schema = PgSchema::new("experiments");
    let env = [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
    ];
    let a = start(&["--db", &schema.url], &env);
    let b = start(&["--db", &schema.url], &env);
    let dir = tempfile::tempdir().unwrap();
    admin(&a, "POST", "/api/v1/flags", json!({"key": "new-banner"}));
    admin(&a, "POST", "/api/v1/flags", json!({"key": "same-banner"}));
    let key = admin(
        &a,
        "POST",
        "/api/v1/tokens",
        json!({"name": "web", "role": "sdk", "environment": "production"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    for (id, flag, event) in [
        ("banner-test", "new-banner", "signup"),
        ("a-a-test", "same-banner", "click"),
    ] {
        let file = experiment_file(dir.path(), id, flag, event);
        let out = ok(cli(&a, &["experiments", "create", "-f", &file]));
        assert!(
            out.contains(&format!("created experiment {id} (draft)")),
            "{out}"
        );
        let out = ok(cli(&a, &["experiments", "start", id, "--reason", "launch"]));
        assert!(out.contains("is running"), "{out}");
    }
    // Replica B serves the experiment once the change reaches it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = loop {
        let r = ofrep(&b, &key, "new-banner", "probe");
        if r["reason"] == "SPLIT" {
            break r["variant"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "B never served the experiment");
        std::thread::sleep(Duration::from_millis(50));
    };

    // 6 000 users, half evaluated on each replica; sign-ups 10 % in control and 14 % with the
    // new banner; on the A/A flag 12 % in both arms.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let users = 6000;
    let mut events = Vec::new();
    let mut served = std::collections::BTreeMap::<(String, String), u64>::new();
    // The probe was exposed too (it is a unit like any other).
    served.insert(("new-banner".to_owned(), probe), 1);
    for i in 0..users {
        let unit = format!("user-{i}");
        let server = if i % 2 == 0 { &a } else { &b };
        for (flag, event, rates) in [
            ("new-banner", "signup", (0.10, 0.14)),
            ("same-banner", "click", (0.12, 0.12)),
        ] {
            let r = ofrep(server, &key, flag, &unit);
            assert_eq!(r["reason"], "SPLIT", "{r}");
            let variant = r["variant"].as_str().unwrap().to_owned();
            let rate = if variant == "on" { rates.1 } else { rates.0 };
            *served.entry((flag.to_owned(), variant)).or_default() += 1;
            if uniform() < rate {
                events.push(json!({
                    "type": "metric", "id": format!("{flag}-{unit}"), "event": event,
                    "unit": unit, "timestampMs": now_ms() + 10,
                }));
            }
        }
    }
    for batch in events.chunks(1000) {
        let (status, reply) = send_json(
            "POST",
            &format!("{}/sdk/v1/events", b.url),
            &key,
            &json!({ "events": batch }).to_string(),
        );
        assert_eq!(status, 200, "{reply}");
        assert!(reply["rejected"].as_array().unwrap().is_empty(), "{reply}");
    }

    // Both servers' exposure queues flush within a batch window.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = results(&a, "banner-test");
        let units: u64 = r["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["units"].as_u64().unwrap())
            .sum();
        if units == users + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exposures recorded: {units} of {users} + the probe"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = results(&a, "banner-test");
    for v in r["variants"].as_array().unwrap() {
        let variant = v["variant"].as_str().unwrap().to_owned();
        assert_eq!(
            v["units"].as_u64(),
            served.get(&("new-banner".to_owned(), variant)).copied(),
            "one exposure per unit, whichever replica served it"
        );
    }
    assert_eq!(r["srm"]["status"], "ok", "{}", r["srm"]);
    let treatment = &r["metrics"][0]["arms"][1];
    assert_eq!(treatment["variant"], "on");
    let cmp = &treatment["vsControl"];
    assert_eq!(cmp["verdict"], "better", "{cmp}");
    let ci = cmp["ciAbs"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(
        lo < 0.04 && 0.04 < hi,
        "the interval holds the true lift: [{lo}, {hi}]"
    );
    assert_eq!(
        r["recommendation"]["action"], "ship",
        "{}",
        r["recommendation"]
    );
    assert_eq!(r["recommendation"]["variant"], "on");

    let aa = results(&b, "a-a-test");
    let cmp = &aa["metrics"][0]["arms"][1]["vsControl"];
    assert_eq!(cmp["verdict"], "inconclusive", "{cmp}");
    assert_eq!(
        aa["recommendation"]["action"], "no_difference",
        "{}",
        aa["recommendation"]
    );

    // The CLI's table says the same.
    let out = ok(cli(&b, &["experiments", "results", "banner-test"]));
    assert!(out.contains("recommendation: ship `on`"), "{out}");
    assert!(out.contains("sample ratio: ok"), "{out}");
    let out = ok(cli(&a, &["experiments", "list"]));
    assert!(
        out.contains("banner-test") && out.contains("running"),
        "{out}"
    );

    // Completing ships the variant on both replicas.
    let out = ok(cli(
        &a,
        &["experiments", "complete", "banner-test", "--ship", "on"],
    ));
    assert!(out.contains("completed, shipped `on`"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ofrep(&b, &key, "new-banner", "someone-new");
        if r["variant"] == "on" && r["reason"] != "SPLIT" {
            break;
        }
        assert!(Instant::now() < deadline, "B still serves {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = cli(&a, &["experiments", "start", "banner-test"]);
    assert_eq!(code, 1);
    assert!(err.contains("is completed"), "{err}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
