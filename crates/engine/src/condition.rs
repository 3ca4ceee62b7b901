//! Conditions: compiled from [`ConditionDef`]s once, evaluated many times without allocating.
//!
//! Semantics (also in `docs/flag-format.md`):
//! - a missing attribute makes every clause false; `not_*` operators are exactly the negation
//!   of their positive form, so `not_equals` holds for a missing attribute;
//! - when the attribute is a list, `equals`, `in`, `starts_with`, `ends_with`, `regex` and the
//!   comparisons hold if any element satisfies them, and `contains` tests membership;
//! - string comparisons are case-sensitive; numbers compare by value (`5` equals `5.0`);
//! - `gt`/`gte`/`lt`/`lte` accept numbers and numeric strings;
//! - `before`/`after` accept RFC 3339 strings or Unix seconds; the attribute `$now` is the
//!   evaluation time the caller passed in.

use std::cmp::Ordering;

use crate::strmap::{ends_with, eq_bytes, starts_with, StrSet};
use rustc_hash::FxHashMap;
use serde_json::Value;
use time::OffsetDateTime;

use crate::context::{AttrPath, Context};
use crate::diagnostic::{Diagnostic, FieldPath};
use crate::document::{describe, ConditionDef};

/// Deepest nesting of `all`/`any`/`not` a document may use.
pub const MAX_DEPTH: usize = 32;

/// Every operator name the format accepts.
pub const OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "regex",
    "semver_eq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "before",
    "after",
    "in_segment",
    "not_in_segment",
];

/// The attribute name that means "the evaluation time".
pub const NOW_ATTRIBUTE: &str = "$now";

/// A compiled condition tree.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    All(Items),
    Any(Items),
    Not(Box<Cond>),
    Clause { attr: Attr, op: Op, negate: bool },
    InSegment { segments: Box<[u32]>, negate: bool },
}

/// The conditions of an `all` or `any`, in the order they are tested: cheapest first
/// ([`Cond::cost`]), since every condition is a pure test and the first false one (`all`) or
/// true one (`any`) decides — a 100-item list written before an age check is then only
/// looked up for those the age check let through. Explanations show them as written.
#[derive(Debug, Clone)]
pub(crate) struct Items {
    tested: Box<[Cond]>,
    /// `tested[written[k]]` is the `k`-th condition as written; empty when the two orders
    /// are the same.
    written: Box<[u32]>,
}

impl Items {
    fn new(written: Vec<Cond>) -> Self {
        // (cost, written position, condition); the sort is stable, so conditions of the same
        // cost keep the order they were written in.
        let mut ranked: Vec<(u32, u32, Cond)> = written
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.cost(), u32::try_from(i).unwrap_or(u32::MAX), c))
            .collect();
        ranked.sort_by_key(|&(cost, _, _)| cost);
        let reordered = ranked.iter().enumerate().any(|(k, r)| r.1 as usize != k);
        let mut back = Vec::new();
        if reordered {
            back = vec![0u32; ranked.len()];
            for (position, r) in ranked.iter().enumerate() {
                back[r.1 as usize] = u32::try_from(position).unwrap_or(u32::MAX);
            }
        }
        Self {
            tested: ranked.into_iter().map(|(_, _, c)| c).collect(),
            written: back.into_boxed_slice(),
        }
    }

    /// The conditions as written.
    fn as_written(&self) -> impl Iterator<Item = &Cond> {
        let ordered = !self.written.is_empty();
        (0..self.tested.len()).map(move |k| {
            let i = if ordered { self.written[k] as usize } else { k };
            &self.tested[i]
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Path(AttrPath),
    Now,
}

#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ScalarSet {
    strings: StrSet,
    numbers: Vec<f64>,
    bools: [bool; 2],
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Equals(Scalar),
    In(Box<ScalarSet>),
    Contains(Scalar),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Compare(Ordering, bool, f64),
    Regex(Box<regex::Regex>),
    Semver(Ordering, bool, Box<semver::Version>),
    Time(Ordering, OffsetDateTime),
}

/// Compiled segment: listed ids and/or conditions.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub attr: AttrPath,
    pub included: StrSet,
    pub excluded: StrSet,
    pub cond: Option<Cond>,
}

/// Inputs every condition evaluation needs.
pub(crate) struct Env<'a> {
    pub ctx: &'a Context,
    pub now: OffsetDateTime,
    pub segments: &'a [Option<std::sync::Arc<Segment>>],
    /// How deep segment lookups are nested (segments may use segments; cycles are rejected
    /// when compiling, and this bounds the recursion whatever happens).
    pub segment_depth: std::cell::Cell<u8>,
}

/// Nesting bound for segments that use segments.
const MAX_SEGMENT_DEPTH: u8 = 32;

impl Cond {
    pub(crate) fn always() -> Self {
        Cond::All(Items::new(Vec::new()))
    }

    /// A rough rank of what testing this condition costs, to test the cheap ones of an `all`
    /// or `any` first: a number or a short text compared, a version read, a search, a hash
    /// lookup in a list, a time parsed, a regular expression, a segment (its own conditions).
    fn cost(&self) -> u32 {
        match self {
            Cond::All(items) | Cond::Any(items) => {
                1 + items.tested.iter().map(Cond::cost).sum::<u32>()
            }
            Cond::Not(inner) => inner.cost(),
            Cond::Clause { op, .. } => match op {
                Op::Equals(_) | Op::Compare(..) | Op::StartsWith(_) | Op::EndsWith(_) => 1,
                Op::Semver(..) | Op::Contains(_) => 2,
                Op::In(_) => 3,
                Op::Time(..) => 4,
                Op::Regex(_) => 6,
            },
            Cond::InSegment { .. } => 8,
        }
    }

    pub(crate) fn matches(&self, env: &Env<'_>) -> bool {
        match self {
            // Clauses, the usual items, are tested in the loop itself (no call per item).
            Cond::All(items) => items.tested.iter().all(|c| c.matches_inline(env)),
            Cond::Any(items) => items.tested.iter().any(|c| c.matches_inline(env)),
            Cond::Not(inner) => !inner.matches(env),
            Cond::Clause { attr, op, negate } => clause_holds(attr, op, *negate, env),
            Cond::InSegment { segments, negate } => {
                let hit = segments.iter().any(|&i| {
                    env.segments
                        .get(i as usize)
                        .and_then(Option::as_deref)
                        .is_some_and(|segment| segment.contains(env))
                });
                hit != *negate
            }
        }
    }
}

#[inline(always)]
fn clause_holds(attr: &Attr, op: &Op, negate: bool, env: &Env<'_>) -> bool {
    let hit = match attr {
        Attr::Path(path) => env.ctx.lookup(path).is_some_and(|v| op.test(v)),
        Attr::Now => op.test_time(env.now),
    };
    hit != negate
}

impl Cond {
    /// [`Cond::matches`], with a clause tested inline.
    #[inline(always)]
    fn matches_inline(&self, env: &Env<'_>) -> bool {
        match self {
            Cond::Clause { attr, op, negate } => clause_holds(attr, op, *negate, env),
            other => other.matches(env),
        }
    }
}

impl Segment {
    fn contains(&self, env: &Env<'_>) -> bool {
        let depth = env.segment_depth.get();
        if depth >= MAX_SEGMENT_DEPTH {
            return false;
        }
        env.segment_depth.set(depth + 1);
        let hit = self.contains_at_depth(env);
        env.segment_depth.set(depth);
        hit
    }

    fn contains_at_depth(&self, env: &Env<'_>) -> bool {
        let id = env.ctx.lookup(&self.attr);
        if let Some(id) = id {
            if with_id_text(id, |text| self.excluded.contains(text)) {
                return false;
            }
            if with_id_text(id, |text| self.included.contains(text)) {
                return true;
            }
        }
        self.cond.as_ref().is_some_and(|c| c.matches(env))
    }
}

/// Calls `f` with the text form of an id (strings as is, integers in decimal) without
/// allocating for the common cases.
pub(crate) fn with_id_text(value: &Value, f: impl FnOnce(&str) -> bool) -> bool {
    match value {
        Value::String(s) => f(s),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let text = crate::bucket::IntText::unsigned(u);
                std::str::from_utf8(text.as_bytes()).is_ok_and(f)
            } else if let Some(i) = n.as_i64() {
                // Negative ids are rare: allocating here is fine.
                f(&i.to_string())
            } else {
                false
            }
        }
        _ => false,
    }
}

/// The text an id value is matched as, at compile time.
pub(crate) fn id_text(value: &Value) -> Option<Box<str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string().into()),
        _ => None,
    }
}

impl Scalar {
    #[inline(always)]
    fn eq_value(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::Str(a), Value::String(b)) => eq_bytes(a.as_bytes(), b.as_bytes()),
            (Scalar::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl ScalarSet {
    #[inline(always)]
    fn contains(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.strings.contains(s.as_str()),
            Value::Number(n) => n.as_f64().is_some_and(|x| self.numbers.contains(&x)),
            Value::Bool(b) => self.bools[usize::from(*b)],
            _ => false,
        }
    }
}

#[inline(always)]
fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => number_in(s),
        _ => None,
    }
}

/// A numeric string's number (out of line: the comparison of numbers stays small).
#[inline(never)]
fn number_in(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Parses a version leniently: an optional leading `v`, and `1` or `1.2` padded with zeros.
#[inline(never)]
pub(crate) fn parse_version(text: &str) -> Option<semver::Version> {
    let text = version_text(text);
    // Fast path for the common `MAJOR.MINOR.PATCH` (no pre-release, no build): no leading
    // zeros, digits only, exactly what the semver crate would accept for such text.
    if let Some([major, minor, patch]) = plain_version(text) {
        return Some(semver::Version::new(major, minor, patch));
    }
    if let Ok(v) = semver::Version::parse(text) {
        return Some(v);
    }
    // Partial versions: "1" or "1.2", digits only.
    let mut parts = text.split('.');
    let major = parts.next()?.parse::<u64>().ok()?;
    let minor = match parts.next() {
        Some(p) => p.parse::<u64>().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(semver::Version::new(major, minor, 0))
}

/// The text a version is read from: trimmed, without a leading `v`.
fn version_text(text: &str) -> &str {
    // `trim` looks at Unicode whitespace character by character; text that starts and ends
    // with an ASCII letter or digit (nearly every version) has none to trim.
    let bytes = text.as_bytes();
    let trimmed = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let text = if trimmed(bytes.first()) && trimmed(bytes.last()) {
        text
    } else {
        text.trim()
    };
    text.strip_prefix(['v', 'V']).unwrap_or(text)
}

/// How the version `text` compares with `operand` by semver precedence, when it is one. A
/// plain `MAJOR.MINOR.PATCH` (what apps mostly send) is compared as three numbers, without
/// building a [`semver::Version`]; anything else goes through [`parse_version`].
#[inline]
fn version_order(text: &str, operand: &semver::Version) -> Option<Ordering> {
    if let Some(v) = plain_version(version_text(text)) {
        // A release ranks above a pre-release of the same numbers.
        let tie = if operand.pre.is_empty() {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        return Some(
            v.cmp(&[operand.major, operand.minor, operand.patch])
                .then(tie),
        );
    }
    parse_version(text).map(|v| v.cmp_precedence(operand))
}

fn plain_version(text: &str) -> Option<[u64; 3]> {
    // One pass over the bytes: three dot-separated decimal numbers without leading zeros.
    let mut numbers = [0u64; 3];
    let mut part = 0usize;
    let mut digits = 0usize;
    let mut leading_zero = false;
    for &b in text.as_bytes() {
        if b == b'.' {
            if digits == 0 || part == 2 {
                return None;
            }
            part += 1;
            digits = 0;
            leading_zero = false;
            continue;
        }
        if !b.is_ascii_digit() || leading_zero {
            return None;
        }
        leading_zero = digits == 0 && b == b'0';
        let n = &mut numbers[part];
        *n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    if part != 2 || digits == 0 {
        return None;
    }
    Some(numbers)
}

/// Parses a timestamp: RFC 3339 text or Unix seconds.
#[inline(never)]
pub(crate) fn parse_time(value: &Value) -> Option<OffsetDateTime> {
    match value {
        Value::String(s) => {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        }
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            let nanos = (secs * 1e9) as i128;
            OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
        }
        _ => None,
    }
}

/// Out of line: a regular expression's search is a call anyway.
#[inline(never)]
fn regex_matches(re: &regex::Regex, value: &Value) -> bool {
    value.as_str().is_some_and(|s| re.is_match(s))
}

#[inline(never)]
fn time_holds(value: &Value, wanted: Ordering, operand: &OffsetDateTime) -> bool {
    parse_time(value).is_some_and(|t| t.cmp(operand) == wanted)
}

fn ordering_holds(actual: Ordering, wanted: Ordering, or_equal: bool) -> bool {
    actual == wanted || (or_equal && actual == Ordering::Equal)
}

impl Op {
    /// Tests one attribute value; lists are handled here.
    #[inline(always)]
    fn test(&self, value: &Value) -> bool {
        if let Value::Array(items) = value {
            return self.test_list(items);
        }
        self.test_scalar(value)
    }

    #[inline(never)]
    fn test_list(&self, items: &[Value]) -> bool {
        match self {
            Op::Contains(needle) => items.iter().any(|item| needle.eq_value(item)),
            _ => items.iter().any(|item| self.test_scalar(item)),
        }
    }

    /// Inlined where a clause is tested: the common operators are a few instructions here,
    /// the rest (regular expressions, times, numeric strings, versions that are not plain) a
    /// call.
    #[inline(always)]
    fn test_scalar(&self, value: &Value) -> bool {
        match self {
            Op::Equals(s) => s.eq_value(value),
            Op::In(set) => set.contains(value),
            Op::Contains(Scalar::Str(needle)) => {
                value.as_str().is_some_and(|s| s.contains(&**needle))
            }
            Op::Contains(_) => false,
            Op::StartsWith(prefix) => value.as_str().is_some_and(|s| starts_with(s, prefix)),
            Op::EndsWith(suffix) => value.as_str().is_some_and(|s| ends_with(s, suffix)),
            Op::Compare(wanted, or_equal, operand) => number_of(value)
                .and_then(|x| x.partial_cmp(operand))
                .is_some_and(|ord| ordering_holds(ord, *wanted, *or_equal)),
            Op::Semver(wanted, or_equal, operand) => value
                .as_str()
                .and_then(|text| version_order(text, operand))
                .is_some_and(|ord| ordering_holds(ord, *wanted, *or_equal)),
            Op::Regex(re) => regex_matches(re, value),
            Op::Time(wanted, operand) => time_holds(value, *wanted, operand),
        }
    }

    fn test_time(&self, now: OffsetDateTime) -> bool {
        match self {
            Op::Time(wanted, operand) => now.cmp(operand) == *wanted,
            _ => false,
        }
    }
}

impl Cond {
    /// How this condition fared for `env`, node by node, for explanations. Each node's
    /// `holds` is [`Cond::matches`]' own answer, so a trace cannot disagree with evaluation.
    pub(crate) fn trace(&self, env: &Env<'_>, segment_names: &[&str]) -> ConditionTrace {
        let holds = self.matches(env);
        let children = |items: &Items| {
            items
                .as_written()
                .map(|c| c.trace(env, segment_names))
                .collect()
        };
        match self {
            Cond::All(items) => ConditionTrace {
                text: "all of".into(),
                holds,
                children: children(items),
                ..ConditionTrace::default()
            },
            Cond::Any(items) => ConditionTrace {
                text: "any of".into(),
                holds,
                children: children(items),
                ..ConditionTrace::default()
            },
            Cond::Not(inner) => ConditionTrace {
                text: "not".into(),
                holds,
                children: vec![inner.trace(env, segment_names)],
                ..ConditionTrace::default()
            },
            Cond::Clause { attr, op, negate } => {
                let (attribute, actual) = match attr {
                    Attr::Path(path) => (path.as_str().to_owned(), env.ctx.lookup(path).cloned()),
                    Attr::Now => (
                        NOW_ATTRIBUTE.to_owned(),
                        env.now
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok()
                            .map(Value::String),
                    ),
                };
                let mut why = None;
                if actual.is_none() {
                    why = Some(format!("the context has no `{attribute}`"));
                }
                ConditionTrace {
                    text: format!("{attribute} {}", op.describe(*negate)),
                    attribute: Some(attribute),
                    actual,
                    holds,
                    why,
                    children: Vec::new(),
                }
            }
            Cond::InSegment { segments, negate } => {
                let names: Vec<&str> = segments
                    .iter()
                    .map(|&i| segment_names.get(i as usize).copied().unwrap_or("?"))
                    .collect();
                let mut members: Vec<ConditionTrace> = segments
                    .iter()
                    .zip(&names)
                    .map(|(&i, name)| {
                        match env.segments.get(i as usize).and_then(Option::as_deref) {
                            None => ConditionTrace {
                                text: format!("in segment {name}"),
                                why: Some("the segment is not served".to_owned()),
                                ..ConditionTrace::default()
                            },
                            Some(segment) => segment.trace(env, name, segment_names),
                        }
                    })
                    .collect();
                let text = format!(
                    "{} {}",
                    if *negate {
                        "not in segment"
                    } else {
                        "in segment"
                    },
                    names.join(" or ")
                );
                // One segment: its own trace is this clause's, said once.
                if let [only] = members.as_mut_slice() {
                    return ConditionTrace {
                        text,
                        holds,
                        why: only.why.take(),
                        children: std::mem::take(&mut only.children),
                        ..ConditionTrace::default()
                    };
                }
                ConditionTrace {
                    text,
                    holds,
                    children: members,
                    ..ConditionTrace::default()
                }
            }
        }
    }
}

impl Segment {
    /// Whether the unit is in the segment, and which part of it decided: its exclusion or
    /// inclusion list (named in `why`) or its conditions (traced as children).
    fn trace(&self, env: &Env<'_>, name: &str, segment_names: &[&str]) -> ConditionTrace {
        let holds = self.contains(env);
        let attr = self.attr.as_str();
        let mut trace = ConditionTrace {
            text: format!("in segment {name}"),
            holds,
            ..ConditionTrace::default()
        };
        if let Some(id) = env.ctx.lookup(&self.attr) {
            if with_id_text(id, |text| self.excluded.contains(text)) {
                trace.why = Some(format!("`{attr}` {id} is excluded"));
                return trace;
            }
            if with_id_text(id, |text| self.included.contains(text)) {
                trace.why = Some(format!("`{attr}` {id} is included"));
                return trace;
            }
        }
        match &self.cond {
            None => {
                trace.why = Some(format!(
                    "`{attr}` is not listed and the segment has no conditions"
                ));
            }
            Some(cond) => {
                trace.why = Some(format!("`{attr}` is not listed; its conditions decide"));
                trace.children = cond.trace(env, segment_names).children;
            }
        }
        trace
    }
}

/// One condition's outcome in an explanation: the clause as the engine compiled it, the value
/// the context had, and whether it held; groups carry their members.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConditionTrace {
    /// The condition (`plan is one of ["pro", "team"]`, `all of`, `in segment beta`).
    pub text: String,
    /// The attribute a clause reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// The value the context has there (absent when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// Whether it held.
    pub holds: bool,
    /// Why, when the value alone does not say (a missing attribute, a segment's listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The members of `all`, `any`, `not` and multi-segment clauses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ConditionTrace>,
}

impl Scalar {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => Value::String(s.to_string()).to_string(),
            Scalar::Num(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl ScalarSet {
    fn describe(&self) -> String {
        let mut items: Vec<String> = self
            .strings
            .iter()
            .map(|s| Value::String(s.to_string()).to_string())
            .collect();
        items.sort();
        items.extend(self.numbers.iter().map(f64::to_string));
        for (b, on) in self.bools.iter().enumerate() {
            if *on {
                items.push((b == 1).to_string());
            }
        }
        format!("[{}]", items.join(", "))
    }
}

impl Op {
    /// The operator and operand in words, as an explanation shows them.
    fn describe(&self, negate: bool) -> String {
        let compare = |wanted: &Ordering, or_equal: bool| match (wanted, or_equal) {
            (Ordering::Less, false) => "<",
            (Ordering::Less, true) => "<=",
            (Ordering::Greater, false) => ">",
            (Ordering::Greater, true) => ">=",
            (Ordering::Equal, _) => "==",
        };
        let (is, does) = if negate {
            ("is not", "does not ")
        } else {
            ("is", "")
        };
        let verb = |yes: &str, no: &str| {
            if negate {
                no.to_owned()
            } else {
                yes.to_owned()
            }
        };
        match self {
            Op::Equals(s) => format!("{} {}", verb("equals", "does not equal"), s.describe()),
            Op::In(set) => format!("{is} one of {}", set.describe()),
            Op::Contains(s) => format!("{} {}", verb("contains", "does not contain"), s.describe()),
            Op::StartsWith(p) => format!(
                "{does}start{} with {}",
                if negate { "" } else { "s" },
                Value::String(p.to_string())
            ),
            Op::EndsWith(p) => format!(
                "{does}end{} with {}",
                if negate { "" } else { "s" },
                Value::String(p.to_string())
            ),
            Op::Compare(wanted, or_equal, x) => {
                format!(
                    "{}{} {}",
                    if negate { "not " } else { "" },
                    compare(wanted, *or_equal),
                    x
                )
            }
            Op::Regex(re) => format!("{} /{}/", verb("matches", "does not match"), re.as_str()),
            Op::Semver(wanted, or_equal, v) => {
                format!("{is} a version {} {}", compare(wanted, *or_equal), v)
            }
            Op::Time(wanted, t) => format!(
                "{is} {} {}",
                if *wanted == Ordering::Less {
                    "before"
                } else {
                    "after"
                },
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
        }
    }
}

/// Compiles condition definitions, collecting diagnostics.
pub(crate) struct CondCompiler<'a> {
    pub segment_index: &'a FxHashMap<String, u32>,
    pub diagnostics: &'a mut Vec<Diagnostic>,
    pub flag: Option<&'a str>,
    /// Segments referenced by what was compiled (for cycle checks).
    pub referenced: Vec<u32>,
}

impl CondCompiler<'_> {
    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        let mut d = Diagnostic::error(path, message);
        d.flag = self.flag.map(str::to_owned);
        self.diagnostics.push(d);
    }

    /// Compiles a list of conditions that must all hold.
    pub(crate) fn compile_all(&mut self, defs: &[ConditionDef], path: &FieldPath) -> Cond {
        self.compile_list(defs, path, 0)
            .map_or_else(Cond::always, Cond::All)
    }

    fn compile_list(
        &mut self,
        defs: &[ConditionDef],
        path: &FieldPath,
        depth: usize,
    ) -> Option<Items> {
        let mut out = Vec::with_capacity(defs.len());
        let mut ok = true;
        for (i, def) in defs.iter().enumerate() {
            match self.compile(def, &path.index(i), depth) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then(|| Items::new(out))
    }

    fn compile(&mut self, def: &ConditionDef, path: &FieldPath, depth: usize) -> Option<Cond> {
        if depth >= MAX_DEPTH {
            self.error(
                path.clone(),
                format!("conditions are nested more than {MAX_DEPTH} levels deep"),
            );
            return None;
        }
        let is_clause = def.attribute.is_some() || def.operator.is_some() || def.value.is_some();
        let forms = [
            is_clause,
            def.all.is_some(),
            def.any.is_some(),
            def.not.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if forms != 1 {
            self.error(
                path.clone(),
                if forms == 0 {
                    "empty condition: write `{attribute, operator, value}`, `all: [...]`, `any: [...]` or `not: {...}`".to_owned()
                } else {
                    "a condition must be exactly one of `{attribute, operator, value}`, `all`, `any` or `not`".to_owned()
                },
            );
            return None;
        }
        if let Some(all) = &def.all {
            return self
                .compile_list(all, &path.key("all"), depth + 1)
                .map(Cond::All);
        }
        if let Some(any) = &def.any {
            return self
                .compile_list(any, &path.key("any"), depth + 1)
                .map(Cond::Any);
        }
        if let Some(not) = &def.not {
            return self
                .compile(not, &path.key("not"), depth + 1)
                .map(|c| Cond::Not(Box::new(c)));
        }
        self.compile_clause(def, path)
    }

    fn compile_clause(&mut self, def: &ConditionDef, path: &FieldPath) -> Option<Cond> {
        let Some(operator) = def.operator.as_deref() else {
            self.error(path.key("operator"), "missing `operator`");
            return None;
        };
        let Some(value) = def.value.as_ref() else {
            self.error(
                path.key("value"),
                format!("missing `value` for operator `{operator}`"),
            );
            return None;
        };
        let value_path = path.key("value");

        if operator == "in_segment" || operator == "not_in_segment" {
            let names: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let mut segments = Vec::with_capacity(names.len());
            let mut ok = true;
            for (i, name) in names.iter().enumerate() {
                let p = if value.is_array() {
                    value_path.index(i)
                } else {
                    value_path.clone()
                };
                match name.as_str() {
                    Some(n) => {
                        match self.segment_index.get(n) {
                            Some(&idx) => segments.push(idx),
                            None => {
                                let mut known: Vec<&str> =
                                    self.segment_index.keys().map(String::as_str).collect();
                                known.sort_unstable();
                                self.error(
                                p,
                                if known.is_empty() {
                                    format!("unknown segment `{n}`: the document defines no segments")
                                } else {
                                    format!(
                                        "unknown segment `{n}`; defined segments: {}",
                                        known.join(", ")
                                    )
                                },
                            );
                                ok = false;
                            }
                        }
                    }
                    None => {
                        self.error(
                            p,
                            format!("a segment name must be a string, found {}", describe(name)),
                        );
                        ok = false;
                    }
                }
            }
            self.referenced.extend(&segments);
            if def.attribute.is_some() {
                self.error(
                    path.key("attribute"),
                    "`in_segment` takes no `attribute`: the segment says which attribute holds its ids",
                );
                ok = false;
            }
            return ok.then(|| Cond::InSegment {
                segments: segments.into_boxed_slice(),
                negate: operator == "not_in_segment",
            });
        }

        let Some(attribute) = def.attribute.as_deref() else {
            self.error(path.key("attribute"), "missing `attribute`");
            return None;
        };
        let attr = if attribute == NOW_ATTRIBUTE {
            Attr::Now
        } else if attribute.is_empty() || attribute.split('.').any(str::is_empty) {
            self.error(
                path.key("attribute"),
                format!("`{attribute}` is not a valid attribute path (empty segment)"),
            );
            return None;
        } else {
            Attr::Path(AttrPath::new(attribute))
        };

        let (op, negate) = match operator {
            "equals" | "not_equals" => (
                self.scalar(value, &value_path).map(Op::Equals)?,
                operator == "not_equals",
            ),
            "in" | "not_in" => (
                self.set(value, &value_path).map(|s| Op::In(Box::new(s)))?,
                operator == "not_in",
            ),
            "contains" | "not_contains" => (
                self.scalar(value, &value_path).map(Op::Contains)?,
                operator == "not_contains",
            ),
            "starts_with" => (
                Op::StartsWith(self.string(value, &value_path, operator)?),
                false,
            ),
            "ends_with" => (
                Op::EndsWith(self.string(value, &value_path, operator)?),
                false,
            ),
            "gt" | "gte" | "lt" | "lte" => {
                let Some(n) = value.as_f64() else {
                    self.error(
                        value_path,
                        format!("`{operator}` needs a number, found {}", describe(value)),
                    );
                    return None;
                };
                let wanted = if operator.starts_with('g') {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                (Op::Compare(wanted, operator.ends_with('e'), n), false)
            }
            "regex" => {
                let pattern = self.string(value, &value_path, operator)?;
                match regex::RegexBuilder::new(&pattern)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => (Op::Regex(Box::new(re)), false),
                    Err(err) => {
                        // The regex crate's message spans lines (pattern, caret, reason);
                        // diagnostics are one line each, so keep the reason.
                        let text = err.to_string();
                        let reason = text
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("");
                        let reason = reason.trim().trim_start_matches("error: ");
                        self.error(
                            value_path,
                            format!("invalid regular expression `{pattern}`: {reason}"),
                        );
                        return None;
                    }
                }
            }
            "semver_eq" | "semver_gt" | "semver_gte" | "semver_lt" | "semver_lte" => {
                let text = self.string(value, &value_path, operator)?;
                let Some(version) = parse_version(&text) else {
                    self.error(value_path, format!("`{text}` is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. 1.4.0)"));
                    return None;
                };
                let (wanted, or_equal) = match operator {
                    "semver_eq" => (Ordering::Equal, false),
                    "semver_gt" => (Ordering::Greater, false),
                    "semver_gte" => (Ordering::Greater, true),
                    "semver_lt" => (Ordering::Less, false),
                    _ => (Ordering::Less, true),
                };
                (Op::Semver(wanted, or_equal, Box::new(version)), false)
            }
            "before" | "after" => {
                let Some(t) = parse_time(value) else {
                    self.error(value_path, format!("`{operator}` needs an RFC 3339 timestamp (2026-01-31T09:00:00Z) or Unix seconds, found {value}"));
                    return None;
                };
                (
                    Op::Time(
                        if operator == "before" {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        },
                        t,
                    ),
                    false,
                )
            }
            unknown => {
                self.error(
                    path.key("operator"),
                    format!(
                        "unknown operator `{unknown}`; expected one of: {}",
                        OPERATORS.join(", ")
                    ),
                );
                return None;
            }
        };
        if matches!(attr, Attr::Now) && !matches!(op, Op::Time(..)) {
            self.error(
                path.key("attribute"),
                format!("`{NOW_ATTRIBUTE}` can only be used with `before` and `after`"),
            );
            return None;
        }
        Some(Cond::Clause { attr, op, negate })
    }

    fn scalar(&mut self, value: &Value, path: &FieldPath) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::Str(s.as_str().into())),
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            other => {
                self.error(
                    path.clone(),
                    format!(
                        "expected a string, number or boolean, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn string(&mut self, value: &Value, path: &FieldPath, operator: &str) -> Option<Box<str>> {
        match value.as_str() {
            Some(s) => Some(s.into()),
            None => {
                self.error(
                    path.clone(),
                    format!("`{operator}` needs a string, found {}", describe(value)),
                );
                None
            }
        }
    }

    fn set(&mut self, value: &Value, path: &FieldPath) -> Option<ScalarSet> {
        let Value::Array(items) = value else {
            self.error(
                path.clone(),
                format!("`in` and `not_in` need a list, found {}", describe(value)),
            );
            return None;
        };
        let mut set = ScalarSet::default();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => {
                    set.strings.insert(s.as_str().into());
                }
                Value::Number(n) => set.numbers.extend(n.as_f64()),
                Value::Bool(b) => set.bools[usize::from(*b)] = true,
                other => {
                    self.error(
                        path.index(i),
                        format!(
                            "list items must be strings, numbers or booleans, found {}",
                            describe(other)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(def: Value) -> (Option<Cond>, Vec<Diagnostic>) {
        let def: ConditionDef = serde_json::from_value(def).unwrap();
        let segments = FxHashMap::default();
        let mut diagnostics = Vec::new();
        let mut c = CondCompiler {
            segment_index: &segments,
            diagnostics: &mut diagnostics,
            flag: None,
            referenced: Vec::new(),
        };
        let cond = c.compile(&def, &FieldPath::root(), 0);
        (cond, diagnostics)
    }

    fn holds(def: Value, ctx: Value) -> bool {
        let (cond, diags) = compile(def);
        assert!(diags.is_empty(), "{diags:?}");
        let ctx = Context::from_value(ctx).unwrap();
        let env = Env {
            ctx: &ctx,
            now: OffsetDateTime::UNIX_EPOCH,
            segments: &[],
            segment_depth: std::cell::Cell::new(0),
        };
        cond.unwrap().matches(&env)
    }

    #[test]
    fn operator_table() {
        let cases = [
            (
                json!({"attribute": "a", "operator": "equals", "value": "x"}),
                json!({"a": "x"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "equals", "value": 5}),
                json!({"a": 5.0}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "equals", "value": "5"}),
                json!({"a": 5}),
                false,
            ),
            (
                json!({"attribute": "a", "operator": "not_equals", "value": "x"}),
                json!({}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "in", "value": ["x", 1, true]}),
                json!({"a": true}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "not_in", "value": ["x"]}),
                json!({"a": "y"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "contains", "value": "ell"}),
                json!({"a": "hello"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "contains", "value": "admin"}),
                json!({"a": ["superadmin"]}),
                false,
            ),
            (
                json!({"attribute": "a", "operator": "contains", "value": "admin"}),
                json!({"a": ["admin"]}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "not_contains", "value": "z"}),
                json!({"a": "hello"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "starts_with", "value": "he"}),
                json!({"a": "hello"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "ends_with", "value": "lo"}),
                json!({"a": "hello"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "gt", "value": 3}),
                json!({"a": "4"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "gte", "value": 3}),
                json!({"a": 3}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "lt", "value": 3}),
                json!({"a": 3}),
                false,
            ),
            (
                json!({"attribute": "a", "operator": "lte", "value": 3}),
                json!({"a": 2.5}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "regex", "value": "^[a-z]+@acme\\.com$"}),
                json!({"a": "bo@acme.com"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "semver_gt", "value": "1.2.3"}),
                json!({"a": "1.10.0"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "semver_gt", "value": "1.2.3"}),
                json!({"a": "1.2.3-beta"}),
                false,
            ),
            (
                json!({"attribute": "a", "operator": "semver_eq", "value": "v2"}),
                json!({"a": "2.0.0"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "semver_gte", "value": "2.0.0"}),
                json!({"a": "2.0"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "semver_lt", "value": "2.0.0"}),
                json!({"a": "not a version"}),
                false,
            ),
            (
                json!({"attribute": "a", "operator": "semver_lte", "value": "2.0.0"}),
                json!({"a": "2.0.0-rc.1"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "before", "value": "2026-01-01T00:00:00Z"}),
                json!({"a": "2025-12-31T23:59:59Z"}),
                true,
            ),
            (
                json!({"attribute": "a", "operator": "after", "value": 1000}),
                json!({"a": "1970-01-01T00:20:00+00:00"}),
                true,
            ),
            (
                json!({"attribute": "$now", "operator": "after", "value": "1969-01-01T00:00:00Z"}),
                json!({}),
                true,
            ),
            (
                json!({"any": [{"attribute": "a", "operator": "equals", "value": 1}, {"attribute": "b", "operator": "equals", "value": 2}]}),
                json!({"b": 2}),
                true,
            ),
            (
                json!({"all": [{"attribute": "a", "operator": "equals", "value": 1}, {"attribute": "b", "operator": "equals", "value": 2}]}),
                json!({"b": 2}),
                false,
            ),
            (
                json!({"not": {"attribute": "a", "operator": "equals", "value": 1}}),
                json!({"a": 2}),
                true,
            ),
        ];
        for (def, ctx, expected) in cases {
            assert_eq!(holds(def.clone(), ctx.clone()), expected, "{def} on {ctx}");
        }
    }

    #[test]
    fn the_fast_version_path_agrees_with_the_semver_crate() {
        for text in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "01.2.3",
            "1.2",
            "1.2.3.4",
            "1.2.3-rc.1",
            "1.2.3+b",
            "1..3",
            "a.b.c",
            "18446744073709551615.0.0",
            "18446744073709551616.0.0",
            "",
            "0.0",
            "1.2.",
            ".1.2",
            "1.02.3",
            "0.10.0",
            "1.2.3 ",
        ] {
            let fast = plain_version(text).map(|[a, b, c]| semver::Version::new(a, b, c));
            let slow = semver::Version::parse(text)
                .ok()
                .filter(|v| v.pre.is_empty() && v.build.is_empty());
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn comparing_plain_versions_as_numbers_agrees_with_semver_precedence() {
        let texts = [
            "1.2.3",
            "v1.2.3",
            " 1.2.3 ",
            "1.2.2",
            "1.2.4",
            "1.3.0",
            "0.9.9",
            "2.0.0",
            "1.2",
            "1",
            "1.2.3-rc.1",
            "1.2.3+build",
            "1.2.3-alpha",
            "junk",
            "01.2.3",
        ];
        let operands = [
            "1.2.3",
            "1.2.3-rc.1",
            "1.2.3-alpha.2",
            "1.2.4-0",
            "1.2.3+meta",
        ];
        for operand in operands {
            let operand = semver::Version::parse(operand).unwrap();
            for text in texts {
                let slow = parse_version(text).map(|v| v.cmp_precedence(&operand));
                assert_eq!(version_order(text, &operand), slow, "{text} vs {operand}");
            }
        }
    }

    #[test]
    fn bad_operands_are_diagnosed() {
        let cases = [
            (
                json!({"attribute": "a", "operator": "regex", "value": "("}),
                "invalid regular expression",
            ),
            (
                json!({"attribute": "a", "operator": "semver_gt", "value": "one"}),
                "not a semantic version",
            ),
            (
                json!({"attribute": "a", "operator": "bogus", "value": 1}),
                "unknown operator `bogus`",
            ),
            (
                json!({"attribute": "a", "operator": "in", "value": "x"}),
                "need a list",
            ),
            (
                json!({"attribute": "a", "operator": "gt", "value": "x"}),
                "needs a number",
            ),
            (
                json!({"attribute": "a", "operator": "before", "value": "soon"}),
                "RFC 3339",
            ),
            (
                json!({"operator": "in_segment", "value": "beta"}),
                "unknown segment `beta`",
            ),
            (
                json!({"attribute": "a", "operator": "equals", "value": 1, "any": []}),
                "exactly one of",
            ),
            (
                json!({"attribute": "a..b", "operator": "equals", "value": 1}),
                "not a valid attribute path",
            ),
        ];
        for (def, needle) in cases {
            let (cond, diags) = compile(def.clone());
            assert!(cond.is_none(), "{def}");
            assert!(
                diags.iter().any(|d| d.message.contains(needle)),
                "{def}: {diags:?}"
            );
        }
    }

    /// Costly conditions written first are tested last, and the answer is what testing them
    /// in the written order gives (every condition is a pure test); explanations still list
    /// them as written.
    #[test]
    fn cheap_conditions_are_tested_first_and_explained_as_written() {
        let written = [
            json!({"attribute": "name", "operator": "regex", "value": "^a.*z$"}),
            json!({"attribute": "team", "operator": "in", "value": ["red", "blue"]}),
            json!({"attribute": "age", "operator": "gte", "value": 18}),
            json!({"any": [
                {"attribute": "plan", "operator": "contains", "value": "pro"},
                {"attribute": "plan", "operator": "equals", "value": "team"}]}),
        ];
        for form in ["all", "any"] {
            let (cond, diags) = compile(json!({ form: written }));
            assert!(diags.is_empty(), "{diags:?}");
            let cond = cond.unwrap();
            let (Cond::All(items) | Cond::Any(items)) = &cond else {
                panic!("{form} compiles to a list");
            };
            let costs: Vec<u32> = items.tested.iter().map(Cond::cost).collect();
            assert!(costs.is_sorted(), "tested cheapest first: {costs:?}");
            assert_eq!(costs.first(), Some(&1), "the age check comes first");
            for name in ["abz", "abc"] {
                for team in ["red", "green"] {
                    for age in [17, 30] {
                        for plan in ["pro-annual", "team", "free"] {
                            let value =
                                json!({"name": name, "team": team, "age": age, "plan": plan});
                            let ctx = Context::from_value(value.clone()).unwrap();
                            let env = Env {
                                ctx: &ctx,
                                now: OffsetDateTime::UNIX_EPOCH,
                                segments: &[],
                                segment_depth: std::cell::Cell::new(0),
                            };
                            let each: Vec<bool> = written
                                .iter()
                                .map(|w| holds(w.clone(), value.clone()))
                                .collect();
                            let expected = if form == "all" {
                                each.iter().all(|h| *h)
                            } else {
                                each.iter().any(|h| *h)
                            };
                            assert_eq!(cond.matches(&env), expected, "{form} {ctx:?}");
                            let trace = cond.trace(&env, &[]);
                            let texts: Vec<&str> =
                                trace.children.iter().map(|c| c.text.as_str()).collect();
                            assert!(texts[0].starts_with("name "), "{texts:?}");
                            assert!(texts[1].starts_with("team "), "{texts:?}");
                            assert!(texts[2].starts_with("age "), "{texts:?}");
                            assert_eq!(texts[3], "any of", "{texts:?}");
                            let traced: Vec<bool> =
                                trace.children.iter().map(|c| c.holds).collect();
                            assert_eq!(traced, each, "{form} {ctx:?}");
                        }
                    }
                }
            }
        }
    }
}
