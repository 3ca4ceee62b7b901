//! Switchyard's HTTP server: the admin API, OFREP, auth, the audit log and metrics, as an axum
//! [`Router`] built by [`app`] so tests run it in process, and [`run`] for the binary.
//!
//! Data flow: every change goes through the control layer ([`switchyard_control::Control`]):
//! validated against the latest stored state inside the store's write lock, written with its
//! audit entry and change-feed row, and published as a new snapshot. OFREP and the admin
//! reads serve that snapshot (no database access); other replicas' changes arrive through the
//! change feed (PostgreSQL `LISTEN/NOTIFY`, with a periodic check as the safety net). The
//! route table says who may call what; one guard enforces it before any handler runs.
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
pub mod edge;
pub mod error;
pub mod evaluated;
pub mod events;
pub mod experiments;
#[doc(hidden)]
pub mod fuzzing;
pub mod listen;
pub mod metrics;
pub mod ofrep;
pub mod openapi;
pub mod preview;
pub mod recorder;
pub mod requests;
pub mod rollouts;
pub mod schedules;
pub mod state;
pub mod stream;
pub mod ui;
pub mod webhooks;

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use switchyard_control::{
    AdminToken, BootstrapPlan, Control, Settings as ControlSettings, Source, StartImport,
};
use switchyard_storage::{Store, StoreOptions};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Access, Role};
use crate::config::{FlagSource, Settings};
use crate::state::{AppState, EXAMPLE_FLAGS};

/// One documented route: method, path, summary, who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it (enforced by [`auth::guard`] before the handler).
    pub access: Access,
}

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $access:expr, $summary:literal; )*) => {
        /// Every route the server serves; the OpenAPI document is generated from this table,
        /// and the router (with each route's guard) is built from it, so they cannot drift.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc { method: routes!(@upper $method), path: $path, summary: $summary, access: $access }, )*
        ];
        fn table_router(state: &AppState) -> Router<AppState> {
            let router = Router::new();
            $(
                // The route's guard is not a layer of its own: the edge layer looks the
                // route's access up in `ROUTES` (`access_of`) and runs the guard itself, which
                // saves a boxed future and a clone of the route's services per request.
                let router = router.route(
                    $path,
                    $method($handler)
                        .layer(axum::extract::DefaultBodyLimit::max(body_limit(
                            $path,
                            &state.settings.limits,
                        ))),
                );
            )*
            router
        }
    };
    (@upper get) => { "GET" };
    (@upper post) => { "POST" };
    (@upper put) => { "PUT" };
    (@upper delete) => { "DELETE" };
}

const PUBLIC: Access = Access::Public;
const SDK: Access = Access::Role(Role::Sdk);
const VIEWER: Access = Access::Role(Role::Viewer);
const EDITOR: Access = Access::Role(Role::Editor);
const ADMIN: Access = Access::Role(Role::Admin);
const STREAM_URL: Access = Access::SignedStreamUrl;

/// An interval for a background loop (a missed tick waits for the next).
pub(crate) fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for `tick`; `false` once the server is stopping.
pub(crate) async fn tick_or_stop(
    tick: &mut tokio::time::Interval,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tick.tick() => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Whether the store is attached and answering (background writers wait otherwise).
pub(crate) fn store_is_up(state: &AppState) -> bool {
    state.control.store().is_some()
        && state.control.store_status() == switchyard_control::StoreStatus::Up
}

/// Unix time in milliseconds.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix time in seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

routes! {
    get "/healthz" => healthz, PUBLIC, "Liveness: the process is up.";
    get "/readyz" => readyz, PUBLIC, "Readiness: a snapshot is served; the body reports the store's state.";
    get "/metrics" => metrics_text, PUBLIC, "Prometheus metrics.";
    get "/api/v1/openapi.json" => openapi::serve, PUBLIC, "This OpenAPI document.";
    post "/ofrep/v1/evaluate/flags/{key}" => ofrep::evaluate_flag, SDK, "OFREP: evaluate one flag.";
    post "/ofrep/v1/evaluate/flags" => ofrep::evaluate_all, SDK, "OFREP: evaluate every flag (ETag, 304; advertises the event stream).";
    get "/ofrep/v1/events" => stream::ofrep_events, STREAM_URL, "OFREP event stream (server-sent events: refetchEvaluation); its signed URL comes from a bulk response.";
    get "/sdk/v1/ruleset" => stream::get_ruleset, SDK, "The SDK key's environment's ruleset, for local evaluation (ETag, 304).";
    post "/sdk/v1/events" => events::ingest, SDK, "Exposures and metric events, in batches (each event checked on its own; idempotent on event ids).";
    get "/sdk/v1/stream" => stream::sdk_stream, SDK, "The SDK change stream (server-sent events: put, patch, delete; Last-Event-ID resumes).";
    get "/api/v1/flags" => admin::list_flags, VIEWER, "List flags; filter by tag, environment, state.";
    post "/api/v1/flags" => admin::create_flag, EDITOR, "Create a flag.";
    get "/api/v1/flags/{key}" => admin::get_flag, VIEWER, "Get a flag (ETag is its version).";
    post "/api/v1/flags/{key}/check" => preview::check_flag, VIEWER, "Check a proposed definition (JSON as PUT takes it, or YAML text with line numbers in its errors) as saving would, and list what saving it would change; nothing is written.";
    post "/api/v1/flags/{key}/preview" => preview::preview_flag, VIEWER, "Count how a list of units (ids, at most 100 000) would be served in an environment, by variant: with the served definition or a proposed one.";
    put "/api/v1/flags/{key}" => admin::replace_flag, EDITOR, "Replace a flag's definition (If-Match required; * or ?force=true to override).";
    delete "/api/v1/flags/{key}" => admin::delete_flag, EDITOR, "Delete a flag (If-Match optional).";
    post "/api/v1/flags/{key}/archive" => admin::archive_flag, EDITOR, "Archive a flag (kept, not served).";
    post "/api/v1/flags/{key}/promote" => admin::promote_flag, EDITOR, "Copy a flag's configuration from one environment to another (`dryRun`: only the field-by-field difference).";
    post "/api/v1/bulk/flags" => admin::bulk_flags, EDITOR, "Apply one operation (archive, unarchive, enable, disable, tag, untag) to many flags in one audited transaction: all or none.";
    post "/api/v1/flags/{key}/unarchive" => admin::unarchive_flag, EDITOR, "Serve an archived flag again.";
    put "/api/v1/flags/{key}/enabled" => admin::set_enabled_top, EDITOR, "Enable or disable a flag everywhere it is not overridden.";
    post "/api/v1/flags/{key}/kill" => admin::kill_top, EDITOR, "Kill switch on, in every environment.";
    delete "/api/v1/flags/{key}/kill" => admin::release_top, EDITOR, "Release the global kill switch.";
    put "/api/v1/flags/{key}/rollout" => admin::rollout_top, EDITOR, "Set the top-level rollout percentage.";
    put "/api/v1/flags/{key}/targets" => admin::targets_top, EDITOR, "Replace the top-level individual targets.";
    put "/api/v1/flags/{key}/rules" => admin::rules_top, EDITOR, "Replace the top-level rules.";
    put "/api/v1/flags/{key}/tenants/{tenant}" => admin::set_tenant_top, EDITOR, "Turn a flag on or off (or pick a variant) for one tenant.";
    delete "/api/v1/flags/{key}/tenants/{tenant}" => admin::clear_tenant_top, EDITOR, "Remove a tenant's override.";
    put "/api/v1/flags/{key}/environments/{env}/enabled" => admin::set_enabled_env, EDITOR, "Enable or disable a flag in one environment.";
    post "/api/v1/flags/{key}/environments/{env}/kill" => admin::kill_env, EDITOR, "Kill switch on in one environment.";
    delete "/api/v1/flags/{key}/environments/{env}/kill" => admin::release_env, EDITOR, "Release an environment's kill switch.";
    put "/api/v1/flags/{key}/environments/{env}/rollout" => admin::rollout_env, EDITOR, "Set an environment's rollout percentage.";
    put "/api/v1/flags/{key}/environments/{env}/targets" => admin::targets_env, EDITOR, "Replace an environment's individual targets.";
    put "/api/v1/flags/{key}/environments/{env}/rules" => admin::rules_env, EDITOR, "Replace an environment's rules.";
    put "/api/v1/flags/{key}/environments/{env}/tenants/{tenant}" => admin::set_tenant_env, EDITOR, "Turn a flag on or off (or pick a variant) for one tenant in one environment.";
    delete "/api/v1/flags/{key}/environments/{env}/tenants/{tenant}" => admin::clear_tenant_env, EDITOR, "Remove a tenant's override in one environment.";
    post "/api/v1/flags/{key}/evaluate" => admin::explain_flag, VIEWER, "Evaluate a flag for one context in one environment and explain why: each step, rule and condition checked, buckets and thresholds.";
    get "/api/v1/segments" => admin::list_segments, VIEWER, "List segments.";
    get "/api/v1/segments/{name}" => admin::get_segment, VIEWER, "Get a segment.";
    put "/api/v1/segments/{name}" => admin::put_segment, EDITOR, "Create a segment, or replace one (If-Match).";
    delete "/api/v1/segments/{name}" => admin::delete_segment, EDITOR, "Delete an unused segment.";
    get "/api/v1/environments" => admin::list_environments, VIEWER, "List environments.";
    post "/api/v1/environments" => admin::create_environment, ADMIN, "Create an environment.";
    put "/api/v1/environments/{name}" => admin::set_environment_policy, ADMIN, "Set an environment's policy: whether a person's flag change there waits for someone else's approval.";
    get "/api/v1/requests" => requests::list, VIEWER, "List change requests (flag changes waiting for approval, and decided ones), newest first; filter by status, flag.";
    get "/api/v1/requests/{id}" => requests::get, VIEWER, "A change request with the definition before and after.";
    post "/api/v1/requests/{id}/approve" => requests::approve, EDITOR, "Approve someone else's change request: applied if the flag has not changed since (otherwise refused as stale).";
    post "/api/v1/requests/{id}/reject" => requests::reject, EDITOR, "Reject a change request (its author may withdraw their own).";
    get "/api/v1/tokens" => admin::list_tokens, ADMIN, "List tokens (never their secrets).";
    post "/api/v1/tokens" => admin::create_token, ADMIN, "Create a token; the secret is shown once.";
    delete "/api/v1/tokens/{id}" => admin::revoke_token, ADMIN, "Revoke a token.";
    get "/api/v1/exposures" => events::exposures, VIEWER, "Units per variant of a flag in an environment, by first exposure.";
    get "/api/v1/experiments" => experiments::list, VIEWER, "List experiments; filter by environment, flag, status.";
    post "/api/v1/experiments" => experiments::create, EDITOR, "Create an experiment (a draft).";
    get "/api/v1/experiments/{id}" => experiments::get, VIEWER, "Get an experiment (ETag is its version).";
    put "/api/v1/experiments/{id}" => experiments::update, EDITOR, "Replace a draft experiment's definition (If-Match optional).";
    post "/api/v1/experiments/{id}/start" => experiments::start, EDITOR, "Start a draft: its flag assigns units and exposures are recorded.";
    post "/api/v1/experiments/{id}/pause" => experiments::pause, EDITOR, "Pause: the units it would assign get the control; nothing is recorded.";
    post "/api/v1/experiments/{id}/resume" => experiments::resume, EDITOR, "Resume a paused experiment with the same assignment.";
    post "/api/v1/experiments/{id}/complete" => experiments::complete, EDITOR, "Complete, optionally shipping a variant (it becomes the environment's fallthrough).";
    post "/api/v1/experiments/{id}/cancel" => experiments::cancel, EDITOR, "Cancel an experiment.";
    get "/api/v1/experiments/{id}/results" => experiments::results, VIEWER, "Results: per variant and metric, lifts with intervals, p-values (fixed, sequential, adjusted), Bayesian summaries, SRM, daily series, warnings, a recommendation.";
    get "/api/v1/reports/evaluations" => admin::evaluations, VIEWER, "When each flag was last evaluated in each environment (to within a minute), and since when that is recorded.";
    get "/api/v1/reports/stale-flags" => admin::stale_flags, VIEWER, "Stale flags: serving one variant everywhere for N days (default 90), past their expected removal, archived but still required.";
    get "/api/v1/schedules" => schedules::list, VIEWER, "List scheduled changes; filter by state, flag.";
    post "/api/v1/schedules" => schedules::create, EDITOR, "Schedule a flag operation (enable, disable, kill, release, rollout, archive) in one environment.";
    delete "/api/v1/schedules/{id}" => schedules::cancel, EDITOR, "Cancel a pending scheduled change.";
    get "/api/v1/webhooks" => webhooks::list, ADMIN, "List webhook subscriptions (never their secrets).";
    post "/api/v1/webhooks" => webhooks::create, ADMIN, "Create a webhook subscription; its signing secret is shown once.";
    delete "/api/v1/webhooks/{id}" => webhooks::delete, ADMIN, "Delete a webhook subscription.";
    get "/api/v1/webhooks/{id}/deliveries" => webhooks::deliveries, ADMIN, "A subscription's deliveries, newest first: state, attempts, last answer.";
    get "/api/v1/rollouts" => rollouts::list, VIEWER, "List progressive rollouts, newest first; filter by status, flag.";
    post "/api/v1/rollouts" => rollouts::create, EDITOR, "Start a progressive rollout of a flag in one environment: stages, holds, health gates, what a red gate does.";
    get "/api/v1/rollouts/{id}" => rollouts::get, VIEWER, "A progressive rollout: status, stage, stage history, the latest gate readings.";
    post "/api/v1/rollouts/{id}/{action}" => rollouts::act, EDITOR, "Pause, resume, advance (approving a stage that waits for approval) or abort a progressive rollout.";
    get "/api/v1/guards" => rollouts::list_guards, VIEWER, "List guards (automatic kill switches) with their latest reading.";
    post "/api/v1/guards" => rollouts::create_guard, EDITOR, "Set up a guard: the flag's kill switch turns on when an error rate or a Prometheus query is above a limit.";
    delete "/api/v1/guards/{id}" => rollouts::delete_guard, EDITOR, "Remove a guard (the flag stays as it is).";
    delete "/api/v1/units/{unit}/events" => experiments::erase_unit, ADMIN, "Erase every exposure and metric event of one unit in an environment (privacy).";
    get "/api/v1/session" => ui::whoami, VIEWER, "Who is calling: the token's id, name and role, and whether through a web UI session.";
    get "/api/v1/changes" => ui::changes, VIEWER, "Server-sent events: a `change` event (revision, ruleset revision) whenever anything stored changes on any replica; what the web UI redraws on. Ends when the caller's token is revoked or, opened by a sign-in session, within seconds of it ending.";
    get "/api/v1/audit" => admin::audit_log, VIEWER, "Audit log; filter by flag, segment, actor, time.";
    post "/api/v1/import" => admin::import, EDITOR, "Import a flag file (JSON or YAML).";
    get "/api/v1/export" => admin::export, VIEWER, "Export every flag and segment as a flag file.";
    post "/api/v1/seed" => admin::seed, EDITOR, "Initialize flags: create the flags and segments that do not exist yet, from the configured import files when there are some, else the examples.";
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
    let request_timeout = state.settings.limits.request_timeout;
    let routes = table_router(&state)
        .merge(ui::router())
        .fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::edge,
        ))
        .with_state(state);
    // CORS and the body timeout wrap the router once, outside it. As router layers they were
    // applied to each route, one boxed service inside the other, and every request cloned
    // and boxed through each of them (`cargo bench -p switchyard-server --bench ofrep`
    // counts the allocations of a request). The edge layer stays inside: it needs the route
    // the router matched.
    let outer = tower::ServiceBuilder::new()
        .layer(cors)
        // A body trickled in slower than this is cut off (408). Handlers' own waits are
        // bounded where they wait (the store's timeout, the write lock's bounded wait).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            request_timeout,
        ))
        .service(routes);
    Router::new().fallback_service(outer)
}

/// Who may call the table's route `path` (as axum matched it) with `method`; `None` for
/// routes outside the table (the web UI's pages, which check their sessions themselves) and
/// methods the route does not have (answered 405). `HEAD` is `GET`'s, as axum routes it.
pub fn access_of(method: &axum::http::Method, path: &str) -> Option<Access> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static TABLE: OnceLock<HashMap<(&'static str, &'static str), Access>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| ((r.method, r.path), r.access))
            .collect()
    });
    let method = if method == axum::http::Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    table.get(&(method, path)).copied()
}

/// The largest request body a route accepts: OFREP small, imports large, the rest between.
fn body_limit(path: &str, limits: &listen::Limits) -> usize {
    if path == "/sdk/v1/events" {
        limits.events_body_bytes
    } else if path.starts_with("/ofrep/") || path.starts_with("/sdk/") {
        limits.ofrep_body_bytes
    } else if path == "/api/v1/import" {
        limits.import_body_bytes
    } else {
        limits.admin_body_bytes
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while a snapshot is served (evaluations work), even if the store is down: pulling
/// every replica out of the load balancer during a database outage would stop evaluations
/// too. The body says where the snapshot came from and what state the store is in.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Readiness {
    /// `ready` or `starting`.
    status: String,
    /// Where the served snapshot came from (the store, a snapshot file, a flag file).
    served: serde_json::Value,
    /// The store revision the snapshot is at.
    revision: i64,
    /// The revision of the last change to flags or segments.
    ruleset_revision: i64,
    /// How many flags are served.
    flags: usize,
    /// The store's state (reachable or not, and since when).
    store: serde_json::Value,
    /// The change listener's state.
    listener: serde_json::Value,
}

async fn readyz(State(state): State<AppState>) -> Response {
    let control = &state.control;
    let snapshot = control.snapshot_guard();
    let to_value = |v: Result<serde_json::Value, _>| v.unwrap_or(serde_json::Value::Null);
    let body = Readiness {
        status: if control.is_ready() {
            "ready"
        } else {
            "starting"
        }
        .to_owned(),
        served: to_value(serde_json::to_value(control.served())),
        revision: snapshot.revision,
        ruleset_revision: snapshot.ruleset_revision,
        flags: snapshot.ruleset.len(),
        store: to_value(serde_json::to_value(control.store_status())),
        listener: to_value(serde_json::to_value(control.listener_state())),
    };
    let status = if control.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    state.metrics.observe_control(&state.control);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened (and it is not an outage to wait out).
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

fn control_settings(settings: &Settings) -> ControlSettings {
    ControlSettings {
        sync_interval: Duration::from_millis(settings.sync_interval_ms),
        snapshot_file: settings.snapshot_file.clone(),
        unit_hash_key: settings.unit_hash_key.clone(),
        ..ControlSettings::default()
    }
}

fn source(settings: &Settings) -> Source {
    match &settings.flag_source {
        FlagSource::Store => Source::Store,
        FlagSource::File(path) => Source::File(path.clone()),
    }
}

async fn connect(settings: &Settings) -> Result<Store, switchyard_storage::StoreError> {
    Store::connect_with(
        &settings.storage_url,
        &StoreOptions {
            acquire_timeout: Duration::from_millis(settings.storage_timeout_ms),
            ..StoreOptions::default()
        },
    )
    .await
}

/// What the first start does, from the settings.
fn plan(settings: &Settings) -> Result<BootstrapPlan, StartError> {
    let mut imports = Vec::new();
    for path in &settings.import {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError::Bootstrap(format!("{}: {e}", path.display())))?;
        imports.push(StartImport {
            name: path.display().to_string(),
            text,
            format: switchyard_engine::Format::from_path(path)
                .unwrap_or(switchyard_engine::Format::Yaml),
        });
    }
    Ok(BootstrapPlan {
        environments: DEFAULT_ENVIRONMENTS
            .iter()
            .map(|e| (*e).to_owned())
            .collect(),
        admin_token: match &settings.admin_token {
            Some(token) => AdminToken::Given(token.clone()),
            None => AdminToken::GenerateIfNone,
        },
        seed: settings.seed_examples.then(|| StartImport {
            name: "examples/flags.yaml".to_owned(),
            text: EXAMPLE_FLAGS.to_owned(),
            format: switchyard_engine::Format::Yaml,
        }),
        imports,
        overwrite_imports: settings.import_overwrite,
    })
}

/// Attaches the store, carries out the first start, loads everything; prints a generated
/// admin token once.
async fn start_control(
    control: &Control,
    store: Store,
    settings: &Settings,
) -> Result<(), StartError> {
    let plan = plan(settings)?;
    control
        .attach(store)
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    let report = control.bootstrap(&plan).await.map_err(|e| match &e {
        switchyard_control::ControlError::Invalid { diagnostics } => {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            StartError::Bootstrap(format!("{e}:\n  {}", lines.join("\n  ")))
        }
        _ => StartError::Bootstrap(e.to_string()),
    })?;
    if let Some(seeded) = &report.seeded {
        tracing::info!(created = seeded.created.len(), "loaded the example flags");
    }
    for (file, imported) in &report.imports {
        tracing::info!(%file, created = imported.created.len(), updated = imported.updated.len(), drifted = imported.drifted.len(), "imported");
    }
    if let Some(token) = &report.generated_admin_token {
        println!("created the first admin token (shown once; keep it safe):\n  {token}");
        println!("  use it as: export SWITCHYARD_TOKEN={token}");
    }
    Ok(())
}

/// Opens the store, bootstraps, and builds the state (everything but listening); the store
/// must answer. Tests use it to run the app in process.
pub async fn prepare(settings: Settings) -> Result<AppState, StartError> {
    let store = connect(&settings)
        .await
        .map_err(|source| StartError::Store {
            url: config::redact(&settings.storage_url),
            source,
        })?;
    let control = Control::new(source(&settings), control_settings(&settings));
    start_control(&control, store, &settings).await?;
    Ok(AppState::new(control, settings, metrics::Metrics::new()?))
}

/// Runs the server until SIGINT or SIGTERM.
///
/// Start-up order: bind the address (nothing is printed before it succeeds); connect to the
/// store and bootstrap; print `listening on`. A PostgreSQL store that does not answer yet is
/// retried in the background with backoff while the server already serves the snapshot
/// file, if one is configured (writes answer 503 until the store does).
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let listen = settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    // Installed before anything is announced, so a signal right after start is handled.
    let shutdown = shutdown_signal()?;
    let control = Control::new(source(&settings), control_settings(&settings));
    let state = AppState::new(control.clone(), settings.clone(), metrics::Metrics::new()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<StartError>(1);

    match connect(&settings).await {
        Ok(store) => {
            start_control(&control, store, &settings).await?;
            spawn_background(&control, &stop_rx);
        }
        Err(err) if err.is_unavailable() => {
            tracing::warn!(error = %error::chain(&err), "the store does not answer; retrying in the background");
            match control.load_snapshot_file() {
                Ok(Some(revision)) => tracing::info!(revision, "serving the snapshot file until the store answers"),
                Ok(None) => tracing::warn!("no snapshot file to serve: flags answer FLAG_NOT_FOUND until the store answers"),
                Err(err) => tracing::warn!(error = %err, "the snapshot file is not used"),
            }
            let (control, settings, stop_rx) = (control.clone(), settings.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(200);
                let store = loop {
                    tokio::time::sleep(backoff).await;
                    match connect(&settings).await {
                        Ok(store) => break store,
                        Err(err) if err.is_unavailable() => {
                            tracing::warn!(error = %error::chain(&err), retry_in_ms = backoff.as_millis() as u64, "the store still does not answer");
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                        Err(source) => {
                            let _ = fatal_tx
                                .send(StartError::Store {
                                    url: config::redact(&settings.storage_url),
                                    source,
                                })
                                .await;
                            return;
                        }
                    }
                    if *stop_rx.borrow() {
                        return;
                    }
                };
                match start_control(&control, store, &settings).await {
                    Ok(()) => {
                        tracing::info!("connected to the store");
                        spawn_background(&control, &stop_rx);
                    }
                    Err(err) => {
                        let _ = fatal_tx.send(err).await;
                    }
                }
            });
        }
        Err(source) => {
            return Err(StartError::Store {
                url: config::redact(&settings.storage_url),
                source,
            })
        }
    }

    let follower = tokio::spawn(metrics::follow_snapshots(state.clone(), stop_rx.clone()));
    let monitor = tokio::spawn(experiments::monitor(state.clone(), stop_rx.clone()));
    let deliverer = tokio::spawn(webhooks::deliver(state.clone(), stop_rx.clone()));
    let scheduler = tokio::spawn(schedules::run(state.clone(), stop_rx.clone()));
    let gatekeeper = tokio::spawn(rollouts::monitor(state.clone(), stop_rx.clone()));
    let recorder = tokio::spawn(evaluated::flush(
        state.clone(),
        std::time::Duration::from_millis(state.settings.evaluation_flush_ms),
        stop_rx.clone(),
    ));
    let sweeper = tokio::spawn(ui::sweep(state.clone(), stop_rx.clone()));
    let hub = tokio::spawn(std::sync::Arc::clone(&state.streams).run(
        control.clone(),
        state.metrics.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(%addr, flags = control.snapshot().ruleset.len(), "serving");
    println!("listening on http://{addr}");
    let fatal = std::sync::Arc::new(tokio::sync::Mutex::new(None));
    let fatal_seen = std::sync::Arc::clone(&fatal);
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            Some(err) = fatal_rx.recv() => {
                *fatal_seen.lock().await = Some(err);
            }
        }
    };
    // One finished router shared by every connection (serving a `Router` through
    // `axum::serve` rebuilt its route tables per accepted socket: 80 KiB per connection).
    listen::serve(
        listener,
        app(state.clone()),
        &state.settings.limits,
        state.metrics.clone(),
        stop,
    )
    .await
    .map_err(StartError::Serve)?;
    stop_tx.send_replace(true);
    let _ = follower.await;
    let _ = monitor.await;
    let _ = deliverer.await;
    let _ = scheduler.await;
    let _ = gatekeeper.await;
    let _ = recorder.await;
    let _ = hub.await;
    let _ = sweeper.await;
    if let Err(err) = control.write_snapshot_file() {
        tracing::warn!(error = %err, "snapshot file not written at shutdown");
    }
    if let Some(store) = control.store() {
        store.close().await;
    }
    if let Some(err) = fatal.lock().await.take() {
        return Err(err);
    }
    tracing::info!("stopped");
    Ok(())
}

fn spawn_background(control: &Control, stop: &tokio::sync::watch::Receiver<bool>) {
    let (c, s) = (control.clone(), stop.clone());
    tokio::spawn(async move { c.run(s).await });
    let (c, s) = (control.clone(), stop.clone());
    tokio::spawn(async move { c.run_snapshot_writer(s).await });
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, StartError> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(StartError::Serve)?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(StartError::Serve)?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
