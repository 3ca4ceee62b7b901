//! `switchyard stats` against the scipy / statsmodels reference values of switchyard-stats,
//! through the real binary and its `--json`; and the reference values themselves re-computed
//! by `crates/stats/reference/generate.py` in a virtualenv with the pinned scipy and
//! statsmodels, so the committed `values.json` cannot drift from what they compute.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::{ensure_python_venv, root, run, venv_python};

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("crates/stats/reference/values.json"))
        .expect("crates/stats/reference/values.json");
    serde_json::from_str(&text).expect("JSON")
}

fn stats(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("stats")
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[track_caller]
fn same(what: &str, got: &Value, want: &Value, rel: f64) {
    match (got, want) {
        (Value::Null, Value::Null) => {}
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{what}: {got} vs {want}");
            for (k, (g, w)) in g.iter().zip(w).enumerate() {
                same(&format!("{what}[{k}]"), g, w, rel);
            }
        }
        (Value::Bool(g), Value::Bool(w)) => assert_eq!(g, w, "{what}"),
        (g, w) if g.is_number() && w.is_number() => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= (rel * w.abs()).max(1e-15),
                "{what}: {g} vs scipy {w}"
            );
        }
        _ => panic!("{what}: {got} vs scipy {want}"),
    }
}

/// The JSON has exactly `fields`, each matching the reference.
#[track_caller]
fn check(what: &str, got: &Value, want: &Value, fields: &[&str]) {
    let keys: Vec<&str> = got
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not a JSON object: {got}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected: Vec<&str> = fields.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{what}: the fields");
    for field in fields {
        let rel = if field.starts_with("p_value") {
            1e-7
        } else {
            1e-9
        };
        same(&format!("{what} {field}"), &got[field], &want[field], rel);
    }
}

#[test]
fn the_calculator_prints_what_scipy_computes() {
    let r = reference();
    for case in r["cases"]["proportions"].as_array().unwrap() {
        let i: Vec<u64> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let (code, got, err) = stats(&[
            "proportions",
            "--control",
            &format!("{}/{}", i[0], i[1]),
            "--treatment",
            &format!("{}/{}", i[2], i[3]),
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        check(
            &format!("proportions {i:?}"),
            &got,
            &case["expect"],
            &[
                "control_rate",
                "treatment_rate",
                "abs_lift",
                "rel_lift",
                "z",
                "p_value",
                "ci_abs",
                "ci_rel",
                "chance_to_beat_control",
                "expected_loss_treatment",
                "expected_loss_control",
            ],
        );
    }
    for case in r["cases"]["means"].as_array().unwrap() {
        let i: Vec<String> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let (code, got, err) = stats(&[
            "means",
            "--control",
            &i[..3].join(","),
            "--treatment",
            &i[3..].join(","),
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        check(
            &format!("means {i:?}"),
            &got,
            &case["expect"],
            &["diff", "rel_lift", "t", "df", "p_value", "ci_abs", "ci_rel"],
        );
    }
    for case in r["cases"]["srm"].as_array().unwrap() {
        let list = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (code, got, err) = stats(&[
            "srm",
            "--observed",
            &list(&case["input"]["observed"]),
            "--weights",
            &list(&case["input"]["weights"]),
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        check("srm", &got, &case["expect"], &["chi2", "df", "p_value"]);
    }
    for case in r["cases"]["adjust"].as_array().unwrap() {
        let ps: Vec<String> = case["input"]["p_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect();
        let (code, got, err) = stats(&[
            "adjust",
            "--method",
            case["input"]["method"].as_str().unwrap(),
            "--p-values",
            &ps.join(","),
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        check("adjust", &got, &case["expect"], &["adjusted", "reject"]);
    }
    for case in r["cases"]["sample_size"].as_array().unwrap() {
        let i: Vec<String> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect();
        let (code, got, err) = stats(&[
            "sample-size",
            "--baseline",
            &i[0],
            "--mde",
            &i[1],
            "--alpha",
            &i[2],
            "--power",
            &i[3],
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        check(
            "sample-size",
            &got,
            &case["expect"],
            &["per_arm", "total", "treatment_rate"],
        );
    }
}

#[test]
fn calculator_mistakes_exit_2_and_say_what_was_wrong() {
    for (args, says) in [
        (
            vec!["proportions", "--control", "100", "--treatment", "120/1000"],
            "CONVERSIONS/UNITS",
        ),
        (
            vec![
                "proportions",
                "--control",
                "1200/1000",
                "--treatment",
                "120/1000",
            ],
            "1200 conversions out of 1000 units",
        ),
        (
            vec![
                "proportions",
                "--control",
                "10/100",
                "--treatment",
                "12/100",
                "--alpha",
                "5",
            ],
            "alpha",
        ),
        (
            vec!["means", "--control", "10,2", "--treatment", "10,2,100"],
            "MEAN,SD,N",
        ),
        (
            vec!["srm", "--observed", "10,20", "--weights", "1,1,1"],
            "3 weights for 2 arms",
        ),
        (
            vec!["adjust", "--method", "sidak", "--p-values", "0.1"],
            "holm, bh or bonferroni",
        ),
        (
            vec!["adjust", "--method", "holm", "--p-values", "0.1,1.5"],
            "p_values[1]",
        ),
        (
            vec!["sample-size", "--baseline", "0.6", "--mde", "1"],
            "baseline × (1 + mde)",
        ),
    ] {
        let (code, _, err) = stats(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn the_reference_values_are_what_scipy_and_statsmodels_compute() {
    let venv = root().join("target/stats-reference-venv");
    ensure_python_venv(
        &venv,
        &root().join("crates/stats/reference/requirements.txt"),
    );
    let out = run(
        Command::new(venv_python(&venv)).arg(root().join("crates/stats/reference/generate.py")),
        Duration::from_secs(300),
    )
    .expect("generate.py runs");
    assert!(out.success, "generate.py failed:\n{}", out.text());
    let committed = std::fs::read_to_string(root().join("crates/stats/reference/values.json"))
        .expect("values.json");
    assert!(
        out.stdout == committed,
        "crates/stats/reference/values.json differs from what generate.py computes now; regenerate it:\n  python3 crates/stats/reference/generate.py > crates/stats/reference/values.json"
    );
}
