//! Looking before saving (the web UI's editors, and anyone's scripts): `POST
//! /api/v1/flags/{key}/check` validates a proposed definition — JSON as `PUT` takes it, or
//! YAML text with line numbers in its errors — and lists what saving it would change;
//! `POST /api/v1/flags/{key}/preview` counts how a list of units would be served.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use switchyard_api_types::admin::VariantUnits;
use switchyard_api_types::changes::{flag_changes, FlagCheckResult, PreviewRequest, PreviewResult};
use switchyard_control::ControlError;
use switchyard_engine::source::{self, Format, Positions};
use switchyard_engine::{FieldPath, FlagDef};

use crate::admin::{about_flag, parse_body, read_flag, relative_to_flag};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn is_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml") || v.contains("yml"))
}

/// A YAML flag definition: parsed, with the lines of its values.
fn read_yaml_flag(body: &[u8], key: &str) -> ApiResult<(FlagDef, Positions)> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body must be UTF-8 text"))?;
    let parsed = source::parse(text, Format::Yaml).map_err(|d| ApiError::validation(&[d]))?;
    let mut value = parsed.value;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("key")
            .or_insert_with(|| serde_json::Value::String(key.to_owned()));
    }
    let def = FlagDef::from_value_at(value, &FieldPath::root()).map_err(|mut d| {
        d.line = parsed.positions.line_of(&d.path);
        ApiError::validation(&[d])
    })?;
    if def.key != key {
        return Err(ApiError::bad_request(format!(
            "the definition's key `{}` differs from the URL's `{key}`",
            def.key
        )));
    }
    Ok((def, parsed.positions))
}

/// `POST /api/v1/flags/{key}/check`.
pub async fn check_flag(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FlagCheckResult>> {
    let (def, positions) = if is_yaml(&headers) {
        let (def, positions) = read_yaml_flag(&body, &key)?;
        (def, Some(positions))
    } else {
        (read_flag(&body, Some(&key))?.0, None)
    };
    let checked = match state.control.check_flag(def).await {
        Ok(checked) => checked,
        Err(ControlError::Invalid { mut diagnostics }) => {
            let own = relative_to_flag(&key, &mut diagnostics);
            if let Some(positions) = &positions {
                for (d, own) in diagnostics.iter_mut().zip(own) {
                    if own {
                        d.line = positions.line_of(&d.path);
                    }
                }
            }
            return Err(ApiError::validation(&diagnostics));
        }
        Err(other) => return Err(ApiError::from(other)),
    };
    let after = serde_json::to_value(&checked.after).unwrap_or_default();
    Ok(Json(FlagCheckResult {
        key,
        exists: checked.before.is_some(),
        version: checked.version,
        yaml: source::to_yaml(&after),
        changes: flag_changes(checked.before.as_ref(), &checked.after),
        definition: checked.after,
    }))
}

/// `POST /api/v1/flags/{key}/preview`.
pub async fn preview_flag(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<PreviewResult>> {
    let request: PreviewRequest = parse_body(&body)?;
    let draft = match request.definition {
        None => None,
        Some(value) => {
            let mut def = FlagDef::from_value_at(value, &FieldPath::root().key("definition"))
                .map_err(|d| ApiError::validation(&[d]))?;
            if def.key.is_empty() {
                def.key.clone_from(&key);
            }
            Some(def)
        }
    };
    let counts = state
        .control
        .preview_units(
            &request.environment,
            &key,
            draft,
            request.attribute.as_deref(),
            &request.units,
        )
        .await
        .map_err(|e| about_flag(&key, e))?;
    let total = counts.values().sum();
    let mut variants: Vec<VariantUnits> = counts
        .into_iter()
        .map(|(variant, units)| VariantUnits {
            variant,
            units: units as i64,
        })
        .collect();
    variants.sort_by(|a, b| b.units.cmp(&a.units).then(a.variant.cmp(&b.variant)));
    Ok(Json(PreviewResult {
        flag: key,
        environment: request.environment,
        total,
        variants,
    }))
}
