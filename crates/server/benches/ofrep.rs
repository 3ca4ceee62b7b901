//! The server's own cost of an OFREP request, without the network: the real app (router,
//! edge layer, guard, CORS, body timeout, handler) over a real SQLite store with the 20 flags
//! of `bench/http/flags.yaml`, called with `oneshot` on a current-thread runtime, the
//! response body collected. What `bench/http/run.sh` measures through sockets and wrk on a
//! shared machine, less the kernel and hyper's connection: steady enough to compare changes.
//!
//! Before timing, it prints how many allocations one request of each kind makes (an exact
//! count, steadier than any timing on a shared machine).
//!
//! `cargo bench -p switchyard-server --bench ofrep`
//!
//! `unsafe` here: a counting global allocator implements an unsafe trait; it forwards every
//! call unchanged to the system allocator.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use switchyard_server::config::{CliOverrides, Settings};
use tower::ServiceExt;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; counting touches a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ADMIN: &str = "bench-admin-token-0123456789";

/// The context wrk sends (`bench/http/single.lua`, `bench/http/bulk.lua`).
const BODY: &str = r#"{"context":{"targetingKey":"user-42","email":"jane@example.com","plan":"pro","tenant":{"id":"tenant-beta-1"},"app":{"version":"5.2.0"}}}"#;

/// The server's own defaults (as `switchyard serve` starts), on a fresh SQLite file with the
/// bench flags imported instead of the examples.
fn settings(dir: &Path) -> Settings {
    let defaults = Settings::load(&CliOverrides::default(), &HashMap::new())
        .expect("the defaults need nothing");
    Settings {
        storage_url: format!("sqlite://{}", dir.join("db.sqlite").display()),
        import: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/http/flags.yaml")],
        seed_examples: false,
        admin_token: Some(ADMIN.to_owned()),
        ..defaults
    }
}

fn request(uri: &str, token: &str, body: &'static str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body))
        .expect("request")
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

fn ofrep(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, key) = rt.block_on(async {
        let state = switchyard_server::prepare(settings(dir.path()))
            .await
            .expect("the server starts");
        let app = switchyard_server::app(state);
        let new_key = r#"{"name":"bench","role":"sdk","environment":"production"}"#;
        let (_, body) = call(&app, request("/api/v1/tokens", ADMIN, new_key)).await;
        let created: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let key = created["token"].as_str().expect("a token").to_owned();
        (app, key)
    });
    let single = "/ofrep/v1/evaluate/flags/checkout-redesign";
    let bulk = "/ofrep/v1/evaluate/flags";
    for uri in [single, bulk] {
        let (status, body) = rt.block_on(call(&app, request(uri, &key, BODY)));
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(body.len() > 50, "{uri}: {} bytes", body.len());
        // The request is built outside the count, as hyper builds it.
        let req = request(uri, &key, BODY);
        let before = ALLOCATIONS.with(Cell::get);
        rt.block_on(call(&app, req));
        let made = ALLOCATIONS.with(Cell::get) - before;
        println!("POST {uri}: {made} allocations (and reallocations) per request");
    }

    let mut group = c.benchmark_group("ofrep");
    group.bench_function("single_flag", |b| {
        b.iter(|| rt.block_on(call(&app, request(single, &key, BODY))));
    });
    group.bench_function("bulk_20_flags", |b| {
        b.iter(|| rt.block_on(call(&app, request(bulk, &key, BODY))));
    });
    group.finish();
}

criterion_group!(benches, ofrep);
criterion_main!(benches);
