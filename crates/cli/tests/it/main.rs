//! Drives the real `switchyard` binary.

mod delivery;
mod edge;
mod experiments;
mod outage;
mod protocol;
mod replicas;
mod rollouts;
mod schedules;
mod serve;
mod stats;
mod ui;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

mod admin;
mod api_schema;
mod approvals;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn seeds(name: &str) -> PathBuf {
    repo("crates/engine/tests/fixtures/seeds").join(name)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).expect("utf-8 stdout"),
        String::from_utf8(stderr).expect("utf-8 stderr"),
    )
}

/// `switchyard openapi | head -1`: the reader leaves after the first line, and the command
/// ends quietly and successfully instead of panicking on the broken pipe. The document is
/// larger than a pipe's buffer, so the write that fails is certain to happen after the reader
/// is gone.
#[test]
fn output_to_a_reader_that_went_away_ends_quietly() {
    use std::io::Read;
    let mut child = bin()
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut first = [0u8; 16];
    let mut stdout = child.stdout.take().expect("stdout");
    stdout
        .read_exact(&mut first)
        .expect("the start of the document");
    drop(stdout);
    let out = child.wait_with_output().expect("binary ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn validate_accepts_the_seed_files_and_examples() {
    let (code, out, err) = run(bin()
        .arg("validate")
        .arg(seeds("default-flags.yaml"))
        .arg(seeds("feature_flags.json"))
        .arg(repo("examples/flags.yaml")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("default-flags.yaml (4 flags)"), "{out}");
    assert!(out.contains("feature_flags.json (2 flags)"), "{out}");
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let bad = repo("crates/engine/tests/fixtures/invalid/many-problems.yaml");
    let (code, out, _) = run(bin()
        .arg("validate")
        .arg(seeds("default-flags.yaml"))
        .arg(&bad));
    assert_eq!(code, 1);
    assert!(
        out.contains("ok: "),
        "valid files are still reported: {out}"
    );
    let errors = out.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, 13, "{out}");
    assert!(out.contains("many-problems.yaml:11: flag `bad regex`: flags[0].rules[0].conditions[0].value: invalid regular expression"), "{out}");
    assert!(out.contains("1 of 2 files invalid, 13 errors"), "{out}");

    let (code, out, _) = run(bin().args(["validate", "--json"]).arg(&bad));
    assert_eq!(code, 1);
    let items: Vec<Value> = serde_json::from_str(&out).expect("json diagnostics");
    assert_eq!(items.len(), 13);
    assert!(items
        .iter()
        .any(|d| d["flag"] == "typo" && d["path"] == "flags[9].enabeld" && d["line"] == 44));
}

#[test]
fn eval_single_flag_prints_one_object() {
    let (code, out, err) = run(bin()
        .args(["eval", "--file"])
        .arg(seeds("default-flags.yaml"))
        .args([
            "--flag",
            "parallel-agents-limit",
            "--context",
            r#"{"targetingKey":"u1","tenant":{"type":"professional"}}"#,
        ]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(
        v,
        json!({"key": "parallel-agents-limit", "value": 10, "variant": "10", "reason": "TARGETING_MATCH",
               "ruleId": "professional-medium-limit", "detail": "RULE"})
    );
}

#[test]
fn eval_reports_errors_in_the_result() {
    let (code, out, err) = run(bin()
        .args(["eval", "--file"])
        .arg(seeds("default-flags.yaml"))
        .args(["--flag", "nope", "--context", "{}"]));
    assert_eq!(code, 0);
    assert!(err.contains("has no flag `nope`"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(v["reason"], "ERROR");
    assert!(v["errorDetails"].as_str().unwrap().contains("nope"));
}

#[test]
fn eval_all_prints_an_array_and_honours_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.yaml");
    std::fs::write(
        &file,
        "flags:\n  - key: a\n    environments:\n      production: {enabled: false}\n  - key: b\n    type: string\n    defaultValue: x\n",
    )
    .unwrap();
    let (code, out, _) = run(bin()
        .args([
            "eval",
            "--all",
            "--context",
            r#"{"targetingKey":"u"}"#,
            "--file",
        ])
        .arg(&file));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["value"], true);
    assert_eq!(v[1]["value"], "x");
    let (_, out, _) = run(bin()
        .args([
            "eval",
            "--all",
            "--env",
            "production",
            "--context",
            r#"{"targetingKey":"u"}"#,
            "--file",
        ])
        .arg(&file));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["value"], false);
    assert_eq!(v[0]["reason"], "DISABLED");
}

#[test]
fn eval_contexts_prints_one_line_per_context_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let contexts = dir.path().join("contexts.jsonl");
    let mut lines = String::new();
    for i in 0..2000 {
        lines.push_str(&format!("{{\"targetingKey\":\"user-{i}\"}}\n"));
    }
    lines.push_str("not json\n");
    lines.push_str("{\"targetingKey\": 5}\n");
    std::fs::write(&contexts, lines).unwrap();
    let (code, out, err) = run(bin()
        .args(["eval", "--file"])
        .arg(seeds("feature_flags.json"))
        .args(["--flag", "enhanced_risk_scoring", "--contexts"])
        .arg(&contexts));
    assert_eq!(code, 1, "bad lines make the exit code non-zero");
    assert!(err.contains("2 line(s)"), "{err}");
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2002);
    let on = results[..2000]
        .iter()
        .filter(|r| r["value"] == true)
        .count();
    assert!((400..600).contains(&on), "25 % of 2000 ≈ 500, got {on}");
    assert_eq!(
        results[7]["value"], true,
        "user-7 is pinned inside the rollout"
    );
    // Every line says which context it answers.
    assert_eq!(results[7]["line"], 8);
    assert_eq!(results[7]["targetingKey"], "user-7");
    assert_eq!(results[2000]["line"], 2001);
    assert_eq!(results[2000]["errorCode"], "PARSE_ERROR");
    assert!(results[2000]["errorDetails"]
        .as_str()
        .unwrap()
        .starts_with("line 2001:"));
    assert_eq!(results[2001]["errorCode"], "INVALID_CONTEXT");
}

#[test]
fn eval_reads_flag_definitions_from_standard_input() {
    use std::io::Write as _;
    let yaml = std::fs::read_to_string(seeds("default-flags.yaml")).unwrap();
    let flag = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("- key:"))
        .map(|k| k.trim().trim_matches('"').to_owned())
        .expect("a flag in the seed file");
    let mut child = bin()
        .args([
            "eval",
            "--file",
            "-",
            "--flag",
            &flag,
            "--context",
            r#"{"targetingKey": "u"}"#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["key"], flag.as_str());
    assert_ne!(v["reason"], "ERROR", "{stdout}");
    // Both from standard input cannot work: said before reading anything.
    let (code, _, err) = run(bin().args(["eval", "--file", "-", "--all", "--contexts", "-"]));
    assert_eq!(code, 2);
    assert!(err.contains("cannot both read standard input"), "{err}");
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let (code, _, err) = run(bin().args(["eval", "--file", "x.yaml", "--flag", "a"]));
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("--context"), "{err}");
    let (code, _, err) = run(bin()
        .args(["eval", "--flag", "a", "--context", "[1]", "--file"])
        .arg(seeds("default-flags.yaml")));
    assert_eq!(code, 2);
    assert!(err.contains("must be a JSON object"), "{err}");
    let (code, _, err) = run(bin().args([
        "eval",
        "--flag",
        "a",
        "--context",
        "{}",
        "--file",
        "missing.yaml",
    ]));
    assert_eq!(code, 2);
    assert!(err.starts_with("error: cannot load missing.yaml"), "{err}");
}
