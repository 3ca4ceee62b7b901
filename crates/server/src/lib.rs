//! Switchyard's HTTP server: the admin API, OFREP, auth, the audit log and metrics, as an axum
//! [`Router`] built by [`app`] so tests run it in process, and [`run`] for the binary.
//!
//! Data flow: the store is the source of truth; every write goes through
//! [`state::AppState::change_flag`] (validate the whole ruleset, write with its audit entry,
//! rebuild the compiled snapshot); OFREP evaluates from the snapshot, never the database. A
//! background loop picks up changes made by other replicas (store revision) or to the flag file
//! (GitOps mode).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_server::config::{CliOverrides, Settings};
//! let settings = Settings::load(&CliOverrides::default(), &std::env::vars().collect())?;
//! switchyard_server::run(settings).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod ofrep;
pub mod openapi;
pub mod state;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use switchyard_storage::{AuditInfo, Store};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{FlagSource, Settings};
use crate::state::{AppState, EXAMPLE_FLAGS};

/// One documented route: method, path, summary, role needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// `none`, `sdk`, `viewer`, `editor` or `admin`.
    pub role: &'static str,
}

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $role:literal, $summary:literal; )*) => {
        /// Every route the server serves; the OpenAPI document is generated from this table,
        /// and the router is built from it, so the two cannot drift.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc { method: routes!(@upper $method), path: $path, summary: $summary, role: $role }, )*
        ];
        fn table_router() -> Router<AppState> {
            let router = Router::new();
            $( let router = router.route($path, $method($handler)); )*
            router
        }
    };
    (@upper get) => { "GET" };
    (@upper post) => { "POST" };
    (@upper put) => { "PUT" };
    (@upper delete) => { "DELETE" };
}

routes! {
    get "/healthz" => healthz, "none", "Liveness: the process is up.";
    get "/readyz" => readyz, "none", "Readiness: the store answers and flags are loaded.";
    get "/metrics" => metrics_text, "none", "Prometheus metrics.";
    get "/api/v1/openapi.json" => openapi::serve, "none", "This OpenAPI document.";
    post "/ofrep/v1/evaluate/flags/{key}" => ofrep::evaluate_flag, "sdk", "OFREP: evaluate one flag.";
    post "/ofrep/v1/evaluate/flags" => ofrep::evaluate_all, "sdk", "OFREP: evaluate every flag (ETag, 304).";
    get "/api/v1/flags" => admin::list_flags, "viewer", "List flags; filter by tag, environment, state.";
    post "/api/v1/flags" => admin::create_flag, "editor", "Create a flag.";
    get "/api/v1/flags/{key}" => admin::get_flag, "viewer", "Get a flag (ETag is its version).";
    put "/api/v1/flags/{key}" => admin::replace_flag, "editor", "Replace a flag's definition (If-Match).";
    delete "/api/v1/flags/{key}" => admin::delete_flag, "editor", "Delete a flag (If-Match).";
    post "/api/v1/flags/{key}/archive" => admin::archive_flag, "editor", "Archive a flag (kept, not served).";
    post "/api/v1/flags/{key}/unarchive" => admin::unarchive_flag, "editor", "Serve an archived flag again.";
    put "/api/v1/flags/{key}/enabled" => admin::set_enabled_top, "editor", "Enable or disable a flag everywhere it is not overridden.";
    post "/api/v1/flags/{key}/kill" => admin::kill_top, "editor", "Kill switch on, in every environment.";
    delete "/api/v1/flags/{key}/kill" => admin::release_top, "editor", "Release the global kill switch.";
    put "/api/v1/flags/{key}/rollout" => admin::rollout_top, "editor", "Set the top-level rollout percentage.";
    put "/api/v1/flags/{key}/environments/{env}/enabled" => admin::set_enabled_env, "editor", "Enable or disable a flag in one environment.";
    post "/api/v1/flags/{key}/environments/{env}/kill" => admin::kill_env, "editor", "Kill switch on in one environment.";
    delete "/api/v1/flags/{key}/environments/{env}/kill" => admin::release_env, "editor", "Release an environment's kill switch.";
    put "/api/v1/flags/{key}/environments/{env}/rollout" => admin::rollout_env, "editor", "Set an environment's rollout percentage.";
    put "/api/v1/flags/{key}/environments/{env}/targets" => admin::set_targets, "editor", "Replace an environment's individual targets.";
    put "/api/v1/flags/{key}/environments/{env}/rules" => admin::set_rules, "editor", "Replace an environment's rules.";
    get "/api/v1/segments" => admin::list_segments, "viewer", "List segments.";
    get "/api/v1/segments/{name}" => admin::get_segment, "viewer", "Get a segment.";
    put "/api/v1/segments/{name}" => admin::put_segment, "editor", "Create or replace a segment (If-Match).";
    delete "/api/v1/segments/{name}" => admin::delete_segment, "editor", "Delete an unused segment.";
    get "/api/v1/environments" => admin::list_environments, "viewer", "List environments.";
    post "/api/v1/environments" => admin::create_environment, "admin", "Create an environment.";
    get "/api/v1/tokens" => admin::list_tokens, "admin", "List tokens (never their secrets).";
    post "/api/v1/tokens" => admin::create_token, "admin", "Create a token; the secret is shown once.";
    delete "/api/v1/tokens/{id}" => admin::revoke_token, "admin", "Revoke a token.";
    get "/api/v1/audit" => admin::audit_log, "viewer", "Audit log; filter by flag, segment, actor, time.";
    post "/api/v1/import" => admin::import, "editor", "Import a flag file (JSON or YAML).";
    get "/api/v1/export" => admin::export, "viewer", "Export every flag and segment as a flag file.";
    post "/api/v1/seed" => admin::seed, "editor", "Create the example flags that do not exist yet.";
}

/// The whole application, ready to serve or to test with `oneshot`.
pub fn app(state: AppState) -> Router {
    let cors = {
        let origin = match &state.settings.cors_origins {
            None => AllowOrigin::any(),
            Some(list) => {
                AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
            }
        };
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_NONE_MATCH,
                header::HeaderName::from_static("x-api-key"),
            ])
            .expose_headers([header::ETAG, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600))
    };
    table_router()
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(cors)
        .with_state(state)
}

/// Records request latency by route.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // MatchedPath is a shared string: cloning it does not allocate.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .http
        .with_label_values(&[method.as_str(), route, response.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.ready.load(std::sync::atomic::Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "flags not loaded yet\n").into_response();
    }
    match state.store.ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store at {url}: {source}")]
    Store {
        /// Redacted URL.
        url: String,
        /// Cause.
        #[source]
        source: switchyard_storage::StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bootstrapping (environments, admin token, seed, imports) failed.
    #[error("start-up: {0}")]
    Bootstrap(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[source] std::io::Error),
}

/// The environments that exist from the first start.
pub const DEFAULT_ENVIRONMENTS: &[&str] = &["development", "staging", "production"];

/// Opens the store, bootstraps, and builds the state (everything but listening).
pub async fn prepare(settings: Settings) -> Result<AppState, StartError> {
    let store = Store::connect(&settings.storage_url)
        .await
        .map_err(|source| StartError::Store {
            url: config::redact(&settings.storage_url),
            source,
        })?;
    let state = AppState::new(store, settings, metrics::Metrics::new()?);
    bootstrap(&state).await?;
    state
        .reload()
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    Ok(state)
}

async fn bootstrap(state: &AppState) -> Result<(), StartError> {
    let fail = |e: &dyn std::fmt::Display| StartError::Bootstrap(e.to_string());
    let system = |action: &str| AuditInfo {
        actor_name: None,
        actor: "system".to_owned(),
        action: action.to_owned(),
        environment: None,
        reason: Some("first start".to_owned()),
    };
    let existing = state
        .store
        .list_environments()
        .await
        .map_err(|e| fail(&e))?;
    for env in DEFAULT_ENVIRONMENTS {
        if !existing.iter().any(|e| e.name == *env) {
            state
                .store
                .create_environment(env, &system("environment.create"))
                .await
                .map_err(|e| fail(&e))?;
        }
    }

    // Admin token: from SWITCHYARD_ADMIN_TOKEN, or generated and printed once.
    if let Some(token) = &state.settings.admin_token {
        let (id, hash) = auth::identify(token);
        let existing = state.store.find_token(&id).await.map_err(|e| fail(&e))?;
        if existing.as_ref().is_some_and(|t| t.revoked_at_ms.is_some()) {
            return Err(StartError::Bootstrap(
                "SWITCHYARD_ADMIN_TOKEN names a token that was revoked; set it to a new value to create a fresh admin token".to_owned(),
            ));
        }
        if existing.is_none() {
            state
                .store
                .create_token(
                    &switchyard_storage::NewToken {
                        id,
                        name: "bootstrap-admin".to_owned(),
                        role: switchyard_storage::Role::Admin,
                        environment: None,
                        secret_hash: hash,
                    },
                    &system("token.create"),
                )
                .await
                .map_err(|e| fail(&e))?;
        }
        state.reload_tokens().await.map_err(|e| fail(&e))?;
    } else {
        let admins = state
            .store
            .count_active_tokens(Some(switchyard_storage::Role::Admin))
            .await
            .map_err(|e| fail(&e))?;
        state.reload_tokens().await.map_err(|e| fail(&e))?;
        if admins == 0 {
            let created =
                admin::issue_token(state, "bootstrap-admin", auth::Role::Admin, None, "system")
                    .await
                    .map_err(|e| fail(&e.message))?;
            println!(
                "created the first admin token (shown once; keep it safe):\n  {}",
                created.token
            );
            println!("  use it as: export SWITCHYARD_TOKEN={}", created.token);
        }
    }

    if matches!(state.settings.flag_source, FlagSource::Store) {
        let seeded = state
            .store
            .get_meta("examples_seeded")
            .await
            .map_err(|e| fail(&e))?;
        if state.settings.seed_examples && seeded.is_none() {
            let result = admin::import_text(
                state,
                EXAMPLE_FLAGS,
                switchyard_engine::Format::Yaml,
                "examples/flags.yaml",
                "system",
                Some("first start".to_owned()),
                true,
            )
            .await
            .map_err(|e| fail(&e.message))?;
            tracing::info!(created = result.created.len(), "loaded the example flags");
            state
                .store
                .set_meta("examples_seeded", "1")
                .await
                .map_err(|e| fail(&e))?;
        }
        for path in state.settings.import.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(&format!("{}: {e}", path.display())))?;
            let format = switchyard_engine::Format::from_path(&path)
                .unwrap_or(switchyard_engine::Format::Yaml);
            let name = path.display().to_string();
            let result = admin::import_text(
                state,
                &text,
                format,
                &name,
                "system",
                Some(format!("--import {name}")),
                false,
            )
            .await
            .map_err(|e| {
                let details = e.details.get("problems").cloned().unwrap_or_default();
                StartError::Bootstrap(format!("import {name}: {} {details}", e.message))
            })?;
            tracing::info!(file = %name, created = result.created.len(), updated = result.updated.len(), "imported");
        }
    }
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let listen = settings.listen;
    let state = prepare(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(state.clone().sync_loop(stop_rx));
    tracing::info!(%addr, backend = %state.store.backend(), flags = state.snapshot.load().ruleset.len(), "serving");
    println!("listening on http://{addr}");
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(StartError::Serve)?;
    let _ = stop_tx.send(true);
    let _ = sync.await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
