//! The stock OpenFeature clients against the real binary: the JS server SDK + OFREP provider
//! and the JS web SDK + OFREP web provider (`tests/protocol/node`, run with `node --test`),
//! and the Python SDK + OFREP provider (`tests/protocol/python`, run with pytest).
//!
//! Each test installs its client dependencies when needed (`npm ci` into
//! `tests/protocol/node/node_modules`, a virtualenv at `target/protocol-venv`), starts
//! `switchyard serve` on a free port with a temporary SQLite store and
//! `tests/protocol/flags.yaml`, creates a production SDK key over the admin API and runs the
//! client suite with `SWITCHYARD_URL` and `SWITCHYARD_SDK_KEY`. Node.js (≥ 20, with npm) and
//! Python (≥ 3.10, with its `venv` module) must be on `PATH`: without them these tests fail
//! (they never skip). See `tests/protocol/README.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

/// How long an install (`npm ci`, venv + `pip install`) may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one client suite may take.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// A lock file older than this is taken to be left over by a killed run.
const STALE_LOCK: Duration = Duration::from_secs(900);

static NODE_INSTALL: Mutex<()> = Mutex::new(());
static PYTHON_INSTALL: Mutex<()> = Mutex::new(());

#[test]
fn protocol_node_server_and_web_sdks() {
    let node_dir = root().join("tests/protocol/node");
    ensure_node_deps(&node_dir);
    let server = Server::start();
    let sdk_key = server.create_sdk_key("protocol-node");
    let mut cmd = Command::new("node");
    // No file arguments: node picks up `*.test.js` below the working directory and skips
    // node_modules, the same on every Node version (directory arguments differ between them).
    cmd.args(["--test", "--test-reporter=spec"])
        .current_dir(&node_dir)
        .env("NO_COLOR", "1");
    run_suite(
        "node --test tests/protocol/node",
        cmd,
        node_tests_ran,
        &server,
        &sdk_key,
    );
}

/// The stock web SDK with an `EventSource` refreshes from the OFREP event stream alone
/// (`tests/protocol/node/live/sse-refresh.js`); it changes a flag, so it has a server of its
/// own.
#[test]
fn protocol_node_web_sdk_event_stream() {
    let node_dir = root().join("tests/protocol/node");
    ensure_node_deps(&node_dir);
    let server = Server::start();
    let sdk_key = server.create_sdk_key("protocol-node-sse");
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec", "live/sse-refresh.js"])
        .current_dir(&node_dir)
        .env("NO_COLOR", "1")
        .env("SWITCHYARD_ADMIN_TOKEN", &server.admin_token);
    run_suite(
        "node --test tests/protocol/node/live/sse-refresh.js",
        cmd,
        node_tests_ran,
        &server,
        &sdk_key,
    );
}

#[test]
fn protocol_python_sdk() {
    let venv = root().join("target/protocol-venv");
    ensure_python_venv(
        &venv,
        &root().join("tests/protocol/python/requirements.txt"),
    );
    let server = Server::start();
    let sdk_key = server.create_sdk_key("protocol-python");
    let mut cmd = Command::new(venv_python(&venv));
    cmd.args(["-m", "pytest", "-q", "tests/protocol/python"])
        .current_dir(root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_suite(
        "pytest tests/protocol/python",
        cmd,
        pytest_tests_ran,
        &server,
        &sdk_key,
    );
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Runs a client suite against `server`, failing with its output unless it passed.
pub(crate) fn run_suite(
    what: &str,
    mut cmd: Command,
    tests_ran: fn(&str) -> u32,
    server: &Server,
    sdk_key: &str,
) {
    cmd.env("SWITCHYARD_URL", &server.url)
        .env("SWITCHYARD_SDK_KEY", sdk_key)
        // A proxy configured for the developer's network must not see loopback calls.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    let out = run(&mut cmd, SUITE_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.success {
        panic!(
            "{what} failed ({}).\n{}\n--- server log (tail) ---\n{}",
            out.status,
            out.text(),
            server.log_tail()
        );
    }
    // Guard against a runner that passes because it found nothing to run.
    assert!(
        tests_ran(&out.stdout) > 0,
        "{what} ran no test.\n{}",
        out.text()
    );
}

/// The test count of node's spec reporter (`ℹ tests 32`) or TAP reporter (`# tests 32`).
pub(crate) fn node_tests_ran(stdout: &str) -> u32 {
    stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("ℹ tests ")
                .or_else(|| line.strip_prefix("# tests "))
        })
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .sum()
}

/// The passed count of pytest's summary line (`21 passed in 0.42s`).
fn pytest_tests_ran(stdout: &str) -> u32 {
    stdout
        .lines()
        .filter_map(|line| line.trim().split_once(" passed"))
        .filter_map(|(n, _)| n.rsplit(' ').next()?.parse::<u32>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The server

/// A `switchyard serve` process on a free port with its own store, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) admin_token: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        Self::start_with(false)
    }

    /// A server that also has the example flags (`examples/flags.yaml`) when `examples`.
    pub(crate) fn start_with(examples: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin_token = format!("protocol-admin-{}", unique());
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(format!(
                "sqlite://{}",
                dir.path().join("db.sqlite").display()
            ))
            .arg("--import")
            .arg(root().join("tests/protocol/flags.yaml"));
        // Hermetic: no configuration from the caller's environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHYARD_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("SWITCHYARD_ADMIN_TOKEN", &admin_token)
            .env(
                "SWITCHYARD_SEED_EXAMPLES",
                if examples { "true" } else { "false" },
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("server stdout file"))
            .stderr(File::create(&stderr).expect("server stderr file"));
        let child = cmd.spawn().expect("start the switchyard binary");
        let mut server = Server {
            child,
            url: String::new(),
            admin_token,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let printed = fs::read_to_string(&stdout).unwrap_or_default();
            if let Some(url) = printed
                .lines()
                .find_map(|line| line.strip_prefix("listening on "))
            {
                server.url = url.trim().trim_end_matches('/').to_owned();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "switchyard serve exited with {status} before listening.\nstdout:\n{printed}\nstderr:\n{}",
                    server.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "switchyard serve printed no `listening on` line within 30 s.\nstdout:\n{printed}\nstderr:\n{}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Creates an SDK key of the `production` environment through the admin API.
    pub(crate) fn create_sdk_key(&self, name: &str) -> String {
        self.create_token(name, "sdk", Some("production"))
    }

    /// Creates a token of `role` (an SDK key of `environment`) through the admin API.
    pub(crate) fn create_token(&self, name: &str, role: &str, environment: Option<&str>) -> String {
        // No proxy from the environment: the server is on loopback.
        let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
        let mut response = agent
            .post(format!("{}/api/v1/tokens", self.url))
            .header("Authorization", format!("Bearer {}", self.admin_token))
            .send_json(json!({"name": name, "role": role, "environment": environment}))
            .unwrap_or_else(|e| panic!("POST /api/v1/tokens: {e}\n{}", self.log_tail()));
        assert_eq!(response.status().as_u16(), 201, "POST /api/v1/tokens");
        let body: Value = response
            .body_mut()
            .read_json()
            .expect("token response is JSON");
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no `token` in {body}"))
            .to_owned()
    }

    /// The last lines of the server's stderr (its log).
    pub(crate) fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Client dependencies

/// `npm ci` in `dir` unless `node_modules` was installed from the current `package-lock.json`.
pub(crate) fn ensure_node_deps(dir: &Path) {
    let node = tool_version(
        "node",
        &["--version"],
        "Node.js 20 or newer (with npm) is needed by the OpenFeature JS client and browser tests",
    );
    let major: u32 = node
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the OpenFeature JS client and browser tests need Node.js 20 or newer; `node --version` says {node}"
    );
    tool_version(
        npm(),
        &["--version"],
        "npm (part of Node.js) is needed to install the test clients",
    );

    let lock = fs::read(dir.join("package-lock.json"))
        .unwrap_or_else(|e| panic!("{}/package-lock.json: {e}", dir.display()));
    let stamp_path = dir.join("node_modules/.switchyard-protocol-stamp");
    let stamp = format!("{:016x} node {}", fnv1a(&lock), node.trim());

    let _guard = InstallLock::acquire(&NODE_INSTALL, "protocol-node");
    if fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return;
    }
    let mut cmd = Command::new(npm());
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    let out = run(&mut cmd, INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("npm ci: {e}"));
    assert!(
        out.success,
        "`npm ci` in {} failed ({}):\n{}",
        dir.display(),
        out.status,
        out.text()
    );
    fs::write(&stamp_path, &stamp).expect("write the node_modules stamp");
}

/// A virtualenv at `venv` with `requirements` installed, rebuilt when they (or python3) change.
pub(crate) fn ensure_python_venv(venv: &Path, requirements: &Path) {
    let python = tool_version(
        "python3",
        &["--version"],
        "Python 3.10 or newer (with its venv module) is needed by the OpenFeature Python client tests",
    );
    let version: Vec<u32> = python
        .trim()
        .trim_start_matches("Python ")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        version.as_slice() >= [3, 10].as_slice(),
        "the OpenFeature Python client tests need Python 3.10 or newer; `python3 --version` says {python}"
    );

    let reqs = fs::read(requirements).unwrap_or_else(|e| panic!("{}: {e}", requirements.display()));
    let stamp_path = venv.join("switchyard-protocol-stamp");
    let stamp = format!("{:016x} {}", fnv1a(&reqs), python.trim());

    let lock_name = venv
        .file_name()
        .map_or_else(|| "venv".into(), |n| n.to_string_lossy().into_owned());
    let _guard = InstallLock::acquire(&PYTHON_INSTALL, &lock_name);
    if venv_python(venv).exists()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        return;
    }
    if venv.exists() {
        fs::remove_dir_all(venv).expect("remove the outdated target/protocol-venv");
    }
    let out = run(
        Command::new("python3").arg("-m").arg("venv").arg(venv),
        INSTALL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("python3 -m venv: {e}"));
    assert!(
        out.success,
        "`python3 -m venv {}` failed ({}); on Debian/Ubuntu install the python3-venv package.\n{}",
        venv.display(),
        out.status,
        out.text()
    );
    let out = run(
        Command::new(venv_python(venv))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-r",
            ])
            .arg(requirements),
        INSTALL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("pip install: {e}"));
    if !out.success {
        let _ = fs::remove_dir_all(venv);
        panic!(
            "`pip install -r {}` failed ({}):\n{}",
            requirements.display(),
            out.status,
            out.text()
        );
    }
    fs::write(&stamp_path, &stamp).expect("write the venv stamp");
}

pub(crate) fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    }
}

fn npm() -> &'static str {
    if cfg!(windows) {
        "npm.cmd"
    } else {
        "npm"
    }
}

/// Runs `program args` and returns its output, failing with `need` when it cannot be run.
fn tool_version(program: &str, args: &[&str], need: &str) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            // Older Pythons print their version on stderr.
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            text.trim().to_owned()
        }
        Ok(out) => panic!(
            "`{program} {}` failed ({}): {need}.\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{program}` is not on PATH: {need} (see tests/protocol/README.md)")
        }
        Err(e) => panic!("cannot run `{program}`: {e}: {need}"),
    }
}

/// FNV-1a, 64 bits: a stable fingerprint for the install stamps.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Serializes an install: a mutex for the threads of this test binary, and a lock file in
/// `target/` for other processes (another `cargo test`, or a runner with a process per test).
struct InstallLock {
    path: PathBuf,
    _thread: MutexGuard<'static, ()>,
}

impl InstallLock {
    fn acquire(mutex: &'static Mutex<()>, name: &str) -> Self {
        let thread = mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = root().join("target");
        fs::create_dir_all(&dir).expect("create target/");
        let path = dir.join(format!("{name}.lock"));
        let deadline = Instant::now() + INSTALL_TIMEOUT + STALE_LOCK;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return InstallLock {
                        path,
                        _thread: thread,
                    };
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if lock_is_stale(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} is held for too long; remove it if no test is running",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }
}

/// A lock file whose process is gone (where `/proc` tells) or that is very old.
fn lock_is_stale(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .unwrap_or_default();
    if age > STALE_LOCK {
        return true;
    }
    let pid = fs::read_to_string(path).unwrap_or_default();
    let pid = pid.trim();
    // An empty file is a lock being written right now; give its writer a moment.
    if pid.is_empty() {
        return age > Duration::from_secs(10);
    }
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid).exists()
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

pub(crate) struct Output {
    pub(crate) success: bool,
    /// How it ended: an exit status, or that it was killed for taking too long.
    pub(crate) status: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn text(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with its output in temporary files, killing it after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(File::create(&err_path).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    let (success, status) = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break (status.success(), status.to_string()),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("killed after {} s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let read =
        |path: &Path| String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    Ok(Output {
        success,
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}
