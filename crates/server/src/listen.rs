//! The accept loop: HTTP/1.1 connections with the limits a public edge needs, which
//! `axum::serve` does not set.
//!
//! - **Connections**: at most [`Limits::max_connections`] at once (kept below the process's
//!   open-file limit). One more is answered `503` with a JSON body and closed at once, so the
//!   server never runs out of descriptors and keeps answering the connections it holds.
//! - **Header read timeout**: a client has [`Limits::header_read_timeout`] to send a request's
//!   headers (hyper's timer, from the moment the connection is accepted): half-sent requests
//!   (slowloris) are closed.
//! - **Idle timeout**: a connection that moves no byte either way for
//!   [`Limits::idle_timeout`] is closed — a silent keep-alive connection, or a stream whose
//!   client stopped reading (streams send heartbeats, so a live one is never idle).
//! - **Keep-alive limit**: after [`Limits::requests_per_connection`] requests the response
//!   says `Connection: close`.
//!
//! The body timeout and the body limits are layers of the router (`crate::app`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;

/// Connection, time and size limits at the edge (`[limits]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Time to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time to read a request's body (a slower body is cut off with 408).
    pub request_timeout: Duration,
    /// Time a connection may move no byte either way.
    pub idle_timeout: Duration,
    /// Requests per keep-alive connection.
    pub requests_per_connection: u64,
    /// Largest OFREP request body, bytes.
    pub ofrep_body_bytes: usize,
    /// Largest admin request body (imports aside), bytes.
    pub admin_body_bytes: usize,
    /// Largest import body, bytes.
    pub import_body_bytes: usize,
    /// Largest batch of events (`POST /sdk/v1/events`).
    pub events_body_bytes: usize,
    /// Most leaf attributes in an evaluation context.
    pub context_attributes: usize,
    /// Deepest object nesting in an evaluation context.
    pub context_depth: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            requests_per_connection: 10_000,
            ofrep_body_bytes: 64 * 1024,
            admin_body_bytes: 1024 * 1024,
            import_body_bytes: 16 * 1024 * 1024,
            events_body_bytes: 4 * 1024 * 1024,
            context_attributes: 1000,
            context_depth: 16,
        }
    }
}

/// Longest request line + headers accepted by hyper itself. The router's own checks (414,
/// 431 with JSON bodies) are well below it; this is the backstop.
const HYPER_MAX_HEAD: usize = 256 * 1024;

/// Descriptors kept free for the database, files and the listener itself.
const RESERVED_DESCRIPTORS: u64 = 128;

/// The connection limit actually applied: the configured one, kept under the open-file limit.
pub fn effective_max_connections(configured: usize) -> usize {
    match open_file_limit() {
        Some(soft) => {
            let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(16);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

fn open_file_limit() -> Option<u64> {
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _hard)| soft)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish (streams are closed).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = effective_max_connections(limits.max_connections);
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            applied = max,
            "the connection limit is lowered to stay under the open-file limit"
        );
    }
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE / ENFILE and friends: wait a little instead of spinning; the
                // connections held go on being served.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                let conn = Connection {
                    app: app.clone(),
                    limits: limits.clone(),
                    stop: stop_rx.clone(),
                };
                tracker.spawn(async move {
                    conn.run(stream).await;
                    drop(permit);
                });
            }
            Err(_) => {
                metrics.rejected_connections.inc();
                tracker.spawn(refuse(stream, max));
            }
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Answers a connection over the limit with a JSON 503 and closes it.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = format!(
        r#"{{"error":{{"code":"unavailable","message":"the server holds its maximum of {max} connections; retry shortly"}}}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

struct Connection {
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Tracked {
            inner: stream,
            moved: Arc::clone(&activity),
        });
        let served = Arc::new(AtomicU64::new(0));
        let per_connection = self.limits.requests_per_connection;
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let mut response: Response<Body> = app
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {});
                if n >= per_connection {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(HYPER_MAX_HEAD)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let idle = self.limits.idle_timeout;
        let check_every = (idle / 4).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        // The activity count when it last changed, and when that was.
        let mut seen = (activity.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = ticker.tick() => {
                    let now = activity.load(Ordering::Relaxed);
                    if now != seen.0 {
                        seen = (now, Instant::now());
                    } else if seen.1.elapsed() >= idle {
                        // Nothing moved for the idle timeout: close, whatever state it is in.
                        return;
                    }
                }
                _ = self.stop.wait_for(|stopped| *stopped), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A socket that counts the reads and writes that moved bytes (the watchdog compares counts
/// between ticks: cheaper than reading the clock on every operation).
struct Tracked {
    inner: TcpStream,
    moved: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_under_the_open_file_limit() {
        let applied = effective_max_connections(usize::MAX);
        if let Some(soft) = open_file_limit() {
            assert!(applied as u64 <= soft.saturating_sub(RESERVED_DESCRIPTORS).max(16));
        }
        assert_eq!(effective_max_connections(10), 10);
    }
}
