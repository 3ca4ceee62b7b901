//! `switchyard stats ...`: the experiment calculator, offline, on summary numbers — what
//! people otherwise open an online calculator for. Each command prints a readable summary, or
//! with `--json` exactly the fields docs/statistics.md lists (`null` where undefined,
//! intervals as `[low, high]`). Two-sided tests; `--alpha` defaults to 0.05.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use switchyard_stats::{
    adjust, means, proportions, sample_size, srm, MeanSummary, Method, Proportion,
};

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(subcommand)]
    command: StatsCommand,
}

#[derive(Debug, Subcommand)]
enum StatsCommand {
    /// Conversion rates: pooled z-test, lifts with intervals, chance to beat control and
    /// expected loss (Beta(1, 1) priors).
    Proportions(ProportionsArgs),
    /// Continuous metrics from mean, sample SD and n per arm: Welch's t-test and intervals.
    Means(MeansArgs),
    /// Sample-ratio mismatch: Pearson χ² of the units per arm against the configured weights.
    Srm(SrmArgs),
    /// Adjust p-values for multiple comparisons (Holm, Benjamini–Hochberg, Bonferroni).
    Adjust(AdjustArgs),
    /// Units per arm to detect a relative change of a conversion rate.
    SampleSize(SampleSizeArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Two-sided significance level (0.05: 95 % intervals).
    #[arg(long, default_value_t = 0.05, value_name = "ALPHA")]
    alpha: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ProportionsArgs {
    /// Control as CONVERSIONS/UNITS (`100/1000`).
    #[arg(long, value_name = "X/N")]
    control: String,
    /// Treatment as CONVERSIONS/UNITS.
    #[arg(long, value_name = "X/N")]
    treatment: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct MeansArgs {
    /// Control as MEAN,SD,N (sample standard deviation).
    #[arg(long, value_name = "MEAN,SD,N", allow_hyphen_values = true)]
    control: String,
    /// Treatment as MEAN,SD,N.
    #[arg(long, value_name = "MEAN,SD,N", allow_hyphen_values = true)]
    treatment: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct SrmArgs {
    /// Units observed per arm, comma-separated (`5000,5100,4900`).
    #[arg(long, value_name = "N,N,...")]
    observed: String,
    /// Configured weights per arm, any scale (`1,1,1` or `50,25,25`).
    #[arg(long, value_name = "W,W,...")]
    weights: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AdjustArgs {
    /// holm (family-wise error), bh (false discovery rate) or bonferroni.
    #[arg(long, value_name = "METHOD")]
    method: String,
    /// The p-values, comma-separated, in any order (the output keeps it).
    #[arg(long = "p-values", value_name = "P,P,...")]
    p_values: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct SampleSizeArgs {
    /// The control conversion rate (`0.1`).
    #[arg(long, value_name = "RATE")]
    baseline: f64,
    /// The relative change to detect (`0.05` is +5 %, so 0.1 → 0.105).
    #[arg(long, value_name = "RELATIVE", allow_hyphen_values = true)]
    mde: f64,
    /// Power: the chance of detecting the change when it is real.
    #[arg(long, default_value_t = 0.8, value_name = "POWER")]
    power: f64,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &StatsArgs) -> Result<ExitCode> {
    let ((value, text), json) = match &args.command {
        StatsCommand::Proportions(a) => (run_proportions(a)?, a.common.json),
        StatsCommand::Means(a) => (run_means(a)?, a.common.json),
        StatsCommand::Srm(a) => (run_srm(a)?, a.json),
        StatsCommand::Adjust(a) => (run_adjust(a)?, a.common.json),
        StatsCommand::SampleSize(a) => (run_sample_size(a)?, a.common.json),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        out!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn arm(option: &str, text: &str) -> Result<Proportion> {
    let (x, n) = text.split_once('/').ok_or_else(|| {
        anyhow!("{option} must be CONVERSIONS/UNITS such as 100/1000, not `{text}`")
    })?;
    let parse = |part: &str, what: &str| {
        part.trim()
            .parse::<u64>()
            .with_context(|| format!("{option}: {what} must be a whole number, not `{part}`"))
    };
    Proportion::new(parse(x, "conversions")?, parse(n, "units")?)
        .map_err(|e| anyhow!("{option}: {e}"))
}

fn numbers(option: &str, text: &str) -> Result<Vec<f64>> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| anyhow!("{option}: `{part}` is not a number"))
        })
        .collect()
}

fn summary(option: &str, text: &str) -> Result<MeanSummary> {
    let parts = numbers(option, text)?;
    let [mean, sd, n] = parts[..] else {
        bail!("{option} must be MEAN,SD,N such as 10.2,3.1,1000, not `{text}`");
    };
    MeanSummary::new(mean, sd, n).map_err(|e| anyhow!("{option}: {e}"))
}

fn pct(x: f64) -> String {
    format!("{:.3} %", 100.0 * x)
}

fn interval(ci: Option<[f64; 2]>, f: fn(f64) -> String) -> String {
    ci.map_or_else(
        || "undefined".to_owned(),
        |[lo, hi]| format!("[{}, {}]", f(lo), f(hi)),
    )
}

fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or_else(|| "undefined".to_owned(), f)
}

fn p(x: f64) -> String {
    if x < 1e-4 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

fn level(alpha: f64) -> String {
    format!("{}%", 100.0 * (1.0 - alpha))
}

fn run_proportions(a: &ProportionsArgs) -> Result<(Value, String)> {
    let control = arm("--control", &a.control)?;
    let treatment = arm("--treatment", &a.treatment)?;
    let r = proportions(control, treatment, a.common.alpha)?;
    let text = format!(
        "control    {} ({}/{})\ntreatment  {} ({}/{})\n\
         abs lift   {:+.4} pp   {} CI {}\n\
         rel lift   {}   {} CI {}\n\
         z          {}   p-value {}\n\
         chance to beat control  {}\n\
         expected loss  shipping treatment {:.6}, keeping control {:.6}\n",
        pct(r.control_rate),
        control.conversions,
        control.units,
        pct(r.treatment_rate),
        treatment.conversions,
        treatment.units,
        100.0 * r.abs_lift,
        level(a.common.alpha),
        interval(Some(r.ci_abs), |x| format!("{:+.4} pp", 100.0 * x)),
        opt(r.rel_lift, |x| format!("{:+.2} %", 100.0 * x)),
        level(a.common.alpha),
        interval(r.ci_rel, |x| format!("{:+.2} %", 100.0 * x)),
        opt(r.z, |x| format!("{x:.4}")),
        opt(r.p_value, p),
        pct(r.chance_to_beat_control),
        r.expected_loss_treatment,
        r.expected_loss_control,
    );
    Ok((serde_json::to_value(&r)?, text))
}

fn run_means(a: &MeansArgs) -> Result<(Value, String)> {
    let control = summary("--control", &a.control)?;
    let treatment = summary("--treatment", &a.treatment)?;
    let r = means(control, treatment, a.common.alpha)?;
    let text = format!(
        "diff      {:+.6}   {} CI {}\nrel lift  {}   {} CI {}\nWelch t   {} (df {})   p-value {}\n",
        r.diff,
        level(a.common.alpha),
        interval(r.ci_abs, |x| format!("{x:+.6}")),
        opt(r.rel_lift, |x| format!("{:+.2} %", 100.0 * x)),
        level(a.common.alpha),
        interval(r.ci_rel, |x| format!("{:+.2} %", 100.0 * x)),
        opt(r.t, |x| format!("{x:.4}")),
        opt(r.df, |x| format!("{x:.1}")),
        opt(r.p_value, p),
    );
    Ok((serde_json::to_value(&r)?, text))
}

fn run_srm(a: &SrmArgs) -> Result<(Value, String)> {
    let observed = numbers("--observed", &a.observed)?
        .into_iter()
        .map(|x| {
            if x >= 0.0 && x.fract() == 0.0 {
                Ok(x as u64)
            } else {
                Err(anyhow!(
                    "--observed: unit counts are whole numbers, not {x}"
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = numbers("--weights", &a.weights)?;
    let r = srm(&observed, &weights)?;
    let verdict = match r.status {
        switchyard_stats::SrmStatus::Ok => "ok: the split matches the weights",
        switchyard_stats::SrmStatus::Warning => "warning (p < 0.01): watch the split",
        switchyard_stats::SrmStatus::Alert => {
            "ALERT (p < 0.001): the split does not match the weights; results cannot be trusted"
        }
    };
    let text = format!(
        "chi2 {:.4} (df {})   p-value {}\n{verdict}\n",
        r.chi2,
        r.df,
        p(r.p_value)
    );
    let value = json!({"chi2": r.chi2, "df": r.df, "p_value": r.p_value});
    Ok((value, text))
}

fn run_adjust(a: &AdjustArgs) -> Result<(Value, String)> {
    let method: Method = a.method.parse()?;
    let ps = numbers("--p-values", &a.p_values)?;
    let r = adjust(method, &ps, a.common.alpha)?;
    let mut text = format!(
        "{:<12}{:<12}reject at {}\n",
        "p-value", "adjusted", a.common.alpha
    );
    for ((raw, adj), reject) in ps.iter().zip(&r.adjusted).zip(&r.reject) {
        text.push_str(&format!(
            "{:<12}{:<12}{}\n",
            p(*raw),
            p(*adj),
            if *reject { "yes" } else { "no" }
        ));
    }
    Ok((serde_json::to_value(&r)?, text))
}

fn run_sample_size(a: &SampleSizeArgs) -> Result<(Value, String)> {
    let r = sample_size(a.baseline, a.mde, a.common.alpha, a.power)?;
    let text = format!(
        "{} units per arm, {} in all, to detect {} → {} ({:+} % relative) with {} power at α = {}\n",
        r.per_arm,
        r.total,
        pct(a.baseline),
        pct(r.treatment_rate),
        100.0 * a.mde,
        pct(a.power),
        a.common.alpha
    );
    Ok((serde_json::to_value(&r)?, text))
}
