//! An OpenFeature provider (the `open-feature` crate) on top of the SDK: evaluations are
//! in-process, reasons, variants, error codes and flag metadata are passed on as the SDK
//! reports them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_sdk::Error> {
//! use open_feature::{EvaluationContext, OpenFeature};
//! use switchyard_sdk::openfeature::SwitchyardProvider;
//!
//! let sdk = switchyard_sdk::Client::builder("http://127.0.0.1:8080", "sy_…").build().await?;
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(SwitchyardProvider::new(sdk)).await;
//! let client = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42");
//! let on = client.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! # let _ = on; Ok(()) }
//! ```
//!
//! The `open-feature` crate (0.3) has no provider events; [`SwitchyardProvider::events`]
//! offers them (ready, stale, error, configuration changed) for applications that want them,
//! and [`FeatureProvider::status`] reflects the connection.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, FlagMetadataValue, StructValue, Value,
};
use serde_json::{Map, Value as Json};
use switchyard_engine::{Context, ErrorCode};
use tokio::sync::mpsc;

use crate::{Client, ConnectionState, Detail, Freshness, Reason, Source};

/// The OpenFeature provider: wraps a [`Client`].
#[derive(Debug, Clone)]
pub struct SwitchyardProvider {
    client: Client,
    metadata: ProviderMetadata,
}

/// A provider event (the OpenFeature spec's `PROVIDER_*` events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// A ruleset from the server is served and live.
    Ready,
    /// The connection is lost; the last known ruleset is served.
    Stale,
    /// The server refuses the SDK key.
    Error(String),
    /// The ruleset changed; it is now at this revision.
    ConfigurationChanged {
        /// The revision served.
        revision: i64,
    },
}

impl SwitchyardProvider {
    /// A provider evaluating through `client`.
    pub fn new(client: Client) -> SwitchyardProvider {
        SwitchyardProvider {
            client,
            metadata: ProviderMetadata::new("switchyard"),
        }
    }

    /// The SDK client underneath (for `track`, overrides, stats).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Provider events as they happen, until the client shuts down. Each call starts its own
    /// feed; the first event tells the current state.
    pub fn events(&self) -> mpsc::Receiver<ProviderEvent> {
        let (tx, rx) = mpsc::channel(64);
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut states = client.watch_connection();
            let mut revisions = client.watch_revision();
            let mut last = None;
            loop {
                let event = state_event(&client, *states.borrow_and_update());
                if last.as_ref() != Some(&event) {
                    if tx.send(event.clone()).await.is_err() {
                        return;
                    }
                    last = Some(event);
                }
                tokio::select! {
                    changed = states.changed() => if changed.is_err() { return },
                    changed = revisions.changed() => {
                        if changed.is_err() { return }
                        let revision = *revisions.borrow_and_update();
                        if tx.send(ProviderEvent::ConfigurationChanged { revision }).await.is_err() {
                            return;
                        }
                    }
                }
                if client.connection() == ConnectionState::Closed {
                    return;
                }
            }
        });
        rx
    }
}

fn state_event(client: &Client, state: ConnectionState) -> ProviderEvent {
    match (state, client.source()) {
        (ConnectionState::Unauthorized, _) => {
            ProviderEvent::Error("the server refuses the SDK key".to_owned())
        }
        (
            ConnectionState::Streaming | ConnectionState::Polling | ConnectionState::Connecting,
            Source::Server,
        ) => ProviderEvent::Ready,
        _ => ProviderEvent::Stale,
    }
}

/// An OpenFeature context as the engine's (custom fields become attributes; a struct field is
/// read when it holds a `serde_json::Value`, a JSON map or an OpenFeature `StructValue`).
pub fn context_of(ctx: &EvaluationContext) -> Context {
    let mut out = match &ctx.targeting_key {
        Some(key) => Context::with_targeting_key(key.clone()),
        None => Context::new(),
    };
    for (name, value) in &ctx.custom_fields {
        if let Some(json) = field_json(value) {
            out = out.with(name.clone(), json);
        }
    }
    out
}

fn field_json(value: &EvaluationContextFieldValue) -> Option<Json> {
    Some(match value {
        EvaluationContextFieldValue::Bool(b) => Json::Bool(*b),
        EvaluationContextFieldValue::Int(i) => Json::from(*i),
        EvaluationContextFieldValue::Float(f) => {
            serde_json::Number::from_f64(*f).map(Json::Number)?
        }
        EvaluationContextFieldValue::String(s) => Json::String(s.clone()),
        EvaluationContextFieldValue::DateTime(t) => Json::String(
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()?,
        ),
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(json) = any.downcast_ref::<Json>() {
                json.clone()
            } else if let Some(map) = any.downcast_ref::<Map<String, Json>>() {
                Json::Object(map.clone())
            } else if let Some(s) = any.downcast_ref::<StructValue>() {
                struct_json(s)
            } else {
                return None;
            }
        }
    })
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Struct(s) => struct_json(s),
    }
}

fn struct_json(s: &StructValue) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

/// A JSON value as an OpenFeature value (`None` for `null`, which OpenFeature has not).
fn json_value(value: &Json) -> Option<Value> {
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().filter_map(json_value).collect()),
        Json::Object(map) => Value::Struct(StructValue {
            fields: map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), json_value(v)?)))
                .collect(),
        }),
    })
}

fn reason(detail_reason: Reason) -> EvaluationReason {
    match detail_reason {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Default => EvaluationReason::Default,
        Reason::Cached => EvaluationReason::Cached,
        Reason::Stale => EvaluationReason::Other("STALE".to_owned()),
        Reason::Error => EvaluationReason::Error,
    }
}

fn error_code(code: ErrorCode) -> EvaluationErrorCode {
    match code {
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        other => EvaluationErrorCode::General(other.as_str().to_owned()),
    }
}

fn metadata(detail: &Map<String, Json>) -> FlagMetadata {
    let mut values = HashMap::new();
    for (k, v) in detail {
        let value = match v {
            Json::Bool(b) => FlagMetadataValue::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => match n.as_f64() {
                    Some(f) => FlagMetadataValue::Float(f),
                    None => continue,
                },
            },
            Json::String(s) => FlagMetadataValue::String(s.clone()),
            // OpenFeature metadata is scalar only.
            _ => continue,
        };
        values.insert(k.clone(), value);
    }
    FlagMetadata { values }
}

/// The SDK's detail as OpenFeature's: an error becomes `Err` (the OpenFeature client then
/// serves the caller's default and reports the code); everything else is passed on.
fn resolution<T>(detail: Detail<T>) -> EvaluationResult<ResolutionDetails<T>> {
    if let Some((code, message)) = detail.error {
        let code = if detail.freshness == Freshness::NotReady {
            EvaluationErrorCode::ProviderNotReady
        } else {
            error_code(code)
        };
        return Err(EvaluationError {
            code,
            message: Some(message),
        });
    }
    Ok(ResolutionDetails {
        value: detail.value,
        variant: detail.variant,
        reason: Some(reason(detail.reason)),
        flag_metadata: detail.flag_metadata.as_ref().map(metadata),
    })
}

#[async_trait]
impl FeatureProvider for SwitchyardProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        // The client was built with its own init timeout; wait a little more only if it has
        // nothing yet (OpenFeature's `set_provider` awaits this).
        if self.client.source() == Source::Nothing {
            let _ = self.client.wait_for_server(Duration::from_secs(1)).await;
        }
    }

    fn status(&self) -> ProviderStatus {
        match state_event(&self.client, self.client.connection()) {
            ProviderEvent::Ready => ProviderStatus::Ready,
            ProviderEvent::Error(_) => ProviderStatus::Error,
            _ if self.client.source() == Source::Nothing => ProviderStatus::NotReady,
            _ => ProviderStatus::STALE,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        resolution(self.client.bool_detail(flag_key, &context_of(ctx), false))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        resolution(self.client.i64_detail(flag_key, &context_of(ctx), 0))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        resolution(self.client.f64_detail(flag_key, &context_of(ctx), 0.0))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        resolution(self.client.string_detail(flag_key, &context_of(ctx), ""))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let detail = self
            .client
            .json_detail(flag_key, &context_of(ctx), Json::Null);
        // A JSON array is a valid JSON flag value but not an OpenFeature structure.
        let error = match (&detail.error, &detail.value) {
            (None, Json::Array(_)) => Some((
                ErrorCode::TypeMismatch,
                format!("`{flag_key}` served an array; OpenFeature structure values are objects"),
            )),
            _ => detail.error.clone(),
        };
        let detail = Detail {
            value: match json_value(&detail.value) {
                Some(Value::Struct(s)) => s,
                _ => StructValue::default(),
            },
            variant: detail.variant,
            reason: detail.reason,
            evaluated: detail.evaluated,
            rule_id: detail.rule_id,
            error,
            flag_metadata: detail.flag_metadata,
            freshness: detail.freshness,
            overridden: detail.overridden,
        };
        resolution(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_carry_every_field_kind() {
        let ctx = EvaluationContext::default()
            .with_targeting_key("u1")
            .with_custom_field("plan", "pro")
            .with_custom_field("seats", 12)
            .with_custom_field("beta", true)
            .with_custom_field("score", 0.5)
            .with_custom_field(
                "org",
                EvaluationContextFieldValue::new_struct(serde_json::json!({"id": "o1"})),
            );
        let c = context_of(&ctx);
        assert_eq!(c.targeting_key(), Some("u1"));
        assert_eq!(c.get("plan"), Some(&Json::from("pro")));
        assert_eq!(c.get("seats"), Some(&Json::from(12)));
        assert_eq!(c.get("beta"), Some(&Json::Bool(true)));
        assert_eq!(c.get("score"), Some(&Json::from(0.5)));
        assert_eq!(c.get("org.id"), Some(&Json::from("o1")));
    }

    #[test]
    fn details_map_to_resolutions() {
        let ok = Detail {
            value: true,
            variant: Some("on".into()),
            reason: Reason::Stale,
            evaluated: Reason::TargetingMatch,
            rule_id: None,
            error: None,
            flag_metadata: Some(
                serde_json::json!({"owner": "team", "n": 2, "nested": {"x": 1}})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            freshness: Freshness::Stale,
            overridden: false,
        };
        let r = resolution(ok).unwrap();
        assert_eq!(r.variant.as_deref(), Some("on"));
        assert_eq!(r.reason, Some(EvaluationReason::Other("STALE".into())));
        let md = r.flag_metadata.unwrap();
        assert_eq!(
            md.values.get("owner"),
            Some(&FlagMetadataValue::String("team".into()))
        );
        assert_eq!(md.values.get("n"), Some(&FlagMetadataValue::Int(2)));
        assert!(!md.values.contains_key("nested"));

        let missing: Detail<bool> =
            Detail::error(false, ErrorCode::FlagNotFound, "no".into(), Freshness::Live);
        assert_eq!(
            resolution(missing).unwrap_err().code,
            EvaluationErrorCode::FlagNotFound
        );
        let not_ready: Detail<bool> = Detail::not_ready(false, "f");
        assert_eq!(
            resolution(not_ready).unwrap_err().code,
            EvaluationErrorCode::ProviderNotReady
        );
    }
}
