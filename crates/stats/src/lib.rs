//! Experiment statistics from per-arm sufficient statistics.
//!
//! Every function here is a pure function of summary numbers — counts, sums, sums of squares,
//! cross-products — so results are computed from aggregates (in SQL or one streaming pass),
//! never from raw events, and each is checked against scipy / statsmodels reference values
//! (`reference/generate.py`, its output `reference/values.json`). Conventions and formulas are
//! in `docs/statistics.md`; in short:
//!
//! - tests are two-sided; `alpha` is the two-sided level (0.05 → 95 % intervals);
//! - [`proportions`]: pooled-SE z-test, unpooled Wald interval for the absolute lift,
//!   delta-method interval for the relative lift, Beta(1, 1) posteriors for the chance to beat
//!   control and the expected losses (by quadrature, not sampling);
//! - [`means`]: Welch's t-test with Welch–Satterthwaite degrees of freedom; the relative
//!   interval by the delta method with the same degrees of freedom;
//! - [`confidence_sequence`]: an asymptotic confidence sequence (always valid: it may be
//!   looked at after every unit) and its always-valid p-value;
//! - [`cuped`], [`srm`], [`adjust`], [`sample_size`], [`power`], [`minimum_detectable_effect`].
//!
//! Undefined quantities (a relative lift over a zero control rate, a test with no variance)
//! are `None`, never `NaN` or infinity.
//!
//! ```
//! use switchyard_stats::{proportions, Proportion};
//!
//! let r = proportions(Proportion::new(100, 1000)?, Proportion::new(120, 1000)?, 0.05)?;
//! assert!((r.p_value.unwrap() - 0.152_917_781_863_946_2).abs() < 1e-12);
//! assert!((r.chance_to_beat_control - 0.923_183_438_973_56).abs() < 1e-9);
//! # Ok::<(), switchyard_stats::StatsError>(())
//! ```

mod bayes;
mod dist;
mod frequentist;
mod multiple;
mod planning;
mod quadrature;
mod sequential;

pub use bayes::{beta_binomial, gaussian, BayesResult};
pub use frequentist::{
    cuped, means, proportions, CupedArm, CupedResult, MeansResult, ProportionsResult,
};
pub use multiple::{adjust, srm, Adjusted, Method, SrmResult, SrmStatus};
pub use planning::{minimum_detectable_effect, power, sample_size, SampleSize};
pub use sequential::{confidence_sequence, ConfidenceSequence, DEFAULT_TUNING};

/// What was wrong with the numbers a function was given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A value outside its domain, named.
    #[error("{what}: {why}")]
    Invalid {
        /// The argument (`alpha`, `control`, `weights[2]`, …).
        what: String,
        /// What is wrong with it.
        why: String,
    },
}

impl StatsError {
    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        StatsError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// Checks a significance level: strictly between 0 and 1.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::invalid(
            "alpha",
            format!("must be between 0 and 1 (exclusive), not {alpha}"),
        ))
    }
}

/// One arm of a conversion metric: units and how many of them converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proportion {
    /// Units (exposed users).
    pub units: u64,
    /// Units that converted (`0 ≤ conversions ≤ units`).
    pub conversions: u64,
}

impl Proportion {
    /// An arm; refuses no units and more conversions than units.
    pub fn new(conversions: u64, units: u64) -> Result<Self, StatsError> {
        if units == 0 {
            return Err(StatsError::invalid(
                "units",
                "an arm needs at least one unit",
            ));
        }
        if conversions > units {
            return Err(StatsError::invalid(
                "conversions",
                format!("{conversions} conversions out of {units} units"),
            ));
        }
        Ok(Proportion { units, conversions })
    }

    /// The conversion rate.
    pub fn rate(&self) -> f64 {
        self.conversions as f64 / self.units as f64
    }
}

/// One arm of a continuous metric, as a summary: mean, sample standard deviation (n − 1), n.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanSummary {
    /// Mean of the per-unit values.
    pub mean: f64,
    /// Sample standard deviation (with the n − 1 denominator).
    pub sd: f64,
    /// Units.
    pub n: f64,
}

impl MeanSummary {
    /// A summary; refuses fewer than two units, a negative or non-finite SD.
    pub fn new(mean: f64, sd: f64, n: f64) -> Result<Self, StatsError> {
        if !mean.is_finite() {
            return Err(StatsError::invalid(
                "mean",
                format!("{mean} is not a number"),
            ));
        }
        if !(sd.is_finite() && sd >= 0.0) {
            return Err(StatsError::invalid(
                "sd",
                format!("must be a finite number ≥ 0, not {sd}"),
            ));
        }
        if !(n.is_finite() && n >= 2.0) {
            return Err(StatsError::invalid(
                "n",
                format!("needs at least 2 units, not {n}"),
            ));
        }
        Ok(MeanSummary { mean, sd, n })
    }

    /// From sufficient statistics: count, sum and sum of squares of the per-unit values.
    pub fn from_sums(n: u64, sum: f64, sum_sq: f64) -> Result<Self, StatsError> {
        let k = n as f64;
        if n < 2 {
            return Err(StatsError::invalid(
                "n",
                format!("needs at least 2 units, not {n}"),
            ));
        }
        let mean = sum / k;
        // Clamp rounding below zero (all values equal).
        let var = ((sum_sq - sum * sum / k) / (k - 1.0)).max(0.0);
        MeanSummary::new(mean, var.sqrt(), k)
    }

    /// The variance of the mean, sd² / n.
    pub fn var_of_mean(&self) -> f64 {
        self.sd * self.sd / self.n
    }
}

/// A finite number, or `None`.
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
