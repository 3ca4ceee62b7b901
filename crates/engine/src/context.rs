//! The evaluation context: the targeting key plus arbitrary JSON attributes (OpenFeature).

use serde_json::{Map, Value};

/// An evaluation context: `{"targetingKey": "...", <attributes, nested objects allowed>}`.
///
/// Built once per request and borrowed by every evaluation; lookups never allocate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    attributes: Map<String, Value>,
}

/// Why a JSON value is not a valid evaluation context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The context is not a JSON object.
    #[error("the evaluation context must be a JSON object, found {found}")]
    NotAnObject {
        /// What was found instead.
        found: &'static str,
    },
    /// `targetingKey` is present but not a string.
    #[error("`targetingKey` must be a string, found {found}")]
    TargetingKeyNotString {
        /// What was found instead.
        found: &'static str,
    },
}

/// The context attribute that holds the targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

impl Context {
    /// An empty context (no targeting key).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context with only a targeting key.
    pub fn with_targeting_key(key: impl Into<String>) -> Self {
        let mut attributes = Map::new();
        attributes.insert(TARGETING_KEY.to_owned(), Value::String(key.into()));
        Self { attributes }
    }

    /// Validates a JSON value as a context. `null` is an empty context.
    pub fn from_value(value: Value) -> Result<Self, ContextError> {
        match value {
            Value::Object(attributes) => Self::from_map(attributes),
            Value::Null => Ok(Self::new()),
            other => Err(ContextError::NotAnObject {
                found: crate::document::describe(&other),
            }),
        }
    }

    /// Validates a JSON object as a context.
    pub fn from_map(attributes: Map<String, Value>) -> Result<Self, ContextError> {
        match attributes.get(TARGETING_KEY) {
            None | Some(Value::String(_)) => Ok(Self { attributes }),
            Some(other) => Err(ContextError::TargetingKeyNotString {
                found: crate::document::describe(other),
            }),
        }
    }

    /// Sets an attribute (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The targeting key, when present.
    pub fn targeting_key(&self) -> Option<&str> {
        self.attributes.get(TARGETING_KEY).and_then(Value::as_str)
    }

    /// All attributes, targeting key included.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// Looks an attribute up: the dotted path through nested objects first
    /// (`{"tenant": {"id": ...}}`), then the literal name as one key (`{"tenant.id": ...}`).
    pub fn lookup(&self, path: &AttrPath) -> Option<&Value> {
        let (first, rest) = path.segments.split_first()?;
        let top = self.attributes.get(&**first);
        if rest.is_empty() {
            return top;
        }
        let nested = top.and_then(|mut current| {
            for segment in rest {
                current = current.as_object()?.get(&**segment)?;
            }
            Some(current)
        });
        nested.or_else(|| self.attributes.get(&*path.full))
    }
}

/// A compiled attribute reference: the dotted name and its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    full: Box<str>,
    segments: Box<[Box<str>]>,
}

impl AttrPath {
    /// Compiles `name` (`user.id`, `tenant.settings.preferredProvider`, `targetingKey`).
    pub fn new(name: &str) -> Self {
        Self {
            full: name.into(),
            segments: name.split('.').map(Into::into).collect(),
        }
    }

    /// The attribute name as written.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_prefers_literal_then_nested() {
        let ctx = Context::from_value(json!({
            "targetingKey": "u1",
            "tenant": {"id": "t1", "settings": {"preferredProvider": "openai"}},
            "app.version": "1.2.3"
        }))
        .unwrap();
        assert_eq!(ctx.targeting_key(), Some("u1"));
        assert_eq!(ctx.lookup(&AttrPath::new("tenant.id")), Some(&json!("t1")));
        assert_eq!(
            ctx.lookup(&AttrPath::new("tenant.settings.preferredProvider")),
            Some(&json!("openai"))
        );
        assert_eq!(
            ctx.lookup(&AttrPath::new("app.version")),
            Some(&json!("1.2.3"))
        );
        assert_eq!(ctx.lookup(&AttrPath::new("tenant.missing")), None);
        assert_eq!(ctx.lookup(&AttrPath::new("targetingKey.x")), None);
    }

    #[test]
    fn rejects_non_objects_and_non_string_targeting_keys() {
        assert!(matches!(
            Context::from_value(json!([1])),
            Err(ContextError::NotAnObject { .. })
        ));
        assert!(matches!(
            Context::from_value(json!({"targetingKey": 5})),
            Err(ContextError::TargetingKeyNotString { .. })
        ));
        assert_eq!(Context::from_value(Value::Null).unwrap(), Context::new());
    }
}
