//! Always-valid inference: an asymptotic confidence sequence (Waudby-Smith et al. 2021, with
//! the normal-mixture boundary of Howard et al.), so an experiment's results can be read after
//! every unit without inflating the false-positive rate.
//!
//! For an estimate Δ̂ with standard error σ̂/√N after N units (both arms), the sequence at level
//! α is Δ̂ ± σ̂ √( 2(Nρ² + 1)/(N²ρ²) · ln(√(Nρ² + 1)/α) ), with
//! ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*; the tuning N* is the sample size at which the
//! sequence is narrowest relative to the fixed interval (default 5 000, as GrowthBook). The
//! always-valid p-value is the smallest α whose sequence excludes 0.

use crate::{check_alpha, StatsError};

/// GrowthBook's default tuning N*.
pub const DEFAULT_TUNING: f64 = 5000.0;

/// An always-valid interval and p-value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfidenceSequence {
    /// The interval, valid at every look.
    pub ci: [f64; 2],
    /// The smallest α whose sequence excludes 0 (1 when none does).
    pub p_value: f64,
}

fn half_width(sigma: f64, n: f64, alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    let rho2 = (l + (l + 1.0).ln()) / tuning;
    let nr = n * rho2 + 1.0;
    sigma * (2.0 * nr / (n * n * rho2) * (nr.sqrt() / alpha).ln()).sqrt()
}

/// The confidence sequence of `estimate` (standard error `se`) after `n` units in all.
pub fn confidence_sequence(
    estimate: f64,
    se: f64,
    n: f64,
    alpha: f64,
    tuning: f64,
) -> Result<ConfidenceSequence, StatsError> {
    check_alpha(alpha)?;
    if !(se > 0.0 && se.is_finite()) {
        return Err(StatsError::invalid(
            "se",
            format!("must be positive, not {se}"),
        ));
    }
    if !(n >= 1.0 && n.is_finite()) {
        return Err(StatsError::invalid(
            "n",
            format!("must be at least 1, not {n}"),
        ));
    }
    if !(tuning > 0.0 && tuning.is_finite()) {
        return Err(StatsError::invalid(
            "tuning",
            format!("must be positive, not {tuning}"),
        ));
    }
    let sigma = se * n.sqrt();
    let half = half_width(sigma, n, alpha, tuning);
    let excess = |a: f64| estimate.abs() - half_width(sigma, n, a, tuning);
    let almost_one = 1.0 - 1e-12;
    let p_value = if excess(almost_one) <= 0.0 {
        1.0
    } else if excess(1e-300) > 0.0 {
        0.0
    } else {
        // Bisection on ln α: the half-width shrinks as α grows.
        let (mut lo, mut hi) = (1e-300_f64.ln(), almost_one.ln());
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if excess(mid.exp()) > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi - lo < 1e-15 {
                break;
            }
        }
        hi.exp()
    };
    Ok(ConfidenceSequence {
        ci: [estimate - half, estimate + half],
        p_value,
    })
}
