//! Gauss–Legendre quadrature: the nodes and weights of the 20-point rule, computed once by
//! Newton's method on the Legendre polynomial (the classic construction), and the rule mapped
//! onto an interval.

use std::sync::OnceLock;

/// Points of the rule.
pub(crate) const POINTS: usize = 20;

/// `(node, weight)` pairs on `[-1, 1]`.
fn rule() -> &'static [(f64, f64); POINTS] {
    static RULE: OnceLock<[(f64, f64); POINTS]> = OnceLock::new();
    RULE.get_or_init(|| {
        let n = POINTS;
        let mut out = [(0.0, 0.0); POINTS];
        for i in 0..n.div_ceil(2) {
            // Chebyshev-like first guess of the i-th root, then Newton.
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            let mut derivative = 0.0;
            for _ in 0..100 {
                // Legendre P_n(x) and its derivative by the three-term recurrence.
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=n {
                    let k = k as f64;
                    let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                    p0 = p1;
                    p1 = p2;
                }
                derivative = n as f64 * (x * p1 - p0) / (x * x - 1.0);
                let step = p1 / derivative;
                x -= step;
                if step.abs() < 1e-16 {
                    break;
                }
            }
            let w = 2.0 / ((1.0 - x * x) * derivative * derivative);
            out[i] = (-x, w);
            out[n - 1 - i] = (x, w);
        }
        out
    })
}

/// The rule's nodes and weights mapped onto `[a, b]`.
pub(crate) fn nodes(a: f64, b: f64) -> impl Iterator<Item = (f64, f64)> {
    let half = 0.5 * (b - a);
    let mid = 0.5 * (a + b);
    rule().iter().map(move |&(x, w)| (mid + half * x, half * w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integrate(a: f64, b: f64, f: impl Fn(f64) -> f64) -> f64 {
        nodes(a, b).map(|(x, w)| w * f(x)).sum()
    }

    #[test]
    fn the_rule_integrates_polynomials_of_degree_39_exactly() {
        let weights: f64 = rule().iter().map(|(_, w)| w).sum();
        assert!((weights - 2.0).abs() < 1e-14);
        let got = integrate(0.0, 1.0, |x| x.powi(39));
        assert!((got - 1.0 / 40.0).abs() < 1e-15, "{got}");
        let got = integrate(0.0, std::f64::consts::PI, f64::sin);
        assert!((got - 2.0).abs() < 1e-14, "{got}");
    }
}
