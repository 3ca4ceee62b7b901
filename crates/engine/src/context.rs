//! The evaluation context: the targeting key plus arbitrary JSON attributes (OpenFeature).
//!
//! A context is flattened once, when it is built: every value that is not an object is filed
//! under its dotted path (`{"tenant": {"id": "t1"}}` gives `tenant.id`), in a hash table keyed
//! by the same hash that [`AttrPath`] precomputes when a flag is compiled. A lookup during
//! evaluation is then one probe and one comparison, and never allocates.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::strmap::{InlineKey, Slots};

/// An evaluation context: `{"targetingKey": "...", <attributes, nested objects allowed>}`.
///
/// Built once per request and borrowed by every evaluation; lookups never allocate.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Objects are not entries, their leaves are.
    entries: Vec<Entry>,
    index: Slots,
    /// The `targetingKey` entry's index plus one (0: none). Rollouts and splits bucket by it,
    /// so it is found without a table probe. Entries are never removed, so it stays valid.
    targeting: u32,
}

/// One cache line: a lookup reads this and, for a short path, nothing else.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Entry {
    /// The dotted path; its tag is how deeply nested the value was (a nested path wins over
    /// a literal dotted one).
    path: InlineKey,
    value: Value,
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

/// The attribute-path hash: fast, and seeded once per process so that attribute names chosen
/// by a client cannot be crafted to collide (a context is attacker-controlled input on OFREP).
/// Results never depend on it: it only places entries in the table.
pub(crate) fn hash_of(path: &str) -> u64 {
    static STATE: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(path)
}

impl Context {
    /// An empty context (no targeting key).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty context with room for `attributes` attributes.
    pub(crate) fn with_capacity(attributes: usize) -> Self {
        Self {
            entries: Vec::with_capacity(attributes),
            ..Self::default()
        }
    }

    /// A context with only a targeting key.
    pub fn with_targeting_key(key: impl Into<String>) -> Self {
        Self::new().with(TARGETING_KEY, Value::String(key.into()))
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
        if let Some(key) = attributes.get(TARGETING_KEY) {
            if !key.is_string() {
                return Err(ContextError::TargetingKeyNotString {
                    found: crate::document::describe(key),
                });
            }
        }
        let mut ctx = Self::new();
        ctx.insert_object(String::new(), attributes, 0);
        Ok(ctx)
    }

    /// Sets an attribute (builder style); an object value is flattened under `name`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        match value.into() {
            Value::Object(map) => self.insert_object(name, map, 0),
            other => {
                self.insert(name, other, 0);
            }
        }
        self
    }

    fn insert_object(&mut self, prefix: String, map: Map<String, Value>, depth: u16) {
        for (key, value) in map {
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::Object(inner) => self.insert_object(path, inner, depth.saturating_add(1)),
                leaf => {
                    self.insert(path, leaf, depth);
                }
            }
        }
    }

    /// Files `value` under `path`. A nested path wins over a literal key spelled with dots
    /// (`{"tenant": {"id": 1}}` over `{"tenant.id": 2}`), whatever their order. False when
    /// `path` was there already.
    pub(crate) fn insert(&mut self, path: String, value: Value, depth: u16) -> bool {
        let hash = hash_of(&path);
        if let Some(i) = self.position(hash, &path) {
            let entry = &mut self.entries[i];
            if depth >= entry.path.tag() {
                entry.value = value;
                entry.path.set_tag(depth);
            }
            return false;
        }
        if u32::try_from(self.entries.len() + 1).is_err() {
            return false;
        }
        if path == TARGETING_KEY {
            // At most u32::MAX entries (checked above), so the index plus one fits.
            self.targeting = u32::try_from(self.entries.len() + 1).unwrap_or(0);
        }
        let mut path = InlineKey::new(path.into_boxed_str());
        path.set_tag(depth);
        self.entries.push(Entry { path, value });
        let entries = &self.entries;
        self.index.insert(hash, entries.len() - 1, |i| {
            hash_of(entries[i].path.as_str())
        });
        true
    }

    /// The targeting key, when present.
    pub fn targeting_key(&self) -> Option<&str> {
        self.targeting_value().and_then(Value::as_str)
    }

    #[inline(always)]
    fn targeting_value(&self) -> Option<&Value> {
        let i = self.targeting.checked_sub(1)?;
        self.entries.get(i as usize).map(|e| &e.value)
    }

    /// The value at a dotted path, if any (objects themselves are not values here).
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.find(hash_of(path), path)
    }

    /// Looks a compiled attribute up: the dotted path through nested objects
    /// (`{"tenant": {"id": ...}}`), or the literal name as one key (`{"tenant.id": ...}`).
    #[inline]
    pub fn lookup(&self, path: &AttrPath) -> Option<&Value> {
        if path.key.tag() == TARGETING_PATH {
            return self.targeting_value();
        }
        self.index
            .find(path.hash, |i| self.entries[i].path.same(&path.key))
            .map(|i| &self.entries[i].value)
    }

    #[inline(always)]
    fn find(&self, hash: u64, path: &str) -> Option<&Value> {
        self.position(hash, path).map(|i| &self.entries[i].value)
    }

    #[inline(always)]
    fn position(&self, hash: u64, path: &str) -> Option<usize> {
        self.index.find(hash, |i| self.entries[i].path.is(path))
    }

    /// Every `(dotted path, value)` of the context.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|e| (e.path.as_str(), &e.value))
    }

    /// Number of attributes (leaves).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.entries().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// The tag of a compiled [`AttrPath`] naming `targetingKey` (the tag is otherwise unused in
/// an attribute reference; in a context entry it is the nesting depth).
const TARGETING_PATH: u16 = 1;

/// A compiled attribute reference: the dotted name and its precomputed hash.
#[derive(Debug, Clone)]
pub struct AttrPath {
    key: InlineKey,
    hash: u64,
}

impl AttrPath {
    /// Compiles `name` (`user.id`, `tenant.settings.preferredProvider`, `targetingKey`).
    pub fn new(name: &str) -> Self {
        let mut key = InlineKey::new(name.into());
        if name == TARGETING_KEY {
            key.set_tag(TARGETING_PATH);
        }
        Self {
            key,
            hash: hash_of(name),
        }
    }

    /// The attribute name as written.
    pub fn as_str(&self) -> &str {
        self.key.as_str()
    }
}

impl PartialEq for AttrPath {
    fn eq(&self, other: &Self) -> bool {
        self.key.same(&other.key)
    }
}

impl Eq for AttrPath {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_finds_nested_and_literal_paths() {
        let ctx = Context::from_value(json!({
            "targetingKey": "u1",
            "tenant": {"id": "t1", "settings": {"preferredProvider": "openai"}},
            "app.version": "1.2.3",
            "roles": ["a", "b"]
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
        assert_eq!(
            ctx.lookup(&AttrPath::new("roles")),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(ctx.lookup(&AttrPath::new("tenant.missing")), None);
        assert_eq!(
            ctx.lookup(&AttrPath::new("tenant")),
            None,
            "objects are not values"
        );
        assert_eq!(ctx.lookup(&AttrPath::new("targetingKey.x")), None);
    }

    #[test]
    fn the_targeting_key_is_found_wherever_it_was_filed() {
        let key = AttrPath::new(TARGETING_KEY);
        for value in [
            json!({"targetingKey": "u1", "plan": "pro"}),
            json!({"plan": "pro", "a": {"b": 1}, "targetingKey": "u1"}),
            json!({"targetingKey": 7, "targetingKey.x": "y"}),
            json!({"plan": "pro"}),
            json!({}),
        ] {
            let ctx = Context::from_value(value.clone()).unwrap_or_else(|_| {
                // A numeric targeting key is refused by `from_value`; build it directly.
                Context::new()
                    .with("targetingKey", 7)
                    .with("targetingKey.x", "y")
            });
            assert_eq!(ctx.lookup(&key), ctx.get(TARGETING_KEY), "{value}");
            assert_eq!(
                ctx.targeting_key(),
                ctx.get(TARGETING_KEY).and_then(Value::as_str)
            );
        }
        let replaced = Context::with_targeting_key("first").with("targetingKey", "second");
        assert_eq!(replaced.lookup(&key), Some(&json!("second")));
        assert_eq!(replaced.len(), 1);
        let read = Context::from_json(
            br#"{"context": {"plan": "pro", "targetingKey": "u9"}}"#,
            "context",
            "an object",
            crate::ContextLimits {
                max_depth: 8,
                max_values: 100,
            },
        )
        .unwrap();
        assert_eq!(read.lookup(&key), Some(&json!("u9")));
        assert_eq!(read.lookup(&AttrPath::new("plan")), Some(&json!("pro")));
    }

    #[test]
    fn nested_paths_win_over_literal_dotted_keys_in_any_order() {
        for value in [
            json!({"tenant.id": "literal", "tenant": {"id": "nested"}}),
            json!({"tenant": {"id": "nested"}, "tenant.id": "literal"}),
        ] {
            let ctx = Context::from_value(value).unwrap();
            assert_eq!(ctx.get("tenant.id"), Some(&json!("nested")));
        }
        let built = Context::new()
            .with("tenant.id", "literal")
            .with("tenant", json!({"id": "nested"}));
        assert_eq!(built.get("tenant.id"), Some(&json!("nested")));
        let replaced = Context::with_targeting_key("a").with("targetingKey", "b");
        assert_eq!(replaced.targeting_key(), Some("b"));
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
