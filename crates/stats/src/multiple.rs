//! Sample-ratio mismatch and multiple-testing corrections.

use crate::dist::chi2_sf;
use crate::{check_alpha, StatsError};

/// How worrying a sample-ratio mismatch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrmStatus {
    /// p ≥ 0.01.
    Ok,
    /// 0.001 ≤ p < 0.01: watch it.
    Warning,
    /// p < 0.001: the split is broken; the results cannot be trusted.
    Alert,
}

/// Pearson's χ² of the observed units per arm against the configured weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SrmResult {
    /// The statistic.
    pub chi2: f64,
    /// Arms − 1.
    pub df: u32,
    /// P(χ²_df > chi2).
    pub p_value: f64,
    /// Warning below 0.01, alert below 0.001.
    pub status: SrmStatus,
}

/// Sample-ratio-mismatch check: `observed[i]` units in arm `i`, configured `weights[i]` (any
/// positive scale).
pub fn srm(observed: &[u64], weights: &[f64]) -> Result<SrmResult, StatsError> {
    if observed.len() != weights.len() {
        return Err(StatsError::invalid(
            "weights",
            format!("{} weights for {} arms", weights.len(), observed.len()),
        ));
    }
    if observed.len() < 2 {
        return Err(StatsError::invalid("observed", "needs at least two arms"));
    }
    if let Some((i, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w > 0.0))
    {
        return Err(StatsError::invalid(
            format!("weights[{i}]"),
            format!("must be a positive number, not {w}"),
        ));
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if total == 0.0 {
        return Err(StatsError::invalid("observed", "no units yet"));
    }
    let weight_sum: f64 = weights.iter().sum();
    let chi2: f64 = observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let expected = w / weight_sum * total;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let df = u32::try_from(observed.len() - 1).unwrap_or(u32::MAX);
    let p_value = chi2_sf(chi2, f64::from(df));
    let status = if p_value < 0.001 {
        SrmStatus::Alert
    } else if p_value < 0.01 {
        SrmStatus::Warning
    } else {
        SrmStatus::Ok
    };
    Ok(SrmResult {
        chi2,
        df,
        p_value,
        status,
    })
}

/// A multiple-testing correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Holm–Bonferroni step-down: controls the family-wise error rate.
    Holm,
    /// Benjamini–Hochberg step-up: controls the false discovery rate.
    Bh,
    /// Bonferroni: m·p.
    Bonferroni,
}

impl std::str::FromStr for Method {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "holm" => Ok(Method::Holm),
            "bh" => Ok(Method::Bh),
            "bonferroni" => Ok(Method::Bonferroni),
            other => Err(StatsError::invalid(
                "method",
                format!("unknown correction `{other}`; use holm, bh or bonferroni"),
            )),
        }
    }
}

/// Adjusted p-values and decisions, in the input order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Adjusted {
    /// The adjusted p-values.
    pub adjusted: Vec<f64>,
    /// adjusted ≤ alpha.
    pub reject: Vec<bool>,
}

/// Adjusts `p_values` for multiplicity (the family: every treatment × goal metric).
pub fn adjust(method: Method, p_values: &[f64], alpha: f64) -> Result<Adjusted, StatsError> {
    check_alpha(alpha)?;
    if let Some((i, p)) = p_values
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(StatsError::invalid(
            format!("p_values[{i}]"),
            format!("a p-value is between 0 and 1, not {p}"),
        ));
    }
    let m = p_values.len();
    let mf = m as f64;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    match method {
        Method::Bonferroni => {
            for (a, p) in adjusted.iter_mut().zip(p_values) {
                *a = (mf * p).min(1.0);
            }
        }
        Method::Holm => {
            let mut running = 0.0_f64;
            for (rank, &i) in order.iter().enumerate() {
                running = running.max(((mf - rank as f64) * p_values[i]).min(1.0));
                adjusted[i] = running;
            }
        }
        Method::Bh => {
            let mut running = 1.0_f64;
            for (rank, &i) in order.iter().enumerate().rev() {
                running = running.min((mf * p_values[i] / (rank as f64 + 1.0)).min(1.0));
                adjusted[i] = running;
            }
        }
    }
    let reject = adjusted.iter().map(|&a| a <= alpha).collect();
    Ok(Adjusted { adjusted, reject })
}
