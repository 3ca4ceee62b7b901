//! Reading a context straight from JSON text: every value is filed under its dotted path as
//! it is parsed, so no JSON tree is built first and then taken apart (what a server does once
//! per request; the tree's maps were most of its allocations). The size and depth limits are
//! held while reading, so an oversized context is refused before it is built.
//!
//! The result is what reading the text into a tree and then [`Context::from_value`] gives
//! ([`Context::from_json_tree`]; a property test and a fuzz target in the server hold the two
//! together on arbitrary input). Whatever is unusual — a repeated key, a literal dotted name
//! that collides with a nested path, a limit exceeded, an invalid context, text that is not
//! JSON — hands the text to the tree reading, whose answer is the definitive one: JSON's
//! meaning for repeated keys (the last wins) and the error for a refused context are decided
//! in one place, and the fast path only has to be right when it answers.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::context::{Context, ContextError, TARGETING_KEY};

/// How large and deep a context read from JSON may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// Deepest nesting accepted (the context object itself is level 0; objects and arrays
    /// each add one).
    pub max_depth: u16,
    /// Most values accepted: leaves, arrays and array items.
    pub max_values: usize,
}

/// Why JSON text did not give a context.
#[derive(Debug, thiserror::Error)]
pub enum ContextJsonError {
    /// The text is not JSON, or not the JSON expected around the context.
    #[error("{0}")]
    Syntax(String),
    /// The context is not a valid context (not an object, a targeting key that is no string).
    #[error("{0}")]
    Invalid(#[from] ContextError),
    /// Nested deeper than the limit.
    #[error("the context is nested more than {0} levels deep")]
    TooDeep(u16),
    /// More values than the limit.
    #[error("the context has more than {0} values; make it smaller")]
    TooLarge(usize),
}

impl ContextJsonError {
    /// Whether the text itself was at fault (OFREP's `PARSE_ERROR`), rather than the context
    /// it holds (`INVALID_CONTEXT`).
    pub fn is_syntax(&self) -> bool {
        matches!(self, ContextJsonError::Syntax(_))
    }
}

impl Context {
    /// Reads a context from JSON text: the value of `field` in the top-level object
    /// (`{"context": {...}}`; other members are skipped; a missing or `null` one is an empty
    /// context). `envelope` says what the text must be, for a top level that is not an object.
    pub fn from_json(
        text: &[u8],
        field: &str,
        envelope: &str,
        limits: ContextLimits,
    ) -> Result<Context, ContextJsonError> {
        match read_direct(text, field, limits) {
            Some(ctx) => Ok(ctx),
            None => Context::from_json_tree(text, field, envelope, limits),
        }
    }

    /// [`Context::from_json`] by way of a JSON tree: what the direct reading hands over to,
    /// and its reference.
    pub fn from_json_tree(
        text: &[u8],
        field: &str,
        envelope: &str,
        limits: ContextLimits,
    ) -> Result<Context, ContextJsonError> {
        let value: Value = serde_json::from_slice(text).map_err(|e| {
            ContextJsonError::Syntax(format!("the request body is not valid JSON: {e}"))
        })?;
        let Value::Object(mut top) = value else {
            return Err(ContextJsonError::Syntax(envelope.to_owned()));
        };
        match top.remove(field) {
            None | Some(Value::Null) => Ok(Context::new()),
            Some(ctx) => {
                limits.check(&ctx)?;
                Ok(Context::from_value(ctx)?)
            }
        }
    }
}

impl ContextLimits {
    /// Checks a context already read into a tree against the limits, without recursing.
    pub fn check(&self, ctx: &Value) -> Result<(), ContextJsonError> {
        let mut values = 0usize;
        let mut stack: Vec<(&Value, u16)> = vec![(ctx, 0)];
        while let Some((value, depth)) = stack.pop() {
            if depth > self.max_depth {
                return Err(ContextJsonError::TooDeep(self.max_depth));
            }
            match value {
                Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
                Value::Array(items) => {
                    values += 1;
                    stack.extend(items.iter().map(|v| (v, depth + 1)));
                }
                _ => values += 1,
            }
            if values > self.max_values {
                return Err(ContextJsonError::TooLarge(self.max_values));
            }
        }
        Ok(())
    }
}

/// Room for this many attributes is made before reading: a request's context usually has no
/// more, and growing the entries (64 bytes each) from four to eight copies them once more.
const TYPICAL_ATTRIBUTES: usize = 8;

/// The direct reading: `None` for anything it does not answer itself (see the module's
/// documentation).
fn read_direct(text: &[u8], field: &str, limits: ContextLimits) -> Option<Context> {
    let builder = Builder {
        ctx: RefCell::new(Context::with_capacity(TYPICAL_ATTRIBUTES)),
        values: Cell::new(0),
        limits,
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    de.deserialize_map(Envelope {
        builder: &builder,
        field,
    })
    .and_then(|()| de.end())
    .ok()?;
    Some(builder.ctx.into_inner())
}

/// What the visitors share: the context being filled and the limits' count. Cells, because
/// serde hands each nested seed its own borrow.
struct Builder {
    ctx: RefCell<Context>,
    values: Cell<usize>,
    limits: ContextLimits,
}

/// Stops the direct reading, for the tree reading to answer (the message is never shown).
fn hand_over<E: de::Error>() -> E {
    E::custom("read through a tree")
}

impl Builder {
    /// Counts a value `depth` levels down against the limits.
    fn value<E: de::Error>(&self, depth: u16) -> Result<(), E> {
        self.depth(depth)?;
        let values = self.values.get() + 1;
        self.values.set(values);
        if values > self.limits.max_values {
            return Err(hand_over());
        }
        Ok(())
    }

    fn depth<E: de::Error>(&self, depth: u16) -> Result<(), E> {
        if depth > self.limits.max_depth {
            return Err(hand_over());
        }
        Ok(())
    }
}

/// The hashes of the keys met so far in one object, to notice a repeated one (a false alarm
/// on a hash collision only sends the text to the tree reading).
#[derive(Default)]
struct Keys {
    first: [u64; 8],
    len: usize,
    rest: std::collections::HashSet<u64>,
}

impl Keys {
    /// Adds `key`; false when it was there already.
    fn add(&mut self, key: &str) -> bool {
        let hash = crate::context::hash_of(key);
        if self.len < self.first.len() {
            if self.first[..self.len].contains(&hash) {
                return false;
            }
            self.first[self.len] = hash;
            self.len += 1;
            return true;
        }
        !self.first.contains(&hash) && self.rest.insert(hash)
    }
}

/// The top-level object around the context.
struct Envelope<'a> {
    builder: &'a Builder,
    field: &'a str,
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut read = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                if std::mem::replace(&mut read, true) {
                    return Err(hand_over());
                }
                map.next_value_seed(Node {
                    builder: self.builder,
                    path: String::new(),
                    depth: 0,
                })?;
            } else {
                map.next_value::<Skipped>()?;
            }
        }
        Ok(())
    }
}

/// A member of the envelope other than the context, read and dropped. Not serde's
/// `IgnoredAny`: serde_json skips an ignored string without checking its `\u` escapes, so a
/// lone surrogate there would pass here while a full parse of the same text refuses it. Every
/// string is parsed (and so checked) as it would be in a tree; nothing is kept.
struct Skipped;

impl<'de> de::Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Skipped, D::Error> {
        de.deserialize_any(Skipped)
    }
}

impl<'de> Visitor<'de> for Skipped {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
}

/// A value at `path`, `depth` levels down: the context itself at depth 0 (an object, or
/// `null` for an empty context), its attributes below.
struct Node<'a> {
    builder: &'a Builder,
    path: String,
    depth: u16,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl Node<'_> {
    /// The targeting key must be a string: anything else is for the tree reading to refuse.
    fn not_the_targeting_key<E: de::Error>(&self) -> Result<(), E> {
        if self.depth == 1 && self.path == TARGETING_KEY {
            return Err(hand_over());
        }
        Ok(())
    }

    /// Files a value that is not an object (a scalar, or an array read whole).
    fn file<E: de::Error>(self, value: Value) -> Result<(), E> {
        if self.depth == 0 {
            // The context itself: `null` is an empty one, anything else is refused.
            return if value.is_null() {
                Ok(())
            } else {
                Err(hand_over())
            };
        }
        if !value.is_string() {
            self.not_the_targeting_key()?;
        }
        // Leaves of nested objects are filed at their object's depth, as when a tree is
        // flattened. A path filed twice (a literal dotted name meeting a nested path) is
        // settled by the tree reading, in the order a tree gives.
        let new = self
            .builder
            .ctx
            .borrow_mut()
            .insert(self.path, value, self.depth - 1);
        if new {
            Ok(())
        } else {
            Err(hand_over())
        }
    }

    fn leaf<E: de::Error>(self, value: Value) -> Result<(), E> {
        self.builder.value(self.depth)?;
        self.file(value)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.builder.depth(self.depth)?;
        self.not_the_targeting_key()?;
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.add(&key) {
                return Err(hand_over());
            }
            let path = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            map.next_value_seed(Node {
                builder: self.builder,
                path,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let items = Item {
            builder: self.builder,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        self.file(items)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.leaf(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.depth == 0 {
            return Ok(());
        }
        self.leaf(Value::Null)
    }
}

/// An array in a context, or anything inside one: kept as a JSON value, with the limits held.
struct Item<'a> {
    builder: &'a Builder,
    depth: u16,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl Item<'_> {
    fn inner(&self) -> Item<'_> {
        Item {
            builder: self.builder,
            depth: self.depth + 1,
        }
    }

    fn scalar<E: de::Error>(&self, value: Value) -> Result<Value, E> {
        self.builder.value(self.depth)?;
        Ok(value)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.builder.depth(self.depth)?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            out.insert(key, map.next_value_seed(self.inner())?);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // An array counts as a value, and so does each of its items.
        self.builder.value(self.depth)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.inner())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.scalar(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.scalar(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.scalar(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ContextLimits = ContextLimits {
        max_depth: 4,
        max_values: 8,
    };

    fn both(text: &str) -> Result<Context, String> {
        let direct = Context::from_json(text.as_bytes(), "context", "an object", LIMITS);
        let tree = Context::from_json_tree(text.as_bytes(), "context", "an object", LIMITS);
        match (direct, tree) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                Ok(a)
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "{text}");
                Err(a.to_string())
            }
            (a, b) => panic!("{text}: {a:?} / {b:?}"),
        }
    }

    #[test]
    fn a_repeated_key_means_what_it_means_in_json_the_last_one() {
        // Found by the ofrep_request fuzz target: the earlier member's attributes stayed.
        let ctx = both(r#"{"context": {"t": {"id": 1, "x": 2}, "t": {"id": 3}}}"#).unwrap();
        assert_eq!(ctx.get("t.id"), Some(&Value::from(3)));
        assert_eq!(ctx.get("t.x"), None);
        let ctx = both(r#"{"context": {"targetingKey": 1, "targetingKey": "u"}}"#).unwrap();
        assert_eq!(ctx.targeting_key(), Some("u"));
        let ctx = both(r#"{"context": {"a": 1}, "context": {"b": 2}}"#).unwrap();
        assert_eq!((ctx.get("a"), ctx.get("b")), (None, Some(&Value::from(2))));
        // A member over the limits that a later one replaces is not counted.
        both(r#"{"context": {"a": [1, 2, 3, 4, 5, 6, 7, 8, 9], "a": 1}}"#).unwrap();
        both(r#"{"context": {"a": {"b": {"c": {"d": {"e": 1}}}}, "a": 1}}"#).unwrap();
    }

    #[test]
    fn names_that_collide_once_flattened_are_settled_whatever_the_text_order() {
        // Two literal names giving `a.b.c` at the same depth: the order of a tree's keys
        // decides, not the order of the text.
        let one = both(r#"{"context": {"a.b": {"c": 1}, "a": {"b.c": 2}}}"#).unwrap();
        let two = both(r#"{"context": {"a": {"b.c": 2}, "a.b": {"c": 1}}}"#).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn refusals_are_the_tree_readings() {
        for text in [
            r#"{"context": {"targetingKey": 7}}"#,
            r#"{"context": "bob"}"#,
            r#"{"context": [1, 2, 3, 4, 5, 6, 7, 8, 9]}"#,
            r#"{"context": {"a": {"b": {"c": {"d": {"e": 1}}}}}}"#,
            r#"{"other": "\ud800", "context": {}}"#,
            r#"[1]"#,
            r#"{"context": {}} x"#,
        ] {
            both(text).unwrap_err();
        }
    }

    #[test]
    fn ordinary_contexts_are_read_directly() {
        let text = br#"{"context": {"targetingKey": "u", "tenant": {"id": "acme"}, "n": [1, 2]}}"#;
        let ctx = read_direct(text, "context", LIMITS).expect("read without a tree");
        assert_eq!(ctx.get("tenant.id"), Some(&Value::from("acme")));
        assert_eq!(ctx.len(), 3);
    }
}
