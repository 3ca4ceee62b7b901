//! Every function against the reference values scipy / statsmodels computed
//! (`reference/generate.py` → `reference/values.json`): closed forms to 1e-9 relative,
//! p-values to 1e-7 relative, quadrature results to 1e-9 (values far below the precision of
//! double-precision arithmetic compared absolutely at 1e-15).

use serde_json::Value;
use switchyard_stats::*;

fn values() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/reference/values.json"
    ))
    .expect("reference/values.json");
    serde_json::from_str(&text).expect("reference values are JSON")
}

fn cases(name: &str) -> Vec<Value> {
    let v = values();
    let list = v["cases"][name].as_array().expect(name).clone();
    assert!(!list.is_empty(), "no {name} cases");
    list
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[track_caller]
fn close(what: &str, got: f64, want: &Value, rel: f64) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: expected a number, reference has {want}"));
    let tolerance = (rel * want.abs()).max(1e-15);
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} vs scipy {want} (off by {:e}, relative {:e})",
        (got - want).abs(),
        ((got - want) / want).abs()
    );
}

#[track_caller]
fn close_opt(what: &str, got: Option<f64>, want: &Value, rel: f64) {
    match (got, want.is_null()) {
        (None, true) => {}
        (Some(g), false) => close(what, g, want, rel),
        (g, _) => panic!("{what}: {g:?} vs scipy {want}"),
    }
}

#[track_caller]
fn close_pair(what: &str, got: Option<[f64; 2]>, want: &Value, rel: f64) {
    match (got, want.is_null()) {
        (None, true) => {}
        (Some([lo, hi]), false) => {
            close(&format!("{what}[0]"), lo, &want[0], rel);
            close(&format!("{what}[1]"), hi, &want[1], rel);
        }
        (g, _) => panic!("{what}: {g:?} vs scipy {want}"),
    }
}

const CLOSED: f64 = 1e-9;
const P: f64 = 1e-7;

#[test]
fn proportions_match_statsmodels_and_scipy_quadrature() {
    for case in cases("proportions") {
        let i: Vec<u64> = numbers(&case["input"]).iter().map(|&x| x as u64).collect();
        let e = &case["expect"];
        let r = proportions(
            Proportion::new(i[0], i[1]).unwrap(),
            Proportion::new(i[2], i[3]).unwrap(),
            0.05,
        )
        .unwrap();
        let w = |f: &str| format!("{i:?} {f}");
        close(
            &w("control_rate"),
            r.control_rate,
            &e["control_rate"],
            CLOSED,
        );
        close(
            &w("treatment_rate"),
            r.treatment_rate,
            &e["treatment_rate"],
            CLOSED,
        );
        close(&w("abs_lift"), r.abs_lift, &e["abs_lift"], CLOSED);
        close_opt(&w("rel_lift"), r.rel_lift, &e["rel_lift"], CLOSED);
        close_opt(&w("z"), r.z, &e["z"], CLOSED);
        close_opt(&w("p_value"), r.p_value, &e["p_value"], P);
        close_pair(&w("ci_abs"), Some(r.ci_abs), &e["ci_abs"], CLOSED);
        close_pair(&w("ci_rel"), r.ci_rel, &e["ci_rel"], CLOSED);
        let bayes = 1e-9;
        close(
            &w("chance_to_beat_control"),
            r.chance_to_beat_control,
            &e["chance_to_beat_control"],
            bayes,
        );
        close(
            &w("expected_loss_treatment"),
            r.expected_loss_treatment,
            &e["expected_loss_treatment"],
            bayes,
        );
        close(
            &w("expected_loss_control"),
            r.expected_loss_control,
            &e["expected_loss_control"],
            bayes,
        );
    }
}

#[test]
fn means_match_scipy_welch() {
    for case in cases("means") {
        let i = numbers(&case["input"]);
        let e = &case["expect"];
        let r = means(
            MeanSummary::new(i[0], i[1], i[2]).unwrap(),
            MeanSummary::new(i[3], i[4], i[5]).unwrap(),
            0.05,
        )
        .unwrap();
        let w = |f: &str| format!("{i:?} {f}");
        close(&w("diff"), r.diff, &e["diff"], CLOSED);
        close_opt(&w("rel_lift"), r.rel_lift, &e["rel_lift"], CLOSED);
        close_opt(&w("t"), r.t, &e["t"], CLOSED);
        close_opt(&w("df"), r.df, &e["df"], CLOSED);
        close_opt(&w("p_value"), r.p_value, &e["p_value"], P);
        close_pair(&w("ci_abs"), r.ci_abs, &e["ci_abs"], CLOSED);
        close_pair(&w("ci_rel"), r.ci_rel, &e["ci_rel"], CLOSED);
    }
}

#[test]
fn srm_matches_scipy_chisquare() {
    for case in cases("srm") {
        let observed: Vec<u64> = numbers(&case["input"]["observed"])
            .iter()
            .map(|&x| x as u64)
            .collect();
        let weights = numbers(&case["input"]["weights"]);
        let r = srm(&observed, &weights).unwrap();
        let e = &case["expect"];
        close(&format!("{observed:?} chi2"), r.chi2, &e["chi2"], CLOSED);
        assert_eq!(Some(u64::from(r.df)), e["df"].as_u64());
        close(
            &format!("{observed:?} p_value"),
            r.p_value,
            &e["p_value"],
            P,
        );
        let want = match r.p_value {
            p if p < 0.001 => SrmStatus::Alert,
            p if p < 0.01 => SrmStatus::Warning,
            _ => SrmStatus::Ok,
        };
        assert_eq!(r.status, want);
    }
}

#[test]
fn corrections_match_statsmodels_multipletests() {
    for case in cases("adjust") {
        let method: Method = case["input"]["method"].as_str().unwrap().parse().unwrap();
        let ps = numbers(&case["input"]["p_values"]);
        let r = adjust(method, &ps, 0.05).unwrap();
        let e = &case["expect"];
        for (k, got) in r.adjusted.iter().enumerate() {
            close(
                &format!("{method:?} {ps:?} [{k}]"),
                *got,
                &e["adjusted"][k],
                CLOSED,
            );
        }
        let want: Vec<bool> = e["reject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        assert_eq!(r.reject, want, "{method:?} {ps:?}");
    }
}

#[test]
fn planning_matches_the_normal_approximation() {
    for case in cases("sample_size") {
        let i = numbers(&case["input"]);
        let r = sample_size(i[0], i[1], i[2], i[3]).unwrap();
        let e = &case["expect"];
        assert_eq!(Some(r.per_arm), e["per_arm"].as_u64(), "{i:?}");
        assert_eq!(Some(r.total), e["total"].as_u64(), "{i:?}");
        close(
            &format!("{i:?} treatment_rate"),
            r.treatment_rate,
            &e["treatment_rate"],
            CLOSED,
        );
    }
    for case in cases("power") {
        let i = numbers(&case["input"]);
        let got = power(i[0], i[1], i[2] as u64, i[3]).unwrap();
        close(&format!("power {i:?}"), got, &case["expect"], CLOSED);
    }
    for case in cases("mde") {
        let i = numbers(&case["input"]);
        let got = minimum_detectable_effect(i[0], i[1] as u64, i[2], i[3]).unwrap();
        close(&format!("mde {i:?}"), got, &case["expect"], CLOSED);
    }
}

#[test]
fn confidence_sequences_match_the_reference() {
    for case in cases("confidence_sequence") {
        let i = numbers(&case["input"]);
        let r = confidence_sequence(i[0], i[1], i[2], 0.05, DEFAULT_TUNING).unwrap();
        let e = &case["expect"];
        close_pair(&format!("{i:?} ci"), Some(r.ci), &e["ci"], CLOSED);
        close(&format!("{i:?} p_value"), r.p_value, &e["p_value"], P);
    }
}

#[test]
fn gaussian_posteriors_match_scipy_norm() {
    for case in cases("gaussian_bayes") {
        let i = numbers(&case["input"]);
        let r = gaussian(i[0], i[1]).unwrap();
        let e = &case["expect"];
        close(
            &format!("{i:?} chance"),
            r.chance_to_beat_control,
            &e["chance_to_beat_control"],
            CLOSED,
        );
        close(
            &format!("{i:?} loss T"),
            r.expected_loss_treatment,
            &e["expected_loss_treatment"],
            CLOSED,
        );
        close(
            &format!("{i:?} loss C"),
            r.expected_loss_control,
            &e["expected_loss_control"],
            CLOSED,
        );
    }
}

#[test]
fn cuped_matches_the_reference() {
    for case in cases("cuped") {
        let input = &case["input"];
        let pair = |v: &Value| (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
        let arms: Vec<CupedArm> = (0..2)
            .map(|k| CupedArm {
                n: input["n"][k].as_u64().unwrap(),
                y: pair(&input["y"][k]),
                x: pair(&input["x"][k]),
                xy: input["xy"][k].as_f64().unwrap(),
            })
            .collect();
        let r = cuped(&arms).unwrap();
        let e = &case["expect"];
        close("theta", r.theta, &e["theta"], 1e-9);
        for (k, arm) in r.arms.iter().enumerate() {
            close(
                &format!("arm {k} mean"),
                arm.mean,
                &e["arms"][k]["mean"],
                1e-9,
            );
            // Sums of squares of thousands of values keep about 1e-9 of the variance.
            close(
                &format!("arm {k} variance"),
                arm.sd * arm.sd,
                &e["arms"][k]["variance"],
                1e-8,
            );
        }
    }
}
