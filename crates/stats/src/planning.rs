//! Planning a conversion experiment: sample size, power and minimum detectable effect, with
//! the normal approximation and unpooled variances, equal allocation, two-sided α.

use crate::dist::{normal_cdf, normal_quantile};
use crate::{check_alpha, StatsError};

/// Units needed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleSize {
    /// Units per arm (rounded up).
    pub per_arm: u64,
    /// Both arms.
    pub total: u64,
    /// baseline × (1 + mde).
    pub treatment_rate: f64,
}

fn check_rate(what: &str, p: f64) -> Result<(), StatsError> {
    if p > 0.0 && p < 1.0 {
        Ok(())
    } else {
        Err(StatsError::invalid(
            what,
            format!("a rate strictly between 0 and 1, not {p}"),
        ))
    }
}

fn check_power(power: f64) -> Result<(), StatsError> {
    if power > 0.0 && power < 1.0 {
        Ok(())
    } else {
        Err(StatsError::invalid(
            "power",
            format!("must be between 0 and 1 (exclusive), not {power}"),
        ))
    }
}

fn treatment_rate(baseline: f64, mde: f64) -> Result<f64, StatsError> {
    check_rate("baseline", baseline)?;
    let p2 = baseline * (1.0 + mde);
    if mde == 0.0 || !mde.is_finite() {
        return Err(StatsError::invalid("mde", "a relative effect other than 0"));
    }
    check_rate("baseline × (1 + mde)", p2)?;
    Ok(p2)
}

/// Units per arm to detect a relative change `mde` of a `baseline` rate:
/// n = (z₁₋α/₂ + z_power)² (p₁q₁ + p₂q₂) / (p₂ − p₁)².
pub fn sample_size(
    baseline: f64,
    mde: f64,
    alpha: f64,
    power: f64,
) -> Result<SampleSize, StatsError> {
    check_alpha(alpha)?;
    check_power(power)?;
    let p2 = treatment_rate(baseline, mde)?;
    let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    let n = z * z * (baseline * (1.0 - baseline) + p2 * (1.0 - p2)) / (p2 - baseline).powi(2);
    // Round up, forgiving the last bits of floating-point noise on an exact integer.
    let per_arm = (n - 1e-9).ceil().max(1.0) as u64;
    Ok(SampleSize {
        per_arm,
        total: 2 * per_arm,
        treatment_rate: p2,
    })
}

/// The power of a two-sided test with `per_arm` units per arm to detect `mde` (both rejection
/// tails counted).
pub fn power(baseline: f64, mde: f64, per_arm: u64, alpha: f64) -> Result<f64, StatsError> {
    check_alpha(alpha)?;
    let p2 = treatment_rate(baseline, mde)?;
    if per_arm == 0 {
        return Err(StatsError::invalid("per_arm", "at least one unit"));
    }
    let se = ((baseline * (1.0 - baseline) + p2 * (1.0 - p2)) / per_arm as f64).sqrt();
    let shift = (p2 - baseline).abs() / se;
    let q = normal_quantile(1.0 - alpha / 2.0);
    Ok(normal_cdf(shift - q) + normal_cdf(-shift - q))
}

/// The smallest relative increase of `baseline` that `per_arm` units per arm detect with the
/// given power: the root of the sample-size formula.
pub fn minimum_detectable_effect(
    baseline: f64,
    per_arm: u64,
    alpha: f64,
    power: f64,
) -> Result<f64, StatsError> {
    check_alpha(alpha)?;
    check_power(power)?;
    check_rate("baseline", baseline)?;
    if per_arm == 0 {
        return Err(StatsError::invalid("per_arm", "at least one unit"));
    }
    let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    let k = z * z / per_arm as f64;
    let p1 = baseline;
    // (1 + k) p₂² − (2p₁ + k) p₂ + (p₁² − k p₁ q₁) = 0, the root above p₁.
    let (a, b, c) = (1.0 + k, -(2.0 * p1 + k), p1 * p1 - k * p1 * (1.0 - p1));
    let disc = b * b - 4.0 * a * c;
    let p2 = (-b + disc.sqrt()) / (2.0 * a);
    if p2.is_nan() || p2 >= 1.0 {
        return Err(StatsError::invalid(
            "per_arm",
            format!(
                "{per_arm} units per arm cannot detect any increase of {baseline} with this power"
            ),
        ));
    }
    Ok(p2 / p1 - 1.0)
}
