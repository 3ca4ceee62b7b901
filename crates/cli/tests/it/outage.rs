//! A database outage, with a private PostgreSQL cluster (initdb / pg_ctl on its own port) that
//! the test stops and starts: evaluations continue from memory, writes fail fast with 503,
//! `/readyz` stays ready and reports the store down, a replica started during the outage
//! serves its snapshot file, and everything recovers by itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{agent, get_json, send_json, start, Server};

/// A PostgreSQL cluster of this test's own, stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

/// Where `initdb` and `pg_ctl` live (Debian puts them under /usr/lib/postgresql/N/bin).
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("SWITCHYARD_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the outage test needs PostgreSQL's server binaries (initdb, pg_ctl) in /usr/lib/postgresql/N/bin or $SWITCHYARD_TEST_PG_BIN")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().expect("initdb under /usr/lib/postgresql/N/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        // PostgreSQL refuses to run as root: run it as the `postgres` user then.
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        }
    }

    fn new() -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("switchyard-outage-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let cluster = Cluster {
            bin: postgres_bin(),
            dir,
            port,
        };
        let out = cluster
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(cluster.data())
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "fast", "stop"])
            .output()
            .expect("pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ADMIN: &str = "outage-admin-token-0123";

fn eval(server: &Server, sdk: &str, key: &str) -> (u16, Value) {
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/ofrep/v1/evaluate/flags/{key}", server.url))
        .header("Authorization", format!("Bearer {sdk}"))
        .body(r#"{"context": {"targetingKey": "u1"}}"#.to_owned())
        .unwrap();
    let mut r = agent().run(req).expect("request");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or_default(),
    )
}

fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(cluster: &Cluster, snapshot: &Path) -> Server {
    start(
        &[
            "--db",
            &cluster.url(),
            "--snapshot-file",
            snapshot.to_str().unwrap(),
        ],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHYARD_SEED_EXAMPLES", "false"),
            ("SWITCHYARD_SYNC_INTERVAL_MS", "100"),
            ("SWITCHYARD_DB_TIMEOUT_MS", "500"),
        ],
    )
}

#[test]
fn a_database_outage_keeps_evaluations_and_recovers_by_itself() {
    let cluster = Cluster::new();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    let a = serve(&cluster, &snapshot);

    let (status, body) = send_json(
        "POST",
        &format!("{}/api/v1/flags", a.url),
        ADMIN,
        r#"{"key": "checkout"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, created) = send_json(
        "POST",
        &format!("{}/api/v1/tokens", a.url),
        ADMIN,
        r#"{"name": "web", "role": "sdk", "environment": "production"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let sdk = created["token"].as_str().unwrap().to_owned();
    assert_eq!(eval(&a, &sdk, "checkout").1["value"], true);
    // The snapshot file is written shortly after changes.
    wait_until(10, "the snapshot file", || {
        std::fs::read_to_string(&snapshot)
            .is_ok_and(|t| t.contains("checkout") && t.contains("\"web\""))
    });

    cluster.stop();

    // Evaluations continue from memory.
    let (status, body) = eval(&a, &sdk, "checkout");
    assert_eq!(
        (status, &body["value"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    // Writes fail fast with a clear 503, in parallel too (never queued behind each other).
    let started = Instant::now();
    let writers: Vec<_> = (0..5)
        .map(|i| {
            let url = a.url.clone();
            std::thread::spawn(move || {
                send_json(
                    "PUT",
                    &format!("{url}/api/v1/flags/checkout/environments/production/rollout"),
                    ADMIN,
                    &format!(r#"{{"percentage": {}}}"#, 10 + i),
                )
            })
        })
        .collect();
    for w in writers {
        let (status, body) = w.join().unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unavailable"),
            "{body}"
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "five writes took {took:?} to fail"
    );
    // Ready (a snapshot is served), and the body says the store is down.
    wait_until(10, "readyz to report the store down", || {
        let (status, body) = get_json(&format!("{}/readyz", a.url), ADMIN);
        status == 200 && body["store"]["state"] == "down"
    });
    let metrics = agent()
        .get(format!("{}/metrics", a.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("switchyard_store_up 0"), "{metrics}");

    // A replica that starts during the outage serves the snapshot file.
    let b_snapshot = dir.path().join("b-snapshot.json");
    std::fs::copy(&snapshot, &b_snapshot).unwrap();
    let b = serve(&cluster, &b_snapshot);
    let (status, body) = eval(&b, &sdk, "checkout");
    assert_eq!(
        (status, &body["value"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let (status, ready) = get_json(&format!("{}/readyz", b.url), ADMIN);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["served"], "snapshotFile", "{ready}");

    cluster.start();

    // Both recover by themselves: A's writes go through again, B connects and sees them.
    wait_until(20, "writes on A to work again", || {
        send_json(
            "PUT",
            &format!(
                "{}/api/v1/flags/checkout/environments/production/enabled",
                a.url
            ),
            ADMIN,
            r#"{"enabled": false}"#,
        )
        .0 == 200
    });
    wait_until(20, "B to serve from the store", || {
        get_json(&format!("{}/readyz", b.url), ADMIN).1["served"] == "store"
    });
    wait_until(10, "B to see A's change", || {
        eval(&b, &sdk, "checkout").1["value"] == false
    });
    let (_, ready) = get_json(&format!("{}/readyz", a.url), ADMIN);
    assert_eq!(ready["store"]["state"], "up", "{ready}");
    // A's change listener reconnected by itself.
    wait_until(20, "A's listener to reconnect", || {
        get_json(&format!("{}/readyz", a.url), ADMIN).1["listener"] == "connected"
    });
}
