//! The SDK against a stand-in server on 127.0.0.1 whose every answer the test controls: the
//! failure modes a real server does not produce on demand (a stream that answers 503, a
//! server without the stream, a refused key, a silent stream, a batch cut in the middle, an
//! unreadable event) and the event API. The real server's behaviour is tested with the real
//! binary in `crates/cli/tests/it/delivery.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{json, Value};
use switchyard_sdk::{Client, ConnectionState, Context, Freshness, Reason, Source};
use tokio::sync::mpsc;

/// How the stand-in answers `GET /sdk/v1/stream`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StreamMode {
    /// This status, no stream.
    Status(u16),
    /// A stream: a `put` first unless the request resumes, then what the test sends.
    Open,
}

#[derive(Default)]
struct Seen {
    /// `Last-Event-ID` of each stream request.
    stream_requests: Vec<Option<String>>,
    /// `If-None-Match` of each ruleset request.
    ruleset_requests: Vec<Option<String>>,
    /// Event batches received.
    events: Vec<Value>,
}

struct Stub {
    ruleset: Mutex<Value>,
    ruleset_status: Mutex<u16>,
    stream: Mutex<StreamMode>,
    events_status: Mutex<u16>,
    /// The open stream's sender (the latest connection's).
    sender: Mutex<Option<mpsc::Sender<String>>>,
    seen: Mutex<Seen>,
}

/// A ruleset body at `revision` with these flags.
fn ruleset(revision: i64, flags: Value) -> Value {
    json!({"format": "switchyard-ruleset", "version": 1, "revision": revision,
           "environment": "production", "flags": flags, "segments": {}})
}

fn etag(body: &Value) -> String {
    format!("\"production:{}\"", body["revision"])
}

struct Events(mpsc::Receiver<String>);

impl futures_core::Stream for Events {
    type Item = Result<String, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|m| m.map(Ok))
    }
}

async fn get_ruleset(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    let inm = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    stub.seen.lock().unwrap().ruleset_requests.push(inm.clone());
    let status = *stub.ruleset_status.lock().unwrap();
    if status != 200 {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    let body = stub.ruleset.lock().unwrap().clone();
    let tag = etag(&body);
    if inm.as_deref() == Some(tag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [("etag", tag)]).into_response();
    }
    ([("etag", tag)], axum::Json(body)).into_response()
}

async fn get_stream(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    stub.seen
        .lock()
        .unwrap()
        .stream_requests
        .push(resume.clone());
    match *stub.stream.lock().unwrap() {
        StreamMode::Status(status) => return StatusCode::from_u16(status).unwrap().into_response(),
        StreamMode::Open => {}
    }
    let (tx, rx) = mpsc::channel(64);
    if resume.is_none() {
        let body = stub.ruleset.lock().unwrap().clone();
        let _ = tx.try_send(format!(
            "event: put\nid: {}\ndata: {body}\n\n",
            body["revision"]
        ));
    }
    *stub.sender.lock().unwrap() = Some(tx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(Events(rx)))
        .unwrap()
}

async fn post_events(
    State(stub): State<Arc<Stub>>,
    axum::Json(batch): axum::Json<Value>,
) -> StatusCode {
    let status = *stub.events_status.lock().unwrap();
    if status == 202 {
        stub.seen.lock().unwrap().events.push(batch);
    }
    StatusCode::from_u16(status).unwrap()
}

impl Stub {
    async fn start(flags: Value, stream: StreamMode) -> (Arc<Stub>, String) {
        let stub = Arc::new(Stub {
            ruleset: Mutex::new(ruleset(1, flags)),
            ruleset_status: Mutex::new(200),
            stream: Mutex::new(stream),
            events_status: Mutex::new(202),
            sender: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new()
            .route("/sdk/v1/ruleset", get(get_ruleset))
            .route("/sdk/v1/stream", get(get_stream))
            .route("/sdk/v1/events", post(post_events))
            .with_state(Arc::clone(&stub));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (stub, url)
    }

    fn set_ruleset(&self, body: Value) {
        *self.ruleset.lock().unwrap() = body;
    }

    /// Sends raw event-stream text on the open stream.
    async fn send(&self, text: &str) {
        let sender = self
            .sender
            .lock()
            .unwrap()
            .clone()
            .expect("a stream is open");
        sender
            .send(text.to_owned())
            .await
            .expect("the client reads");
    }

    /// Ends the open stream (the server closes it).
    fn close_stream(&self) {
        self.sender.lock().unwrap().take();
    }

    fn stream_requests(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().stream_requests.clone()
    }
}

fn quick(url: &str) -> switchyard_sdk::Builder {
    Client::builder(url, "sy_0123456789abcdef_secret")
        .init_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .env_overrides(false)
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn anyone() -> Context {
    Context::with_targeting_key("u1")
}

fn flag(key: &str, enabled: bool) -> Value {
    json!({"key": key, "enabled": enabled})
}

fn patch(key: &str, revision: i64, definition: Value, id: Option<i64>) -> String {
    let data = json!({"kind": "flag", "key": key, "revision": revision, "definition": definition});
    match id {
        Some(id) => format!("event: patch\ndata: {data}\nid: {id}\n\n"),
        None => format!("event: patch\ndata: {data}\n\n"),
    }
}

const SECONDS: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_build_returns_even_with_the_server_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let client = quick(&format!("http://{addr}"))
        .init_timeout(Duration::from_millis(200))
        .cache_file(dir.path().join("c.json"))
        .build()
        .await
        .unwrap();
    assert_eq!(client.source(), Source::Nothing);
    let detail = client.bool_detail("f", &anyone(), true);
    assert!(detail.value, "the caller's default");
    assert_eq!(detail.freshness, Freshness::NotReady);
    assert!(detail.error.unwrap().1.contains("no ruleset is loaded yet"));
    tokio::time::timeout(SECONDS, client.shutdown())
        .await
        .expect("shutdown returns");
    assert_eq!(client.connection(), ConnectionState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_applied_whole_when_its_last_event_arrives_and_resume_uses_its_id() {
    let (stub, url) =
        Stub::start(json!([flag("a", true), flag("b", true)]), StreamMode::Open).await;
    let client = quick(&url).build().await.unwrap();
    eventually("the stream", SECONDS, || {
        client.connection() == ConnectionState::Streaming
    })
    .await;
    // The client resumed from the fetched revision: no put was sent.
    assert_eq!(stub.stream_requests(), vec![Some("1".to_owned())]);

    stub.send(&patch("a", 2, flag("a", false), None)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        client.bool_value("a", &anyone(), true),
        "half a batch is never served"
    );
    stub.send(&patch("b", 2, flag("b", false), Some(2))).await;
    eventually("the batch", SECONDS, || {
        !client.bool_value("a", &anyone(), true) && !client.bool_value("b", &anyone(), true)
    })
    .await;
    assert_eq!(client.revision(), 2);
    assert_eq!(client.stats().incremental_updates, 2);

    // A delete, and an id-only event (a revision with nothing for this environment).
    stub.send("event: delete\ndata: {\"kind\":\"flag\",\"key\":\"b\",\"revision\":3}\nid: 3\n\n: revision 4\nid: 4\n\n").await;
    eventually("the delete", SECONDS, || client.revision() == 4).await;
    let gone = client.bool_detail("b", &anyone(), true);
    assert_eq!(
        gone.error.map(|e| e.0),
        Some(switchyard_sdk::ErrorCode::FlagNotFound)
    );

    // The server closes the stream: the client reconnects from the last id.
    stub.close_stream();
    eventually("the reconnection", SECONDS, || {
        stub.stream_requests().len() == 2
    })
    .await;
    assert_eq!(stub.stream_requests()[1].as_deref(), Some("4"));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_makes_the_client_start_over_from_a_full_ruleset() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Open).await;
    let client = quick(&url).build().await.unwrap();
    eventually("the stream", SECONDS, || {
        client.connection() == ConnectionState::Streaming
    })
    .await;
    stub.set_ruleset(ruleset(5, json!([flag("a", false)])));
    stub.send("event: patch\ndata: {\"kind\":\"flag\",\"key\":\"a\"\nid: 5\n\n")
        .await;
    eventually("the fresh put", SECONDS, || {
        !client.bool_value("a", &anyone(), true)
    })
    .await;
    let requests = stub.stream_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1], None,
        "reconnected without Last-Event-ID, for a put"
    );
    assert_eq!(client.revision(), 5);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_taken_for_dead_after_the_heartbeat_timeout() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Open).await;
    let client = quick(&url)
        .heartbeat_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    eventually("the stream", SECONDS, || {
        client.connection() == ConnectionState::Streaming
    })
    .await;
    // Heartbeats keep it alive...
    for _ in 0..5 {
        stub.send(": heartbeat\n\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stub.stream_requests().len(), 1);
    // ...silence does not.
    eventually("a reconnection after silence", SECONDS, || {
        stub.stream_requests().len() >= 2
    })
    .await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stream_opens_the_circuit_breaker_and_polling_keeps_values_current() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Status(503)).await;
    let client = quick(&url)
        .circuit_breaker(3, Duration::from_millis(400))
        .poll_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let mut states = client.watch_connection();
    let mut seen = Vec::new();
    tokio::time::timeout(SECONDS, async {
        loop {
            let state = *states.borrow_and_update();
            seen.push(state);
            if matches!(state, ConnectionState::CircuitOpen { .. }) {
                break;
            }
            states.changed().await.unwrap();
        }
    })
    .await
    .expect("the breaker opens");
    assert!(
        seen.iter()
            .any(|s| matches!(s, ConnectionState::Reconnecting { attempt: 2, .. })),
        "{seen:?}"
    );
    assert_eq!(
        stub.stream_requests().len(),
        3,
        "three failures, then no more attempts"
    );
    // While it is open, polls keep the ruleset current (conditional requests).
    stub.set_ruleset(ruleset(2, json!([flag("a", false)])));
    eventually("a poll to bring the change", SECONDS, || {
        !client.bool_value("a", &anyone(), true)
    })
    .await;
    assert!(stub
        .seen
        .lock()
        .unwrap()
        .ruleset_requests
        .iter()
        .any(|inm| inm.as_deref() == Some("\"production:1\"")));
    // Half-open after the window: one attempt; it fails, the breaker opens again.
    eventually("the half-open attempt", SECONDS, || {
        stub.stream_requests().len() == 4
    })
    .await;
    // The stream comes back: the next attempt streams.
    *stub.stream.lock().unwrap() = StreamMode::Open;
    eventually("streaming again", SECONDS, || {
        client.connection() == ConnectionState::Streaming
    })
    .await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_stream_is_polled() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Status(404)).await;
    let client = quick(&url)
        .poll_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    eventually("polling", SECONDS, || {
        client.connection() == ConnectionState::Polling
    })
    .await;
    assert_eq!(
        client.bool_detail("a", &anyone(), false).freshness,
        Freshness::Live
    );
    stub.set_ruleset(ruleset(2, json!([flag("a", false)])));
    eventually("the change", SECONDS, || {
        !client.bool_value("a", &anyone(), true)
    })
    .await;
    assert_eq!(stub.stream_requests().len(), 1, "not retried while polling");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_reported_and_the_last_values_keep_serving() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Status(401)).await;
    let client = quick(&url).build().await.unwrap();
    eventually("unauthorized", SECONDS, || {
        client.connection() == ConnectionState::Unauthorized
    })
    .await;
    let detail = client.bool_detail("a", &anyone(), false);
    assert!(detail.value);
    assert_eq!(detail.reason, Reason::Stale);
    drop(stub);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_follow_the_documented_precedence() {
    let flags = json!([
        flag("new-trust-algorithm", true),
        flag("enable_self_healing", true),
        {"key": "theme", "type": "string", "variants": {"light": "light", "dark": "dark"}, "defaultVariant": "light"},
        {"key": "max-retries", "type": "number", "defaultValue": 3, "fallthrough": {"value": 3}},
        flag("untouched", true),
    ]);
    let (_stub, url) = Stub::start(flags, StreamMode::Status(404)).await;
    let vars: HashMap<String, String> = [
        ("ENABLE_NEW_TRUST_ALGORITHM", "false"),
        ("ENABLE_SELF_HEALING", "off"),
        ("THEME", "dark"),
        ("MAX_RETRIES", "not a number"),
        ("UNTOUCHED", "maybe"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let client = quick(&url).env_from(vars).build().await.unwrap();
    let u = anyone();
    assert!(!client.bool_value("new-trust-algorithm", &u, true));
    assert!(
        client
            .bool_detail("new-trust-algorithm", &u, true)
            .overridden
    );
    assert!(!client.bool_value("enable_self_healing", &u, true));
    assert_eq!(client.string_value("theme", &u, "x"), "dark");
    // Values that do not read as the flag's type are ignored.
    assert_eq!(client.i64_value("max-retries", &u, 0), 3);
    assert!(client.bool_value("untouched", &u, false));
    // A test override beats the environment; clearing it falls back.
    client.set_override("new-trust-algorithm", true);
    assert!(client.bool_value("new-trust-algorithm", &u, false));
    client.clear_override("new-trust-algorithm");
    assert!(!client.bool_value("new-trust-algorithm", &u, true));
    // An override of the wrong type is an error with the caller's default.
    client.set_override("theme", 5);
    let detail = client.string_detail("theme", &u, "fallback");
    assert_eq!(detail.value, "fallback");
    assert_eq!(
        detail.error.map(|e| e.0),
        Some(switchyard_sdk::ErrorCode::TypeMismatch)
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_batched_sent_in_the_background_and_flushed_at_shutdown() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Status(404)).await;
    let client = quick(&url)
        .record_exposures(true)
        .events(100, 2, Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    for unit in ["u1", "u2", "u1", "u1"] {
        client.bool_value("a", &Context::with_targeting_key(unit), false);
    }
    client.track("purchase", "u1", Some(19.99));
    client.track("signup", "u2", None);
    client.shutdown().await;
    let stats = client.stats();
    assert_eq!(
        (stats.events_sent, stats.events_dropped),
        (4, 0),
        "{stats:?}"
    );
    let batches = stub.seen.lock().unwrap().events.clone();
    assert_eq!(batches.len(), 2, "batches of two: {batches:?}");
    let events: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .collect();
    let exposures: Vec<_> = events.iter().filter(|e| e["type"] == "exposure").collect();
    assert_eq!(
        exposures.len(),
        2,
        "one exposure per unit and flag: {events:?}"
    );
    assert_eq!(exposures[0]["variant"], "on");
    let purchase = events.iter().find(|e| e["event"] == "purchase").unwrap();
    assert_eq!(purchase["value"], 19.99);
    assert_eq!(purchase["unit"], "u1");
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_kept_or_sent_are_dropped_and_counted() {
    let (stub, url) = Stub::start(json!([flag("a", true)]), StreamMode::Status(404)).await;
    // A queue of three: the fourth and fifth are dropped at once.
    let client = quick(&url)
        .events(3, 10, Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    *stub.events_status.lock().unwrap() = 404;
    for i in 0..5 {
        client.track("e", &format!("u{i}"), None);
    }
    assert_eq!(client.stats().events_dropped, 2);
    // The server has no event API: what was queued is dropped too, not retried forever.
    client.shutdown().await;
    let stats = client.stats();
    assert_eq!(
        (stats.events_sent, stats.events_dropped),
        (0, 5),
        "{stats:?}"
    );
}
