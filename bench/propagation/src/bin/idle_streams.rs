//! Memory per idle SDK stream: one `switchyard serve` on SQLite, N connections to
//! `GET /sdk/v1/stream` that each read their `put` and then stay silent (heartbeats keep
//! arriving and are left in the socket buffers). Prints the server's resident memory before
//! and after, and the difference per connection.
//!
//! Usage (the client needs a descriptor per connection):
//! `ulimit -n 65536; bench/propagation/target/release/idle_streams [CONNECTIONS]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchyard_bench_propagation::{agent, send, start, ADMIN};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn connections_metric(http: &ureq::Agent, url: &str) -> String {
    let mut r = http.get(format!("{url}/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    text.lines()
        .filter(|l| l.starts_with("switchyard_sse_"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("CONNECTIONS is a number"))
        .unwrap_or(10_000);
    let binary = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| "target/release/switchyard".into());
    let dir = std::env::temp_dir().join(format!("sy_idle_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start(&binary, &format!("sqlite://{}", dir.join("idle.db").display()));
    let pid = server.child.id();
    let http = agent();
    let (status, created) = send(
        &http,
        "POST",
        &format!("{}/api/v1/tokens", server.url),
        ADMIN,
        r#"{"name": "idle", "role": "sdk", "environment": "production"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let key = created["token"].as_str().unwrap().to_owned();
    for i in 0..20 {
        let (status, body) = send(&http, "POST", &format!("{}/api/v1/flags", server.url), ADMIN, &format!(r#"{{"key": "flag-{i}"}}"#));
        assert_eq!(status, 201, "{body}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let path = std::env::var("IDLE_PATH").unwrap_or_else(|_| "/sdk/v1/stream".into());
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n");
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..n {
        let mut stream = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e} (raise ulimit -n)"));
        stream.write_all(request.as_bytes()).unwrap();
        // Read until the end of the `put` event (a blank line after its data).
        let mut seen = Vec::new();
        while !contains_put_end(&seen) && !(path != "/sdk/v1/stream" && !seen.is_empty()) {
            let got = stream.read(&mut buf).unwrap();
            assert!(got > 0, "connection {i} closed before its put");
            seen.extend_from_slice(&buf[..got]);
        }
        streams.push(stream);
    }
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid);
    println!(
        "{n} idle SDK streams opened in {:.1} s; server RSS {:.1} MiB before, {:.1} MiB after: {:.1} KiB per stream; {}",
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / n as f64,
        connections_metric(&http, &server.url),
    );
    drop(streams);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the bytes hold a complete `put` event (its data line and the blank line after).
fn contains_put_end(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    text.find("event: put")
        .is_some_and(|at| text[at..].contains("\n\n") || text[at..].contains("\r\n\r\n"))
}
