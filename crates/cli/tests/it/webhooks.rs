//! Webhooks with the real binary and a real local receiver: an event is written to the outbox
//! with the change, delivered after the receiver fails twice (retried with backoff), signed so
//! the receiver can verify it; a PagerDuty-format subscription gets a trigger on a kill and a
//! resolve with the same dedup key on the release; events nobody asked for are not sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::serve::{get_json, send_json, start, Server};

const ADMIN: &str = "webhooks-admin-token-0123";

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver on a free port: `/generic` answers 500 to its first two requests, then 200;
/// anything else 200. Every request is recorded.
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut generic = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.to_owned(), v.trim().to_owned()));
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if path == "/generic" {
                generic += 1;
                if generic <= 2 {
                    500
                } else {
                    200
                }
            } else {
                200
            };
            log.lock().unwrap().push(Received {
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                answered: status,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

fn admin(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    send_json(
        method,
        &format!("{}{path}", server.url),
        ADMIN,
        &body.to_string(),
    )
}

fn wait_for(seen: &Arc<Mutex<Vec<Received>>>, what: &str, ok: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "{what}; received: {:#?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webhooks_are_delivered_signed_after_failures_and_page_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::serve::db(dir.path());
    let server = start(
        &["--db", &db],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHYARD_SEED_EXAMPLES", "false"),
            ("SWITCHYARD_WEBHOOK_RETRY_BASE_MS", "100"),
        ],
    );
    let (url, seen) = receiver();
    let (status, _) = admin(&server, "POST", "/api/v1/flags", json!({"key": "checkout"}));
    assert_eq!(status, 201);

    // Mistakes are refused with the field.
    let (status, err) = admin(
        &server,
        "POST",
        "/api/v1/webhooks",
        json!({"id": "x", "url": format!("{url}/generic"), "events": ["flag.kiled"]}),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown event `flag.kiled`"),
        "{err}"
    );

    let (status, created) = admin(
        &server,
        "POST",
        "/api/v1/webhooks",
        json!({"id": "ops", "url": format!("{url}/generic"), "events": ["flag.killed"],
               "environment": "production", "reason": "on-call"}),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, _) = admin(
        &server,
        "POST",
        "/api/v1/webhooks",
        json!({"id": "pager", "url": format!("{url}/pd"), "format": "pagerduty",
               "routingKey": "R0UT1NG", "events": ["flag.killed", "flag.released"]}),
    );
    assert_eq!(status, 201);
    // The list never shows a secret.
    let (_, list) = get_json(&format!("{}/api/v1/webhooks", server.url), ADMIN);
    assert!(!list.to_string().contains(&secret));

    // Not asked for: nothing is sent.
    let (status, _) = admin(
        &server,
        "PUT",
        "/api/v1/flags/checkout/environments/production/enabled",
        json!({"enabled": false}),
    );
    assert_eq!(status, 200);
    let (status, _) = admin(
        &server,
        "POST",
        "/api/v1/flags/checkout/environments/production/kill",
        json!({"reason": "payments failing"}),
    );
    assert_eq!(status, 200);

    wait_for(
        &seen,
        "the generic delivery succeeds on its third attempt",
        |r| r.iter().any(|x| x.path == "/generic" && x.answered == 200),
    );
    let received = seen.lock().unwrap().clone();
    let generic: Vec<&Received> = received.iter().filter(|r| r.path == "/generic").collect();
    assert_eq!(generic.len(), 3, "two failures, then the success");
    let ids: Vec<&str> = generic
        .iter()
        .map(|r| r.header("Switchyard-Delivery").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery, retried: {ids:?}"
    );
    let last = generic.last().unwrap();
    assert_eq!(last.header("Switchyard-Event"), Some("flag.killed"));
    // The receiver's check: HMAC-SHA256 over "<t>.<body>" with the secret.
    let sig = last.header("Switchyard-Signature").unwrap();
    let (t, v1) = sig
        .split_once(',')
        .map(|(t, v)| (t.trim_start_matches("t="), v.trim_start_matches("v1=")))
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", last.body).as_bytes());
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        v1,
        "the signature verifies"
    );
    let age = crate::serve::now_secs() - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "the timestamp is now: {age}");
    let body: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(body["event"], "flag.killed");
    assert_eq!(body["subject"], json!({"kind": "flag", "key": "checkout"}));
    assert_eq!(body["environment"], "production");
    assert_eq!(body["reason"], "payments failing");

    let (status, log) = get_json(
        &format!("{}/api/v1/webhooks/ops/deliveries", server.url),
        ADMIN,
    );
    assert_eq!(status, 200, "{log}");
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "only the kill was asked for: {log}");
    assert_eq!(deliveries[0]["state"], "delivered");
    assert_eq!(deliveries[0]["attempts"], 3);
    assert_eq!(deliveries[0]["lastStatus"], 200);

    // PagerDuty: the kill triggers, the release resolves with the same dedup key.
    let (status, _) = admin(
        &server,
        "DELETE",
        "/api/v1/flags/checkout/environments/production/kill",
        json!({}),
    );
    assert_eq!(status, 200);
    wait_for(&seen, "PagerDuty gets the trigger and the resolve", |r| {
        r.iter().filter(|x| x.path == "/pd").count() >= 2
    });
    let received = seen.lock().unwrap().clone();
    let pd: Vec<Value> = received
        .iter()
        .filter(|r| r.path == "/pd")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["routing_key"], "R0UT1NG");
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    assert!(pd[0]["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("checkout"));
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    drop(server);
}
