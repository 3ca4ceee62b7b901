//! The stale-flag report, from the served snapshot and the last-evaluated times: flags that
//! have served one variant to everyone in every environment for longer than N days, flags not
//! evaluated anywhere in N days, flags past their expected removal date, and archived flags
//! that active flags still require.

use std::collections::HashMap;

use crate::{Control, Result, Snapshot};

/// When each flag was last evaluated, per environment, and since when that is recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluations {
    /// `flag → environment → unix ms`.
    pub last: HashMap<String, HashMap<String, i64>>,
    /// Since when evaluations are recorded (unix ms; `None`: not yet).
    pub since_ms: Option<i64>,
}

/// One stale flag and why.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleFlag {
    /// The flag.
    pub key: String,
    /// Its owner, when it has one.
    pub owner: Option<String>,
    /// Days since it was created.
    pub age_days: i64,
    /// Why it is reported, one sentence each.
    pub reasons: Vec<String>,
}

const DAY_MS: i64 = 86_400_000;

/// The report over `snapshot` as of `now_ms`, for flags older than `days`. A flag is called
/// unevaluated only once `evaluations` reach back `days`.
pub fn stale_flags(
    snapshot: &Snapshot,
    evaluations: &Evaluations,
    days: i64,
    now_ms: i64,
) -> Vec<StaleFlag> {
    let horizon = now_ms - days * DAY_MS;
    let tracked = evaluations.since_ms.is_some_and(|s| s <= horizon);
    let today = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000)
        .map(|t| t.date())
        .ok();
    let envs: Vec<&str> = snapshot.environments().map(|e| e.name.as_str()).collect();
    let mut out = Vec::new();
    for flag in snapshot.flags() {
        let def = flag.definition;
        let key = def.key.as_str();
        let age_days = (now_ms - flag.meta.created_at_ms) / DAY_MS;
        let mut reasons = Vec::new();
        if flag.meta.archived {
            let required_by: Vec<&str> = snapshot
                .flags()
                .filter(|f| !f.meta.archived)
                .filter(|f| {
                    std::iter::once(&f.definition.targeting)
                        .chain(f.definition.environments.values().map(Box::as_ref))
                        .flat_map(|t| t.prerequisites.iter().flatten())
                        .any(|p| p.flag == key)
                })
                .map(|f| f.definition.key.as_str())
                .collect();
            if !required_by.is_empty() {
                reasons.push(format!(
                    "archived, but still a prerequisite of {}",
                    required_by.join(", ")
                ));
            }
        } else {
            if age_days >= days && !envs.is_empty() {
                let served: Vec<(&str, Option<&str>)> = envs
                    .iter()
                    .map(|e| (*e, snapshot.ruleset.uniform_variant(key, e)))
                    .collect();
                if served.iter().all(|(_, v)| v.is_some()) {
                    let list = served
                        .iter()
                        .map(|(e, v)| format!("{e}: `{}`", v.unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    reasons.push(format!(
                        "{age_days} days old and serves one variant to everyone in every environment ({list}): remove it from the code"
                    ));
                }
            }
            if age_days >= days && tracked {
                let last = evaluations.last.get(key);
                let latest = last.and_then(|l| l.values().max().copied());
                if latest.is_none_or(|t| t < horizon) {
                    let when = match latest {
                        Some(t) => format!("last evaluated {} days ago", (now_ms - t) / DAY_MS),
                        None => "never evaluated since evaluations are recorded".to_owned(),
                    };
                    reasons.push(format!(
                        "not evaluated in any environment for {days} days ({when}): nothing reads it any more"
                    ));
                }
            }
            let removal = def
                .lifecycle
                .as_ref()
                .and_then(|l| l.expected_removal.as_deref());
            if let (Some(text), Some(today)) = (removal, today) {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                let date = time::Date::parse(text.get(..10).unwrap_or(text), &format).ok();
                if date.is_some_and(|d| d < today) {
                    reasons.push(format!("past its expected removal date ({text})"));
                }
            }
        }
        if !reasons.is_empty() {
            out.push(StaleFlag {
                key: key.to_owned(),
                owner: def.owner.clone(),
                age_days,
                reasons,
            });
        }
    }
    out
}

impl Control {
    /// [`stale_flags`] over the served snapshot and the store's last-evaluated times.
    pub async fn stale_flags(&self, days: i64, now_ms: i64) -> Result<Vec<StaleFlag>> {
        let evaluations = self.evaluations().await?;
        Ok(stale_flags(&self.snapshot(), &evaluations, days, now_ms))
    }

    /// The store's last-evaluated times.
    pub async fn evaluations(&self) -> Result<Evaluations> {
        let mut evaluations = Evaluations::default();
        if let Some(store) = self.store() {
            let (rows, since) = store.last_evaluations().await?;
            evaluations.since_ms = since;
            for (env, flag, at) in rows {
                evaluations.last.entry(flag).or_default().insert(env, at);
            }
        }
        Ok(evaluations)
    }

    /// Stores last-evaluated times `(environment, flag, unix ms)` (not the flag write path).
    pub async fn record_evaluations(&self, rows: &[(String, String, i64)]) -> Result<()> {
        Ok(self
            .require_store()?
            .record_evaluations(rows, crate::now_ms())
            .await?)
    }
}
