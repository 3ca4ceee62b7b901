//! Experiment bodies (`/api/v1/experiments/...`): the definition people write, the resource
//! the API returns, and the results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_engine::document::HoldoutDef;

/// An experiment as people write it (`experiments create -f FILE`, `POST`, and `PUT` while a
/// draft). Every field but the first five has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Unique id (the salt of its assignment: keep it when you rerun the same test).
    pub id: String,
    /// The environment it runs in.
    pub environment: String,
    /// The flag whose variants are the arms.
    pub flag: String,
    /// The control variant.
    pub control: String,
    /// Each arm's weight (percent of the experiment's units, summing to 100), control
    /// included: `{"control": 50, "green": 50}`.
    pub variants: BTreeMap<String, f64>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the team expects and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<String>,
    /// The metrics: one or more primary, any secondary and guardrail metrics.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Who may enter.
    #[serde(default)]
    pub audience: AudienceSpec,
    /// A layer of mutually exclusive experiments: this one takes `percentage` of its units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerSpec>,
    /// A holdout shared by experiments: its units enter none of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutDef>,
    /// The planned sample size, units over all arms (from `stats sample-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_units: Option<u64>,
    /// The planned start (RFC 3339 or YYYY-MM-DD), for people: `start` starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// The planned end (RFC 3339 or YYYY-MM-DD): results warn once it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// The shortest run before results may be acted on, days (default 7: a full week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration_days: Option<f64>,
    /// The fewest units per variant before results may be acted on (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_units_per_variant: Option<u64>,
    /// The two-sided significance level (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

/// A metric: which event, how it is summarised per unit, and what it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// The event name applications send.
    pub event: String,
    /// A name for the metric (defaults to the event's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How each unit's events become one number.
    #[serde(default)]
    pub kind: MetricKind,
    /// Primary, secondary or guardrail.
    #[serde(default)]
    pub role: MetricRole,
    /// Only events within this many hours after the unit's first exposure count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<f64>,
    /// `false` for metrics that should go down (errors, latency). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub higher_is_better: Option<bool>,
    /// CUPED variance reduction: each unit's value of this metric over this many days before
    /// its first exposure is the covariate (not for `mean` metrics). Units active before the
    /// experiment then need fewer units for the same power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped_days: Option<f64>,
}

impl MetricSpec {
    /// The metric's name: `name`, else the event.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.event)
    }
}

/// How a unit's events become its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// 1 if the unit sent the event at least once after exposure, else 0 (a rate).
    #[default]
    Conversion,
    /// How many times (a mean count per unit, zeros included).
    Count,
    /// The sum of the events' values (revenue per unit, zeros included).
    Sum,
    /// The mean of the events' values, over the units that sent any (latency per unit).
    Mean,
}

/// What a metric is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    /// The decision metric (adjusted for multiple comparisons with the secondary ones).
    #[default]
    Primary,
    /// Also reported, also adjusted.
    Secondary,
    /// Must not get worse: a significant harm pauses the experiment.
    Guardrail,
}

/// Who may enter an experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AudienceSpec {
    /// Units must be in at least one of these segments (none: everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_segments: Vec<String>,
    /// Units in any of these segments never enter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_segments: Vec<String>,
    /// Percentage of the audience that enters (default 100; with a layer, its percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<f64>,
}

/// A layer and the share of it an experiment asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerSpec {
    /// The layer.
    pub name: String,
    /// Percent of the layer's units (a free slice is taken when the experiment starts).
    pub percentage: f64,
}

/// Where an experiment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    /// Being prepared: editable, serves nothing.
    Draft,
    /// Assigning units and recording exposures.
    Running,
    /// Stopped for now (by a person, a guardrail or a sample-ratio mismatch): the units it
    /// would assign get the control and nothing is recorded; resume gives them their variants
    /// back.
    Paused,
    /// Finished, with a shipped variant (or none).
    Completed,
    /// Abandoned.
    Cancelled,
}

impl ExperimentStatus {
    /// The spelling in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Completed => "completed",
            ExperimentStatus::Cancelled => "cancelled",
        }
    }

    /// Completed or cancelled: nothing more can happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ExperimentStatus::Completed | ExperimentStatus::Cancelled
        )
    }
}

/// One change of an experiment's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The status it entered.
    pub status: ExperimentStatus,
    /// When (RFC 3339).
    pub at: String,
    /// Who (an actor id: `token:<id>`, `guardrail`, …).
    pub actor: String,
    /// The actor's display name at the time (a token's name), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An experiment as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResource {
    /// What was written.
    #[serde(flatten)]
    pub spec: ExperimentSpec,
    /// Where it is in its life.
    pub status: ExperimentStatus,
    /// Version for optimistic concurrency (`If-Match` on `PUT`).
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When it first started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it was completed or cancelled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Its slice of the layer `[from, to)`, percent, once started in a layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_slice: Option<[f64; 2]>,
    /// The variant shipped when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_variant: Option<String>,
    /// Every status change, oldest first.
    pub timeline: Vec<Transition>,
}

/// `GET /api/v1/experiments` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExperimentList {
    /// Matching experiments, by id.
    pub experiments: Vec<ExperimentResource>,
}

/// `POST /api/v1/experiments/{id}/{action}` body (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionRequest {
    /// Why (recorded in the audit log and the timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `complete` only: the variant to ship to everybody (absent: the flag's targeting
    /// without the experiment is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship: Option<String>,
}

/// An experiment's results, computed from its exposures and metric events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResults {
    /// The experiment.
    pub experiment: String,
    /// Its status when computed.
    pub status: ExperimentStatus,
    /// When computed (RFC 3339).
    pub computed_at: String,
    /// The analysed period: from the start…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// …to the end or now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Days in that period.
    pub days: f64,
    /// The significance level used.
    pub alpha: f64,
    /// Exposed units per arm, against the configured weights.
    pub variants: Vec<ArmUnits>,
    /// The sample-ratio check over those counts (absent before any exposure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<SrmCheck>,
    /// Each metric, in the order defined.
    pub metrics: Vec<MetricResults>,
    /// The primary metric day by day (cumulative): what a chart draws.
    pub series: Vec<SeriesPoint>,
    /// What to be careful about.
    pub warnings: Vec<ResultWarning>,
    /// What the evidence supports, never more.
    pub recommendation: Recommendation,
}

/// Exposed units of one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ArmUnits {
    /// The variant.
    pub variant: String,
    /// Whether it is the control.
    pub control: bool,
    /// Its configured weight, percent.
    pub weight: f64,
    /// Units whose first exposure was to it.
    pub units: u64,
}

/// A sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SrmCheck {
    /// Pearson's chi-square statistic.
    pub chi2: f64,
    /// Degrees of freedom (arms − 1).
    pub df: u32,
    /// Its p-value.
    pub p_value: f64,
    /// `ok`, `warning` (p < 0.01) or `alert` (p < 0.001: assignment is broken).
    pub status: String,
}

/// One metric's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MetricResults {
    /// Its name.
    pub name: String,
    /// The event.
    pub event: String,
    /// How units are summarised.
    pub kind: MetricKind,
    /// What it is for.
    pub role: MetricRole,
    /// Whether higher is better.
    pub higher_is_better: bool,
    /// CUPED, when the metric asks for it (`cupedDays`); `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedResults>,
    /// Each arm, control first.
    pub arms: Vec<ArmResult>,
}

/// How CUPED adjusted a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CupedResults {
    /// The pre-period, in days before each unit's first exposure.
    pub pre_period_days: f64,
    /// Whether the comparisons use the adjusted means; `false` when the covariate cannot
    /// help (it does not vary, or an arm has fewer than two units), see `note`.
    pub applied: bool,
    /// θ = cov(y, x) / var(x) over every unit.
    pub theta: Option<f64>,
    /// How much smaller the per-unit variance is, pooled over the arms (0.3: 30 % fewer units
    /// needed for the same power).
    pub variance_reduction: Option<f64>,
    /// Why it was not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One arm of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ArmResult {
    /// The variant.
    pub variant: String,
    /// Whether it is the control.
    pub control: bool,
    /// Units analysed (for `mean`, those that sent the event).
    pub units: u64,
    /// Units that converted (conversion metrics).
    pub conversions: Option<u64>,
    /// The rate (conversion) or the mean per unit; `null` with no units.
    pub mean: Option<f64>,
    /// Sample standard deviation of the per-unit values.
    pub sd: Option<f64>,
    /// The CUPED-adjusted mean the comparisons use (with `cuped` applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted_mean: Option<f64>,
    /// Against control (absent for the control itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_control: Option<Comparison>,
}

/// A treatment against control on one metric. Intervals are `[low, high]`; `null` where
/// undefined (no variance, a zero control mean, too few units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Treatment minus control.
    pub abs_lift: Option<f64>,
    /// `abs_lift / control`.
    pub rel_lift: Option<f64>,
    /// Fixed-horizon interval for `abs_lift`.
    pub ci_abs: Option<[f64; 2]>,
    /// Fixed-horizon interval for `rel_lift` (delta method).
    pub ci_rel: Option<[f64; 2]>,
    /// Fixed-horizon two-sided p-value (z-test for conversions, Welch otherwise).
    pub p_value: Option<f64>,
    /// `p_value` adjusted (Holm) across treatments × primary and secondary metrics.
    pub p_value_adjusted: Option<f64>,
    /// Always-valid (sequential) interval for `abs_lift`: safe to watch daily.
    pub sequential_ci_abs: Option<[f64; 2]>,
    /// Always-valid p-value.
    pub sequential_p_value: Option<f64>,
    /// Bayesian chance that the treatment beats control (in the metric's good direction).
    pub chance_to_beat_control: Option<f64>,
    /// Expected loss of choosing the treatment (metric units, good direction).
    pub expected_loss: Option<f64>,
    /// `better`, `worse` or `inconclusive`, from the sequential test at `alpha` (what
    /// decisions and guardrails use).
    pub verdict: String,
}

/// The primary metric on one day, cumulative since the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// The day (YYYY-MM-DD, UTC).
    pub date: String,
    /// Each arm: units exposed so far and their mean.
    pub arms: Vec<SeriesArm>,
}

/// One arm on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SeriesArm {
    /// The variant.
    pub variant: String,
    /// Units exposed by the end of the day.
    pub units: u64,
    /// Their mean (rate) by then.
    pub mean: Option<f64>,
    /// Against control: the lift and its always-valid interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs_lift: Option<f64>,
    /// Always-valid interval for the lift that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_abs: Option<[f64; 2]>,
}

/// Something to be careful about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResultWarning {
    /// Stable code: `below_planned_sample`, `short_duration`, `few_units`, `srm_warning`,
    /// `srm_alert`, `guardrail_harmed`, `past_end_date`, `no_exposures`, `no_metrics`,
    /// `no_conversions`, `not_started`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// What the evidence supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// `keep_running`, `ship` (with `variant`), `keep_control`, `no_difference`,
    /// `investigate` (broken assignment or harmed guardrail).
    pub action: String,
    /// The variant to ship, for `ship`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Why, in a sentence that does not overstate the evidence.
    pub message: String,
}

/// `DELETE /api/v1/units/{unit}/events` body: what was erased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    /// The environment.
    pub environment: String,
    /// The unit (as given).
    pub unit: String,
    /// Exposure and metric-event rows deleted.
    pub rows: u64,
}
