//! Delivery to applications: the SDK ruleset (`GET /sdk/v1/ruleset`), the SDK change stream
//! (`GET /sdk/v1/stream`) and the OFREP event stream (`GET /ofrep/v1/events`), all
//! server-sent events fed by one broadcaster per replica.
//!
//! The broadcaster follows the control layer's published snapshots (which follow the change
//! feed, so a change made on any replica reaches every replica's streams). For each new
//! ruleset revision it works out what changed (from the control layer's memory of recent
//! changes, else the store's change feed, else everything), serializes the events once per
//! environment and hands them to every subscriber's bounded buffer. A subscriber whose buffer
//! is full — a client that does not read — is disconnected and counted; it never makes the
//! server hold more than its buffer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use switchyard_api_types::ofrep::{EventStream, EventStreamEndpoint, StreamEventData};
use switchyard_api_types::sdk::{Delete, Kind, Patch, Ruleset, RULESET_FORMAT, RULESET_VERSION};
use switchyard_control::{Changed, Control, Snapshot};
use switchyard_engine::FlagDef;
use tokio::sync::{mpsc, watch};

use crate::auth::Caller;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Which kind of stream a subscriber reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `GET /sdk/v1/stream`: the ruleset and its patches.
    Sdk,
    /// `GET /ofrep/v1/events`: `refetchEvaluation` notifications.
    Ofrep,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::Sdk => "sdk",
            StreamKind::Ofrep => "ofrep",
        }
    }
}

/// Stream settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Interval of the heartbeat comment (dead connections are noticed on both sides).
    pub heartbeat: Duration,
    /// Events a subscriber may have waiting before it is disconnected as too slow.
    pub client_buffer: usize,
    /// The OFREP clients' inactivity delay (`inactivityDelaySec`).
    pub ofrep_inactivity_secs: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            heartbeat: Duration::from_secs(15),
            client_buffer: 256,
            ofrep_inactivity_secs: 120,
        }
    }
}

struct Subscriber {
    kind: StreamKind,
    environment: String,
    sender: mpsc::Sender<Event>,
    /// The ruleset revision this subscriber has.
    last: i64,
}

/// The replica's streams: subscribe here; [`Streams::run`] broadcasts.
pub struct Streams {
    settings: StreamSettings,
    subscribers: Mutex<Vec<Subscriber>>,
    /// The serialized `put` of each environment at one revision (many clients connect at
    /// once after a restart; the ruleset is built and serialized once).
    puts: Mutex<HashMap<String, (i64, Arc<String>)>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Decrements the connected-clients gauge when a stream ends (the client went away, or was
/// disconnected).
struct Connected {
    metrics: Metrics,
    kind: StreamKind,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.metrics
            .sse_clients
            .with_label_values(&[self.kind.label()])
            .dec();
    }
}

impl Streams {
    /// No subscribers yet.
    pub fn new(settings: StreamSettings) -> Streams {
        Streams {
            settings,
            subscribers: Mutex::new(Vec::new()),
            puts: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The serialized ruleset of `environment` at the snapshot's revision.
    pub fn ruleset_json(&self, snapshot: &Snapshot, environment: &str) -> Arc<String> {
        let mut puts = self
            .puts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((revision, json)) = puts.get(environment) {
            if *revision == snapshot.ruleset_revision {
                return Arc::clone(json);
            }
        }
        let json =
            Arc::new(serde_json::to_string(&ruleset(snapshot, environment)).unwrap_or_default());
        puts.insert(
            environment.to_owned(),
            (snapshot.ruleset_revision, Arc::clone(&json)),
        );
        json
    }

    /// Adds a subscriber that has everything up to ruleset revision `last` (its initial
    /// events are already in its buffer); the broadcaster catches it up from there.
    fn subscribe(
        &self,
        kind: StreamKind,
        environment: &str,
        sender: mpsc::Sender<Event>,
        last: i64,
    ) {
        self.subscribers().push(Subscriber {
            kind,
            environment: environment.to_owned(),
            sender,
            last,
        });
        self.wake.notify_one();
    }

    /// Broadcasts every new snapshot to the subscribers until `stop` changes.
    pub async fn run(
        self: Arc<Self>,
        control: Control,
        metrics: Metrics,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut published = control.subscribe();
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            let snapshot = control.snapshot();
            self.deliver(&control, &metrics, &snapshot).await;
        }
    }

    /// Brings every subscriber up to `snapshot`.
    async fn deliver(&self, control: &Control, metrics: &Metrics, snapshot: &Snapshot) {
        let target = snapshot.ruleset_revision;
        // Group the subscribers that need something by (kind, environment, revision).
        let mut groups: Vec<(StreamKind, String, i64)> = Vec::new();
        {
            let mut subs = self.subscribers();
            subs.retain(|s| !s.sender.is_closed());
            for s in subs.iter().filter(|s| s.last < target) {
                let group = (s.kind, s.environment.clone(), s.last);
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
        }
        if groups.is_empty() {
            return;
        }
        let mut batches: HashMap<(StreamKind, String, i64), Vec<Event>> = HashMap::new();
        let mut changes: HashMap<i64, Option<Vec<Changed>>> = HashMap::new();
        for (kind, environment, last) in groups {
            let events = match kind {
                StreamKind::Ofrep => vec![refetch_event(snapshot)],
                StreamKind::Sdk => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = changes.entry(last) {
                        slot.insert(changed_keys(control, last, target).await);
                    }
                    match changes.get(&last).and_then(Option::as_ref) {
                        Some(keys) if keys.len() <= 500 => {
                            patch_events(snapshot, &environment, keys)
                        }
                        _ => vec![self.put_event(snapshot, &environment)],
                    }
                }
            };
            batches.insert((kind, environment, last), events);
        }
        let mut dropped = Vec::new();
        {
            let mut subs = self.subscribers();
            subs.retain_mut(|s| {
                if s.last >= target {
                    return true;
                }
                let Some(events) = batches.get(&(s.kind, s.environment.clone(), s.last)) else {
                    return true;
                };
                for event in events {
                    match s.sender.try_send(event.clone()) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.push(s.kind);
                            return false;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
                s.last = target;
                true
            });
        }
        for kind in dropped {
            tracing::warn!(
                kind = kind.label(),
                "disconnected a stream client that stopped reading"
            );
            metrics.sse_dropped.with_label_values(&[kind.label()]).inc();
        }
    }

    fn put_event(&self, snapshot: &Snapshot, environment: &str) -> Event {
        let json = self.ruleset_json(snapshot, environment);
        Event::default()
            .event("put")
            .id(snapshot.ruleset_revision.to_string())
            .data(json.as_str())
    }

    /// Opens a stream for `caller`: the initial events, then whatever the broadcaster sends.
    fn open(
        self: &Arc<Self>,
        state: &AppState,
        kind: StreamKind,
        environment: String,
        initial: Vec<Event>,
        last: i64,
    ) -> Response {
        let (sender, receiver) = mpsc::channel(self.settings.client_buffer.max(initial.len() + 1));
        for event in initial {
            // The buffer is fresh and larger than the initial events.
            let _ = sender.try_send(event);
        }
        self.subscribe(kind, &environment, sender, last);
        state
            .metrics
            .sse_clients
            .with_label_values(&[kind.label()])
            .inc();
        let guard = Connected {
            metrics: state.metrics.clone(),
            kind,
        };
        let stream = futures_stream(receiver, guard);
        let mut response = Sse::new(stream)
            .keep_alive(
                KeepAlive::new()
                    .interval(self.settings.heartbeat)
                    .text("heartbeat"),
            )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Proxies (nginx) must not buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// The receiver as the stream an SSE response reads; `guard` lives as long as it.
pub(crate) fn futures_stream<G: Send + Unpin + 'static>(
    receiver: mpsc::Receiver<Event>,
    guard: G,
) -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send {
    struct Events<G> {
        receiver: mpsc::Receiver<Event>,
        _guard: G,
    }
    impl<G: Unpin> futures_core::Stream for Events<G> {
        type Item = Result<Event, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.receiver.poll_recv(cx).map(|e| e.map(Ok))
        }
    }
    Events {
        receiver,
        _guard: guard,
    }
}

/// The keys changed after `since` up to `target`: from the control layer's memory, else the
/// store's change feed; `None` when neither reaches back (the subscriber gets everything).
async fn changed_keys(control: &Control, since: i64, target: i64) -> Option<Vec<Changed>> {
    if let Some((_, keys)) = control.changed_since(since) {
        return Some(keys);
    }
    let store = control.store()?;
    let changes = store.changes_since(since).await.ok()??;
    let mut keys: Vec<Changed> = Vec::new();
    for entry in changes.entries.iter().filter(|e| e.revision <= target) {
        let changed = match entry.kind {
            switchyard_storage::FeedKind::Flag => Changed::Flag(entry.key.as_str().into()),
            switchyard_storage::FeedKind::Segment => Changed::Segment(entry.key.as_str().into()),
            _ => continue,
        };
        if !keys.contains(&changed) {
            keys.push(changed);
        }
    }
    Some(keys)
}

/// A flag as an environment's SDK sees it: only that environment's overrides.
fn project(def: &FlagDef, environment: &str) -> FlagDef {
    let mut def = def.clone();
    def.environments.retain(|name, _| name == environment);
    def
}

/// The ruleset of `environment` (archived flags left out).
pub fn ruleset(snapshot: &Snapshot, environment: &str) -> Ruleset {
    Ruleset {
        format: RULESET_FORMAT.to_owned(),
        version: RULESET_VERSION,
        revision: snapshot.ruleset_revision,
        environment: environment.to_owned(),
        flags: snapshot
            .flags()
            .filter(|f| !f.meta.archived)
            .map(|f| project(f.definition, environment))
            .collect(),
        segments: snapshot
            .segments()
            .map(|s| (s.name.to_owned(), s.definition.clone()))
            .collect(),
    }
}

/// `patch`/`delete` events bringing an SDK from the keys' old state to `snapshot`; only the
/// last one carries the event id (the revision), so a client cut off mid-batch resumes before
/// it.
fn patch_events(snapshot: &Snapshot, environment: &str, keys: &[Changed]) -> Vec<Event> {
    let revision = snapshot.ruleset_revision;
    let mut events: Vec<Event> = keys
        .iter()
        .map(|changed| {
            let (kind, key, definition) = match changed {
                Changed::Flag(key) => (
                    Kind::Flag,
                    key,
                    snapshot
                        .flag(key)
                        .filter(|f| !f.meta.archived)
                        .and_then(|f| {
                            serde_json::to_value(project(f.definition, environment)).ok()
                        }),
                ),
                Changed::Segment(name) => (
                    Kind::Segment,
                    name,
                    snapshot
                        .segment(name)
                        .and_then(|s| serde_json::to_value(s.definition).ok()),
                ),
            };
            match definition {
                Some(definition) => Event::default().event("patch").data(
                    serde_json::to_string(&Patch {
                        kind,
                        key: key.to_string(),
                        revision,
                        definition,
                    })
                    .unwrap_or_default(),
                ),
                None => Event::default().event("delete").data(
                    serde_json::to_string(&Delete {
                        kind,
                        key: key.to_string(),
                        revision,
                    })
                    .unwrap_or_default(),
                ),
            }
        })
        .collect();
    match events.pop() {
        Some(last) => events.push(last.id(revision.to_string())),
        // Nothing of this environment's changed (a token change): still move the id on.
        None => events.push(
            Event::default()
                .comment(format!("revision {revision}"))
                .id(revision.to_string()),
        ),
    }
    events
}

/// The OFREP notification: the configuration changed; fetch the evaluations again.
fn refetch_event(snapshot: &Snapshot) -> Event {
    let revision = snapshot.ruleset_revision;
    let data = StreamEventData {
        kind: "refetchEvaluation".to_owned(),
        etag: Some(revision.to_string()),
        last_modified: Some(crate::now_secs()),
    };
    Event::default()
        .event("message")
        .id(revision.to_string())
        .data(serde_json::to_string(&data).unwrap_or_default())
}

/// The snapshot to answer a client that already has `known`: when that is newer than this
/// replica's (the client was on a replica ahead of this one), this replica catches up from
/// the store first, so it never answers with an older ruleset than the client has seen.
async fn snapshot_reaching(control: &Control, known: Option<i64>) -> Arc<Snapshot> {
    let snapshot = control.snapshot();
    match known {
        Some(known) if known > snapshot.ruleset_revision => {
            if let Err(err) = control.catch_up().await {
                tracing::debug!(error = %err, "could not catch up for a client ahead of this replica");
            }
            control.snapshot()
        }
        _ => snapshot,
    }
}

fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /sdk/v1/ruleset`: the SDK key's environment's ruleset (strong ETag, 304).
pub async fn get_ruleset(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Response {
    let environment = caller.environment.clone().unwrap_or_default();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let known = if_none_match
        .split(',')
        .filter_map(|t| {
            t.trim()
                .trim_matches('"')
                .strip_prefix(environment.as_str())
        })
        .filter_map(|rest| rest.strip_prefix(':')?.parse::<i64>().ok())
        .max();
    let snapshot = snapshot_reaching(&state.control, known).await;
    let etag = format!("\"{environment}:{}\"", snapshot.ruleset_revision);
    let matches = if_none_match
        .split(',')
        .any(|t| t.trim() == etag || t.trim() == "*");
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let json = state.streams.ruleset_json(&snapshot, &environment);
        (
            [(header::CONTENT_TYPE, "application/json")],
            json.as_str().to_owned(),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `GET /sdk/v1/stream`: a `put` of the ruleset on connect — or, with `Last-Event-ID`, only
/// what changed since (a `put` when that is no longer known) — then `patch`/`delete` events.
pub async fn sdk_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Response {
    let environment = caller.environment.clone().unwrap_or_default();
    let resume = last_event_id(&headers);
    let snapshot = snapshot_reaching(&state.control, resume).await;
    let current = snapshot.ruleset_revision;
    let streams = &state.streams;
    let initial = match resume {
        Some(last) if last == current => Vec::new(),
        // Still ahead after catching up: the store was replaced (restored, or another
        // database); what this server has is the truth.
        Some(last) if last > current => vec![streams.put_event(&snapshot, &environment)],
        Some(last) => match changed_keys(&state.control, last, current).await {
            Some(keys) if keys.len() <= 500 => patch_events(&snapshot, &environment, &keys),
            _ => vec![streams.put_event(&snapshot, &environment)],
        },
        None => vec![streams.put_event(&snapshot, &environment)],
    };
    streams.open(&state, StreamKind::Sdk, environment, initial, current)
}

/// `GET /ofrep/v1/events?token=…`: the OFREP event stream advertised by bulk responses.
/// A client that resumes behind the current configuration (or connects for the first time)
/// is told to fetch again at once; then every change sends `refetchEvaluation`.
pub async fn ofrep_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Response {
    let environment = caller.environment.clone().unwrap_or_default();
    let resume = last_event_id(&headers);
    let snapshot = snapshot_reaching(&state.control, resume).await;
    let current = snapshot.ruleset_revision;
    let initial = match resume {
        Some(last) if last == current => Vec::new(),
        _ => vec![refetch_event(&snapshot)],
    };
    state
        .streams
        .open(&state, StreamKind::Ofrep, environment, initial, current)
}

/// The `eventStreams` entry bulk responses advertise to `caller` (an SDK key): a URL signed for
/// that key, stable for hours (so it does not change the bulk ETag or make clients reconnect).
pub fn advertised(state: &AppState, token_id: &str) -> Option<EventStream> {
    let key = state.control.stream_key()?;
    const WINDOW: i64 = 6 * 3600;
    let expires = (crate::now_secs() / WINDOW + 2) * WINDOW;
    let token = switchyard_control::tokens::sign_stream(key, token_id, expires);
    Some(EventStream {
        kind: "sse".to_owned(),
        url: None,
        endpoint: Some(EventStreamEndpoint {
            origin: None,
            request_uri: format!("/ofrep/v1/events?token={token}"),
        }),
        inactivity_delay_sec: Some(state.streams.settings().ofrep_inactivity_secs),
    })
}
