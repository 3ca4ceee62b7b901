//! Switchyard's Rust SDK: evaluate flags in-process, in nanoseconds, from a ruleset the SDK
//! keeps current by streaming from the server — and keep serving when the server or the
//! network fails.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_sdk::Error> {
//! use switchyard_sdk::{Client, Context};
//!
//! let flags = Client::builder("http://127.0.0.1:8080", "sy_…sdk-key…")
//!     .cache_file("/var/lib/my-app/flags.json")
//!     .build()
//!     .await?;
//! let user = Context::with_targeting_key("user-42").with("plan", "pro");
//! if flags.bool_value("new-checkout", &user, false) {
//!     // the new code path
//! }
//! flags.track("purchase", "user-42", Some(19.99));
//! flags.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! How it behaves:
//!
//! - **Start**: fetches the ruleset (`GET /sdk/v1/ruleset`) for at most the init timeout; if
//!   the server does not answer, starts from the cache file (answers say `CACHED`) or, without
//!   one, serves the callers' defaults until the server answers. It never fails to build for
//!   the network's sake.
//! - **Streaming**: `GET /sdk/v1/stream` (server-sent events): a full ruleset, then each
//!   changed flag or segment, applied incrementally. Reconnects resume with `Last-Event-ID`
//!   (only what was missed is sent). A stream silent for longer than the heartbeat timeout is
//!   taken for dead. Reconnection waits grow exponentially with full jitter; after repeated
//!   failures a circuit breaker opens and the SDK polls `GET /sdk/v1/ruleset` instead for a
//!   while. A server without the stream endpoint is polled.
//! - **Disconnected**: the last known ruleset keeps serving; answers say `STALE`.
//!   [`Client::connection`] and [`Client::watch_connection`] tell the state.
//! - **Cache file**: the last good ruleset, written atomically after changes. A corrupt,
//!   truncated, other-format or other-key file is reported ([`Client::cache_problem`]) and
//!   ignored, never trusted.
//! - **Overrides**, highest first: [`Client::set_override`] (for tests), then environment
//!   variables read at build — `ENABLE_<FLAG>=true|false` for boolean flags and
//!   `<FLAG>=<value>` for any flag (`<FLAG>` is the key upper-cased, other characters as `_`;
//!   a key starting with `enable_` is not prefixed twice) — then the server's ruleset, then the
//!   caller's default.
//! - **Events**: [`Client::track`] (and exposures, when enabled) queue in bounded memory and
//!   are sent in batches in the background (`POST /sdk/v1/events`); what does not fit or
//!   cannot be sent is counted ([`Client::stats`]); [`Client::shutdown`] flushes.
//! - **Never**: panics, or blocks an evaluation on the network. Evaluations read an
//!   atomically swapped compiled ruleset; the clock they use is read to the second and
//!   refreshed every 50 ms (time conditions are that precise).

mod cache;
mod detail;
mod error;
mod events;
mod overrides;
mod sse;
mod sync;

#[cfg(feature = "openfeature")]
pub mod openfeature;

/// The README's Rust example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use switchyard_engine::{Environment, Evaluation, FromFlagValue, Ruleset};
use tokio::sync::watch;

pub use detail::{Detail, Freshness, Reason};
pub use error::Error;
pub use switchyard_engine::{Context, ErrorCode};

/// Where the served ruleset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Nothing yet: every answer is the caller's default.
    Nothing,
    /// The cache file (the server has not answered since start).
    Cache,
    /// The server.
    Server,
}

/// The connection to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Starting.
    Connecting,
    /// The change stream is open: changes arrive as they are made.
    Streaming,
    /// The stream is unavailable; the ruleset is polled.
    Polling,
    /// The connection was lost; the next attempt is in `retry_in`.
    Reconnecting {
        /// Consecutive failed attempts.
        attempt: u32,
        /// Until the next attempt.
        retry_in: Duration,
    },
    /// Too many failures: the stream is not retried for `retry_in` (the ruleset is polled
    /// meanwhile).
    CircuitOpen {
        /// Until the stream is tried again.
        retry_in: Duration,
    },
    /// The server refuses the SDK key (401/403); retried slowly.
    Unauthorized,
    /// [`Client::shutdown`] was called.
    Closed,
}

/// Counters, for monitoring the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Full rulesets received (initial fetch, `put` events, polls that changed something).
    pub full_updates: u64,
    /// Incremental changes applied (`patch` and `delete` events).
    pub incremental_updates: u64,
    /// Stream connections opened.
    pub connections: u64,
    /// Events sent to the server.
    pub events_sent: u64,
    /// Events dropped (queue full, server refusing, endpoint missing).
    pub events_dropped: u64,
}

/// How the SDK behaves; set through [`Builder`].
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub server: String,
    pub key: String,
    pub init_timeout: Duration,
    pub request_timeout: Duration,
    pub cache_file: Option<PathBuf>,
    pub streaming: bool,
    pub poll_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
    pub env_overrides: bool,
    /// Overrides' variables when not the process environment ([`Builder::env_from`]).
    pub env_vars: Option<std::collections::HashMap<String, String>>,
    pub record_exposures: bool,
    pub event_queue: usize,
    pub event_batch: usize,
    pub flush_interval: Duration,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// How long [`Builder::build`] waits for the server's ruleset (default 5 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.config.init_timeout = timeout;
        self
    }

    /// Keeps the last good ruleset in this file, to start from when the server is down.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.cache_file = Some(path.into());
        self
    }

    /// Stream changes (default), or only poll the ruleset every [`Builder::poll_interval`].
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.config.streaming = streaming;
        self
    }

    /// How often to poll when not streaming (default 30 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How long a stream may stay silent (no event, no heartbeat) before it is taken for dead
    /// (default 45 s: three of the server's default heartbeats).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// The first reconnection delay and the longest (default 200 ms and 30 s; each attempt
    /// waits a random time up to twice the previous cap — "full jitter").
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_cap = cap.max(base);
        self
    }

    /// After this many consecutive failures the circuit breaker opens for `open_for` (the
    /// ruleset is polled meanwhile). Default 6 failures, 30 s.
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.config.breaker_failures = failures.max(1);
        self.config.breaker_open_for = open_for;
        self
    }

    /// Read `ENABLE_<FLAG>` / `<FLAG>` environment variables as overrides (default on).
    pub fn env_overrides(mut self, enabled: bool) -> Self {
        self.config.env_overrides = enabled;
        self
    }

    /// Read the overrides from these variables instead of the process environment (for
    /// tests, or an application that keeps its settings elsewhere).
    pub fn env_from(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.config.env_overrides = true;
        self.config.env_vars = Some(vars.into_iter().collect());
        self
    }

    /// Record an exposure event (flag, variant, unit) the first time each unit is evaluated
    /// for each flag (default off).
    pub fn record_exposures(mut self, enabled: bool) -> Self {
        self.config.record_exposures = enabled;
        self
    }

    /// How many events may wait to be sent (default 10 000; beyond, they are dropped and
    /// counted), how many go in one request (default 500), and how often the queue is sent
    /// (default 1 s).
    pub fn events(mut self, queue: usize, batch: usize, flush_every: Duration) -> Self {
        self.config.event_queue = queue.max(1);
        self.config.event_batch = batch.max(1);
        self.config.flush_interval = flush_every;
        self
    }

    /// Starts the SDK (see the crate docs for what happens when the server does not answer).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a server URL that is not `http(s)://…`, or an HTTP client that
    /// cannot be built. Network failures are not errors here.
    pub async fn build(self) -> Result<Client, Error> {
        Client::start(self.config).await
    }
}

/// What evaluation reads: swapped whole when it changes.
#[derive(Debug)]
pub(crate) struct Rules {
    pub ruleset: Ruleset,
    pub environment_name: String,
    pub environment: Environment,
    pub revision: i64,
    pub source: Source,
    /// Environment-variable overrides resolved for this ruleset's flags.
    pub env_overrides: std::collections::HashMap<String, Value>,
}

impl Rules {
    pub(crate) fn empty() -> Rules {
        Rules {
            ruleset: Ruleset::default(),
            environment_name: String::new(),
            environment: Environment::default(),
            revision: 0,
            source: Source::Nothing,
            env_overrides: Default::default(),
        }
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub http: reqwest::Client,
    pub rules: ArcSwap<Rules>,
    pub test_overrides: ArcSwap<std::collections::HashMap<String, Value>>,
    /// Whether `test_overrides` has any (read on every evaluation instead of loading it).
    pub has_test_overrides: AtomicBool,
    pub env: std::collections::HashMap<String, String>,
    pub state: watch::Sender<ConnectionState>,
    /// The revision served, for [`Client::watch_revision`].
    pub revision: watch::Sender<i64>,
    pub clock: AtomicI64,
    pub cache_problem: Mutex<Option<String>>,
    /// Signalled when a new ruleset from the server should be written to the cache file.
    pub cache_dirty: tokio::sync::Notify,
    pub events: events::Queue,
    pub stats: StatCounters,
    pub shutdown: watch::Sender<bool>,
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
pub(crate) struct StatCounters {
    pub full_updates: AtomicU64,
    pub incremental_updates: AtomicU64,
    pub connections: AtomicU64,
    pub events_sent: AtomicU64,
    pub events_dropped: AtomicU64,
}

/// The SDK: cheap to clone, safe to share; evaluations never touch the network.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = self.inner.rules.load();
        f.debug_struct("Client")
            .field("server", &self.inner.config.server)
            .field("revision", &rules.revision)
            .field("source", &rules.source)
            .field("connection", &self.connection())
            .finish_non_exhaustive()
    }
}

/// Whole seconds: `before` / `after` compare at that precision, and converting seconds (not
/// nanoseconds, an `i128` division) keeps the per-evaluation clock read cheap.
fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Client {
    /// A builder for the server at `server` (`http://host:port`) and an SDK key (role `sdk`;
    /// it selects the environment).
    pub fn builder(server: impl Into<String>, sdk_key: impl Into<String>) -> Builder {
        Builder {
            config: Config {
                server: server.into().trim_end_matches('/').to_owned(),
                key: sdk_key.into(),
                init_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
                cache_file: None,
                streaming: true,
                poll_interval: Duration::from_secs(30),
                heartbeat_timeout: Duration::from_secs(45),
                backoff_base: Duration::from_millis(200),
                backoff_cap: Duration::from_secs(30),
                breaker_failures: 6,
                breaker_open_for: Duration::from_secs(30),
                env_overrides: true,
                env_vars: None,
                record_exposures: false,
                event_queue: 10_000,
                event_batch: 500,
                flush_interval: Duration::from_secs(1),
            },
        }
    }

    async fn start(config: Config) -> Result<Client, Error> {
        if !(config.server.starts_with("http://") || config.server.starts_with("https://")) {
            return Err(Error::Config(format!(
                "the server URL must start with http:// or https://, not `{}`",
                config.server
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let env = match (&config.env_vars, config.env_overrides) {
            (_, false) => Default::default(),
            (Some(vars), true) => vars.clone(),
            (None, true) => std::env::vars().collect(),
        };
        let (shutdown, _) = watch::channel(false);
        let client = Client {
            inner: Arc::new(Inner {
                events: events::Queue::new(config.event_queue),
                config,
                http,
                rules: ArcSwap::from_pointee(Rules::empty()),
                test_overrides: ArcSwap::from_pointee(Default::default()),
                has_test_overrides: AtomicBool::new(false),
                env,
                state: watch::Sender::new(ConnectionState::Connecting),
                revision: watch::Sender::new(0),
                clock: AtomicI64::new(unix_seconds()),
                cache_problem: Mutex::new(None),
                cache_dirty: tokio::sync::Notify::new(),
                stats: StatCounters::default(),
                shutdown,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        client.load_cache();
        let initial =
            tokio::time::timeout(client.inner.config.init_timeout, client.fetch(None)).await;
        match initial {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "switchyard: the initial fetch failed; serving the cache or the defaults until the server answers"),
            Err(_) => tracing::warn!("switchyard: the server did not answer within the init timeout; serving the cache or the defaults until it does"),
        }
        client.spawn_background();
        Ok(client)
    }

    fn spawn_background(&self) {
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.run_sync().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.run_clock().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.run_events().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.run_cache_writer().await }));
    }

    async fn run_clock(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = tick.tick() => self.inner.clock.store(unix_seconds(), Ordering::Relaxed),
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    fn now(&self) -> time::OffsetDateTime {
        let seconds = self.inner.clock.load(Ordering::Relaxed);
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// Evaluates `key` for `ctx` and hands the engine's evaluation to `f` (the zero-copy
    /// form every other evaluation method is built on). Overrides do not apply here.
    pub fn evaluate<R>(&self, key: &str, ctx: &Context, f: impl FnOnce(&Evaluation<'_>) -> R) -> R {
        let rules = self.inner.rules.load();
        let evaluator = rules.ruleset.evaluator_in(rules.environment, self.now());
        let evaluation = evaluator.evaluate(key, ctx);
        self.exposure(&evaluator, key, ctx, &evaluation);
        f(&evaluation)
    }

    fn override_for(&self, key: &str, rules: &Rules) -> Option<Value> {
        if self.inner.has_test_overrides.load(Ordering::Relaxed) {
            let tests = self.inner.test_overrides.load();
            if let Some(v) = tests.get(key) {
                return Some(v.clone());
            }
        }
        rules.env_overrides.get(key).cloned()
    }

    /// The value of `key` for `ctx` as `T` (`bool`, `i64`, `f64`, `&str` is not offered:
    /// see [`Client::string_value`]); `default` when the flag is missing, of another type,
    /// or nothing is loaded yet.
    pub fn value<T>(&self, key: &str, ctx: &Context, default: T) -> T
    where
        T: for<'r> FromFlagValue<'r> + Copy + FromOverride,
    {
        let rules = self.inner.rules.load();
        if !rules.env_overrides.is_empty() || self.inner.has_test_overrides.load(Ordering::Relaxed)
        {
            if let Some(v) = self
                .override_for(key, &rules)
                .and_then(|v| T::from_override(&v))
            {
                return v;
            }
        }
        let evaluator = rules.ruleset.evaluator_in(rules.environment, self.now());
        let typed = evaluator.evaluate_as(key, ctx, default);
        if self.inner.config.record_exposures {
            if let Some(variant) = typed.variant {
                let experiment = typed.detail.as_ref().and_then(|d| d.experiment_id());
                self.record_exposure(&evaluator, key, ctx, variant, experiment);
            }
        }
        typed.value
    }

    /// A boolean flag's value.
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        self.value(key, ctx, default)
    }

    /// An integer flag's value.
    pub fn i64_value(&self, key: &str, ctx: &Context, default: i64) -> i64 {
        self.value(key, ctx, default)
    }

    /// A number flag's value.
    pub fn f64_value(&self, key: &str, ctx: &Context, default: f64) -> f64 {
        self.value(key, ctx, default)
    }

    /// A string flag's value.
    pub fn string_value(&self, key: &str, ctx: &Context, default: &str) -> String {
        self.string_detail(key, ctx, default).value
    }

    /// A JSON flag's value.
    pub fn json_value(&self, key: &str, ctx: &Context, default: Value) -> Value {
        self.json_detail(key, ctx, default).value
    }

    /// A boolean flag with everything about how it was decided.
    pub fn bool_detail(&self, key: &str, ctx: &Context, default: bool) -> Detail<bool> {
        self.detail(key, ctx, default, |v| v.as_bool())
    }

    /// An integer flag with everything about how it was decided.
    pub fn i64_detail(&self, key: &str, ctx: &Context, default: i64) -> Detail<i64> {
        self.detail(key, ctx, default, Value::as_i64)
    }

    /// A number flag with everything about how it was decided.
    pub fn f64_detail(&self, key: &str, ctx: &Context, default: f64) -> Detail<f64> {
        self.detail(key, ctx, default, Value::as_f64)
    }

    /// A string flag with everything about how it was decided.
    pub fn string_detail(&self, key: &str, ctx: &Context, default: &str) -> Detail<String> {
        self.detail(key, ctx, default.to_owned(), |v| {
            v.as_str().map(str::to_owned)
        })
    }

    /// A JSON (object or array) flag with everything about how it was decided.
    pub fn json_detail(&self, key: &str, ctx: &Context, default: Value) -> Detail<Value> {
        self.detail(key, ctx, default, |v| {
            (v.is_object() || v.is_array()).then(|| v.clone())
        })
    }

    fn detail<T>(
        &self,
        key: &str,
        ctx: &Context,
        default: T,
        read: impl Fn(&Value) -> Option<T>,
    ) -> Detail<T> {
        let rules = self.inner.rules.load();
        let freshness = self.freshness(&rules);
        if let Some(value) = self.override_for(key, &rules) {
            return match read(&value) {
                Some(v) => Detail::overridden(v, freshness),
                None => Detail::error(
                    default,
                    ErrorCode::TypeMismatch,
                    format!("the override of `{key}` ({value}) is not of the requested type"),
                    freshness,
                ),
            };
        }
        if rules.source == Source::Nothing {
            return Detail::not_ready(default, key);
        }
        let evaluator = rules.ruleset.evaluator_in(rules.environment, self.now());
        let evaluation = evaluator.evaluate(key, ctx);
        self.exposure(&evaluator, key, ctx, &evaluation);
        let metadata = rules.ruleset.client_metadata(key).cloned();
        Detail::from_evaluation(&evaluation, default, read, freshness, metadata)
    }

    fn freshness(&self, rules: &Rules) -> Freshness {
        match rules.source {
            Source::Nothing => Freshness::NotReady,
            Source::Cache => Freshness::Cached,
            Source::Server => match *self.inner.state.borrow() {
                // `Connecting` with a ruleset from the server: the initial fetch just
                // succeeded.
                ConnectionState::Connecting
                | ConnectionState::Streaming
                | ConnectionState::Polling => Freshness::Live,
                _ => Freshness::Stale,
            },
        }
    }

    /// Sets a test override: `key` answers `value` whatever the server says (the highest
    /// precedence; see the crate docs).
    pub fn set_override(&self, key: impl Into<String>, value: impl Into<Value>) {
        let (key, value) = (key.into(), value.into());
        self.update_overrides(|map| {
            map.insert(key.clone(), value.clone());
        });
    }

    /// Removes a test override.
    pub fn clear_override(&self, key: &str) {
        self.update_overrides(|map| {
            map.remove(key);
        });
    }

    /// Changes the test overrides atomically (concurrent changes are all kept).
    fn update_overrides(&self, change: impl Fn(&mut std::collections::HashMap<String, Value>)) {
        let previous = self.inner.test_overrides.rcu(|current| {
            let mut map = (**current).clone();
            change(&mut map);
            map
        });
        drop(previous);
        let any = !self.inner.test_overrides.load().is_empty();
        self.inner.has_test_overrides.store(any, Ordering::Relaxed);
    }

    /// The connection state now.
    pub fn connection(&self) -> ConnectionState {
        *self.inner.state.borrow()
    }

    /// A receiver that sees every change of the connection state.
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Where the served ruleset came from.
    pub fn source(&self) -> Source {
        self.inner.rules.load().source
    }

    /// The ruleset revision served (0 before any).
    pub fn revision(&self) -> i64 {
        self.inner.rules.load().revision
    }

    /// A receiver that sees the served revision change (a new ruleset, or a change applied).
    pub fn watch_revision(&self) -> watch::Receiver<i64> {
        self.inner.revision.subscribe()
    }

    /// Waits until a ruleset from the server is served, for at most `timeout`; whether it is.
    pub async fn wait_for_server(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut states = self.inner.state.subscribe();
        loop {
            if self.source() == Source::Server {
                return true;
            }
            if tokio::time::timeout_at(deadline, states.changed())
                .await
                .is_err()
            {
                return self.source() == Source::Server;
            }
        }
    }

    /// Why the cache file was not used, when it was not (corrupt, truncated, another format
    /// or SDK key).
    pub fn cache_problem(&self) -> Option<String> {
        self.inner
            .cache_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The SDK's counters.
    pub fn stats(&self) -> Stats {
        let s = &self.inner.stats;
        Stats {
            full_updates: s.full_updates.load(Ordering::Relaxed),
            incremental_updates: s.incremental_updates.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            events_sent: s.events_sent.load(Ordering::Relaxed),
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the background work, sends the events still queued (for at most the request
    /// timeout) and closes the stream.
    pub async fn shutdown(&self) {
        // `send_replace`, not `send`: the tasks may not have run (and subscribed) yet, and
        // `send` leaves the value unchanged when nobody is subscribed.
        self.inner.shutdown.send_replace(true);
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            let _ = task.await;
        }
        self.inner.state.send_replace(ConnectionState::Closed);
    }
}

/// Values an override can stand for (from the JSON of the override).
pub trait FromOverride: Sized {
    /// The override as this type, when it is one.
    fn from_override(value: &Value) -> Option<Self>;
}

impl FromOverride for bool {
    fn from_override(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FromOverride for i64 {
    fn from_override(value: &Value) -> Option<Self> {
        value.as_i64()
    }
}

impl FromOverride for f64 {
    fn from_override(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}
