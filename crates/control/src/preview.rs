//! Looking before leaping: what a proposed flag definition would be and do, without writing
//! it. The UI's editors show the difference before saving and count how a list of units
//! would be served; both use the engine exactly as a write and an evaluation would.

use std::collections::BTreeMap;

use serde_json::Value;
use switchyard_engine::{normalize, Change, Context, FlagDef};

use crate::draft::check;
use crate::snapshot::stored_origin;
use crate::{Control, ControlError, Result};

/// The most units one preview counts.
pub const PREVIEW_MAX_UNITS: usize = 100_000;

/// A proposed definition, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagCheck {
    /// The stored definition (normalized), when the flag exists.
    pub before: Option<FlagDef>,
    /// The stored version compared against, when the flag exists.
    pub version: Option<i64>,
    /// The proposed one (normalized), valid against everything else served.
    pub after: FlagDef,
}

impl Control {
    /// Validates `def` as creating or replacing its flag would (the same compile, against the
    /// served flags and segments), writing nothing.
    pub async fn check_flag(&self, mut def: FlagDef) -> Result<FlagCheck> {
        let snap = self.snapshot();
        def.origin = stored_origin(&def.key);
        def.provenance = Default::default();
        let stored = snap.flag(&def.key);
        let version = stored.as_ref().map(|f| f.meta.version);
        let before = stored.map(|f| normalize(f.definition).0);
        let (after, _) = normalize(&def);
        check(snap.ruleset.clone(), vec![Change::Flag(Box::new(def))]).await?;
        Ok(FlagCheck {
            before,
            version,
            after,
        })
    }

    /// How `units` would be served flag `key` in `environment`, by variant: with the served
    /// definition, or with `draft` in its place (checked first). Each unit is the context's
    /// `attribute` (a dotted path; `targetingKey` when not given) and nothing else, so rules
    /// on other attributes do not match.
    pub async fn preview_units(
        &self,
        environment: &str,
        key: &str,
        draft: Option<FlagDef>,
        attribute: Option<&str>,
        units: &[String],
    ) -> Result<BTreeMap<String, u64>> {
        if units.len() > PREVIEW_MAX_UNITS {
            return Err(ControlError::bad_request(
                Some("units"),
                format!(
                    "{} units; a preview counts at most {PREVIEW_MAX_UNITS}",
                    units.len()
                ),
            ));
        }
        let snap = self.snapshot();
        if snap.environment(environment).is_none() {
            return Err(ControlError::NotFound {
                what: format!("environment `{environment}`"),
                hint: Some(snap.environment_names()),
            });
        }
        let ruleset = match draft {
            Some(mut def) => {
                if def.key != key {
                    return Err(ControlError::bad_request(
                        Some("definition.key"),
                        format!("the draft is of `{}`, not `{key}`", def.key),
                    ));
                }
                def.origin = stored_origin(&def.key);
                def.provenance = Default::default();
                check(snap.ruleset.clone(), vec![Change::Flag(Box::new(def))]).await?
            }
            None => {
                crate::flags::require_flag(&snap, key)?;
                snap.ruleset.clone()
            }
        };
        let path: Vec<&str> = attribute
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or("targetingKey")
            .split('.')
            .collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ControlError::bad_request(
                Some("attribute"),
                "an attribute is a dotted path such as `tenant.id`",
            ));
        }
        let evaluator = ruleset.evaluator(environment, time::OffsetDateTime::now_utc());
        let mut counts = BTreeMap::new();
        for unit in units {
            let mut value = Value::String(unit.clone());
            for name in path.iter().rev() {
                let mut object = serde_json::Map::new();
                object.insert((*name).to_owned(), value);
                value = Value::Object(object);
            }
            let context = Context::from_value(value)
                .map_err(|e| ControlError::bad_request(Some("units"), e.to_string()))?;
            let evaluation = evaluator.evaluate(key, &context);
            let variant = evaluation.variant.unwrap_or("(none)").to_owned();
            *counts.entry(variant).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
