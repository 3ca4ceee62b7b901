//! Runs the evaluation conformance fixtures in `tests/fixtures/evaluation/` (see its README).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use switchyard_engine::source::{parse, Format};
use switchyard_engine::{
    compile, load_file, load_value, normalize, Change, Context, Document, Ruleset,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Evaluates one case and renders it in the fixtures' vocabulary.
pub fn run_case(ruleset: &Ruleset, case: &Map<String, Value>) -> Map<String, Value> {
    let env = case.get("env").and_then(Value::as_str).unwrap_or("");
    let now = case
        .get("now")
        .and_then(Value::as_str)
        .map(|t| OffsetDateTime::parse(t, &Rfc3339).expect("case `now` is RFC 3339"))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let flag = case["flag"].as_str().expect("case has a flag");
    let ctx = Context::from_value(case.get("context").cloned().unwrap_or(Value::Null))
        .expect("case context is valid");
    let eval = ruleset.evaluator(env, now).evaluate(flag, &ctx);
    let mut out = Map::new();
    out.insert("value".into(), eval.value.clone());
    out.insert(
        "variant".into(),
        eval.variant.map_or(Value::Null, Value::from),
    );
    out.insert("reason".into(), eval.reason.as_str().into());
    if let Some(id) = eval.rule_id() {
        out.insert("ruleId".into(), id.into());
    }
    if let Some(detail) = eval.detail {
        out.insert("detail".into(), detail.tag().into());
    }
    if let Some(err) = &eval.error {
        out.insert("errorCode".into(), err.code.as_str().into());
    }
    out
}

/// Compares `actual` with `expect`: listed fields must be equal (numbers by value and kind),
/// `ruleId`/`detail`/`errorCode` must be absent unless listed.
fn mismatches(expect: &Map<String, Value>, actual: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (field, wanted) in expect {
        let got = actual.get(field).unwrap_or(&Value::Null);
        if got != wanted {
            problems.push(format!("{field}: expected {wanted}, got {got}"));
        }
    }
    for field in ["ruleId", "detail", "errorCode"] {
        if !expect.contains_key(field) {
            if let Some(got) = actual.get(field) {
                problems.push(format!("{field}: expected none, got {got}"));
            }
        }
    }
    problems
}

/// `doc` with every flag normalized, compiled (and without errors).
fn normalized(doc: &Document) -> Ruleset {
    let mut doc = doc.clone();
    for flag in &mut doc.flags {
        let (n, diagnostics) = normalize(flag);
        assert!(diagnostics.is_empty(), "{}: {diagnostics:?}", flag.key);
        // Normalizing is idempotent.
        assert_eq!(normalize(&n).0, n, "{}", flag.key);
        *flag = n;
    }
    let (ruleset, diagnostics) = compile(&doc);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    ruleset
}

/// `doc` built by applying one change at a time to an empty ruleset, segments first and flags
/// in reverse order (so prerequisites and segments arrive before or after their users). Every
/// intermediate step may have errors (a prerequisite not yet there); the last must not.
fn incremental(doc: &Document) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let mut last = Vec::new();
    for (name, def) in &doc.segments {
        (ruleset, last) = ruleset.apply(&[Change::Segment(name.clone(), def.clone())]);
    }
    for flag in doc.flags.iter().rev() {
        (ruleset, last) = ruleset.apply(&[Change::Flag(Box::new(flag.clone()))]);
    }
    assert!(last.iter().all(|d| !d.is_error()), "{last:?}");
    let keys: Vec<&str> = ruleset.keys().collect();
    let expected: Vec<&str> = doc.flags.iter().map(|f| f.key.as_str()).collect();
    assert!(keys.len() == expected.len(), "{keys:?} vs {expected:?}");
    ruleset
}

#[test]
fn evaluation_fixtures() {
    let dir = fixtures().join("evaluation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected fixture suites in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable fixture");
        let suite_file = parse(&text, Format::Yaml)
            .expect("fixture is valid YAML")
            .value;
        for suite in suite_file["suites"].as_array().expect("suites") {
            let ruleset = match (suite.get("document"), suite.get("documentFile")) {
                (Some(doc), None) => load_value(doc.clone())
                    .unwrap_or_else(|e| panic!("{}: document does not load: {e}", file.display())),
                (None, Some(path)) => {
                    let path = fixtures().join(path.as_str().expect("documentFile is a path"));
                    load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                }
                _ => panic!(
                    "{}: a suite needs `document` or `documentFile`",
                    file.display()
                ),
            };
            // The same definitions, normalized, and built up one change at a time, must serve
            // exactly the same.
            let variants = [
                ("as written", ruleset.clone()),
                ("normalized", normalized(&ruleset.to_document())),
                ("incremental", incremental(&ruleset.to_document())),
            ];
            for case in suite["cases"].as_array().expect("cases") {
                let case = case.as_object().expect("case is an object");
                cases += 1;
                let expect = case["expect"].as_object().expect("expect is an object");
                for (how, ruleset) in &variants {
                    let actual = run_case(ruleset, case);
                    let mut problems = mismatches(expect, &actual);
                    problems.extend(crate::explain::disagreement(ruleset, case));
                    if !problems.is_empty() {
                        failures.push(format!(
                            "{} — {} ({how}): {}",
                            file.file_name().unwrap_or_default().to_string_lossy(),
                            case["name"].as_str().unwrap_or("?"),
                            problems.join("; ")
                        ));
                    }
                }
            }
        }
    }
    assert!(cases > 30, "only {cases} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
