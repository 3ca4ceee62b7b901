//! Waking replicas: a revision signal every [`Store`](crate::Store) clone shares, fed by this
//! process's own commits and, on PostgreSQL, by a dedicated `LISTEN` connection that hears
//! every other node's commits (`NOTIFY` is sent inside each write transaction, so it is
//! delivered exactly when the change becomes visible).
//!
//! This is the one place with backend-specific code outside the migrations: sqlx's `Any`
//! driver has no notifications, so the listener uses `sqlx::postgres::PgListener` directly.
//! A lost listener connection reconnects by itself with backoff; since notifications sent
//! while disconnected are lost, every (re)connection also wakes the subscribers, who then
//! read the change feed from the revision they have. Subscribers should still check the
//! revision now and then (the control layer does), as the safety net.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// The state of the PostgreSQL listener connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerState {
    /// No listener: SQLite (changes are signalled in process), or nobody subscribed yet.
    Local,
    /// Listening.
    Connected,
    /// The listener connection is down and reconnecting.
    Reconnecting,
}

pub(crate) struct Signal {
    revision: watch::Sender<i64>,
    state: AtomicU8,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Signal {
            revision: watch::Sender::new(0),
            state: AtomicU8::new(0),
            task: Mutex::new(None),
        }
    }

    /// Records that `revision` (or something newer) was committed.
    pub(crate) fn raise(&self, revision: i64) {
        self.revision.send_if_modified(|current| {
            if revision > *current {
                *current = revision;
                true
            } else {
                false
            }
        });
    }

    /// Wakes subscribers without a revision (after a reconnect: something may have been missed).
    fn wake(&self) {
        self.revision.send_modify(|_| {});
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    pub(crate) fn state(&self) -> ListenerState {
        match self.state.load(Ordering::Acquire) {
            1 => ListenerState::Connected,
            2 => ListenerState::Reconnecting,
            _ => ListenerState::Local,
        }
    }

    fn set_state(&self, state: ListenerState) {
        let value = match state {
            ListenerState::Local => 0,
            ListenerState::Connected => 1,
            ListenerState::Reconnecting => 2,
        };
        self.state.store(value, Ordering::Release);
    }

    /// Starts the PostgreSQL listener once (later calls do nothing); needs a tokio runtime.
    pub(crate) fn listen(self: &std::sync::Arc<Self>, url: &str, channel: &str) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_some() {
            return;
        }
        self.set_state(ListenerState::Reconnecting);
        let signal = std::sync::Arc::downgrade(self);
        let (url, channel) = (url.to_owned(), channel.to_owned());
        *task = Some(tokio::spawn(async move {
            listen_loop(signal, url, channel).await;
        }));
    }

    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        self.set_state(ListenerState::Local);
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn listen_loop(signal: std::sync::Weak<Signal>, url: String, channel: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(err) => {
                let Some(s) = signal.upgrade() else { return };
                s.set_state(ListenerState::Reconnecting);
                drop(s);
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "change listener cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        {
            let Some(s) = signal.upgrade() else { return };
            s.set_state(ListenerState::Connected);
            // Anything committed while we were not listening is in the feed.
            s.wake();
        }
        tracing::debug!(%channel, "listening for changes");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some(s) = signal.upgrade() else { return };
                    match notification.payload().parse::<i64>() {
                        Ok(revision) => s.raise(revision),
                        Err(_) => s.wake(),
                    }
                }
                Ok(None) => {
                    // The connection was lost; the next call reconnects.
                    let Some(s) = signal.upgrade() else { return };
                    s.set_state(ListenerState::Reconnecting);
                    tracing::warn!("change listener lost its connection; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    let Some(s) = signal.upgrade() else { return };
                    s.set_state(ListenerState::Reconnecting);
                    tracing::warn!(error = %err, "change listener failed; reconnecting");
                    break;
                }
            }
            if let Some(s) = signal.upgrade() {
                if s.state() == ListenerState::Reconnecting {
                    // try_recv reconnected (or will on the next call); re-announce.
                    if listener.listen(&channel).await.is_ok() {
                        s.set_state(ListenerState::Connected);
                        s.wake();
                        backoff = Duration::from_millis(100);
                    }
                }
            } else {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
