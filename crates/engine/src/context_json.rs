//! Reading a context straight from JSON text: every value is filed under its dotted path as
//! it is parsed, so no JSON tree is built first and then taken apart (what a server does once
//! per request; the tree's maps were most of its allocations). The size and depth limits are
//! held while reading, so an oversized context is refused before it is built.
//!
//! The result is what [`Context::from_value`] gives for the same text (a test in the server
//! checks the two on arbitrary input).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
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
        let builder = Builder {
            ctx: RefCell::new(Context::new()),
            values: Cell::new(0),
            limits,
            problem: Cell::new(None),
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        let read = de
            .deserialize_map(Envelope {
                builder: &builder,
                field,
                envelope,
            })
            .and_then(|()| de.end());
        match (read, builder.problem.take()) {
            (_, Some(problem)) => Err(problem),
            // Valid JSON of another type than the object expected.
            (Err(e), None) if e.classify() == Category::Data => {
                Err(ContextJsonError::Syntax(envelope.to_owned()))
            }
            (Err(e), None) => Err(ContextJsonError::Syntax(format!(
                "the request body is not valid JSON: {e}"
            ))),
            (Ok(()), None) => Ok(builder.ctx.into_inner()),
        }
    }
}

/// What the visitors share: the context being filled and the limits' count. Cells, because
/// serde hands each nested seed its own borrow.
struct Builder {
    ctx: RefCell<Context>,
    values: Cell<usize>,
    limits: ContextLimits,
    problem: Cell<Option<ContextJsonError>>,
}

impl Builder {
    /// Records why reading stopped and gives serde an error to unwind with.
    fn fail<E: de::Error>(&self, problem: ContextJsonError) -> E {
        let message = problem.to_string();
        self.problem.set(Some(problem));
        E::custom(message)
    }

    /// Counts a value `depth` levels down against the limits.
    fn value<E: de::Error>(&self, depth: u16) -> Result<(), E> {
        self.depth(depth)?;
        let values = self.values.get() + 1;
        self.values.set(values);
        if values > self.limits.max_values {
            return Err(self.fail(ContextJsonError::TooLarge(self.limits.max_values)));
        }
        Ok(())
    }

    fn depth<E: de::Error>(&self, depth: u16) -> Result<(), E> {
        if depth > self.limits.max_depth {
            return Err(self.fail(ContextJsonError::TooDeep(self.limits.max_depth)));
        }
        Ok(())
    }
}

/// The top-level object around the context.
struct Envelope<'a> {
    builder: &'a Builder,
    field: &'a str,
    envelope: &'a str,
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.envelope)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                // A repeated member replaces the earlier one, as in a JSON object.
                self.builder.ctx.replace(Context::new());
                self.builder.values.set(0);
                map.next_value_seed(Node {
                    builder: self.builder,
                    path: String::new(),
                    depth: 0,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
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
    /// The targeting key must be a string.
    fn check_targeting_key<E: de::Error>(&self, found: &'static str) -> Result<(), E> {
        if self.depth == 1 && self.path == TARGETING_KEY {
            return Err(self.builder.fail(ContextJsonError::Invalid(
                ContextError::TargetingKeyNotString { found },
            )));
        }
        Ok(())
    }

    /// Files a value that is not an object (a scalar, or an array read whole).
    fn file<E: de::Error>(self, value: Value) -> Result<(), E> {
        if self.depth == 0 {
            if value.is_null() {
                return Ok(());
            }
            return Err(self
                .builder
                .fail(ContextJsonError::Invalid(ContextError::NotAnObject {
                    found: crate::document::describe(&value),
                })));
        }
        if !value.is_string() {
            self.check_targeting_key(crate::document::describe(&value))?;
        }
        // Leaves of nested objects are filed at their object's depth, as when a tree is
        // flattened.
        self.builder
            .ctx
            .borrow_mut()
            .insert(self.path, value, self.depth - 1);
        Ok(())
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
        self.check_targeting_key("an object")?;
        while let Some(key) = map.next_key::<String>()? {
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
