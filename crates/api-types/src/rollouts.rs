//! Progressive rollouts and guards (`/api/v1/rollouts`, `/api/v1/guards`): the plans people
//! write and the state the server reports.
//!
//! Durations are written as text (`"90s"`, `"10m"`, `"1h"`, `"2d"`) or as a number of seconds.

use serde::{Deserialize, Serialize};

/// A duration: `"10m"`-style text or seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Duration {
    /// Seconds.
    Seconds(u64),
    /// A number and a unit: `s`, `m`, `h` or `d` (`"90s"`, `"10m"`).
    Text(String),
}

impl Duration {
    /// The duration in milliseconds, or why it does not read.
    pub fn to_ms(&self) -> Result<i64, String> {
        match self {
            Duration::Seconds(s) => i64::try_from(*s)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .ok_or_else(|| format!("{s} seconds is too long")),
            Duration::Text(text) => {
                let t = text.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (number, unit) = t.split_at(split);
                let n: i64 = number.parse().map_err(|_| {
                    format!("`{text}` is not a duration; write a number and s, m, h or d (`10m`)")
                })?;
                let per = match unit.trim() {
                    "" | "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    other => {
                        return Err(format!(
                            "unknown unit `{other}` in `{text}`; use s, m, h or d"
                        ))
                    }
                };
                n.checked_mul(per)
                    .ok_or_else(|| format!("`{text}` is too long"))
            }
        }
    }
}

/// One stage of a rollout plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageSpec {
    /// The share of units served the new variant at this stage (0–100).
    pub percentage: f64,
    /// How long the stage holds at least before it may advance (default: the plan's `hold`;
    /// the last stage's hold is the bake period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Duration>,
    /// Whether a person must approve before the rollout enters this stage
    /// (`switchyard rollouts advance`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
}

/// A health gate: what must stay healthy for the rollout to advance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum GateSpec {
    /// The share of units served the new variant that sent `event` (an error) since their
    /// exposure at this stage: at most `max`, or at most `margin` above the other units'.
    ErrorRate {
        /// The event a unit sends on an error.
        event: String,
        /// Absolute limit (0–1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Limit as a difference over the baseline units (0–1, `0.01` = one point).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        margin: Option<f64>,
    },
    /// A percentile of `event`'s values (a latency in ms) from units served the new variant:
    /// at most `max`, at most `margin` (a ratio: `0.5` = 1.5 × the baseline's) or at most
    /// `marginMs` (the baseline's plus so many ms) — exactly one of them.
    Latency {
        /// The event whose value is the latency.
        event: String,
        /// The percentile (50–99.9; default 99).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percentile: Option<f64>,
        /// Absolute limit, in the event's unit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Limit as a ratio over the baseline's percentile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        margin: Option<f64>,
        /// Limit as the baseline's percentile plus this much (ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        margin_ms: Option<f64>,
    },
    /// A PromQL query against a Prometheus server: red when its value is above `max` or
    /// below `min`; holding while it returns nothing.
    Prometheus {
        /// The Prometheus server (`http://prometheus:9090`).
        url: String,
        /// An instant query returning one number (a scalar or a one-series vector).
        query: String,
        /// Red above this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Red below this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
    },
    /// An HTTP health check: red after `failures` consecutive failed checks (a status other
    /// than 2xx, a timeout, no answer).
    Http {
        /// The URL checked with `GET`.
        url: String,
        /// Consecutive failures that make it red (default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failures: Option<u32>,
    },
}

/// What a rollout does on a red gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnRed {
    /// Serve the new variant to nobody.
    #[default]
    Zero,
    /// Go back to the last stage whose gates were green (0 % from the first stage).
    LastHealthy,
}

/// `POST /api/v1/rollouts` body: a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPlan {
    /// An id (default: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The flag rolled out.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// The variant rolled out (default: what the fallthrough serves, or `on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The stages (default 5 → 25 → 50 → 100 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageSpec>>,
    /// The minimum hold of a stage that names none (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Duration>,
    /// Units (error rate) or values (latency) each compared arm needs at a stage before its
    /// gate can be green or red (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sample: Option<u64>,
    /// The health gates (none: the stages advance on time alone).
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// What a red gate does.
    #[serde(default)]
    pub on_red: OnRed,
}

/// One gate's latest reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GateReading {
    /// The gate (its index in the plan).
    pub gate: usize,
    /// Its kind.
    pub kind: String,
    /// `green` (healthy, enough data), `hold` (not enough data yet, or not conclusive) or
    /// `red` (unhealthy).
    pub status: String,
    /// The measured value (rate, percentile, query result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The baseline's, when the gate compares with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Units or values measured for the new variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
    /// Consecutive failed checks (HTTP gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// What was measured and why it is this colour.
    pub detail: String,
}

/// One step of a rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StageEvent {
    /// When (RFC 3339).
    pub at: String,
    /// `started`, `advanced`, `awaiting_approval`, `approved`, `paused`, `resumed`,
    /// `rolled_back`, `aborted` or `completed`.
    pub action: String,
    /// The stage after it (index).
    pub stage: usize,
    /// The percentage served after it.
    pub percentage: f64,
    /// Who (`rollout:<id>` for the rollout itself).
    pub actor: String,
    /// Why (the gate readings of a rollback, the reason given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A rollout as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RolloutResource {
    /// Its id.
    pub id: String,
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// The variant rolled out.
    pub variant: String,
    /// `running`, `awaiting_approval`, `paused`, `completed`, `rolled_back` or `aborted`.
    pub status: String,
    /// The current stage (index into `stages`).
    pub stage: usize,
    /// The percentage served now.
    pub percentage: f64,
    /// When the current stage started (RFC 3339).
    pub stage_started_at: String,
    /// When the current stage's hold ends (RFC 3339).
    pub hold_until: String,
    /// The stages, with every hold in seconds.
    pub stages: Vec<StageSpec>,
    /// The gates.
    pub gates: Vec<GateSpec>,
    /// What a red gate does.
    pub on_red: OnRed,
    /// The per-arm minimum sample.
    pub min_sample: u64,
    /// The latest gate readings.
    pub readings: Vec<GateReading>,
    /// When they were taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readings_at: Option<String>,
    /// Every step so far, oldest first.
    pub history: Vec<StageEvent>,
    /// Who started it.
    pub created_by: String,
    /// Version (for `If-Match`).
    pub version: i64,
}

/// `GET /api/v1/rollouts` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutList {
    /// Every rollout, newest first.
    pub rollouts: Vec<RolloutResource>,
}

/// What a guard watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum GuardMetric {
    /// `errors` events over `requests` events the environment received in the window.
    ErrorRate {
        /// The event sent on an error.
        errors: String,
        /// The event sent on every request (the denominator).
        requests: String,
    },
    /// A PromQL query (it carries its own window, `rate(…[10m])`).
    Prometheus {
        /// The Prometheus server.
        url: String,
        /// An instant query returning one number.
        query: String,
    },
}

/// `POST /api/v1/guards` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardSpec {
    /// An id (default: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The flag it kills.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// What it watches.
    pub metric: GuardMetric,
    /// Trips above this (an error rate 0–1, or the query's unit).
    pub max: f64,
    /// The window counted (error-rate guards; default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Requests in the window before it may trip (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sample: Option<u64>,
    /// After a trip it does not trip again for this long, even once released (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A guard as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GuardResource {
    /// Its id.
    pub id: String,
    /// What was written (its `id` is the one above).
    #[serde(flatten)]
    pub spec: GuardSpec,
    /// `armed`, or `cooling_down` for a while after a trip.
    pub state: String,
    /// Times it tripped.
    pub trips: u64,
    /// The last trip (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tripped_at: Option<String>,
    /// The latest reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<GateReading>,
    /// Who set it up.
    pub created_by: String,
    /// Version.
    pub version: i64,
}

/// `GET /api/v1/guards` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GuardList {
    /// Every guard, by id.
    pub guards: Vec<GuardResource>,
}

#[cfg(test)]
mod tests {
    use super::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(Duration::Seconds(90).to_ms(), Ok(90_000));
        assert_eq!(Duration::Text("90s".into()).to_ms(), Ok(90_000));
        assert_eq!(Duration::Text("10m".into()).to_ms(), Ok(600_000));
        assert_eq!(Duration::Text("1h".into()).to_ms(), Ok(3_600_000));
        assert_eq!(Duration::Text("2d".into()).to_ms(), Ok(172_800_000));
        assert_eq!(Duration::Text("5".into()).to_ms(), Ok(5_000));
        assert!(Duration::Text("ten minutes".into())
            .to_ms()
            .unwrap_err()
            .contains("not a duration"));
        assert!(Duration::Text("3w".into())
            .to_ms()
            .unwrap_err()
            .contains("unknown unit `w`"));
    }
}
