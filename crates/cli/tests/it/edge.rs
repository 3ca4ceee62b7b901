//! The edge against the real binary: thousands of idle and half-sent connections, and the
//! server still answers; they are closed by the header-read and idle timeouts; over the
//! connection limit, a JSON 503 instead of running out of descriptors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::serve::{db, start, Server};

const ADMIN: &str = "edge-test-admin-token-0123";

fn server(dir: &std::path::Path, limits: &str) -> Server {
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
    let db = db(dir);
    start(
        &["--db", &db, "--config", config.to_str().unwrap()],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHYARD_SEED_EXAMPLES", "false"),
        ],
    )
}

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// One request on a fresh connection: status line and body.
fn request(addr: &str, raw: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.lines().next().unwrap_or_default().to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn healthz(addr: &str) -> (String, String) {
    request(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

/// Whether the server has closed `s` (a read returns end of file or a reset).
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn wait_all_closed(conns: &mut [TcpStream], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let mut open = 0;
        for c in conns.iter_mut() {
            if !closed(c) {
                open += 1;
            }
        }
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} {what} connections still open"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn thousands_of_idle_and_half_sent_connections_do_not_stop_the_server_and_are_closed() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let server = server(
        dir.path(),
        "header_read_timeout_secs = 2\nidle_timeout_secs = 4",
    );
    let addr = addr(&server);
    let mut idle = Vec::new();
    let mut half = Vec::new();
    for i in 0..3000 {
        let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 2 == 0 {
            idle.push(s);
        } else {
            s.write_all(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            half.push(s);
        }
    }
    // Held, and the server answers everyone else at once.
    let started = Instant::now();
    let (status, body) = healthz(&addr);
    assert!(status.contains("200"), "{status} {body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "healthz took {:?}",
        started.elapsed()
    );
    let (status, _) = request(
        &addr,
        &format!("GET /api/v1/flags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"),
    );
    assert!(status.contains("200"), "{status}");
    // The header-read timeout closes both kinds.
    wait_all_closed(&mut idle, Duration::from_secs(20), "idle");
    wait_all_closed(&mut half, Duration::from_secs(20), "half-sent");

    // A keep-alive connection that goes silent after a request is closed by the idle timeout.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!closed(&mut kept), "kept alive right after its response");
    wait_all_closed(
        std::slice::from_mut(&mut kept),
        Duration::from_secs(15),
        "keep-alive",
    );
}

#[test]
fn over_the_connection_limit_a_json_503_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(
        dir.path(),
        "max_connections = 20\nheader_read_timeout_secs = 2",
    );
    let addr = addr(&server);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = healthz(&addr);
    assert!(status.contains("503"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["error"]["code"], "unavailable");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20 connections"),
        "{body}"
    );
    // The held connections time out; the server answers again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = healthz(&addr);
        if status.contains("200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refusing: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(held);
    let metrics = request(
        &addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_connections_rejected_total ") && !l.ends_with(" 0")),
        "the refusals are counted"
    );
}

#[test]
fn a_long_request_target_and_huge_headers_get_json_errors_from_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "");
    let addr = addr(&server);
    let (status, body) = request(
        &addr,
        &format!(
            "GET /api/v1/flags?tag={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "t".repeat(20_000)
        ),
    );
    assert!(status.contains("414"), "{status}");
    assert!(body.contains("uri_too_long"), "{body}");
    let (status, body) = request(
        &addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(100_000)
        ),
    );
    assert!(status.contains("431"), "{status}");
    assert!(body.contains("headers_too_large"), "{body}");
    // Invalid UTF-8 in the path: a JSON 400 or 404, never text.
    let (status, body) = request(&addr, "GET /api/v1/flags/%FF%FE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer edge-test-admin-token-0123\r\nConnection: close\r\n\r\n");
    assert!(status.contains("400") || status.contains("404"), "{status}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{status} {body}"
    );
}

#[test]
fn a_keep_alive_connection_is_closed_after_its_request_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "requests_per_connection = 3");
    let mut s = TcpStream::connect(addr(&server)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Three requests pipelined on one connection: the third answer says `connection: close`
    // and the server then ends the connection.
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(request.repeat(3).as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .expect("the server ends the connection (end of file, not the read timeout)");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert_eq!(
        out.to_ascii_lowercase()
            .matches("connection: close")
            .count(),
        1,
        "{out}"
    );
}

#[test]
fn a_body_sent_too_slowly_is_cut_off_with_a_json_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "request_timeout_secs = 1");
    let mut s = TcpStream::connect(addr(&server)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("POST /api/v1/flags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"key\":")
            .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off by the body timeout"
    );
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains(r#""code":"request_timeout""#), "{out}");
}
