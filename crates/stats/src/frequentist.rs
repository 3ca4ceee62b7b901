//! Fixed-horizon tests: proportions (z), means (Welch), and CUPED-adjusted means.

use crate::bayes::{beta_binomial, BayesResult};
use crate::dist::{normal_quantile, normal_two_sided, t_quantile, t_two_sided};
use crate::{check_alpha, finite, MeanSummary, Proportion, StatsError};

/// A conversion metric, treatment against control.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProportionsResult {
    /// Control's conversion rate.
    pub control_rate: f64,
    /// Treatment's conversion rate.
    pub treatment_rate: f64,
    /// treatment_rate − control_rate.
    pub abs_lift: f64,
    /// abs_lift / control_rate (`None` when control converted nobody).
    pub rel_lift: Option<f64>,
    /// The z statistic with the pooled standard error (`None` when nobody or everybody
    /// converted in both arms: there is no variance to test against).
    pub z: Option<f64>,
    /// Two-sided p-value of `z`.
    pub p_value: Option<f64>,
    /// Interval for abs_lift, unpooled (Wald) standard error.
    pub ci_abs: [f64; 2],
    /// Interval for rel_lift, delta method.
    pub ci_rel: Option<[f64; 2]>,
    /// P(treatment rate > control rate), Beta(1, 1) priors.
    pub chance_to_beat_control: f64,
    /// E[max(control − treatment, 0)], absolute rate units.
    pub expected_loss_treatment: f64,
    /// E[max(treatment − control, 0)], absolute rate units.
    pub expected_loss_control: f64,
}

/// Two-proportion test, intervals and Bayesian summaries; see the crate docs for conventions.
pub fn proportions(
    control: Proportion,
    treatment: Proportion,
    alpha: f64,
) -> Result<ProportionsResult, StatsError> {
    check_alpha(alpha)?;
    let (nc, nt) = (control.units as f64, treatment.units as f64);
    let (pc, pt) = (control.rate(), treatment.rate());
    let abs_lift = pt - pc;
    let pooled = (control.conversions + treatment.conversions) as f64 / (nc + nt);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    let z = (se_pooled > 0.0).then(|| abs_lift / se_pooled);
    let q = normal_quantile(1.0 - alpha / 2.0);
    let se = (pc * (1.0 - pc) / nc + pt * (1.0 - pt) / nt).sqrt();
    let ci_rel = (pc > 0.0).then(|| {
        let rel = abs_lift / pc;
        let var = pt * (1.0 - pt) / (nt * pc * pc) + pt * pt * pc * (1.0 - pc) / (nc * pc.powi(4));
        let half = q * var.sqrt();
        [rel - half, rel + half]
    });
    let BayesResult {
        chance_to_beat_control,
        expected_loss_treatment,
        expected_loss_control,
    } = beta_binomial(control, treatment);
    Ok(ProportionsResult {
        control_rate: pc,
        treatment_rate: pt,
        abs_lift,
        rel_lift: (pc > 0.0).then(|| abs_lift / pc),
        z,
        p_value: z.map(normal_two_sided),
        ci_abs: [abs_lift - q * se, abs_lift + q * se],
        ci_rel,
        chance_to_beat_control,
        expected_loss_treatment,
        expected_loss_control,
    })
}

/// A continuous metric, treatment against control.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MeansResult {
    /// treatment mean − control mean.
    pub diff: f64,
    /// diff / control mean (`None` when the control mean is 0).
    pub rel_lift: Option<f64>,
    /// Welch's t (`None` when both arms have no variance).
    pub t: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: Option<f64>,
    /// Two-sided p-value of `t`.
    pub p_value: Option<f64>,
    /// Interval for diff.
    pub ci_abs: Option<[f64; 2]>,
    /// Interval for rel_lift, delta method with the Welch df.
    pub ci_rel: Option<[f64; 2]>,
}

/// Welch's t-test and intervals from per-arm summaries.
pub fn means(
    control: MeanSummary,
    treatment: MeanSummary,
    alpha: f64,
) -> Result<MeansResult, StatsError> {
    check_alpha(alpha)?;
    let (vc, vt) = (control.var_of_mean(), treatment.var_of_mean());
    let diff = treatment.mean - control.mean;
    let rel_lift = (control.mean != 0.0).then(|| diff / control.mean);
    let se = (vc + vt).sqrt();
    if se == 0.0 || !se.is_finite() {
        return Ok(MeansResult {
            diff,
            rel_lift,
            t: None,
            df: None,
            p_value: None,
            ci_abs: None,
            ci_rel: None,
        });
    }
    let df = (vc + vt).powi(2) / (vc * vc / (control.n - 1.0) + vt * vt / (treatment.n - 1.0));
    let t = diff / se;
    let q = t_quantile(1.0 - alpha / 2.0, df);
    let ci_rel = rel_lift.map(|rel| {
        let mc = control.mean;
        let var = treatment.sd.powi(2) / (treatment.n * mc * mc)
            + treatment.mean.powi(2) * control.sd.powi(2) / (control.n * mc.powi(4));
        let half = q * var.sqrt();
        [rel - half, rel + half]
    });
    Ok(MeansResult {
        diff,
        rel_lift,
        t: finite(t),
        df: finite(df),
        p_value: finite(t_two_sided(t, df)),
        ci_abs: Some([diff - q * se, diff + q * se]),
        ci_rel,
    })
}

/// One arm's sums for CUPED: the metric `y` and its pre-period covariate `x`, per unit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CupedArm {
    /// Units.
    pub n: u64,
    /// Σy, Σy².
    pub y: (f64, f64),
    /// Σx, Σx².
    pub x: (f64, f64),
    /// Σxy.
    pub xy: f64,
}

/// CUPED: θ pooled over the arms, and each arm's adjusted mean and per-unit variance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CupedResult {
    /// cov(y, x) / var(x) over all units.
    pub theta: f64,
    /// Each arm's adjusted summary (mean ȳ − θ(x̄ − x̄_all), sd from var(y) + θ²var(x) − 2θcov).
    pub arms: Vec<MeanSummary>,
}

/// Variance reduction with a pre-period covariate (Deng et al. 2013): analyse
/// `y − θ(x − x̄)`; the adjusted summaries go to [`means`] like any other.
pub fn cuped(arms: &[CupedArm]) -> Result<CupedResult, StatsError> {
    let n: f64 = arms.iter().map(|a| a.n as f64).sum();
    if arms.iter().any(|a| a.n < 2) {
        return Err(StatsError::invalid("n", "every arm needs at least 2 units"));
    }
    let (sy, sx, sxy, sxx) = arms.iter().fold((0.0, 0.0, 0.0, 0.0), |acc, a| {
        (acc.0 + a.y.0, acc.1 + a.x.0, acc.2 + a.xy, acc.3 + a.x.1)
    });
    let cov = (sxy - sx * sy / n) / (n - 1.0);
    let var_x = (sxx - sx * sx / n) / (n - 1.0);
    if var_x.is_nan() || var_x <= 0.0 {
        return Err(StatsError::invalid(
            "x",
            "the covariate does not vary: CUPED needs a pre-period metric that differs between units",
        ));
    }
    let theta = cov / var_x;
    let mean_x = sx / n;
    let adjusted = arms
        .iter()
        .map(|a| {
            let k = a.n as f64;
            let (my, mx) = (a.y.0 / k, a.x.0 / k);
            let vy = (a.y.1 - a.y.0 * a.y.0 / k) / (k - 1.0);
            let vx = (a.x.1 - a.x.0 * a.x.0 / k) / (k - 1.0);
            let cxy = (a.xy - a.x.0 * a.y.0 / k) / (k - 1.0);
            let var = (vy + theta * theta * vx - 2.0 * theta * cxy).max(0.0);
            MeanSummary::new(my - theta * (mx - mean_x), var.sqrt(), k)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CupedResult {
        theta,
        arms: adjusted,
    })
}
