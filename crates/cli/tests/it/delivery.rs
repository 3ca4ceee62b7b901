//! Delivery to applications, with real `switchyard serve` processes: the Rust SDK follows
//! changes over the change stream, keeps serving (and says so) while the server is down,
//! resumes with `Last-Event-ID` when it is back, starts from its cache file, and 1 000 SDK
//! streams on one replica all get a change; two replicas on the real PostgreSQL; the
//! OpenFeature provider on top.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_sdk::{Client, ConnectionState, Context, Freshness, Reason, Source};

use crate::serve::{agent, db, send_json, start, PgSchema, Server};

const ADMIN: &str = "delivery-admin-token-0123";

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_SEED_EXAMPLES", "false"),
        // Heartbeats every second, so the SDKs' heartbeat timeout can be short.
        ("SWITCHYARD_SSE_HEARTBEAT_SECS", "1"),
    ]
}

/// A loopback address nothing listens on now (for a server that must come back on the same
/// address after a restart).
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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

fn sdk_key(server: &Server, name: &str) -> String {
    let reply = admin(
        server,
        "POST",
        "/api/v1/tokens",
        json!({"name": name, "role": "sdk", "environment": "production"}),
    );
    reply["token"].as_str().expect("token").to_owned()
}

fn kill(server: &Server, flag: &str) {
    admin(
        server,
        "POST",
        &format!("/api/v1/flags/{flag}/environments/production/kill"),
        json!({}),
    );
}

fn release(server: &Server, flag: &str) {
    admin(
        server,
        "DELETE",
        &format!("/api/v1/flags/{flag}/environments/production/kill"),
        json!({}),
    );
}

/// An SDK tuned for tests: quick reconnects, a heartbeat timeout of three server heartbeats.
fn sdk(url: &str, key: &str) -> switchyard_sdk::Builder {
    Client::builder(url, key)
        .init_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_secs(3))
        .env_overrides(false)
}

/// Waits until `check` holds (at most `within`), failing with `what` otherwise.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn block_on<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn user() -> Context {
    Context::with_targeting_key("user-1")
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = agent()
        .get(format!("{}/metrics", server.url))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_sdk_follows_changes_serves_stale_through_an_outage_and_resumes_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = db(dir.path());
    let addr = free_addr();
    let url = format!("http://{addr}");
    let a = start(&["--db", &store, "--listen", &addr], &env());
    let key = sdk_key(&a, "app");
    admin(
        &a,
        "POST",
        "/api/v1/flags",
        json!({"key": "checkout", "metadata": {"team": "payments"}}),
    );

    let rt = runtime();
    let cache = dir.path().join("sdk-cache.json");
    let client = block_on(&rt, sdk(&url, &key).cache_file(&cache).build()).expect("sdk");
    assert_eq!(client.source(), Source::Server);
    let detail = client.bool_detail("checkout", &user(), false);
    assert!(detail.value, "{detail:?}");
    assert_eq!(detail.reason, Reason::Static);
    assert_eq!(detail.freshness, Freshness::Live);
    assert_eq!(detail.flag_metadata.unwrap()["team"], "payments");
    block_on(
        &rt,
        eventually("the stream to open", Duration::from_secs(10), || {
            client.connection() == ConnectionState::Streaming
        }),
    );

    // A change reaches the SDK by a patch on the stream (the stream resumed from the initial
    // fetch's revision: no second full ruleset).
    kill(&a, "checkout");
    block_on(
        &rt,
        eventually("the kill to reach the SDK", Duration::from_secs(10), || {
            !client.bool_value("checkout", &user(), true)
        }),
    );
    assert_eq!(
        client.bool_detail("checkout", &user(), true).reason,
        Reason::Disabled
    );
    let stats = client.stats();
    assert_eq!(stats.full_updates, 1, "{stats:?}");
    assert!(stats.incremental_updates >= 1, "{stats:?}");

    // The server goes away: the SDK keeps serving the last ruleset and says it is stale.
    drop(a);
    block_on(
        &rt,
        eventually(
            "the SDK to notice the outage",
            Duration::from_secs(10),
            || client.connection() != ConnectionState::Streaming,
        ),
    );
    let stale = client.bool_detail("checkout", &user(), true);
    assert!(!stale.value, "the last known value is served: {stale:?}");
    assert_eq!(stale.reason, Reason::Stale);
    assert_eq!(stale.evaluated, Reason::Disabled);
    assert_eq!(stale.freshness, Freshness::Stale);
    let missed_revision = client.revision();

    // Meanwhile, changes are made through another server process on the same store.
    let other = start(&["--db", &store], &env());
    release(&other, "checkout");
    admin(
        &other,
        "POST",
        "/api/v1/flags",
        json!({"key": "made-while-away"}),
    );
    drop(other);

    // The server comes back on its address: the SDK reconnects with Last-Event-ID and gets
    // exactly what it missed, as patches.
    let a = start(&["--db", &store, "--listen", &addr], &env());
    block_on(
        &rt,
        eventually(
            "the SDK to catch up after the restart",
            Duration::from_secs(15),
            || {
                client.bool_value("checkout", &user(), false)
                    && client.bool_value("made-while-away", &user(), false)
            },
        ),
    );
    assert!(client.revision() > missed_revision);
    let stats = client.stats();
    assert_eq!(
        stats.full_updates, 1,
        "resumed, not re-sent in full: {stats:?}"
    );
    assert!(stats.connections >= 2, "{stats:?}");
    assert_eq!(
        client.bool_detail("checkout", &user(), false).freshness,
        Freshness::Live
    );

    // The cache file follows what the SDK serves.
    let revision = client.revision();
    block_on(
        &rt,
        eventually(
            "the cache file to be written",
            Duration::from_secs(10),
            || std::fs::read_to_string(&cache).is_ok_and(|t| t.contains("made-while-away")),
        ),
    );
    block_on(&rt, client.shutdown());
    assert_eq!(client.connection(), ConnectionState::Closed);
    drop(a);

    // Server down, cache present: an application still starts, from the cache.
    let cached = block_on(
        &rt,
        sdk(&url, &key)
            .cache_file(&cache)
            .init_timeout(Duration::from_millis(300))
            .build(),
    )
    .expect("sdk");
    assert_eq!(cached.source(), Source::Cache);
    assert_eq!(cached.cache_problem(), None);
    assert_eq!(cached.revision(), revision);
    let detail = cached.bool_detail("made-while-away", &user(), false);
    assert!(detail.value);
    assert_eq!(detail.reason, Reason::Cached);
    block_on(&rt, cached.shutdown());

    // A damaged cache file is reported and ignored; the server's ruleset is fetched.
    let text = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, &text[..text.len() / 3]).unwrap();
    let a = start(&["--db", &store, "--listen", &addr], &env());
    let fresh = block_on(&rt, sdk(&url, &key).cache_file(&cache).build()).expect("sdk");
    let problem = fresh
        .cache_problem()
        .expect("the damaged cache is reported");
    assert!(
        problem.contains("corrupt or truncated") && problem.contains("sdk-cache.json"),
        "{problem}"
    );
    assert_eq!(fresh.source(), Source::Server);
    assert!(fresh.bool_value("made-while-away", &user(), false));
    block_on(&rt, fresh.shutdown());
    drop(a);
}

#[test]
fn a_thousand_sdk_streams_on_one_replica_all_receive_a_change() {
    const CLIENTS: usize = 1000;
    // Each stream is a connection on both sides of this test.
    let _ = rlimit::increase_nofile_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--db", &db(dir.path())], &env());
    let key = sdk_key(&server, "fleet");
    admin(
        &server,
        "POST",
        "/api/v1/flags",
        json!({"key": "fleet-flag"}),
    );
    let rt = runtime();
    let clients: Vec<Client> = block_on(&rt, async {
        let mut builds = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let builder = sdk(&server.url, &key).init_timeout(Duration::from_secs(30));
            builds.spawn(async move { builder.build().await.expect("sdk") });
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        while let Some(client) = builds.join_next().await {
            clients.push(client.expect("build task"));
        }
        clients
    });
    block_on(
        &rt,
        eventually("every stream to open", Duration::from_secs(60), || {
            clients
                .iter()
                .all(|c| c.connection() == ConnectionState::Streaming)
        }),
    );
    assert!(clients
        .iter()
        .all(|c| c.bool_value("fleet-flag", &user(), false)));
    // The server counts them.
    let connected = metric(&server, "switchyard_sse_clients{kind=\"sdk\"}");
    assert_eq!(connected, CLIENTS as f64);

    kill(&server, "fleet-flag");
    block_on(
        &rt,
        eventually(
            "the kill to reach all 1000 SDKs",
            Duration::from_secs(30),
            || {
                clients
                    .iter()
                    .all(|c| !c.bool_value("fleet-flag", &user(), true))
            },
        ),
    );
    assert_eq!(
        metric(
            &server,
            "switchyard_sse_dropped_clients_total{kind=\"sdk\"}"
        ),
        0.0
    );
    block_on(&rt, async {
        for client in &clients {
            client.shutdown().await;
        }
    });
}

#[test]
fn two_replicas_on_postgres_deliver_every_change_to_every_sdk_and_a_restarted_replica_catches_up() {
    let schema = PgSchema::new("delivery");
    let addr_a = free_addr();
    let url_a = format!("http://{addr_a}");
    let a = start(&["--db", &schema.url, "--listen", &addr_a], &env());
    let b = start(&["--db", &schema.url], &env());
    let key = sdk_key(&b, "app");
    admin(&a, "POST", "/api/v1/flags", json!({"key": "shared"}));

    let rt = runtime();
    let on_a = block_on(&rt, sdk(&url_a, &key).build()).expect("sdk on a");
    let on_b = block_on(&rt, sdk(&b.url, &key).build()).expect("sdk on b");
    block_on(
        &rt,
        eventually("both streams to open", Duration::from_secs(10), || {
            on_a.connection() == ConnectionState::Streaming
                && on_b.connection() == ConnectionState::Streaming
        }),
    );
    for (writer, on) in [(&b, false), (&a, true)] {
        if on {
            release(writer, "shared");
        } else {
            kill(writer, "shared");
        }
        block_on(
            &rt,
            eventually(
                "a change on one replica to reach both SDKs",
                Duration::from_secs(10),
                || {
                    on_a.bool_value("shared", &user(), !on) == on
                        && on_b.bool_value("shared", &user(), !on) == on
                },
            ),
        );
    }

    // Replica A restarts; a change made on B meanwhile reaches A's SDK when it reconnects
    // (from the store's change feed: the restarted replica remembers no recent changes).
    drop(a);
    block_on(
        &rt,
        eventually("the SDK on A to notice", Duration::from_secs(10), || {
            on_a.connection() != ConnectionState::Streaming
        }),
    );
    kill(&b, "shared");
    admin(
        &b,
        "PUT",
        "/api/v1/segments/beta",
        json!({"included": ["user-1"]}),
    );
    admin(
        &b,
        "POST",
        "/api/v1/flags",
        json!({"key": "beta-only", "rules": [{"id": "beta", "conditions": [{"operator": "in_segment", "value": "beta"}], "variant": "on"}], "fallthrough": {"variant": "off"}}),
    );
    let full_before = on_a.stats().full_updates;
    let a = start(&["--db", &schema.url, "--listen", &addr_a], &env());
    block_on(
        &rt,
        eventually(
            "the SDK on the restarted replica to catch up",
            Duration::from_secs(15),
            || {
                !on_a.bool_value("shared", &user(), true)
                    && on_a.bool_value("beta-only", &user(), false)
            },
        ),
    );
    assert_eq!(
        on_a.stats().full_updates,
        full_before,
        "caught up by patches: {:?}",
        on_a.stats()
    );
    assert!(!on_a.bool_value(
        "beta-only",
        &Context::with_targeting_key("someone-else"),
        true
    ));
    assert!(on_b.bool_value("beta-only", &user(), false));
    block_on(&rt, async {
        on_a.shutdown().await;
        on_b.shutdown().await;
    });
    drop(a);
}

#[test]
fn the_openfeature_provider_maps_values_reasons_errors_and_events() {
    use open_feature::provider::{FeatureProvider, ProviderStatus};
    use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason};
    use switchyard_sdk::openfeature::{ProviderEvent, SwitchyardProvider};

    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--db", &db(dir.path())], &env());
    let key = sdk_key(&server, "of");
    admin(
        &server,
        "POST",
        "/api/v1/flags",
        json!({"key": "layout", "type": "string", "variants": {"a": "wide", "b": "narrow"}, "defaultVariant": "a",
               "rules": [{"id": "pro", "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "variant": "b"}],
               "metadata": {"owner": "web", "tier": 2}}),
    );
    let rt = runtime();
    let client = block_on(&rt, sdk(&server.url, &key).build()).expect("sdk");
    let provider = SwitchyardProvider::new(client.clone());
    block_on(&rt, async {
        let mut events = provider.events();
        assert_eq!(events.recv().await, Some(ProviderEvent::Ready));
        assert_eq!(provider.status(), ProviderStatus::Ready);

        let pro = EvaluationContext::default()
            .with_targeting_key("u1")
            .with_custom_field("plan", "pro");
        let r = provider
            .resolve_string_value("layout", &pro)
            .await
            .expect("resolves");
        assert_eq!(r.value, "narrow");
        assert_eq!(r.variant.as_deref(), Some("b"));
        assert_eq!(r.reason, Some(EvaluationReason::TargetingMatch));
        let md = r.flag_metadata.expect("metadata");
        assert_eq!(md.values.len(), 2, "{md:?}");

        let free = EvaluationContext::default().with_targeting_key("u2");
        let r = provider
            .resolve_string_value("layout", &free)
            .await
            .expect("resolves");
        assert_eq!(
            (r.value.as_str(), r.reason),
            ("wide", Some(EvaluationReason::Default))
        );

        let missing = provider
            .resolve_bool_value("nope", &free)
            .await
            .unwrap_err();
        assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
        let mismatch = provider
            .resolve_bool_value("layout", &free)
            .await
            .unwrap_err();
        assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);

        // A change is announced, then evaluations see it.
        eventually("the stream", Duration::from_secs(10), || {
            client.connection() == ConnectionState::Streaming
        })
        .await;
        kill(&server, "layout");
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ProviderEvent::ConfigurationChanged { .. })) => break,
                Ok(Some(_)) => continue,
                other => panic!("no configuration-changed event: {other:?}"),
            }
        }
        let r = provider
            .resolve_string_value("layout", &pro)
            .await
            .expect("resolves");
        assert_eq!(r.reason, Some(EvaluationReason::Disabled));
    });
    // The server goes away: stale.
    drop(server);
    block_on(&rt, async {
        eventually("stale", Duration::from_secs(10), || {
            provider.status() == ProviderStatus::STALE
        })
        .await;
        let r = provider
            .resolve_string_value(
                "layout",
                &EvaluationContext::default().with_targeting_key("u1"),
            )
            .await
            .expect("still resolves");
        assert_eq!(r.reason, Some(EvaluationReason::Other("STALE".into())));
        client.shutdown().await;
    });
}

/// The SDK's exposures and `track` calls reach the real server's event store: each unit
/// counted once per flag by its first exposure, every metric event stored once, nothing
/// dropped.
#[test]
fn the_sdk_sends_exposures_and_metric_events_that_the_server_stores() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--db", &db(dir.path())], &env());
    let key = sdk_key(&server, "events");
    admin(
        &server,
        "POST",
        "/api/v1/flags",
        json!({"key": "checkout", "fallthrough": {"split": {"on": 50, "off": 50}}}),
    );
    let rt = runtime();
    let client = block_on(&rt, sdk(&server.url, &key).record_exposures(true).build()).expect("sdk");
    let mut on = 0;
    for i in 0..200 {
        let unit = Context::with_targeting_key(format!("unit-{i}"));
        // Evaluated twice: exposed once.
        let first = client.bool_value("checkout", &unit, false);
        assert_eq!(client.bool_value("checkout", &unit, false), first);
        on += i64::from(first);
        if i % 4 == 0 {
            client.track("purchase", &format!("unit-{i}"), Some(10.0));
        }
    }
    block_on(&rt, client.shutdown());
    let stats = client.stats();
    assert_eq!(stats.events_dropped, 0, "{stats:?}");
    assert_eq!(stats.events_sent, 250, "{stats:?}");
    let counts = admin(
        &server,
        "GET",
        "/api/v1/exposures?environment=production&flag=checkout",
        Value::Null,
    );
    assert_eq!(
        counts["variants"],
        json!([{"variant": "off", "units": 200 - on}, {"variant": "on", "units": on}]),
        "{counts}"
    );
    assert_eq!(
        metric(
            &server,
            "switchyard_events_total{kind=\"metric\",outcome=\"stored\"}"
        ),
        50.0
    );
}

/// `switchyard exposures` reads what SDKs reported, as a table and as JSON.
#[test]
fn the_exposures_command_shows_units_per_variant() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&["--db", &db(dir.path())], &env());
    let key = sdk_key(&server, "exposures-cli");
    let (status, _) = send_json(
        "POST",
        &format!("{}/sdk/v1/events", server.url),
        &key,
        &json!({"events": [
            {"type": "exposure", "id": "1", "flag": "layout", "variant": "wide", "unit": "u1", "timestampMs": 1_764_576_000_000_i64},
            {"type": "exposure", "id": "2", "flag": "layout", "variant": "wide", "unit": "u2", "timestampMs": 1_764_576_000_000_i64},
            {"type": "exposure", "id": "3", "flag": "layout", "variant": "narrow", "unit": "u3", "timestampMs": 1_764_576_000_000_i64}
        ]})
        .to_string(),
    );
    assert_eq!(status, 200);
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("SWITCHYARD_SERVER", &server.url)
            .env("SWITCHYARD_TOKEN", ADMIN)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .output()
            .expect("the CLI runs")
    };
    let out = cli(&["exposures", "layout", "--env", "production"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("narrow") && text.contains("33.33 %"),
        "{text}"
    );
    assert!(text.contains("wide") && text.contains("66.67 %"), "{text}");
    let out = cli(&["--json", "exposures", "layout", "--env", "production"]);
    let value: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["variants"][1], json!({"variant": "wide", "units": 2}));
    let out = cli(&["exposures", "layout", "--env", "prod"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("production"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
