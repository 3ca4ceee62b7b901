//! An experiment's results: per-arm sufficient statistics (n, Σx, Σx²) of every metric from
//! one pass of the database over the experiment's units and their events
//! (`Store::experiment_summary`, a few hundred rows back), then the statistics crate for every
//! comparison. A primary metric that is not a conversion draws its daily series from one more
//! streaming pass over its per-unit, per-day aggregates; nothing here holds more than one
//! unit's days at a time.
//!
//! Conventions (docs/statistics.md § Results): a unit's value for a metric counts the events
//! at or after its first exposure, within the attribution window, before the experiment's end;
//! comparisons are against control, two-sided; decisions (the verdict, guardrails, the
//! recommendation) use the always-valid sequential interval, since results are watched while
//! the experiment runs; fixed-horizon p-values are reported beside it and adjusted (Holm)
//! across treatments × primary and secondary metrics.

use switchyard_api_types::experiments::{
    ArmResult, ArmUnits, Comparison, CupedResults, ExperimentResults, ExperimentStatus, MetricKind,
    MetricResults, MetricRole, MetricSpec, Recommendation, ResultWarning, SeriesArm, SeriesPoint,
    SrmCheck,
};
use switchyard_stats::{self as stats, MeanSummary, Proportion};
use switchyard_storage::{
    Aggregate, MetricQuery, SummaryMetric, SummaryQuery, UnitHistory, DAY_MS,
};

use crate::experiments::{parse_date, Experiment};
use crate::{rfc3339, Control, Result};

/// Default shortest run before results may be acted on (a full weekly cycle).
pub const DEFAULT_MIN_DAYS: f64 = 7.0;
/// Default fewest units per variant.
pub const DEFAULT_MIN_UNITS: u64 = 1000;
/// Days beyond which no daily series is drawn (the totals are still computed).
const MAX_SERIES_DAYS: i64 = 400;

/// Running sums of one arm: units, Σx, Σx², and units with any event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Acc {
    n: u64,
    sum: f64,
    sum2: f64,
}

impl Acc {
    fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum2 += x * x;
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    fn sd(&self) -> Option<f64> {
        (self.n > 1).then(|| {
            let n = self.n as f64;
            let mean = self.sum / n;
            ((self.sum2 - n * mean * mean).max(0.0) / (n - 1.0)).sqrt()
        })
    }
}

/// Per arm and day (cumulative), for one metric, with its CUPED covariate's sums.
struct Series {
    arms: usize,
    days: usize,
    acc: Vec<Acc>,
    pre: Vec<PreAcc>,
}

impl Series {
    fn new(arms: usize, days: usize) -> Series {
        Series {
            arms,
            days,
            acc: vec![Acc::default(); arms * days],
            pre: vec![PreAcc::default(); arms * days],
        }
    }

    /// Adds one unit's cumulative value on each day from its exposure on; `kind` says how
    /// its events (and its pre-period's, the covariate) become its value.
    fn add(&mut self, arm: usize, unit: &UnitHistory, kind: MetricKind) {
        let first = usize::try_from(unit.exposed_day.max(0)).unwrap_or(usize::MAX);
        let value = |n: u64, total: f64| match kind {
            MetricKind::Conversion => Some(f64::from(u8::from(n > 0))),
            MetricKind::Count => Some(n as f64),
            MetricKind::Sum => Some(total),
            MetricKind::Mean if n > 0 => Some(total / n as f64),
            MetricKind::Mean => None,
        };
        let x = value(unit.pre.0, unit.pre.1).unwrap_or(0.0);
        let (mut n, mut total) = (0u64, 0.0f64);
        let mut next = 0;
        for day in first..self.days {
            while next < unit.days.len() && unit.days[next].0 <= day as i64 {
                n += unit.days[next].1;
                total += unit.days[next].2;
                next += 1;
            }
            let Some(y) = value(n, total) else {
                continue;
            };
            let slot = day * self.arms + arm;
            self.acc[slot].add(y);
            self.pre[slot].add(x, y);
        }
    }

    fn at(&self, day: usize, arm: usize) -> Acc {
        self.acc[day * self.arms + arm]
    }

    fn last(&self, arm: usize) -> Acc {
        match self.days {
            0 => Acc::default(),
            d => self.at(d - 1, arm),
        }
    }

    /// CUPED over the arms' sums on `day`.
    fn cuped(&self, day: usize) -> std::result::Result<stats::CupedResult, stats::StatsError> {
        let arms: Vec<stats::CupedArm> = (0..self.arms)
            .map(|i| {
                let (y, p) = (self.at(day, i), self.pre[day * self.arms + i]);
                stats::CupedArm {
                    n: y.n,
                    y: (y.sum, y.sum2),
                    x: (p.sum, p.sum2),
                    xy: p.cross,
                }
            })
            .collect();
        stats::cuped(&arms)
    }
}

/// Pre-period sums of one arm for CUPED: Σx, Σx², Σxy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct PreAcc {
    sum: f64,
    sum2: f64,
    cross: f64,
}

impl PreAcc {
    fn add(&mut self, x: f64, y: f64) {
        self.merge(x, x * x, x * y);
    }

    /// Adds sums already taken over some units.
    fn merge(&mut self, sum: f64, sum2: f64, cross: f64) {
        self.sum += sum;
        self.sum2 += sum2;
        self.cross += cross;
    }
}

fn inconclusive() -> Comparison {
    Comparison {
        abs_lift: None,
        rel_lift: None,
        ci_abs: None,
        ci_rel: None,
        p_value: None,
        p_value_adjusted: None,
        sequential_ci_abs: None,
        sequential_p_value: None,
        chance_to_beat_control: None,
        expected_loss: None,
        verdict: "inconclusive".to_owned(),
    }
}

/// Treatment `t` against control `c` from their running sums: the two-proportion test and the
/// beta-binomial model for conversions, Welch and the Gaussian model otherwise.
fn compare(kind: MetricKind, higher_is_better: bool, c: Acc, t: Acc, alpha: f64) -> Comparison {
    if kind != MetricKind::Conversion {
        let summary = |a: Acc| MeanSummary::new(a.mean()?, a.sd()?, a.n as f64).ok();
        return match (summary(c), summary(t)) {
            (Some(sc), Some(st)) => compare_means(higher_is_better, sc, st, alpha),
            _ => {
                let mut out = inconclusive();
                if let (Some(mc), Some(mt)) = (c.mean(), t.mean()) {
                    out.abs_lift = Some(mt - mc);
                    out.rel_lift = (mc != 0.0).then(|| (mt - mc) / mc);
                }
                out
            }
        };
    }
    let mut out = inconclusive();
    let (Some(mc), Some(mt)) = (c.mean(), t.mean()) else {
        return out;
    };
    let diff = mt - mc;
    out.abs_lift = Some(diff);
    out.rel_lift = (mc != 0.0).then(|| diff / mc);
    let (Ok(pc), Ok(pt)) = (
        Proportion::new(c.sum.round() as u64, c.n),
        Proportion::new(t.sum.round() as u64, t.n),
    ) else {
        return out;
    };
    let Ok(r) = stats::proportions(pc, pt, alpha) else {
        return out;
    };
    let (rc, rt) = (pc.rate(), pt.rate());
    let se = (rc * (1.0 - rc) / c.n as f64 + rt * (1.0 - rt) / t.n as f64).sqrt();
    out.p_value = r.p_value;
    // Both arms without variation (no unit converted, or every unit did): the Wald interval
    // collapses to the observed difference, which would claim certainty about the lift from
    // no evidence at all. Undefined, so `null`; the chance to beat control and the expected
    // loss (a posterior, defined whatever the counts) stay.
    if se > 0.0 {
        out.ci_abs = Some(r.ci_abs);
        out.ci_rel = r.ci_rel;
    }
    let (chance, loss) = if higher_is_better {
        (r.chance_to_beat_control, r.expected_loss_treatment)
    } else {
        (1.0 - r.chance_to_beat_control, r.expected_loss_control)
    };
    out.chance_to_beat_control = Some(chance);
    out.expected_loss = Some(loss);
    if se == 0.0 {
        return out;
    }
    sequential(
        &mut out,
        diff,
        se,
        (c.n + t.n) as f64,
        alpha,
        higher_is_better,
    );
    out
}

/// Welch, the Gaussian model and the sequential test from two arms' summaries (raw, or
/// CUPED-adjusted).
fn compare_means(higher_is_better: bool, c: MeanSummary, t: MeanSummary, alpha: f64) -> Comparison {
    let mut out = inconclusive();
    let diff = t.mean - c.mean;
    out.abs_lift = Some(diff);
    out.rel_lift = (c.mean != 0.0).then(|| diff / c.mean);
    if let Ok(r) = stats::means(c, t, alpha) {
        out.p_value = r.p_value;
        out.ci_abs = r.ci_abs;
        out.ci_rel = r.ci_rel;
    }
    let se = (c.var_of_mean() + t.var_of_mean()).sqrt();
    let signed = if higher_is_better { diff } else { -diff };
    if let Some(b) = stats::gaussian(signed, se) {
        out.chance_to_beat_control = Some(b.chance_to_beat_control);
        out.expected_loss = Some(b.expected_loss_treatment);
    }
    sequential(&mut out, diff, se, c.n + t.n, alpha, higher_is_better);
    out
}

/// The always-valid interval and p-value, and the verdict they give.
fn sequential(out: &mut Comparison, diff: f64, se: f64, n: f64, alpha: f64, higher: bool) {
    if let Ok(cs) = stats::confidence_sequence(diff, se, n, alpha, stats::DEFAULT_TUNING) {
        out.sequential_ci_abs = Some(cs.ci);
        out.sequential_p_value = Some(cs.p_value);
        let up = cs.ci[0] > 0.0;
        let down = cs.ci[1] < 0.0;
        out.verdict = match (up, down, higher) {
            (true, _, true) | (_, true, false) => "better",
            (true, _, false) | (_, true, true) => "worse",
            _ => "inconclusive",
        }
        .to_owned();
    }
}

/// CUPED over every arm's totals: the adjusted summaries the comparisons use (`None` when
/// it cannot apply), and what to report.
fn cuped(days: f64, totals: &Series) -> (Option<Vec<MeanSummary>>, CupedResults) {
    let mut report = CupedResults {
        pre_period_days: days,
        applied: false,
        theta: None,
        variance_reduction: None,
        note: None,
    };
    match totals.cuped(0) {
        Ok(r) => {
            let (mut raw, mut adjusted) = (0.0, 0.0);
            for (i, a) in r.arms.iter().enumerate() {
                let y = totals.at(0, i);
                raw += (a.n - 1.0) * y.sd().unwrap_or(0.0).powi(2);
                adjusted += (a.n - 1.0) * a.sd * a.sd;
            }
            report.applied = true;
            report.theta = Some(r.theta);
            report.variance_reduction = (raw > 0.0).then(|| 1.0 - adjusted / raw);
            (Some(r.arms), report)
        }
        Err(err) => {
            report.note = Some(format!("not applied: {err}"));
            (None, report)
        }
    }
}

fn date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

fn pct(x: f64) -> String {
    format!("{:+.2} %", x * 100.0)
}

impl Control {
    /// The results of experiment `id` as of `now_ms` (see the module docs).
    pub async fn experiment_results(&self, id: &str, now_ms: i64) -> Result<ExperimentResults> {
        let exp = self.experiment(id).await?;
        let store = self.require_store()?.clone();
        let spec = &exp.spec;
        let alpha = exp.alpha();
        let arms: Vec<(&String, f64)> = spec.variants.iter().map(|(k, w)| (k, *w)).collect();
        let control = arms
            .iter()
            .position(|(k, _)| **k == spec.control)
            .unwrap_or(0);
        let start = exp.started_at_ms;
        let end = exp.ended_at_ms.unwrap_or(now_ms);
        let days_total = start.map_or(0, |s| ((end - s).max(0) + DAY_MS - 1) / DAY_MS);
        let days_elapsed = start.map_or(0.0, |s| (end - s).max(0) as f64 / DAY_MS as f64);

        let counts = match start {
            Some(_) => store.experiment_exposure_counts(id, end).await?,
            None => Vec::new(),
        };
        let units_of = |variant: &str| {
            counts
                .iter()
                .find(|c| c.variant == variant)
                .map_or(0, |c| c.units.max(0) as u64)
        };
        let variants: Vec<ArmUnits> = arms
            .iter()
            .enumerate()
            .map(|(i, (k, w))| ArmUnits {
                variant: (*k).clone(),
                control: i == control,
                weight: *w,
                units: units_of(k),
            })
            .collect();
        let total_units: u64 = variants.iter().map(|v| v.units).sum();
        let srm = (total_units > 0)
            .then(|| {
                let observed: Vec<u64> = variants.iter().map(|v| v.units).collect();
                let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
                stats::srm(&observed, &weights).ok()
            })
            .flatten()
            .map(|r| SrmCheck {
                chi2: r.chi2,
                df: r.df,
                p_value: r.p_value,
                status: match r.status {
                    stats::SrmStatus::Ok => "ok",
                    stats::SrmStatus::Warning => "warning",
                    stats::SrmStatus::Alert => "alert",
                }
                .to_owned(),
            });

        let primary = spec
            .metrics
            .iter()
            .position(|m| m.role == MetricRole::Primary);
        let series_days = if days_total <= MAX_SERIES_DAYS {
            days_total.max(1) as usize
        } else {
            0
        };
        let window = |m: &MetricSpec| m.window_hours.map(|h| (h * 3_600_000.0) as i64);
        let summary_metrics: Vec<SummaryMetric<'_>> = spec
            .metrics
            .iter()
            .map(|m| SummaryMetric {
                event: &m.event,
                aggregate: match m.kind {
                    MetricKind::Conversion => Aggregate::Converted,
                    MetricKind::Count => Aggregate::Count,
                    MetricKind::Sum => Aggregate::Sum,
                    MetricKind::Mean => Aggregate::Mean,
                },
                window_ms: window(m),
                pre_period_ms: m.cuped_days.map(|d| (d * DAY_MS as f64) as i64),
            })
            .collect();
        let conversion_primary =
            primary.filter(|&i| spec.metrics[i].kind == MetricKind::Conversion);
        let rows = match start {
            Some(start) if !spec.metrics.is_empty() => {
                store
                    .experiment_summary(&SummaryQuery {
                        experiment: id,
                        environment: &spec.environment,
                        start_ms: start,
                        end_ms: end,
                        metrics: &summary_metrics,
                        first_day_of: conversion_primary,
                    })
                    .await?
            }
            _ => Vec::new(),
        };
        let arm_of = |variant: &str| arms.iter().position(|(k, _)| **k == *variant);
        let mut metrics = Vec::with_capacity(spec.metrics.len());
        for (mi, metric) in spec.metrics.iter().enumerate() {
            let mut totals = Series::new(arms.len(), 1);
            for row in &rows {
                if let Some(arm) = arm_of(&row.variant) {
                    let (n, x, xx) = row.sums[mi];
                    let acc = &mut totals.acc[arm];
                    acc.n += n;
                    acc.sum += x;
                    acc.sum2 += xx;
                    if let Some((x, xx, xy)) = row.pre.get(mi).copied().flatten() {
                        totals.pre[arm].merge(x, xx, xy);
                    }
                }
            }
            let higher = metric.higher_is_better.unwrap_or(true);
            let (adjusted, report) = match metric.cuped_days {
                Some(days) => {
                    let (adjusted, report) = cuped(days, &totals);
                    (adjusted, Some(report))
                }
                None => (None, None),
            };
            metrics.push(metric_results(
                metric,
                &arms,
                control,
                &totals,
                (adjusted.as_deref(), report),
                higher,
                alpha,
            ));
        }

        // The primary metric day by day: a conversion from the summary's first-event days; any
        // other kind (whose Σx² per day needs each unit's running value) from one streaming
        // pass over its per-unit, per-day aggregates.
        let mut series_points = Vec::new();
        if let (Some(mi), Some(start), true) = (primary, start, series_days > 0) {
            let metric = &spec.metrics[mi];
            let mut series = Series::new(arms.len(), series_days);
            if conversion_primary.is_some() {
                for row in &rows {
                    let Some(arm) = arm_of(&row.variant) else {
                        continue;
                    };
                    let pre = f64::from(u8::from(row.pre_converted == Some(true)));
                    for day in usize::try_from(row.exposed_day).unwrap_or(0)..series_days {
                        let converted = row.first_day.is_some_and(|f| f <= day as i64);
                        let y = f64::from(u8::from(converted));
                        let units = row.units as f64;
                        let slot = day * arms.len() + arm;
                        let acc = &mut series.acc[slot];
                        acc.n += row.units;
                        acc.sum += y * units;
                        acc.sum2 += y * units;
                        // x is 0 or 1, so Σx² = Σx.
                        series.pre[slot].merge(pre * units, pre * units, pre * y * units);
                    }
                }
            } else {
                let q = MetricQuery {
                    experiment: id,
                    environment: &spec.environment,
                    event: &metric.event,
                    window_ms: window(metric),
                    start_ms: start,
                    end_ms: end,
                    pre_period_ms: summary_metrics[mi].pre_period_ms,
                };
                store
                    .unit_days(&q, |unit| {
                        if let Some(arm) = arm_of(&unit.variant) {
                            series.add(arm, unit, metric.kind);
                        }
                    })
                    .await?;
            }
            let cuped = metric.cuped_days.is_some();
            series_points = series_of(&series, &arms, control, metric.kind, cuped, alpha, start);
        }
        adjust(&mut metrics, alpha);

        let warnings = warnings(
            &exp,
            &variants,
            srm.as_ref(),
            &metrics,
            days_elapsed,
            now_ms,
        );
        let recommendation = recommend(&exp, &metrics, &warnings, primary);
        Ok(ExperimentResults {
            experiment: id.to_owned(),
            status: exp.status,
            computed_at: rfc3339(now_ms),
            from: start.map(rfc3339),
            to: start.map(|_| rfc3339(end)),
            days: (days_elapsed * 100.0).round() / 100.0,
            alpha,
            variants,
            srm,
            metrics,
            series: series_points,
            warnings,
            recommendation,
        })
    }
}

fn metric_results(
    metric: &MetricSpec,
    arms: &[(&String, f64)],
    control: usize,
    series: &Series,
    (adjusted, cuped): (Option<&[MeanSummary]>, Option<CupedResults>),
    higher: bool,
    alpha: f64,
) -> MetricResults {
    let c = series.last(control);
    let mut out_arms = Vec::with_capacity(arms.len());
    let order = std::iter::once(control).chain((0..arms.len()).filter(|&i| i != control));
    for i in order {
        let a = series.last(i);
        let vs_control = (i != control).then(|| match adjusted {
            Some(adj) => compare_means(higher, adj[control], adj[i], alpha),
            None => compare(metric.kind, higher, c, a, alpha),
        });
        out_arms.push(ArmResult {
            variant: arms[i].0.clone(),
            control: i == control,
            units: a.n,
            conversions: (metric.kind == MetricKind::Conversion).then(|| a.sum.round() as u64),
            mean: a.mean(),
            sd: a.sd(),
            adjusted_mean: adjusted.map(|adj| adj[i].mean),
            vs_control,
        });
    }
    MetricResults {
        name: metric.display_name().to_owned(),
        event: metric.event.clone(),
        kind: metric.kind,
        role: metric.role,
        higher_is_better: higher,
        cuped,
        arms: out_arms,
    }
}

/// The series' points; with `cuped`, each day's comparisons are adjusted by that day's θ
/// (what the results would have said that day), unadjusted where CUPED cannot apply.
fn series_of(
    series: &Series,
    arms: &[(&String, f64)],
    control: usize,
    kind: MetricKind,
    cuped: bool,
    alpha: f64,
    start: i64,
) -> Vec<SeriesPoint> {
    (0..series.days)
        .map(|d| {
            let c = series.at(d, control);
            let adjusted = cuped.then(|| series.cuped(d).ok()).flatten();
            SeriesPoint {
                date: date(start + d as i64 * DAY_MS),
                arms: (0..arms.len())
                    .map(|i| {
                        let a = series.at(d, i);
                        let cmp = (i != control).then(|| match &adjusted {
                            Some(r) => compare_means(true, r.arms[control], r.arms[i], alpha),
                            None => compare(kind, true, c, a, alpha),
                        });
                        SeriesArm {
                            variant: arms[i].0.clone(),
                            units: a.n,
                            mean: a.mean(),
                            abs_lift: cmp.as_ref().and_then(|x| x.abs_lift),
                            ci_abs: cmp.and_then(|x| x.sequential_ci_abs),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Holm over every treatment × primary/secondary metric with a p-value.
fn adjust(metrics: &mut [MetricResults], alpha: f64) {
    let mut slots = Vec::new();
    let mut p = Vec::new();
    for (mi, m) in metrics.iter().enumerate() {
        if m.role == MetricRole::Guardrail {
            continue;
        }
        for (ai, a) in m.arms.iter().enumerate() {
            if let Some(pv) = a.vs_control.as_ref().and_then(|c| c.p_value) {
                slots.push((mi, ai));
                p.push(pv);
            }
        }
    }
    if p.is_empty() {
        return;
    }
    if let Ok(adj) = stats::adjust(stats::Method::Holm, &p, alpha) {
        for ((mi, ai), q) in slots.into_iter().zip(adj.adjusted) {
            if let Some(c) = metrics[mi].arms[ai].vs_control.as_mut() {
                c.p_value_adjusted = Some(q);
            }
        }
    }
}

fn warn(code: &str, message: String) -> ResultWarning {
    ResultWarning {
        code: code.to_owned(),
        message,
    }
}

fn warnings(
    exp: &Experiment,
    variants: &[ArmUnits],
    srm: Option<&SrmCheck>,
    metrics: &[MetricResults],
    days: f64,
    now_ms: i64,
) -> Vec<ResultWarning> {
    let spec = &exp.spec;
    let mut out = Vec::new();
    let total: u64 = variants.iter().map(|v| v.units).sum();
    if exp.status == ExperimentStatus::Draft {
        out.push(warn(
            "not_started",
            "the experiment has not started: there is nothing to analyse yet".to_owned(),
        ));
        return out;
    }
    if spec.metrics.is_empty() {
        out.push(warn(
            "no_metrics",
            "the experiment has no metrics".to_owned(),
        ));
    }
    if total == 0 {
        out.push(warn(
            "no_exposures",
            "no unit has been exposed yet: evaluate the flag (OFREP or an SDK) in its environment"
                .to_owned(),
        ));
        return out;
    }
    if let Some(planned) = spec.planned_units {
        if total < planned {
            out.push(warn(
                "below_planned_sample",
                format!(
                    "{total} of the {planned} planned units so far ({:.0} %): the planned power is not reached",
                    total as f64 * 100.0 / planned as f64
                ),
            ));
        }
    }
    let min_days = spec.min_duration_days.unwrap_or(DEFAULT_MIN_DAYS);
    if days < min_days {
        out.push(warn(
            "short_duration",
            format!(
                "running for {days:.1} days, less than the minimum of {min_days} (weekly cycles bias shorter tests)"
            ),
        ));
    }
    let min_units = spec.min_units_per_variant.unwrap_or(DEFAULT_MIN_UNITS);
    for v in variants.iter().filter(|v| v.units < min_units) {
        out.push(warn(
            "few_units",
            format!(
                "`{}` has {} units, fewer than the minimum of {min_units} per variant",
                v.variant, v.units
            ),
        ));
    }
    if let Some(srm) = srm {
        match srm.status.as_str() {
            "alert" => out.push(warn(
                "srm_alert",
                format!(
                    "sample ratio mismatch (χ² = {:.2}, p = {:.2e}): units are not split as configured, so the results cannot be trusted; look for exposures lost or duplicated in one arm",
                    srm.chi2, srm.p_value
                ),
            )),
            "warning" => out.push(warn(
                "srm_warning",
                format!(
                    "possible sample ratio mismatch (χ² = {:.2}, p = {:.4}): check that exposures are recorded alike in every arm",
                    srm.chi2, srm.p_value
                ),
            )),
            _ => {}
        }
    }
    for m in metrics {
        let units: u64 = m.arms.iter().map(|a| a.units).sum();
        if m.kind == MetricKind::Conversion
            && units > 0
            && m.arms.iter().all(|a| a.conversions == Some(0))
        {
            out.push(warn(
                "no_conversions",
                format!(
                    "no exposed unit has sent `{}` yet: `{}` has nothing to compare (check that the SDK or the event API sends it, with the units' ids)",
                    m.event, m.name
                ),
            ));
        }
    }
    for m in metrics {
        if m.role != MetricRole::Guardrail {
            continue;
        }
        for arm in &m.arms {
            if arm
                .vs_control
                .as_ref()
                .is_some_and(|c| c.verdict == "worse")
            {
                out.push(warn(
                    "guardrail_harmed",
                    format!(
                        "`{}` is significantly worse on guardrail `{}` (always-valid test)",
                        arm.variant, m.name
                    ),
                ));
            }
        }
    }
    if let Some(end) = spec.end_date.as_deref().and_then(parse_date) {
        if exp.status == ExperimentStatus::Running && now_ms > end {
            out.push(warn(
                "past_end_date",
                format!(
                    "the planned end ({}) has passed; complete the experiment",
                    spec.end_date.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    out
}

fn recommend(
    exp: &Experiment,
    metrics: &[MetricResults],
    warnings: &[ResultWarning],
    primary: Option<usize>,
) -> Recommendation {
    let has = |code: &str| warnings.iter().any(|w| w.code == code);
    let rec = |action: &str, variant: Option<String>, message: String| Recommendation {
        action: action.to_owned(),
        variant,
        message,
    };
    if has("not_started") {
        return rec(
            "keep_running",
            None,
            "start the experiment to collect data".to_owned(),
        );
    }
    if has("srm_alert") {
        return rec(
            "investigate",
            None,
            "the arms' sizes do not match their weights: fix the assignment or exposure logging before reading any metric".to_owned(),
        );
    }
    if has("guardrail_harmed") {
        return rec(
            "investigate",
            None,
            "a treatment harms a guardrail metric: do not ship it; see the warnings".to_owned(),
        );
    }
    let Some(primary) = primary.and_then(|i| metrics.get(i)) else {
        return rec(
            "keep_running",
            None,
            "the experiment has no primary metric to decide on".to_owned(),
        );
    };
    if has("no_exposures") {
        return rec("keep_running", None, "no data yet".to_owned());
    }
    let immature = ["short_duration", "few_units", "below_planned_sample"]
        .into_iter()
        .filter(|c| has(c))
        .collect::<Vec<_>>();
    let treatments: Vec<&ArmResult> = primary.arms.iter().filter(|a| !a.control).collect();
    let better: Vec<&ArmResult> = treatments
        .iter()
        .copied()
        .filter(|a| {
            a.vs_control.as_ref().is_some_and(|c| {
                c.verdict == "better" && c.p_value_adjusted.is_none_or(|p| p < exp.alpha())
            })
        })
        .collect();
    let describe = |a: &ArmResult| {
        let c = a.vs_control.as_ref();
        let lift = c
            .and_then(|c| c.rel_lift)
            .map(pct)
            .unwrap_or_else(|| "n/a".into());
        let ci = c
            .and_then(|c| c.sequential_ci_abs)
            .map(|[l, h]| format!("[{l:.4}, {h:.4}]"))
            .unwrap_or_else(|| "n/a".into());
        format!(
            "`{}` vs control on `{}`: relative lift {lift}, always-valid interval for the difference {ci}",
            a.variant, primary.name
        )
    };
    if !immature.is_empty() {
        let lead = better
            .first()
            .map(|a| format!("; an early lead ({}) may not hold", describe(a)))
            .unwrap_or_default();
        return rec(
            "keep_running",
            None,
            format!(
                "not enough data to decide yet ({}){lead}",
                immature.join(", ").replace('_', " ")
            ),
        );
    }
    if let Some(best) = better.iter().max_by(|a, b| {
        let ca = a.vs_control.as_ref().and_then(|c| c.chance_to_beat_control);
        let cb = b.vs_control.as_ref().and_then(|c| c.chance_to_beat_control);
        ca.partial_cmp(&cb).unwrap_or(std::cmp::Ordering::Equal)
    }) {
        return rec(
            "ship",
            Some(best.variant.clone()),
            format!(
                "{} — significant in the always-valid test and after adjusting for multiple comparisons",
                describe(best)
            ),
        );
    }
    if !treatments.is_empty()
        && treatments
            .iter()
            .all(|a| a.vs_control.as_ref().is_some_and(|c| c.verdict == "worse"))
    {
        return rec(
            "keep_control",
            None,
            format!(
                "every treatment is significantly worse than control on `{}`",
                primary.name
            ),
        );
    }
    let widest = treatments
        .iter()
        .filter_map(|a| a.vs_control.as_ref()?.sequential_ci_abs)
        .map(|[l, h]| format!("[{l:.4}, {h:.4}]"))
        .collect::<Vec<_>>()
        .join(", ");
    rec(
        "no_difference",
        None,
        format!(
            "no difference detected on `{}` at this sample size; effects within {widest} are still possible — absence of evidence is not evidence of absence",
            primary.name
        ),
    )
}

impl Experiment {
    fn alpha(&self) -> f64 {
        self.spec.alpha.unwrap_or(0.05)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(variant: &str, exposed: i64, days: &[(i64, u64, f64)]) -> UnitHistory {
        UnitHistory {
            variant: variant.into(),
            exposed_day: exposed,
            days: days.to_vec(),
            pre: (0, 0.0),
        }
    }

    #[test]
    fn series_accumulate_each_kind_from_the_exposure_day() {
        let u = unit("a", 1, &[(1, 2, 10.0), (3, 1, 5.0)]);
        for (kind, expected) in [
            (
                MetricKind::Conversion,
                [None, Some(1.0), Some(1.0), Some(1.0)],
            ),
            (MetricKind::Count, [None, Some(2.0), Some(2.0), Some(3.0)]),
            (MetricKind::Sum, [None, Some(10.0), Some(10.0), Some(15.0)]),
            (MetricKind::Mean, [None, Some(5.0), Some(5.0), Some(5.0)]),
        ] {
            let mut s = Series::new(1, 4);
            s.add(0, &u, kind);
            let got: Vec<Option<f64>> = (0..4).map(|d| s.at(d, 0).mean()).collect();
            assert_eq!(got, expected, "{kind:?}");
        }
        // A unit without events counts as 0 (not for `mean`).
        let mut s = Series::new(1, 2);
        s.add(0, &unit("a", 0, &[]), MetricKind::Sum);
        s.add(0, &unit("a", 0, &[]), MetricKind::Mean);
        assert_eq!((s.at(1, 0).n, s.at(1, 0).sum), (1, 0.0));
    }

    #[test]
    fn the_covariate_is_the_pre_period_value_on_every_day() {
        let mut u = unit("a", 1, &[(1, 2, 10.0), (3, 1, 5.0)]);
        u.pre = (3, 7.0);
        for (kind, x) in [
            (MetricKind::Conversion, 1.0),
            (MetricKind::Count, 3.0),
            (MetricKind::Sum, 7.0),
        ] {
            let mut s = Series::new(1, 4);
            s.add(0, &u, kind);
            assert_eq!(s.pre[0], PreAcc::default(), "not exposed on day 0");
            for day in 1..4 {
                let y = s.at(day, 0).sum;
                assert_eq!(
                    s.pre[day],
                    PreAcc {
                        sum: x,
                        sum2: x * x,
                        cross: x * y
                    },
                    "{kind:?} day {day}"
                );
            }
        }
    }

    #[test]
    fn direction_flips_the_verdict_and_the_chance() {
        let c = Acc {
            n: 10_000,
            sum: 1_000.0,
            sum2: 1_000.0,
        };
        let t = Acc {
            n: 10_000,
            sum: 1_300.0,
            sum2: 1_300.0,
        };
        let up = compare(MetricKind::Conversion, true, c, t, 0.05);
        assert_eq!(up.verdict, "better");
        let down = compare(MetricKind::Conversion, false, c, t, 0.05);
        assert_eq!(down.verdict, "worse");
        let (a, b) = (
            up.chance_to_beat_control.unwrap(),
            down.chance_to_beat_control.unwrap(),
        );
        assert!((a + b - 1.0).abs() < 1e-12 && a > 0.99);
    }

    #[test]
    fn arms_without_variation_have_no_interval() {
        let none = |n| Acc {
            n,
            sum: 0.0,
            sum2: 0.0,
        };
        let all = |n: u64| Acc {
            n,
            sum: n as f64,
            sum2: n as f64,
        };
        for (c, t) in [(none(5_000), none(4_000)), (all(300), all(200))] {
            let r = compare(MetricKind::Conversion, true, c, t, 0.05);
            assert_eq!(r.abs_lift, Some(0.0));
            assert_eq!((r.ci_abs, r.ci_rel), (None, None), "{r:?}");
            assert_eq!(r.sequential_ci_abs, None);
            assert_eq!(r.verdict, "inconclusive");
            // The posterior is defined: Beta(1,1) priors, unequal n.
            let chance = r.chance_to_beat_control.unwrap();
            assert!(chance > 0.0 && chance < 1.0, "{chance}");
        }
        // One arm with variation is enough for the interval.
        let one = Acc {
            n: 4_000,
            sum: 3.0,
            sum2: 3.0,
        };
        let r = compare(MetricKind::Conversion, true, none(5_000), one, 0.05);
        assert!(r.ci_abs.is_some_and(|[lo, hi]| lo < hi), "{r:?}");
    }
}

/// Why the monitor stopped an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoStop {
    /// The experiment.
    pub experiment: String,
    /// `srm` or `guardrail`.
    pub kind: &'static str,
    /// What was seen, for people (also the audit entry's reason).
    pub reason: String,
}

/// Fewest exposed units before a sample-ratio mismatch stops an experiment (the chi-square
/// needs a few dozen expected units per arm to be trusted).
pub const SRM_MIN_UNITS: u64 = 200;
/// Fewest units per arm before a guardrail stops an experiment.
pub const GUARDRAIL_MIN_UNITS: u64 = 100;

impl Control {
    /// Checks every running experiment once: a sample-ratio mismatch at p < 0.001 or a
    /// guardrail significantly worse (always-valid test) pauses it — its units get the
    /// control — as actor `srm` or `guardrail`, audited with what was seen. Returns what it
    /// stopped. Safe on every replica at once: the pause is one locked operation, and a second
    /// replica finds the experiment already paused.
    pub async fn check_experiments(&self, now_ms: i64) -> Result<Vec<AutoStop>> {
        let mut stopped = Vec::new();
        for exp in self.experiments().await? {
            if exp.status != ExperimentStatus::Running {
                continue;
            }
            let id = exp.spec.id.clone();
            let results = match self.experiment_results(&id, now_ms).await {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(experiment = %id, error = %err, "cannot check an experiment");
                    continue;
                }
            };
            let Some(stop) = auto_stop(&results) else {
                continue;
            };
            let actor = crate::Actor {
                id: stop.kind.to_owned(),
                name: Some(format!("automatic {} check", stop.kind)),
            };
            let written = self
                .transition_experiment(
                    &id,
                    crate::ExperimentAction::Pause,
                    &actor,
                    Some(stop.reason.clone()),
                )
                .await?;
            if written.changed {
                tracing::warn!(experiment = %id, kind = stop.kind, reason = %stop.reason, "an experiment was stopped automatically");
                stopped.push(stop);
            }
        }
        Ok(stopped)
    }
}

/// What in `r` stops its experiment, if anything.
fn auto_stop(r: &ExperimentResults) -> Option<AutoStop> {
    let total: u64 = r.variants.iter().map(|v| v.units).sum();
    if let Some(srm) = r.srm.as_ref().filter(|s| s.status == "alert") {
        if total >= SRM_MIN_UNITS {
            let arms = r
                .variants
                .iter()
                .map(|v| format!("{} {} (weight {})", v.variant, v.units, v.weight))
                .collect::<Vec<_>>()
                .join(", ");
            return Some(AutoStop {
                experiment: r.experiment.clone(),
                kind: "srm",
                reason: format!(
                    "sample ratio mismatch: chi2 {:.2}, p {:.2e} ({arms}); assignment or exposure logging is broken",
                    srm.chi2, srm.p_value
                ),
            });
        }
    }
    for m in r.metrics.iter().filter(|m| m.role == MetricRole::Guardrail) {
        let control_units = m.arms.iter().find(|a| a.control).map_or(0, |a| a.units);
        for arm in &m.arms {
            let Some(c) = &arm.vs_control else { continue };
            if c.verdict == "worse"
                && arm.units >= GUARDRAIL_MIN_UNITS
                && control_units >= GUARDRAIL_MIN_UNITS
            {
                return Some(AutoStop {
                    experiment: r.experiment.clone(),
                    kind: "guardrail",
                    reason: format!(
                        "guardrail `{}` is worse for `{}`: {} vs control {}, always-valid interval for the difference {}",
                        m.name,
                        arm.variant,
                        arm.mean.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}")),
                        m.arms
                            .iter()
                            .find(|a| a.control)
                            .and_then(|a| a.mean)
                            .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}")),
                        c.sequential_ci_abs
                            .map_or_else(|| "n/a".to_owned(), |[l, h]| format!("[{l:.4}, {h:.4}]"))
                    ),
                });
            }
        }
    }
    None
}
