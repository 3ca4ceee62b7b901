//! The distribution functions the tests need, accurate to double precision where scipy is:
//! upper tails are computed directly (never `1 − cdf`, which loses small p-values), quantiles
//! are polished by Newton steps, the normal tail is libm's `erfc`, χ² is statrs' incomplete
//! gamma, and Student's t has its own incomplete beta (below): statrs' stops after 140
//! continued-fraction terms and takes the log-Beta prefactor as a difference of large
//! log-gammas, which costs about 1e-9 at a million degrees of freedom.

use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};
use statrs::function::gamma::gamma_ur;

fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal")
}

/// P(Z > z) for a standard normal Z.
pub(crate) fn normal_sf(z: f64) -> f64 {
    // libm's erfc (FreeBSD's, under 1 ulp); statrs' is good to only about 1e-10.
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// P(Z ≤ z).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    normal_sf(-z)
}

/// The standard normal density.
pub(crate) fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Two-sided p-value of a z statistic.
pub(crate) fn normal_two_sided(z: f64) -> f64 {
    (2.0 * normal_sf(z.abs())).min(1.0)
}

/// The standard normal quantile: Φ⁻¹(p), `0 < p < 1`.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    let mut x = std_normal().inverse_cdf(p);
    // Newton on f(x) = Φ(x) − p, with Φ computed on the tail nearer the answer.
    for _ in 0..3 {
        let err = if x > 0.0 {
            (1.0 - p) - normal_sf(x)
        } else {
            normal_cdf(x) - p
        };
        let step = err / normal_pdf(x);
        x -= step;
        if step.abs() <= 1e-16 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// ln Γ(a + ½) − ln Γ(a), without the cancellation of two large log-gammas: for a ≥ 8 by the
/// difference of Stirling series (terms to z⁻⁷: error below 1e-16), else by lgamma.
fn ln_gamma_half_ratio(a: f64) -> f64 {
    if a < 8.0 {
        return libm::lgamma(a + 0.5) - libm::lgamma(a);
    }
    let series = |z: f64| {
        let z2 = z * z;
        (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * z2)) / z2) / z2) / z
    };
    // (a)ln(a + ½) − (a − ½)ln(a) − ½, written as a·ln(1 + 1/(2a)) + ½ln(a) − ½.
    a * (0.5 / a).ln_1p() + 0.5 * a.ln() - 0.5 + series(a + 0.5) - series(a)
}

/// The continued fraction of the incomplete beta function (modified Lentz), for
/// `x < (a + 1)/(a + b + 2)`, where it converges in about √max(a, b) terms.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..100_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() <= 1e-16 {
            break;
        }
    }
    h
}

/// The two-sided tail of Student's t: I_x(ν/2, ½) with x = ν/(ν + t²), the regularized
/// incomplete beta function. x and 1 − x are formed from t² and ν separately, so neither loses
/// digits when the other is tiny (large ν, or large t).
fn t_two_tails(t: f64, df: f64) -> f64 {
    let (a, b) = (0.5 * df, 0.5);
    let t2 = t * t;
    if t2 == 0.0 {
        return 1.0;
    }
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    // ln[x^a (1 − x)^b / B(a, b)], with ln B(a, ½) = ln Γ(½) − (ln Γ(a + ½) − ln Γ(a)) and
    // ln x = −ln(1 + t²/ν).
    let ln_beta = 0.5 * std::f64::consts::PI.ln() - ln_gamma_half_ratio(a);
    let ln_front = -a * (t2 / df).ln_1p() + b * y.ln() - ln_beta;
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, y) / b
    }
}

/// P(T > t) for Student's t with `df` degrees of freedom.
pub(crate) fn t_sf(t: f64, df: f64) -> f64 {
    if df.is_infinite() || df > 1e10 {
        return normal_sf(t);
    }
    let tail = 0.5 * t_two_tails(t, df);
    if t > 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// Two-sided p-value of a t statistic.
pub(crate) fn t_two_sided(t: f64, df: f64) -> f64 {
    if df.is_infinite() || df > 1e10 {
        return normal_two_sided(t);
    }
    t_two_tails(t, df).min(1.0)
}

/// Student's t quantile for `0.5 < p < 1`.
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    if df.is_infinite() || df > 1e10 {
        return normal_quantile(p);
    }
    let dist = StudentsT::new(0.0, 1.0, df).expect("df > 0");
    let mut x = dist.inverse_cdf(p);
    if !x.is_finite() {
        x = normal_quantile(p);
    }
    for _ in 0..4 {
        // f(x) = sf(x) − (1 − p); f'(x) = −pdf(x).
        let step = (t_sf(x, df) - (1.0 - p)) / dist.pdf(x);
        x += step;
        if step.abs() <= 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// P(X > x) for a χ² variable with `df` degrees of freedom.
pub(crate) fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    gamma_ur(0.5 * df, 0.5 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn known_values() {
        // scipy.stats.norm.ppf(0.975), t.ppf(0.975, 10), t.sf(3, 5), chi2.sf(7.81, 3)
        assert!(close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-15));
        assert!(close(normal_quantile(0.8), 0.841_621_233_572_914_3, 1e-14));
        assert!(close(t_quantile(0.975, 10.0), 2.228_138_851_986_274, 1e-13));
        assert!(close(t_sf(3.0, 5.0), 0.015_049_623_948_731_293, 1e-12));
        assert!(close(chi2_sf(7.81, 3.0), 0.050_106_056_350_005_89, 1e-12));
        // Far tails stay accurate: norm.sf(10) = 7.61985302416047e-24.
        assert!(close(normal_sf(10.0), 7.619_853_024_160_47e-24, 1e-12));
        // Large degrees of freedom, where statrs is off by 1e-9 (scipy.stats.t.sf).
        assert!(close(t_sf(0.88, 2e6), 1.894_297_076_450_195_7e-1, 1e-13));
        assert!(close(t_sf(1.5, 1993.26), 6.688_638_502_306_168e-2, 1e-13));
        assert!(close(t_sf(40.0, 3.0), 1.719_034_039_457_925_3e-5, 1e-13));
        assert!(close(t_sf(0.1, 2.87), 4.634_585_653_327_998e-1, 1e-13));
    }
}
