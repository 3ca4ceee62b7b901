//! Guards: the automatic kill switch of one flag in one environment. A guard watches an error
//! rate (two event counts over a window) or a PromQL query; when it is above its limit the
//! guard turns the kill switch on through the control layer — validated, versioned and
//! audited as `guard:<id>` naming who set it up, with a `guard.tripped` webhook event beside
//! the flag's own `flag.killed` — in one transaction.
//!
//! It does not flap: releasing the kill switch stays a person's decision, and after a trip
//! the guard does not trip again until its cool-down is over (so a release to check a fix is
//! not undone at once by the errors still counted in the window).

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_api_types::rollouts::{GateReading, GateSpec, GuardMetric, GuardSpec};
use switchyard_storage::{Expect, ItemKind, ItemRecord, Write};

use crate::draft::{new_id, read_item};
use crate::flags::{audit, change_in, require_environment, require_flag};
use crate::rollouts::{reading, Probe};
use crate::tokens::Actor;
use crate::{Control, ControlError, FlagChange, Result, Written};

/// The window of an error-rate guard that names none.
pub const DEFAULT_WINDOW_MS: i64 = 600_000;
/// Requests in the window before a guard may trip, by default.
pub const DEFAULT_GUARD_MIN_SAMPLE: u64 = 100;
/// How long a guard stays quiet after a trip, by default.
pub const DEFAULT_COOLDOWN_MS: i64 = 1_800_000;

/// A guard's stored state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardState {
    /// What was written (id, window, minimum sample and cool-down made explicit).
    pub spec: GuardSpec,
    /// Times it tripped.
    pub trips: u64,
    /// The last trip, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tripped_at_ms: Option<i64>,
    /// Who set it up.
    pub created_by: String,
    /// Their name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
}

impl GuardState {
    /// The id.
    pub fn id(&self) -> &str {
        self.spec.id.as_deref().unwrap_or_default()
    }

    fn ms(d: Option<&switchyard_api_types::rollouts::Duration>, default: i64) -> i64 {
        d.and_then(|d| d.to_ms().ok()).unwrap_or(default)
    }

    /// The window counted.
    pub fn window_ms(&self) -> i64 {
        Self::ms(self.spec.window.as_ref(), DEFAULT_WINDOW_MS)
    }

    /// The cool-down after a trip.
    pub fn cooldown_ms(&self) -> i64 {
        Self::ms(self.spec.cooldown.as_ref(), DEFAULT_COOLDOWN_MS)
    }

    /// Whether it is cooling down at `now_ms`.
    pub fn cooling_down(&self, now_ms: i64) -> bool {
        self.last_tripped_at_ms
            .is_some_and(|t| now_ms < t + self.cooldown_ms())
    }
}

/// A guard with its bookkeeping and latest reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// The state.
    pub state: GuardState,
    /// Version.
    pub version: i64,
    /// The latest reading.
    pub reading: Option<GateReading>,
}

/// A trip.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardTrip {
    /// The guard.
    pub id: String,
    /// The flag killed.
    pub flag: String,
    /// Where.
    pub environment: String,
    /// Why.
    pub reason: String,
}

fn from_record(r: &ItemRecord) -> Result<(GuardState, i64)> {
    Ok((read_item(r)?, r.version))
}

fn normalize(mut spec: GuardSpec) -> Result<GuardSpec> {
    let bad = |field: &str, message: String| ControlError::bad_request(Some(field), message);
    match &spec.id {
        Some(id) if !switchyard_engine::is_valid_key(id) => {
            return Err(bad("id", format!("invalid guard id `{id}`")))
        }
        Some(_) => {}
        None => {
            spec.id = Some(new_id("gd_")?);
        }
    }
    match &spec.metric {
        GuardMetric::ErrorRate { errors, requests } => {
            if errors.trim().is_empty() || requests.trim().is_empty() {
                return Err(bad(
                    "metric",
                    "name the error event (`errors`) and the request event (`requests`)".into(),
                ));
            }
            if !(0.0..1.0).contains(&spec.max) {
                return Err(bad(
                    "max",
                    format!(
                        "an error rate limit is at least 0 and below 1, not {}",
                        spec.max
                    ),
                ));
            }
        }
        GuardMetric::Prometheus { url, query } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    "metric.url",
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
            if query.trim().is_empty() {
                return Err(bad("metric.query", "give the PromQL query".into()));
            }
        }
    }
    for (field, d) in [("window", &spec.window), ("cooldown", &spec.cooldown)] {
        if let Some(d) = d {
            let ms = d.to_ms().map_err(|m| bad(field, m))?;
            if ms < 1000 {
                return Err(bad(field, "must be at least one second".into()));
            }
        }
    }
    if spec.min_sample == Some(0) {
        return Err(bad("minSample", "must be at least 1".into()));
    }
    spec.min_sample.get_or_insert(DEFAULT_GUARD_MIN_SAMPLE);
    Ok(spec)
}

impl Control {
    /// Sets up a guard on a flag in an environment.
    pub async fn create_guard(
        &self,
        spec: GuardSpec,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<Guard>> {
        self.ensure_flags_writable()?;
        let spec = normalize(spec)?;
        self.timed(async {
            let mut draft = self.begin().await?;
            require_environment(&draft.snap, &spec.environment)?;
            require_flag(&draft.snap, &spec.flag)?;
            let id = spec.id.clone().unwrap_or_default();
            if draft.tx.item(ItemKind::Guard, &id).await?.is_some() {
                return Err(ControlError::AlreadyExists {
                    what: format!("guard `{id}`"),
                });
            }
            let state = GuardState {
                spec: spec.clone(),
                trips: 0,
                last_tripped_at_ms: None,
                created_by: actor.id.clone(),
                created_by_name: actor.name.clone(),
            };
            let info = audit(actor, "guard.create", Some(&spec.environment), reason);
            let record = draft
                .put_item(ItemKind::Guard, &id, &state, Expect::Absent, &info)
                .await?;
            let (state, version) = from_record(&record)?;
            draft
                .finish(
                    Guard {
                        state,
                        version,
                        reading: None,
                    },
                    true,
                )
                .await
        })
        .await
    }

    /// Every guard, by id, with its latest reading.
    pub async fn guards(&self) -> Result<Vec<Guard>> {
        let mut out = Vec::new();
        for record in self.require_store()?.list_items(ItemKind::Guard).await? {
            let (state, version) = from_record(&record)?;
            let (mut readings, _) = self
                .stored_readings(&format!("guard:{}", record.id))
                .await?;
            out.push(Guard {
                state,
                version,
                reading: readings.pop(),
            });
        }
        Ok(out)
    }

    /// Removes a guard (the flag stays as it is).
    pub async fn delete_guard(
        &self,
        id: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<Written<()>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            let Some(record) = draft.tx.item(ItemKind::Guard, id).await? else {
                return Err(ControlError::not_found(format!("guard `{id}`")));
            };
            let (state, _) = from_record(&record)?;
            draft
                .tx
                .write_item(
                    ItemKind::Guard,
                    &Write {
                        key: id.to_owned(),
                        expect: Expect::Exists,
                        definition: None,
                        archived: false,
                        audit: audit(actor, "guard.delete", Some(&state.spec.environment), reason),
                    },
                )
                .await?;
            draft.finish((), true).await
        })
        .await
    }

    /// Reads every guard and trips those above their limit (not cooling down, flag not
    /// already killed there).
    pub async fn check_guards<P: Probe>(&self, now_ms: i64, probe: &P) -> Result<Vec<GuardTrip>> {
        let store = self.require_store()?;
        let mut trips = Vec::new();
        // The records only: a check does not need the previous readings.
        for record in store.list_items(ItemKind::Guard).await? {
            let (state, version) = from_record(&record)?;
            let state = &state;
            let id = state.id().to_owned();
            let reading = match self.read_guard(state, now_ms, probe).await {
                Ok(r) => r,
                Err(err) => reading(&gate_kind(state), "hold", format!("cannot be read: {err}")),
            };
            let text = serde_json::to_string(&[&reading]).map_err(|e| {
                ControlError::Internal(format!("a reading does not serialize: {e}"))
            })?;
            store
                .put_readings(&format!("guard:{id}"), &text, now_ms)
                .await?;
            if reading.status != "red" || state.cooling_down(now_ms) {
                continue;
            }
            let snap = self.snapshot();
            let killed = snap
                .flag(&state.spec.flag)
                .is_none_or(|f| f.definition.state_in(Some(&state.spec.environment)).1);
            if killed {
                continue;
            }
            match self.trip(&id, version, &reading.detail).await {
                Ok(Some(trip)) => {
                    tracing::warn!(guard = %id, flag = %trip.flag, environment = %trip.environment, reason = %trip.reason, "a guard tripped the kill switch");
                    trips.push(trip);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(guard = %id, error = %err, "a guard could not trip"),
            }
        }
        Ok(trips)
    }

    async fn trip(&self, id: &str, version: i64, why: &str) -> Result<Option<GuardTrip>> {
        self.timed(async {
            let mut draft = self.begin().await?;
            let Some(record) = draft.tx.item(ItemKind::Guard, id).await? else {
                return Ok(None);
            };
            let (mut state, current) = from_record(&record)?;
            let now = draft.tx.now_ms();
            if current != version || state.cooling_down(now) {
                return Ok(None);
            }
            let by = state
                .created_by_name
                .clone()
                .unwrap_or_else(|| state.created_by.clone());
            let actor = Actor {
                id: format!("guard:{id}"),
                name: Some(format!("guard {id}, set up by {by}")),
            };
            let env = state.spec.environment.clone();
            let reason = format!("guard {id} tripped: {why}");
            let changed = change_in(
                &mut draft,
                &state.spec.flag,
                FlagChange::Kill {
                    environment: Some(env.clone()),
                    on: true,
                },
                None,
                audit(&actor, "flag.kill", Some(&env), Some(reason.clone())),
            )
            .await?;
            if !changed {
                return Ok(None);
            }
            state.trips += 1;
            state.last_tripped_at_ms = Some(now);
            let info = audit(&actor, "guard.trip", Some(&env), Some(reason.clone()));
            draft
                .put_item(ItemKind::Guard, id, &state, Expect::Version(version), &info)
                .await?;
            draft
                .emit(
                    "guard.tripped",
                    "guard",
                    id,
                    &info,
                    json!({"flag": state.spec.flag, "reading": why}),
                )
                .await?;
            let trip = GuardTrip {
                id: id.to_owned(),
                flag: state.spec.flag.clone(),
                environment: env,
                reason,
            };
            Ok(Some(draft.finish(trip, true).await?.value))
        })
        .await
    }

    async fn read_guard<P: Probe>(
        &self,
        state: &GuardState,
        now_ms: i64,
        probe: &P,
    ) -> Result<GateReading> {
        let gate = gate_kind(state);
        let max = state.spec.max;
        Ok(match &state.spec.metric {
            GuardMetric::ErrorRate { errors, requests } => {
                let window = state.window_ms();
                let counts = self
                    .require_store()?
                    .recent_event_counts(
                        &state.spec.environment,
                        &[errors, requests],
                        now_ms - window,
                    )
                    .await?;
                let (e, n) = (counts[0], counts[1]);
                let min = state.spec.min_sample.unwrap_or(DEFAULT_GUARD_MIN_SAMPLE);
                // Every error is also a request; errors beyond the requests are counted as both.
                let n = n.max(e);
                crate::rollouts::gates::error_rate(
                    &gate,
                    (n, e as f64),
                    (0, 0.0),
                    Some(max),
                    None,
                    min,
                    "requests",
                )
            }
            GuardMetric::Prometheus { url, query } => match probe.prometheus(url, query).await {
                Ok(Some(v)) => crate::rollouts::gates::threshold(&gate, v, Some(max), None),
                Ok(None) => reading(&gate, "hold", format!("`{query}` returned no sample yet")),
                Err(e) => reading(&gate, "hold", format!("the query failed: {e}")),
            },
        })
    }
}

/// The gate a guard's metric reads like (for its reading's kind and wording).
fn gate_kind(state: &GuardState) -> GateSpec {
    match &state.spec.metric {
        GuardMetric::ErrorRate { errors, .. } => GateSpec::ErrorRate {
            event: errors.clone(),
            max: Some(state.spec.max),
            margin: None,
        },
        GuardMetric::Prometheus { url, query } => GateSpec::Prometheus {
            url: url.clone(),
            query: query.clone(),
            max: Some(state.spec.max),
            min: None,
        },
    }
}
