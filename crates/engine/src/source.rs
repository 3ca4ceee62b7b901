//! Source text: turning a flag-definition file into a JSON value plus line numbers.
//!
//! Flag definitions are written in YAML or JSON. Both are loaded into one
//! [`serde_json::Value`] so the rest of the engine deals with a single data model, together with
//! [`Positions`]: the 1-based line of every value in the document, keyed by its [`FieldPath`], so
//! later diagnostics can point at `flags.yaml:12`.
//!
//! YAML is read with `yaml-rust2`'s event parser and resolved with the YAML 1.2 core schema
//! (`yes`/`no`/`on`/`off` stay strings, `1.0` stays a float, quoted and block scalars are always
//! strings). Only the first document of a stream is used. Values JSON cannot hold (`.inf`,
//! `.nan`), complex mapping keys and duplicate keys are errors.
//!
//! JSON may carry `//` and `/* */` comments, which are blanked out before `serde_json` parses the
//! text. Its positions come from running the YAML event parser over the same blanked text (JSON
//! is YAML flow syntax); when that fails the positions are simply empty.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use crate::diagnostic::{Diagnostic, FieldPath};

/// Deepest nesting of mappings and sequences accepted in a YAML document (matches `serde_json`'s
/// own recursion limit).
const MAX_DEPTH: usize = 128;

/// Most value nodes a YAML document may expand to, aliases included. Guards against alias
/// "billion laughs" documents.
const MAX_NODES: usize = 1_000_000;

/// Text format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (core schema).
    Yaml,
    /// JSON, with `//` and `/* */` comments allowed.
    Json,
}

impl Format {
    /// From a file name's extension: .json -> Json, .yaml/.yml -> Yaml, anything else -> None.
    ///
    /// The extension is matched without regard to ASCII case (`.YAML` is YAML).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") {
            Some(Format::Yaml)
        } else {
            None
        }
    }
}

/// Line numbers (1-based) of the values in a parsed document, by field path.
///
/// For a mapping or sequence the line is where it starts. For a mapping member whose value is a
/// block mapping or sequence (or an empty or block scalar) starting on a later line, the line is
/// that of the member's key. For an alias, the line is the alias's; values inside it fall back to
/// it through [`Positions::line_of`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    lines: HashMap<FieldPath, usize>,
}

impl Positions {
    /// Line of the value at `path`; when `path` itself is unknown, the line of its nearest known
    /// ancestor (root excluded returns None if nothing known).
    ///
    /// The root's own line is only returned when `path` is the root itself: a path whose
    /// ancestors are all unknown yields `None` rather than the line the document starts on.
    pub fn line_of(&self, path: &FieldPath) -> Option<usize> {
        if let Some(line) = self.lines.get(path) {
            return Some(*line);
        }
        let segments = path.segments();
        (1..segments.len()).rev().find_map(|len| {
            let ancestor = FieldPath::from(segments[..len].to_vec());
            self.lines.get(&ancestor).copied()
        })
    }

    fn record(&mut self, path: &FieldPath, line: usize) {
        self.lines.insert(path.clone(), line);
    }
}

/// A parsed source document.
#[derive(Debug, Clone)]
pub struct Source {
    /// The document's data.
    pub value: serde_json::Value,
    /// Where each value of `value` is written in the text.
    pub positions: Positions,
}

/// Parses `text` in `format`. On a syntax error returns Err with one Diagnostic carrying the line
/// (and column in the message) of the error and the parser's message; `file` is left None (the
/// caller fills it).
///
/// A leading byte-order mark is ignored. An empty document (or one holding only comments) is
/// `Value::Null`, in either format.
///
/// # Errors
///
/// One error [`Diagnostic`] with its `line` set: for a syntax error in either format (path at
/// the root), and for a YAML document with duplicate mapping keys, mapping keys that are mappings
/// or sequences, `.inf`/`.nan`, hex or octal integers beyond 64 bits, aliases to unfinished
/// anchors, nesting deeper than 128 levels or alias expansion beyond a million values (path of
/// the value concerned).
pub fn parse(text: &str, format: Format) -> Result<Source, Diagnostic> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Yaml => parse_yaml(text, Mode::Strict, true),
        Format::Json => parse_json(text),
    }
}

/// [`parse`] without the positions: the same value, or the same error, at a fraction of the
/// cost (no path is built per value). What loading does first; the positions are worked out
/// only when a diagnostic needs a line.
///
/// # Errors
///
/// As [`parse`], and the same diagnostic: on an error the text is parsed again with the
/// positions, which is where the error's path and line come from.
pub fn parse_value(text: &str, format: Format) -> Result<Value, Diagnostic> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Yaml => match parse_yaml(text, Mode::Strict, false) {
            Ok(source) => Ok(source.value),
            Err(_) => parse(text, format).map(|source| source.value),
        },
        Format::Json => json_value(&strip_json_comments(text)?),
    }
}

/// Where each value of `text` is written, for a text [`parse_value`] has read (empty when
/// it does not parse). For YAML the value is built again with them; a JSON text's value is
/// not read again, only its positions.
pub fn positions(text: &str, format: Format) -> Positions {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Yaml => parse_yaml(text, Mode::Strict, true)
            .map(|source| source.positions)
            .unwrap_or_default(),
        Format::Json => strip_json_comments(text)
            .map(|stripped| json_positions(&stripped))
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

fn parse_json(text: &str) -> Result<Source, Diagnostic> {
    let stripped = strip_json_comments(text)?;
    let value = json_value(&stripped)?;
    let positions = if value.is_null() {
        Positions::default()
    } else {
        json_positions(&stripped)
    };
    Ok(Source { value, positions })
}

/// The value of a JSON text whose comments are blanked out (`null` for a blank text).
fn json_value(stripped: &str) -> Result<Value, Diagnostic> {
    if stripped.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(stripped).map_err(|err| {
        let mut diagnostic =
            Diagnostic::error(FieldPath::root(), format!("JSON syntax error: {err}"));
        if err.line() > 0 {
            diagnostic.line = Some(err.line());
        }
        diagnostic
    })
}

/// Positions of a JSON text whose comments are blanked out. Best effort: JSON is YAML flow
/// syntax, but a few JSON texts (tabs in odd places, unusual escapes) may still trip the YAML
/// scanner; positions are then simply unknown.
fn json_positions(stripped: &str) -> Positions {
    parse_yaml(stripped, Mode::PositionsOnly, true)
        .map(|source| source.positions)
        .unwrap_or_default()
}

/// Blanks out `//` and `/* */` comments, keeping every byte offset and every line break.
fn strip_json_comments(text: &str) -> Result<String, Diagnostic> {
    let mut reader = json_comments::CommentSettings::c_style().strip_comments(text.as_bytes());
    let mut out = Vec::with_capacity(text.len());
    // One byte at a time, so that when the stripper rejects the input we know where.
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => out.push(byte[0]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let (offset, message) = if out.len() >= text.len() {
                    (
                        text.len(),
                        "JSON syntax error: unterminated `/*` comment at end of file",
                    )
                } else {
                    (
                        out.len().saturating_sub(1),
                        "JSON syntax error: `/` must start a `//` or `/*` comment",
                    )
                };
                let (line, column) = line_and_column(text, offset);
                let mut diagnostic = Diagnostic::error(
                    FieldPath::root(),
                    format!("{message} (line {line} column {column})"),
                );
                diagnostic.line = Some(line);
                return Err(diagnostic);
            }
        }
    }
    // Block comments are blanked including their line breaks; put those back so that lines
    // after a multi-line comment keep their numbers.
    for (blanked, original) in out.iter_mut().zip(text.bytes()) {
        if matches!(original, b'\n' | b'\r') && *blanked == b' ' {
            *blanked = original;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Diagnostic::error(
            FieldPath::root(),
            "JSON text is not valid UTF-8 after removing comments",
        )
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// YAML

/// How strictly the YAML builder treats problems that are not syntax errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A YAML source: duplicate keys and unrepresentable scalars are errors.
    Strict,
    /// Positions of a JSON source: only the positions matter, so later duplicate keys win (as in
    /// `serde_json`) and unrepresentable scalars become strings.
    PositionsOnly,
}

/// `record`: whether to work out the positions (and the paths of values, which only they and
/// error messages need; without them an error's diagnostic is at the root, to be read again
/// with them).
fn parse_yaml(text: &str, mode: Mode, record: bool) -> Result<Source, Diagnostic> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        mode,
        record,
        anchors: HashMap::new(),
        positions: Positions::default(),
        nodes: 0,
    };
    let value = builder.document()?;
    Ok(Source {
        value,
        positions: builder.positions,
    })
}

/// An anchored value, kept for its aliases.
struct Anchored {
    value: Value,
    /// How many value nodes `value` holds, for the alias expansion limit.
    nodes: usize,
}

/// Builds a value and its positions from parser events, in one pass.
struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    mode: Mode,
    record: bool,
    anchors: HashMap<usize, Anchored>,
    positions: Positions,
    /// Value nodes produced so far, aliases expanded.
    nodes: usize,
}

impl Builder<'_> {
    /// A value's path below `path`, when recording; the root (no allocation) when not.
    fn extend(&self, path: &FieldPath, child: impl FnOnce(&FieldPath) -> FieldPath) -> FieldPath {
        if self.record {
            child(path)
        } else {
            FieldPath::root()
        }
    }

    fn next(&mut self) -> Result<(Event, Marker), Diagnostic> {
        self.parser.next_token().map_err(|err| syntax_error(&err))
    }

    /// The first document of the stream; `Null` when there is none.
    fn document(&mut self) -> Result<Value, Diagnostic> {
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::Nothing => continue,
                Event::StreamEnd => return Ok(Value::Null),
                Event::DocumentStart => break,
                _ => return Err(unexpected(&event, mark)),
            }
        }
        let (event, mark) = self.next()?;
        let value = self.node(event, mark, &FieldPath::root(), 0)?;
        // Read the end of the document so a syntax error right after the value is reported.
        let (event, mark) = self.next()?;
        match event {
            Event::DocumentEnd => Ok(value),
            _ => Err(unexpected(&event, mark)),
        }
    }

    /// One value node starting with `event`, at `path`, nested `depth` collections deep.
    fn node(
        &mut self,
        event: Event,
        mark: Marker,
        path: &FieldPath,
        depth: usize,
    ) -> Result<Value, Diagnostic> {
        if self.record {
            self.positions.record(path, mark.line());
        }
        let start_nodes = self.nodes;
        self.count_nodes(1, path, mark)?;
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (self.scalar(&text, style, tag.as_ref(), path, mark)?, anchor)
            }
            Event::Alias(id) => {
                let Some(nodes) = self.anchors.get(&id).map(|anchored| anchored.nodes) else {
                    return Err(at(
                        path,
                        mark,
                        "alias refers to an anchor whose value is not complete yet \
                         (an alias cannot be used inside its own anchor)",
                    ));
                };
                // Check the expansion limit before copying. The alias node itself was counted
                // above.
                self.count_nodes(nodes.saturating_sub(1), path, mark)?;
                let value = self
                    .anchors
                    .get(&id)
                    .map_or(Value::Null, |anchored| anchored.value.clone());
                (value, 0)
            }
            Event::SequenceStart(anchor, _) => (self.sequence(path, mark, depth + 1)?, anchor),
            Event::MappingStart(anchor, _) => (self.mapping(path, mark, depth + 1)?, anchor),
            other => return Err(unexpected(&other, mark)),
        };
        if anchor > 0 {
            let nodes = self.nodes - start_nodes;
            self.anchors.insert(
                anchor,
                Anchored {
                    value: value.clone(),
                    nodes,
                },
            );
        }
        Ok(value)
    }

    fn count_nodes(
        &mut self,
        more: usize,
        path: &FieldPath,
        mark: Marker,
    ) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(more);
        if self.nodes > MAX_NODES {
            return Err(at(
                path,
                mark,
                format!("document expands to more than {MAX_NODES} values (through aliases?)"),
            ));
        }
        Ok(())
    }

    fn check_depth(depth: usize, path: &FieldPath, mark: Marker) -> Result<(), Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(at(
                path,
                mark,
                format!("mappings and sequences are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn sequence(
        &mut self,
        path: &FieldPath,
        mark: Marker,
        depth: usize,
    ) -> Result<Value, Diagnostic> {
        Self::check_depth(depth, path, mark)?;
        let mut items = Vec::new();
        loop {
            let (event, item_mark) = self.next()?;
            if event == Event::SequenceEnd {
                return Ok(Value::Array(items));
            }
            let item_path = self.extend(path, |path| path.index(items.len()));
            items.push(self.node(event, item_mark, &item_path, depth)?);
        }
    }

    fn mapping(
        &mut self,
        path: &FieldPath,
        mark: Marker,
        depth: usize,
    ) -> Result<Value, Diagnostic> {
        Self::check_depth(depth, path, mark)?;
        let mut map = Map::new();
        // The line of each key, for the duplicate key's message (when recording).
        let mut key_lines: HashMap<String, usize> = HashMap::new();
        loop {
            let (event, key_mark) = self.next()?;
            if event == Event::MappingEnd {
                return Ok(Value::Object(map));
            }
            let key = self.key(event, key_mark, path)?;
            let key_line = key_mark.line();
            let member_path = self.extend(path, |path| path.key(key.as_str()));
            let first_line = if self.record {
                key_lines.insert(key.clone(), key_line)
            } else {
                map.contains_key(&key).then_some(0)
            };
            if let Some(first_line) = first_line {
                if self.mode == Mode::Strict {
                    return Err(at(
                        &member_path,
                        key_mark,
                        format!("duplicate key {key:?} (first defined on line {first_line})"),
                    ));
                }
            }

            let (event, value_mark) = self.next()?;
            // A person looking for `flags` wants the `flags:` line, not the line of the first
            // item below it.
            let prefer_key_line = match &event {
                Event::MappingStart(..) | Event::SequenceStart(..) => true,
                Event::Scalar(text, style, _, _) => {
                    matches!(style, TScalarStyle::Literal | TScalarStyle::Folded)
                        || (text.is_empty() && *style == TScalarStyle::Plain)
                }
                _ => false,
            };
            let value = self.node(event, value_mark, &member_path, depth)?;
            if self.record && prefer_key_line && value_mark.line() > key_line {
                self.positions.record(&member_path, key_line);
            }
            map.insert(key, value);
        }
    }

    /// The text of a mapping key starting with `event`.
    fn key(&mut self, event: Event, mark: Marker, path: &FieldPath) -> Result<String, Diagnostic> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if anchor > 0 {
                    // Keep it for aliases; a key is never the target of an error itself.
                    let value = self
                        .scalar(&text, style, tag.as_ref(), path, mark)
                        .unwrap_or_else(|_| Value::String(text.clone()));
                    self.anchors.insert(anchor, Anchored { value, nodes: 1 });
                }
                Ok(text)
            }
            Event::Alias(id) => match self.anchors.get(&id).map(|anchored| &anchored.value) {
                Some(Value::String(text)) => Ok(text.clone()),
                Some(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                    Ok(value.to_string())
                }
                Some(_) => Err(at(
                    path,
                    mark,
                    "a mapping key must be a string or another scalar, \
                     but this alias refers to a mapping or sequence",
                )),
                None => Err(at(
                    path,
                    mark,
                    "alias refers to an anchor whose value is not complete yet \
                     (an alias cannot be used inside its own anchor)",
                )),
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => Err(at(
                path,
                mark,
                "a mapping key must be a string or another scalar, not a mapping or sequence",
            )),
            other => Err(unexpected(&other, mark)),
        }
    }

    /// Resolves a scalar with the YAML 1.2 core schema.
    fn scalar(
        &self,
        text: &str,
        style: TScalarStyle,
        tag: Option<&Tag>,
        path: &FieldPath,
        mark: Marker,
    ) -> Result<Value, Diagnostic> {
        let forced_string =
            tag.is_some_and(|tag| tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str");
        if style != TScalarStyle::Plain || forced_string {
            return Ok(Value::String(text.to_owned()));
        }
        match resolve_plain(text) {
            Ok(value) => Ok(value),
            Err(message) => match self.mode {
                Mode::Strict => Err(at(path, mark, message)),
                Mode::PositionsOnly => Ok(Value::String(text.to_owned())),
            },
        }
    }
}

/// Resolves a plain (unquoted) scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Err(format!(
            "`{text}` is infinity, which JSON cannot represent; quote it to make it a string"
        ));
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Err(format!(
            "`{text}` is not-a-number, which JSON cannot represent; quote it to make it a string"
        ));
    }
    if let Some(digits) = text.strip_prefix("0x") {
        if is_digits(digits, 16) {
            return radix_integer(text, digits, 16);
        }
    }
    if let Some(digits) = text.strip_prefix("0o") {
        if is_digits(digits, 8) {
            return radix_integer(text, digits, 8);
        }
    }
    if is_digits(unsigned, 10) {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = unsigned.parse::<u64>() {
            if !text.starts_with('-') {
                return Ok(Value::from(n));
            }
        }
        // Beyond 64 bits: like serde_json, fall back to the nearest float.
        return float(text);
    }
    if is_core_float(unsigned) {
        return float(text);
    }
    Ok(Value::String(text.to_owned()))
}

/// Whether `s` is one or more digits in `radix`.
fn is_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn radix_integer(text: &str, digits: &str, radix: u32) -> Result<Value, String> {
    let n = u64::from_str_radix(digits, radix)
        .map_err(|_| format!("integer `{text}` does not fit in 64 bits"))?;
    // serde_json stores it as an i64 when it fits, like any other integer.
    Ok(Value::from(n))
}

/// Whether `s` (sign already removed) matches the core schema's float pattern:
/// `( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => is_digits(fraction, 10),
        Some((whole, fraction)) => {
            is_digits(whole, 10) && (fraction.is_empty() || is_digits(fraction, 10))
        }
        None => is_digits(mantissa, 10),
    };
    let exponent_ok =
        exponent.is_none_or(|e| is_digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    mantissa_ok && exponent_ok
}

fn float(text: &str) -> Result<Value, String> {
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("number `{text}` is too large for a 64-bit float"))
}

/// An error about the value at `path`, at `mark`'s line.
fn at(path: &FieldPath, mark: Marker, message: impl Into<String>) -> Diagnostic {
    let mut diagnostic = Diagnostic::error(path.clone(), message);
    diagnostic.line = Some(mark.line());
    diagnostic
}

fn syntax_error(err: &ScanError) -> Diagnostic {
    let mark = err.marker();
    let mut diagnostic = Diagnostic::error(
        FieldPath::root(),
        format!(
            "YAML syntax error: {} (line {} column {})",
            err.info(),
            mark.line(),
            mark.col() + 1
        ),
    );
    diagnostic.line = Some(mark.line());
    diagnostic
}

/// An event the parser should never produce at this point; reported rather than panicking.
fn unexpected(event: &Event, mark: Marker) -> Diagnostic {
    at(
        &FieldPath::root(),
        mark,
        format!("YAML parser produced an unexpected {event:?} event"),
    )
}

/// Renders a JSON value as a YAML document (block style), for exports. Strings that YAML
/// would read as something else (`on`, `true`, `1.0`, `null`) are quoted, so the output reads
/// back as the same value.
pub fn to_yaml(value: &Value) -> String {
    fn convert(value: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match value {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => {
                    let f = n.as_f64().unwrap_or_default();
                    // Keep floats recognisably floats: `1.0`, not `1`.
                    let text = if f.fract() == 0.0 && f.abs() < 1e15 {
                        format!("{f:.1}")
                    } else {
                        f.to_string()
                    };
                    Yaml::Real(text)
                }
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(items) => Yaml::Array(items.iter().map(convert).collect()),
            Value::Object(map) => {
                let mut hash = yaml_rust2::yaml::Hash::new();
                for (k, v) in map {
                    hash.insert(Yaml::String(k.clone()), convert(v));
                }
                Yaml::Hash(hash)
            }
        }
    }
    let mut out = String::new();
    let yaml = convert(value);
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    if emitter.dump(&yaml).is_err() {
        return String::new();
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::PathSegment;
    use serde_json::json;

    /// Parses with the positions, after checking that parsing without them gives the same
    /// value or the same error, and that the positions read apart are the same (every test
    /// below goes through here).
    fn parsed(text: &str, format: Format) -> Result<Source, Diagnostic> {
        let full = parse(text, format);
        let value = parse_value(text, format);
        assert_eq!(value, full.clone().map(|source| source.value), "{text}");
        if let Ok(source) = &full {
            assert_eq!(positions(text, format), source.positions, "{text}");
        }
        full
    }

    #[test]
    fn without_positions_nothing_is_recorded() {
        let text = "flags:\n  - key: a\n    rules: [{variant: on}]\n";
        let source = parse_yaml(text, Mode::Strict, false).unwrap();
        assert!(source.positions.lines.is_empty());
        assert_eq!(source.value, parsed(text, Format::Yaml).unwrap().value);
        // The error comes from reading again with the positions: its path and line.
        let error = parse_value("a:\n  b: 1\n  b: 2\n", Format::Yaml).unwrap_err();
        assert_eq!((error.path, error.line), (path("a.b"), Some(3)));
    }

    fn yaml(text: &str) -> Source {
        match parsed(text, Format::Yaml) {
            Ok(source) => source,
            Err(diagnostic) => panic!("unexpected error: {diagnostic}"),
        }
    }

    fn yaml_err(text: &str) -> Diagnostic {
        match parsed(text, Format::Yaml) {
            Ok(source) => panic!("expected an error, got {:?}", source.value),
            Err(diagnostic) => diagnostic,
        }
    }

    fn json_src(text: &str) -> Source {
        match parsed(text, Format::Json) {
            Ok(source) => source,
            Err(diagnostic) => panic!("unexpected error: {diagnostic}"),
        }
    }

    /// Parses a path like `flags[1].rules[0].operator` (keys are plain words).
    fn path(text: &str) -> FieldPath {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|part| !part.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|key| !key.is_empty()) {
                segments.push(PathSegment::Key(key.to_owned()));
            }
            for index in pieces {
                let index = index.trim_end_matches(']').parse().expect("index");
                segments.push(PathSegment::Index(index));
            }
        }
        FieldPath::from(segments)
    }

    fn scalar(text: &str) -> Value {
        yaml(&format!("v: {text}\n")).value["v"].clone()
    }

    #[test]
    fn format_from_path() {
        assert_eq!(
            Format::from_path(Path::new("a/flags.json")),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_path(Path::new("flags.yaml")),
            Some(Format::Yaml)
        );
        assert_eq!(
            Format::from_path(Path::new("flags.yml")),
            Some(Format::Yaml)
        );
        assert_eq!(
            Format::from_path(Path::new("FLAGS.YML")),
            Some(Format::Yaml)
        );
        assert_eq!(Format::from_path(Path::new("flags.toml")), None);
        assert_eq!(Format::from_path(Path::new("flags")), None);
        assert_eq!(Format::from_path(Path::new(".json")), None);
    }

    #[test]
    fn scalar_resolution_table() {
        let table: &[(&str, Value)] = &[
            ("null", Value::Null),
            ("Null", Value::Null),
            ("NULL", Value::Null),
            ("~", Value::Null),
            ("", Value::Null),
            ("true", json!(true)),
            ("True", json!(true)),
            ("TRUE", json!(true)),
            ("false", json!(false)),
            ("False", json!(false)),
            ("FALSE", json!(false)),
            ("tRUE", json!("tRUE")),
            ("yes", json!("yes")),
            ("no", json!("no")),
            ("on", json!("on")),
            ("off", json!("off")),
            ("y", json!("y")),
            ("0", json!(0)),
            ("42", json!(42)),
            ("-17", json!(-17)),
            ("+17", json!(17)),
            ("007", json!(7)),
            ("9223372036854775807", json!(i64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
            ("0x1F", json!(31)),
            ("0xffffffffffffffff", json!(u64::MAX)),
            ("0o17", json!(15)),
            ("-0x10", json!("-0x10")),
            ("0b101", json!("0b101")),
            ("1.5", json!(1.5)),
            ("-1.5", json!(-1.5)),
            ("+.5", json!(0.5)),
            ("1.", json!(1.0)),
            ("1e3", json!(1000.0)),
            ("1.5E-2", json!(0.015)),
            ("2e+2", json!(200.0)),
            ("1_000", json!("1_000")),
            ("1.2.3", json!("1.2.3")),
            ("e3", json!("e3")),
            ("1e", json!("1e")),
            (".", json!(".")),
            ("'true'", json!("true")),
            ("\"42\"", json!("42")),
            ("'null'", json!("null")),
            ("''", json!("")),
            ("!!str 42", json!("42")),
            ("!!str true", json!("true")),
            ("hello world", json!("hello world")),
        ];
        for (text, expected) in table {
            assert_eq!(&scalar(text), expected, "scalar `{text}`");
        }
        // Too large for 64 bits: the nearest float, as serde_json does.
        assert!(scalar("123456789012345678901234567890").is_f64());
    }

    #[test]
    fn block_scalars_are_strings() {
        let source = yaml("a: |\n  true\nb: >\n  42\n  43\n");
        assert_eq!(source.value, json!({"a": "true\n", "b": "42 43\n"}));
    }

    #[test]
    fn infinity_and_nan_are_errors() {
        for text in [".inf", "-.inf", "+.Inf", ".INF", ".nan", ".NaN", ".NAN"] {
            let diagnostic = yaml_err(&format!("a: 1\nv: {text}\n"));
            assert!(diagnostic.is_error());
            assert_eq!(diagnostic.line, Some(2), "{text}");
            assert_eq!(diagnostic.path, path("v"));
            assert!(
                diagnostic.message.contains("JSON cannot represent"),
                "{diagnostic}"
            );
        }
        assert_eq!(scalar("'.inf'"), json!(".inf"));
        assert!(yaml_err("v: 1e999\n").message.contains("too large"));
        assert!(yaml_err("v: 0x1ffffffffffffffff\n")
            .message
            .contains("64 bits"));
    }

    #[test]
    fn float_one_point_zero_stays_float() {
        let source = yaml("a: 1.0\nb: 1\n");
        assert_eq!(
            serde_json::to_string(&source.value).expect("serializes"),
            r#"{"a":1.0,"b":1}"#
        );
        assert!(source.value["a"].is_f64());
        assert!(source.value["b"].is_i64());
    }

    #[test]
    fn yes_stays_a_string() {
        let source = yaml("enabled: yes\nother: on\n");
        assert_eq!(source.value, json!({"enabled": "yes", "other": "on"}));
    }

    #[test]
    fn mapping_keys_become_text() {
        let source = yaml("1: a\ntrue: b\nnull: c\n1.50: d\n\"q\": e\n");
        assert_eq!(
            source.value,
            json!({"1": "a", "true": "b", "null": "c", "1.50": "d", "q": "e"})
        );
        let diagnostic = yaml_err("a: 1\n? [x, y]\n: 2\n");
        assert!(diagnostic.message.contains("mapping key"), "{diagnostic}");
        assert_eq!(diagnostic.line, Some(2));
    }

    const FLAGS: &str = "\
# flags
version: 1
flags:
  - key: checkout
    enabled: true
  - key: search
    rules:
      - name: beta
        conditions:
          - attribute: country
            operator: in
            values: [DE, FR]
          -
            attribute: plan
            operator: eq
    default:
      variant: off
description: |
  text
empty:
";

    #[test]
    fn nested_line_numbers() {
        let source = yaml(FLAGS);
        let line = |p: &str| source.positions.line_of(&path(p));
        assert_eq!(
            source.value["flags"][1]["rules"][0]["conditions"][0]["operator"],
            "in"
        );
        assert_eq!(line("version"), Some(2));
        // A block sequence value: the line of its key.
        assert_eq!(line("flags"), Some(3));
        // A block sequence item: the line of its `- key:`.
        assert_eq!(line("flags[0]"), Some(4));
        assert_eq!(line("flags[0].key"), Some(4));
        assert_eq!(line("flags[0].enabled"), Some(5));
        assert_eq!(line("flags[1]"), Some(6));
        assert_eq!(line("flags[1].rules"), Some(7));
        assert_eq!(line("flags[1].rules[0]"), Some(8));
        assert_eq!(line("flags[1].rules[0].conditions"), Some(9));
        assert_eq!(line("flags[1].rules[0].conditions[0]"), Some(10));
        assert_eq!(line("flags[1].rules[0].conditions[0].operator"), Some(11));
        assert_eq!(line("flags[1].rules[0].conditions[0].values"), Some(12));
        assert_eq!(line("flags[1].rules[0].conditions[0].values[1]"), Some(12));
        assert_eq!(line("flags[1].rules[0].conditions[1].attribute"), Some(14));
        assert_eq!(line("flags[1].rules[0].conditions[1].operator"), Some(15));
        assert_eq!(line("flags[1].default"), Some(16));
        assert_eq!(line("flags[1].default.variant"), Some(17));
        assert_eq!(line("description"), Some(18));
        assert_eq!(line("empty"), Some(20));
        // Unknown paths fall back to the nearest known ancestor ...
        assert_eq!(line("flags[1].rules[0].conditions[0].missing"), Some(10));
        assert_eq!(line("flags[1].rules[7].name"), Some(7));
        // ... but not to the root.
        assert_eq!(line("nothing.here"), None);
        assert_eq!(line(""), Some(2));
    }

    #[test]
    fn flow_collections_on_the_key_line() {
        let source = yaml("a: {b: 1,\n  c: [1,\n  2]}\nd:\n  - 1\n");
        let line = |p: &str| source.positions.line_of(&path(p));
        assert_eq!(line("a"), Some(1));
        assert_eq!(line("a.c"), Some(2));
        assert_eq!(line("a.c[1]"), Some(3));
        assert_eq!(line("d"), Some(4));
        assert_eq!(line("d[0]"), Some(5));
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let diagnostic = yaml_err("flags:\n  - key: a\n    enabled: true\n    enabled: false\n");
        assert!(diagnostic.is_error());
        assert_eq!(diagnostic.line, Some(4));
        assert_eq!(diagnostic.path, path("flags[0].enabled"));
        assert!(diagnostic.message.contains("\"enabled\""), "{diagnostic}");
        assert!(diagnostic.message.contains("line 3"), "{diagnostic}");
        assert!(diagnostic.file.is_none());
        // Keys are compared as text.
        assert!(yaml_err("1: a\n'1': b\n").message.contains("duplicate"));
    }

    #[test]
    fn yaml_syntax_error_line() {
        let diagnostic = yaml_err("a: 1\nb: [1, 2\nc: 3\n");
        assert!(diagnostic.is_error());
        assert!(diagnostic.line.is_some());
        assert!(diagnostic.message.contains("column"), "{diagnostic}");

        let diagnostic = yaml_err("a: 1\nb: 2\n  c: 3\n");
        assert_eq!(diagnostic.line, Some(3), "{diagnostic}");
        assert!(
            diagnostic.message.starts_with("YAML syntax error"),
            "{diagnostic}"
        );
        assert!(diagnostic.file.is_none());

        let diagnostic = yaml_err("a: 1\nb: \"unterminated\n");
        assert!(diagnostic.line.is_some(), "{diagnostic}");
    }

    #[test]
    fn aliases_clone_anchored_values() {
        let source = yaml(
            "base: &base\n  variant: on\n  weight: 1.0\nflags:\n  - *base\n  - &k key\n  - *k\n",
        );
        assert_eq!(
            source.value,
            json!({
                "base": {"variant": "on", "weight": 1.0},
                "flags": [{"variant": "on", "weight": 1.0}, "key", "key"],
            })
        );
        let line = |p: &str| source.positions.line_of(&path(p));
        assert_eq!(line("flags[0]"), Some(5));
        assert_eq!(line("flags[0].weight"), Some(5));
        // Anchored scalars can be used as keys.
        let source = yaml("a: &k name\n*k : 1\n");
        assert_eq!(source.value, json!({"a": "name", "name": 1}));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let diagnostic = yaml_err(&text);
        assert!(diagnostic.message.contains("more than"), "{diagnostic}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let diagnostic = yaml_err(&text);
        assert!(diagnostic.message.contains("nested"), "{diagnostic}");
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parsed(&ok, Format::Yaml).is_ok());
    }

    #[test]
    fn empty_documents() {
        for text in ["", "\n\n", "# only a comment\n", "---\n", "\u{feff}"] {
            let source = yaml(text);
            assert_eq!(source.value, Value::Null, "{text:?}");
        }
        for text in ["", "  \n", "// nothing here\n", "/* nothing */"] {
            assert_eq!(json_src(text).value, Value::Null, "{text:?}");
        }
    }

    #[test]
    fn only_the_first_document_is_used() {
        let source = yaml("a: 1\n---\nb: 2\n");
        assert_eq!(source.value, json!({"a": 1}));
        let source = yaml("--- 5\n...\n--- 6\n");
        assert_eq!(source.value, json!(5));
    }

    const JSON: &str = r#"// examples/flags/checkout.json
{
  "version": 1,
  /* a block comment
     over two lines */
  "flags": [
    {
      "key": "checkout", // trailing comment
      "weight": 1.0,
      "url": "http://example.com/a//b /* not a comment */"
    }
  ]
}
"#;

    #[test]
    fn json_with_comments_and_positions() {
        let source = json_src(JSON);
        assert_eq!(
            source.value,
            json!({
                "version": 1,
                "flags": [{
                    "key": "checkout",
                    "weight": 1.0,
                    "url": "http://example.com/a//b /* not a comment */",
                }],
            })
        );
        assert!(source.value["flags"][0]["weight"].is_f64());
        let line = |p: &str| source.positions.line_of(&path(p));
        assert_eq!(line("version"), Some(3));
        assert_eq!(line("flags"), Some(6));
        assert_eq!(line("flags[0]"), Some(7));
        assert_eq!(line("flags[0].key"), Some(8));
        assert_eq!(line("flags[0].weight"), Some(9));
        assert_eq!(line("flags[0].missing"), Some(7));
    }

    #[test]
    fn json_syntax_errors() {
        let diagnostic = match parsed("// header\n{\n  \"a\": 1,\n  \"b\" 2\n}\n", Format::Json) {
            Ok(_) => panic!("expected an error"),
            Err(diagnostic) => diagnostic,
        };
        assert_eq!(diagnostic.line, Some(4), "{diagnostic}");
        assert!(diagnostic.message.contains("column"), "{diagnostic}");
        assert!(diagnostic.file.is_none());

        let diagnostic = match parsed("{\n \"a\": 1 / 2\n}", Format::Json) {
            Ok(_) => panic!("expected an error"),
            Err(diagnostic) => diagnostic,
        };
        assert_eq!(diagnostic.line, Some(2), "{diagnostic}");

        let diagnostic = match parsed("{\n\"a\": 1\n} /* open", Format::Json) {
            Ok(_) => panic!("expected an error"),
            Err(diagnostic) => diagnostic,
        };
        assert_eq!(diagnostic.line, Some(3), "{diagnostic}");
        assert!(diagnostic.message.contains("unterminated"), "{diagnostic}");
    }

    #[test]
    fn json_positions_are_best_effort() {
        // Duplicate keys: serde_json keeps the last one; positions follow it, no error.
        let source = json_src("{\n\"a\": 1,\n\"a\": 2\n}");
        assert_eq!(source.value, json!({"a": 2}));
        assert_eq!(source.positions.line_of(&path("a")), Some(3));
        // Tabs and compact JSON still parse; the value never depends on the YAML pass.
        let source = json_src("{\"a\":{\"b\":[1,2]},\t\"c\":\"\\u00e9\\/\"}");
        assert_eq!(source.value, json!({"a": {"b": [1, 2]}, "c": "é/"}));
    }

    #[test]
    fn yaml_export_round_trips() {
        let value = serde_json::json!({
            "flags": [{"key": "a", "variants": {"on": true, "off": false}, "ratio": 1.0, "n": 15,
                       "s": "on", "t": "true", "e": "", "q": "it's \"quoted\"", "list": [], "obj": {}}],
            "unicode": "日本 é 🚀", "nothing": null
        });
        let text = to_yaml(&value);
        let back = parsed(&text, Format::Yaml)
            .expect("exported YAML parses")
            .value;
        assert_eq!(back, value, "{text}");
        assert!(text.contains("1.0"), "{text}");
    }
}
