//! The web UI in a real browser: `tests/ui/ui.test.js` (node's test runner driving Debian's
//! `chromium` headless through npm `playwright-core`) against the real binary with the example
//! flags. The browser must be installed (`.ci/run` installs Debian's `chromium`; another one
//! is named with `CHROMIUM=/path`): without it this test fails, it never skips.
//! `SWITCHYARD_UI_SCREENSHOTS=docs/ui` also saves the screenshots the docs show.

use std::path::Path;
use std::process::Command;

use crate::protocol::{ensure_node_deps, node_tests_ran, root, run_suite, Server};

#[test]
fn web_ui_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "the browser tests need Chromium at {chromium} (Debian: apt-get install chromium; or set CHROMIUM)"
    );
    let dir = root().join("tests/ui");
    ensure_node_deps(&dir);
    let server = Server::start_with(true);
    let viewer = server.create_token("ui-viewer", "viewer", None);
    let sdk_key = server.create_token("ui-sdk", "sdk", Some("development"));
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("CHROMIUM", &chromium)
        .env("SWITCHYARD_ADMIN_TOKEN", &server.admin_token)
        .env("SWITCHYARD_VIEWER_TOKEN", &viewer);
    if let Ok(shots) = std::env::var("SWITCHYARD_UI_SCREENSHOTS") {
        cmd.env("SWITCHYARD_UI_SCREENSHOTS", root().join(shots));
    }
    run_suite(
        "node --test tests/ui",
        cmd,
        node_tests_ran,
        &server,
        &sdk_key,
    );
}
