//! Keeping the served ruleset current: the initial fetch, the change stream (with resume,
//! heartbeat timeout, backoff and circuit breaker), polling, and the cache file.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header;
use switchyard_api_types::sdk::{
    Delete, Kind, Patch, Ruleset as Body, RULESET_FORMAT, RULESET_VERSION,
};
use switchyard_engine::document::SegmentDef;
use switchyard_engine::{
    compile, has_errors, Change, Diagnostic, Document, FieldPath, FlagDef, Ruleset, FORMAT_VERSION,
};
use tokio::sync::watch;

use crate::sse::{Item, Parser};
use crate::{cache, overrides, Client, ConnectionState, Error, Rules, Source};

/// What a fetch of the ruleset found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The served ruleset is current (304).
    NotModified,
    /// A new ruleset, at this revision, is served.
    Updated(i64),
}

/// How one stream connection ended.
#[derive(Debug)]
enum Ended {
    /// [`Client::shutdown`].
    Shutdown,
    /// The connection failed or was lost; `progressed` when it delivered anything first.
    Lost { progressed: bool, why: String },
    /// The server has no stream endpoint (404/405/501): poll instead.
    Unsupported,
    /// The server refused the key.
    Refused(Error),
}

/// The longest wait between attempts when the key is refused, or between probes of a server
/// without the stream endpoint.
const REFUSED_RETRY: Duration = Duration::from_secs(60);
const STREAM_REPROBE: Duration = Duration::from_secs(300);

/// A random duration in `[0, max]` ("full jitter").
fn jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return max / 2;
    }
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

/// The backoff cap of the `attempt`-th consecutive failure (1-based): base·2^(attempt−1),
/// at most `cap`.
fn backoff_ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(cap)
}

/// Reads a `Ruleset` body, checking it is one this SDK understands.
fn read_body(bytes: &[u8]) -> Result<Body, Error> {
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|e| Error::Protocol(format!("the ruleset does not read: {e}")))?;
    if body.format != RULESET_FORMAT || body.version != RULESET_VERSION {
        return Err(Error::Protocol(format!(
            "the server sent {} version {}; this SDK reads {RULESET_FORMAT} version {RULESET_VERSION} (upgrade the SDK)",
            body.format, body.version
        )));
    }
    Ok(body)
}

fn log_problems(diagnostics: &[Diagnostic], what: &str) {
    if has_errors(diagnostics) {
        for d in diagnostics.iter().filter(|d| d.is_error()) {
            tracing::warn!(problem = %d, "switchyard: {what}: a flag that does not compile is not served");
        }
    }
}

impl Client {
    /// Starts from the cache file, when there is a usable one.
    pub(crate) fn load_cache(&self) {
        let Some(path) = self.inner.config.cache_file.clone() else {
            return;
        };
        let problem = match cache::load(&path, &self.inner.config.key) {
            Ok(None) => None,
            Ok(Some(body)) => {
                self.install(body, Source::Cache);
                None
            }
            Err(problem) => Some(problem),
        };
        if let Some(problem) = &problem {
            tracing::warn!(%problem, "switchyard: the cache file is not used");
        }
        *self
            .inner
            .cache_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
    }

    /// Serves `body` (a whole ruleset) from now on.
    pub(crate) fn install(&self, body: Body, source: Source) {
        let mut doc = Document {
            version: FORMAT_VERSION,
            segments: body.segments,
            flags: body.flags,
        };
        for flag in &mut doc.flags {
            flag.origin = FieldPath::root().key("flags").key(flag.key.clone());
        }
        let (ruleset, diagnostics) = compile(&doc);
        log_problems(&diagnostics, "the server's ruleset");
        self.serve(ruleset, body.environment, body.revision, source, None);
        if source == Source::Server {
            self.inner
                .stats
                .full_updates
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Swaps in a ruleset. `changed_flags` limits the environment-override update to those
    /// keys (`None`: resolve them all).
    fn serve(
        &self,
        ruleset: Ruleset,
        environment_name: String,
        revision: i64,
        source: Source,
        changed_flags: Option<&[String]>,
    ) {
        let env_overrides = match changed_flags {
            None => overrides::resolve(&ruleset, &self.inner.env),
            Some(keys) => {
                let mut map = self.inner.rules.load().env_overrides.clone();
                for key in keys {
                    map.remove(key);
                    if let Some(v) = overrides::resolve_key(&ruleset, key, &self.inner.env) {
                        map.insert(key.clone(), v);
                    }
                }
                map
            }
        };
        let environment = ruleset.environment(&environment_name);
        self.inner.rules.store(Arc::new(Rules {
            ruleset,
            environment_name,
            environment,
            revision,
            source,
            env_overrides,
        }));
        if source == Source::Server {
            self.inner.cache_dirty.notify_one();
        }
        self.inner.revision.send_replace(revision);
    }

    /// Applies incremental changes (patch and delete events) that bring the ruleset to
    /// `revision`.
    fn apply_changes(&self, changes: Vec<Change>, revision: i64) {
        if changes.is_empty() {
            return;
        }
        let current = self.inner.rules.load_full();
        let (next, diagnostics) = current.ruleset.apply(&changes);
        log_problems(&diagnostics, "a change from the server");
        let flags: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Flag(def) => Some(def.key.clone()),
                Change::RemoveFlag(key) => Some(key.clone()),
                Change::Segment(..) | Change::RemoveSegment(_) => None,
            })
            .collect();
        self.serve(
            next,
            current.environment_name.clone(),
            revision,
            Source::Server,
            Some(&flags),
        );
        self.inner
            .stats
            .incremental_updates
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
    }

    /// Fetches the ruleset (`GET /sdk/v1/ruleset`), conditionally on `etag`, and serves it.
    pub(crate) async fn fetch(&self, etag: Option<String>) -> Result<Fetched, Error> {
        let url = format!("{}/sdk/v1/ruleset", self.inner.config.server);
        let mut request = self
            .inner
            .http
            .get(&url)
            .bearer_auth(&self.inner.config.key)
            .timeout(self.inner.config.request_timeout);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(Error::Http)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let message = response.text().await.unwrap_or_default();
            return Err(Error::Refused {
                status: status.as_u16(),
                message,
            });
        }
        if !status.is_success() {
            return Err(Error::Protocol(format!("GET {url} answered {status}")));
        }
        let bytes = response.bytes().await.map_err(Error::Http)?;
        let body = read_body(&bytes)?;
        let revision = body.revision;
        self.install(body, Source::Server);
        Ok(Fetched::Updated(revision))
    }

    /// The conditional-request tag of what is served (when it came from the server).
    fn etag(&self) -> Option<String> {
        let rules = self.inner.rules.load();
        (rules.source == Source::Server)
            .then(|| format!("\"{}:{}\"", rules.environment_name, rules.revision))
    }

    /// One poll; whether it reached the server.
    async fn poll_once(&self) -> Result<(), Error> {
        match self.fetch(self.etag()).await {
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::debug!(error = %err, "switchyard: poll failed");
                Err(err)
            }
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.inner.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    /// Waits `duration`; `false` when shutdown came first.
    async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) -> bool {
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = shutdown.wait_for(|stopped| *stopped) => false,
        }
    }

    /// Polls every poll interval for `duration` (forever when `None`), keeping the state
    /// `during` while polls succeed; `false` on shutdown.
    async fn poll_for(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        duration: Option<Duration>,
        during: ConnectionState,
    ) -> bool {
        let until = duration.map(|d| tokio::time::Instant::now() + d);
        let mut failures = 0u32;
        loop {
            let interval = self.inner.config.poll_interval;
            match self.poll_once().await {
                Ok(()) => {
                    failures = 0;
                    self.set_state(during);
                }
                Err(Error::Refused { .. }) => self.set_state(ConnectionState::Unauthorized),
                Err(_) => {
                    failures += 1;
                    if during == ConnectionState::Polling {
                        self.set_state(ConnectionState::Reconnecting {
                            attempt: failures,
                            retry_in: interval,
                        });
                    }
                }
            }
            let wait = match until {
                Some(until) => {
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return true;
                    }
                    left.min(interval)
                }
                None => interval,
            };
            if !Self::pause(shutdown, wait).await {
                return false;
            }
        }
    }

    /// The background loop that keeps the ruleset current until shutdown.
    pub(crate) async fn run_sync(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let config = self.inner.config.clone();
        if !config.streaming {
            self.set_state(ConnectionState::Polling);
            // The initial fetch just happened (or failed): wait one interval, then poll.
            if Self::pause(&mut shutdown, config.poll_interval).await {
                self.poll_for(&mut shutdown, None, ConnectionState::Polling)
                    .await;
            }
            return;
        }
        // A ruleset fetched from this server can be resumed from; one from the cache file
        // (maybe another server's, maybe a database since restored) cannot.
        let mut resume = self.etag().map(|_| self.revision());
        let mut failures: u32 = 0;
        loop {
            match self.stream_once(&mut shutdown, &mut resume).await {
                Ended::Shutdown => return,
                Ended::Unsupported => {
                    tracing::info!(
                        "switchyard: the server has no change stream; polling the ruleset instead"
                    );
                    if !self
                        .poll_for(
                            &mut shutdown,
                            Some(STREAM_REPROBE),
                            ConnectionState::Polling,
                        )
                        .await
                    {
                        return;
                    }
                    continue;
                }
                Ended::Refused(err) => {
                    tracing::error!(error = %err, "switchyard: the server refuses the SDK key; serving the last known ruleset");
                    self.set_state(ConnectionState::Unauthorized);
                    if !Self::pause(
                        &mut shutdown,
                        REFUSED_RETRY.min(config.backoff_cap.max(config.backoff_base)),
                    )
                    .await
                    {
                        return;
                    }
                    continue;
                }
                Ended::Lost { progressed, why } => {
                    if progressed {
                        failures = 0;
                    }
                    failures += 1;
                    tracing::debug!(%why, attempt = failures, "switchyard: the change stream is down");
                }
            }
            if failures >= config.breaker_failures {
                tracing::warn!(
                    failures,
                    open_for = ?config.breaker_open_for,
                    "switchyard: the change stream keeps failing; polling the ruleset for a while"
                );
                self.set_state(ConnectionState::CircuitOpen {
                    retry_in: config.breaker_open_for,
                });
                let during = ConnectionState::CircuitOpen {
                    retry_in: config.breaker_open_for,
                };
                if !self
                    .poll_for(&mut shutdown, Some(config.breaker_open_for), during)
                    .await
                {
                    return;
                }
                // Half-open: one more failure opens the breaker again.
                failures = config.breaker_failures - 1;
                continue;
            }
            let retry_in = jitter(backoff_ceiling(
                config.backoff_base,
                config.backoff_cap,
                failures,
            ));
            self.set_state(ConnectionState::Reconnecting {
                attempt: failures,
                retry_in,
            });
            if !Self::pause(&mut shutdown, retry_in).await {
                return;
            }
        }
    }

    /// Opens the change stream and applies what it sends until it ends.
    async fn stream_once(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        resume: &mut Option<i64>,
    ) -> Ended {
        let config = &self.inner.config;
        let url = format!("{}/sdk/v1/stream", config.server);
        let mut request = self
            .inner
            .http
            .get(&url)
            .bearer_auth(&config.key)
            .header(header::ACCEPT, "text/event-stream");
        if let Some(revision) = *resume {
            request = request.header("Last-Event-ID", revision.to_string());
        }
        let response = tokio::select! {
            r = tokio::time::timeout(config.request_timeout, request.send()) => r,
            _ = shutdown.wait_for(|stopped| *stopped) => return Ended::Shutdown,
        };
        let mut response = match response {
            Err(_) => {
                return Ended::Lost {
                    progressed: false,
                    why: "the server did not answer in time".into(),
                }
            }
            Ok(Err(e)) => {
                return Ended::Lost {
                    progressed: false,
                    why: error_chain(&e),
                }
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        match status {
            200 => {}
            401 | 403 => {
                let message = response.text().await.unwrap_or_default();
                return Ended::Refused(Error::Refused { status, message });
            }
            404 | 405 | 501 => return Ended::Unsupported,
            _ => {
                return Ended::Lost {
                    progressed: false,
                    why: format!("the stream answered {status}"),
                }
            }
        }
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Ended::Lost {
                progressed: false,
                why: "the stream did not answer with text/event-stream (a proxy in the way?)"
                    .into(),
            };
        }
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.set_state(ConnectionState::Streaming);
        let mut parser = Parser::new();
        let mut items = Vec::new();
        let mut pending = Pending::default();
        let mut progressed = false;
        loop {
            let chunk = tokio::select! {
                c = tokio::time::timeout(config.heartbeat_timeout, response.chunk()) => c,
                _ = shutdown.wait_for(|stopped| *stopped) => return Ended::Shutdown,
            };
            let bytes = match chunk {
                Err(_) => {
                    return Ended::Lost {
                        progressed,
                        why: format!("the stream was silent for {:?}", config.heartbeat_timeout),
                    }
                }
                Ok(Err(e)) => {
                    return Ended::Lost {
                        progressed,
                        why: error_chain(&e),
                    }
                }
                Ok(Ok(None)) => {
                    return Ended::Lost {
                        progressed,
                        why: "the server closed the stream".into(),
                    }
                }
                Ok(Ok(Some(bytes))) => bytes,
            };
            progressed = true;
            if parser.feed(&bytes, &mut items).is_err() {
                *resume = None;
                return Ended::Lost {
                    progressed,
                    why: "the stream sent a line longer than any event".into(),
                };
            }
            if let Err(err) = self.handle(std::mem::take(&mut items), resume, &mut pending) {
                // Something this SDK cannot read: start over from a full ruleset rather than
                // serve a ruleset that missed a change.
                tracing::warn!(error = %err, "switchyard: an event from the server does not read; reconnecting for the full ruleset");
                *resume = None;
                return Ended::Lost {
                    progressed,
                    why: err.to_string(),
                };
            }
        }
    }

    /// Applies parsed stream items: a `put` replaces the ruleset; `patch` and `delete`
    /// events wait in `pending` until the event that ends their batch (the one with an id),
    /// then apply together, so a batch is never half visible. `resume` follows the ids.
    fn handle(
        &self,
        items: Vec<Item>,
        resume: &mut Option<i64>,
        pending: &mut Pending,
    ) -> Result<(), Error> {
        for item in items {
            let Item::Event(event) = item else { continue };
            match event.event.as_str() {
                "put" => {
                    *pending = Pending::default();
                    let body = read_body(event.data.as_bytes())?;
                    let revision = body.revision;
                    self.install(body, Source::Server);
                    *resume = Some(revision);
                }
                "patch" => {
                    let patch: Patch = serde_json::from_str(&event.data).map_err(|e| {
                        Error::Protocol(format!("a patch event does not read: {e}"))
                    })?;
                    pending.revision = pending.revision.max(patch.revision);
                    pending.changes.push(patch_change(patch)?);
                }
                "delete" => {
                    let delete: Delete = serde_json::from_str(&event.data).map_err(|e| {
                        Error::Protocol(format!("a delete event does not read: {e}"))
                    })?;
                    pending.revision = pending.revision.max(delete.revision);
                    pending.changes.push(match delete.kind {
                        Kind::Flag => Change::RemoveFlag(delete.key),
                        Kind::Segment => Change::RemoveSegment(delete.key),
                    });
                }
                // An id alone (a revision with nothing for this environment), or an event
                // of a newer server that this SDK does not know: only the id counts.
                _ => {}
            }
            let Some(id) = event
                .id
                .as_deref()
                .and_then(|id| id.trim().parse::<i64>().ok())
            else {
                continue;
            };
            *resume = Some(id);
            let batch = std::mem::take(pending);
            if !batch.changes.is_empty() {
                self.apply_changes(batch.changes, id.max(batch.revision));
            } else if id > self.revision() && self.source() == Source::Server {
                self.bump_revision(id);
            }
        }
        Ok(())
    }

    /// The ruleset is unchanged but at a newer revision (a change elsewhere).
    fn bump_revision(&self, revision: i64) {
        let current = self.inner.rules.load_full();
        self.inner.rules.store(Arc::new(Rules {
            ruleset: current.ruleset.clone(),
            environment_name: current.environment_name.clone(),
            environment: current.environment,
            revision,
            source: current.source,
            env_overrides: current.env_overrides.clone(),
        }));
        self.inner.revision.send_replace(revision);
    }

    /// Writes the cache file (at most every half second) while the SDK runs, and once more at
    /// shutdown.
    pub(crate) async fn run_cache_writer(&self) {
        let Some(path) = self.inner.config.cache_file.clone() else {
            return;
        };
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut saved_revision = None;
        loop {
            let stopping = tokio::select! {
                () = self.inner.cache_dirty.notified() => false,
                _ = shutdown.wait_for(|stopped| *stopped) => true,
            };
            if !stopping {
                // Coalesce a burst of changes into one write.
                let _ = Self::pause(&mut shutdown, Duration::from_millis(500)).await;
            }
            let rules = self.inner.rules.load_full();
            if rules.source == Source::Server && saved_revision != Some(rules.revision) {
                let body = body_of(&rules);
                let (path, key, server) = (
                    path.clone(),
                    self.inner.config.key.clone(),
                    self.inner.config.server.clone(),
                );
                let saved =
                    tokio::task::spawn_blocking(move || cache::save(&path, &key, &server, &body))
                        .await;
                match saved {
                    Ok(Ok(())) => saved_revision = Some(rules.revision),
                    Ok(Err(problem)) => {
                        tracing::warn!(%problem, "switchyard: cannot write the cache file")
                    }
                    Err(_) => {}
                }
            }
            if stopping || *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Changes of a batch whose last event has not arrived yet.
#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
    revision: i64,
}

/// The change a `patch` event makes.
fn patch_change(patch: Patch) -> Result<Change, Error> {
    match patch.kind {
        Kind::Flag => {
            let def = FlagDef::from_value_at(
                patch.definition,
                &FieldPath::root().key("flags").key(patch.key.clone()),
            )
            .map_err(|d| {
                Error::Protocol(format!(
                    "the flag `{}` in a patch event does not read: {d}",
                    patch.key
                ))
            })?;
            if def.key != patch.key {
                return Err(Error::Protocol(format!(
                    "a patch event for `{}` carries the flag `{}`",
                    patch.key, def.key
                )));
            }
            Ok(Change::Flag(Box::new(def)))
        }
        Kind::Segment => {
            let def: SegmentDef = serde_json::from_value(patch.definition).map_err(|e| {
                Error::Protocol(format!(
                    "the segment `{}` in a patch event does not read: {e}",
                    patch.key
                ))
            })?;
            Ok(Change::Segment(patch.key, def))
        }
    }
}

/// The ruleset body of what is served (for the cache file).
fn body_of(rules: &Rules) -> Body {
    Body {
        format: RULESET_FORMAT.to_owned(),
        version: RULESET_VERSION,
        revision: rules.revision,
        environment: rules.environment_name.clone(),
        flags: rules.ruleset.definitions().cloned().collect(),
        segments: rules
            .ruleset
            .segment_definitions()
            .into_iter()
            .map(|(name, def)| (name.to_owned(), def.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// An error with its causes, for logs.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_below() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff_ceiling(base, cap, 1), base);
        assert_eq!(backoff_ceiling(base, cap, 2), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(base, cap, 5), Duration::from_millis(1600));
        assert_eq!(backoff_ceiling(base, cap, 6), cap);
        assert_eq!(backoff_ceiling(base, cap, u32::MAX), cap);
        let waits: Vec<Duration> = (0..200).map(|_| jitter(cap)).collect();
        assert!(waits.iter().all(|w| *w <= cap));
        // Spread over the range, not stuck at one value.
        assert!(waits.iter().any(|w| *w < cap / 4) && waits.iter().any(|w| *w > cap * 3 / 4));
    }

    #[test]
    fn a_ruleset_of_another_format_is_refused() {
        let err = read_body(
            br#"{"format":"other","version":1,"revision":1,"environment":"e","flags":[]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("upgrade the SDK"), "{err}");
        let err = read_body(b"{").unwrap_err();
        assert!(err.to_string().contains("does not read"), "{err}");
    }

    #[test]
    fn patches_read_flags_and_segments() {
        let change = patch_change(Patch {
            kind: Kind::Flag,
            key: "f".into(),
            revision: 3,
            definition: serde_json::json!({"key": "f", "enabled": true}),
        })
        .unwrap();
        assert!(matches!(change, Change::Flag(def) if def.key == "f"));
        let err = patch_change(Patch {
            kind: Kind::Flag,
            key: "f".into(),
            revision: 3,
            definition: serde_json::json!({"key": "g"}),
        })
        .unwrap_err();
        assert!(err.to_string().contains("carries the flag `g`"));
        let change = patch_change(Patch {
            kind: Kind::Segment,
            key: "s".into(),
            revision: 3,
            definition: serde_json::json!({"included": ["a"]}),
        })
        .unwrap();
        assert!(matches!(change, Change::Segment(name, _) if name == "s"));
    }
}
