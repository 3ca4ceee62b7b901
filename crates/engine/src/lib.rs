//! Switchyard's flag engine: the flag definition format, its compiler and the evaluator.
//!
//! The engine is pure: no I/O beyond parsing text handed to it, no clock (callers pass `now`),
//! no randomness (bucketing is a specified hash). The server and the SDK both evaluate with it,
//! so a flag behaves the same wherever it is evaluated.
//!
//! ```
//! use switchyard_engine::{load_str, Context, Format, Reason};
//!
//! let yaml = r#"
//! flags:
//!   - key: new-checkout
//!     rules:
//!       - id: beta
//!         conditions:
//!           - {attribute: plan, operator: in, value: [beta, enterprise]}
//!         variant: "on"
//!     fallthrough: {percentage: 10, variant: "on"}
//! "#;
//! let ruleset = load_str(yaml, Format::Yaml, Some("flags.yaml")).expect("valid flags");
//! let now = time::OffsetDateTime::UNIX_EPOCH;
//! let eval = ruleset.evaluator("production", now);
//!
//! let ctx = Context::with_targeting_key("user-1").with("plan", "beta");
//! let result = eval.evaluate("new-checkout", &ctx);
//! assert_eq!(result.value, &serde_json::json!(true));
//! assert_eq!(result.reason, Reason::TargetingMatch);
//! assert_eq!(result.rule_id(), Some("beta"));
//! ```
//!
//! Map of the crate:
//! - [`source`]: YAML/JSON text → JSON value plus line numbers;
//! - [`document`]: the format's types ([`Document`], [`FlagDef`], …);
//! - [`compile()`]: [`Document`] → [`Ruleset`] plus [`Diagnostic`]s;
//! - [`eval`]: [`Evaluator`], [`Evaluation`], OpenFeature [`Reason`]s and [`ErrorCode`]s;
//! - [`bucket`]: the versioned bucketing algorithm (see `docs/bucketing.md`);
//! - [`hash`]: streaming MurmurHash3 x86_32.

pub mod bucket;
pub mod compile;
mod condition;
pub mod context;
mod context_json;
pub mod diagnostic;
pub mod document;
pub mod eval;
mod experiment;
pub mod explain;
pub mod hash;
mod normalize;
pub mod source;
mod strmap;

use std::path::Path;

pub use compile::{compile, is_valid_key, Change};
pub use condition::{NOW_ATTRIBUTE, OPERATORS};
pub use context::{AttrPath, Context, ContextError};
pub use context_json::{ContextJsonError, ContextLimits};
pub use diagnostic::{has_errors, Diagnostic, FieldPath, PathSegment, Severity};
pub use document::{Document, FlagDef, FlagType, TargetingDef, FORMAT_VERSION};
pub use eval::{
    Detail, Environment, ErrorCode, EvalError, Evaluation, Evaluator, FromFlagValue, Reason,
    Ruleset, Typed,
};
pub use experiment::OPT_OUT_ATTRIBUTE as EXPERIMENT_OPT_OUT_ATTRIBUTE;
pub use normalize::normalize;
pub use source::Format;

/// Why a flag document could not be loaded: every problem found, each with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct LoadError {
    /// All diagnostics (errors and warnings), in document order.
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut out = format!(
        "{errors} problem{} in flag definitions",
        if errors == 1 { "" } else { "s" }
    );
    for d in diagnostics {
        out.push_str("\n  ");
        out.push_str(&d.to_string());
    }
    out
}

/// Parses, reads and compiles a document from text, attributing diagnostics to `file` and
/// to lines. Returns every diagnostic (warnings included) alongside the outcome.
pub fn check_str(
    text: &str,
    format: Format,
    file: Option<&str>,
) -> (Option<Ruleset>, Vec<Diagnostic>) {
    let attribute = |mut d: Diagnostic, positions: Option<&source::Positions>| {
        d.file = file.map(str::to_owned);
        if d.line.is_none() {
            d.line = positions.and_then(|p| p.line_of(&d.path));
        }
        d
    };
    let value = match source::parse_value(text, format) {
        Ok(value) => value,
        Err(d) => return (None, vec![attribute(d, None)]),
    };
    // A file holding one flag (what `flags create -f` takes) is a document with that flag;
    // its problems are reported at the flag's own paths (`rules[0]`, not `flags[0].rules[0]`).
    let single = is_single_flag(&value);
    let value = if single {
        serde_json::json!({ "flags": [value] })
    } else {
        value
    };
    let (doc, mut diagnostics) = Document::from_value(value);
    let (ruleset, compile_diagnostics) = compile(&doc);
    diagnostics.extend(compile_diagnostics);
    // Where each value is written is only worked out when a diagnostic needs a line: the text
    // is read a second time then.
    let positions = (!diagnostics.is_empty()).then(|| source::positions(text, format));
    let mut diagnostics: Vec<Diagnostic> = diagnostics
        .into_iter()
        .map(|mut d| {
            if single {
                d.path = unwrap_single(&d.path);
            }
            attribute(d, positions.as_ref())
        })
        .collect();
    // Read top to bottom; diagnostics without a line keep their order at the end.
    diagnostics.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
    let ok = !has_errors(&diagnostics);
    (ok.then_some(ruleset), diagnostics)
}

/// Whether a parsed file is one flag rather than a document: an object with a `key` and none
/// of a document's top-level fields.
fn is_single_flag(value: &serde_json::Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.contains_key("key")
            && !["flags", "segments", "version"]
                .iter()
                .any(|k| o.contains_key(*k))
    })
}

/// `flags[0].rest` → `rest` (a single-flag file's own paths).
fn unwrap_single(path: &FieldPath) -> FieldPath {
    match path.segments() {
        [PathSegment::Key(flags), PathSegment::Index(0), rest @ ..] if flags == "flags" => {
            FieldPath::from(rest.to_vec())
        }
        _ => path.clone(),
    }
}

/// Loads a document from text: the ruleset, or every problem.
pub fn load_str(text: &str, format: Format, file: Option<&str>) -> Result<Ruleset, LoadError> {
    match check_str(text, format, file) {
        (Some(ruleset), _) => Ok(ruleset),
        (None, diagnostics) => Err(LoadError { diagnostics }),
    }
}

/// Loads a document from an already parsed JSON value (the admin API's path).
pub fn load_value(value: serde_json::Value) -> Result<Ruleset, LoadError> {
    let (doc, mut diagnostics) = Document::from_value(value);
    let (ruleset, more) = compile(&doc);
    diagnostics.extend(more);
    if has_errors(&diagnostics) {
        Err(LoadError { diagnostics })
    } else {
        Ok(ruleset)
    }
}

/// Reads a file and loads it; the format comes from the extension (`.yaml`, `.yml`, `.json`).
pub fn load_file(path: &Path) -> Result<Ruleset, LoadError> {
    match check_file(path) {
        (Some(ruleset), _) => Ok(ruleset),
        (None, diagnostics) => Err(LoadError { diagnostics }),
    }
}

/// Like [`load_file`], but also returns warnings on success.
pub fn check_file(path: &Path) -> (Option<Ruleset>, Vec<Diagnostic>) {
    let name = path.display().to_string();
    let problem = |message: String| {
        let mut d = Diagnostic::error(FieldPath::root(), message);
        d.file = Some(name.clone());
        (None, vec![d])
    };
    let Some(format) = Format::from_path(path) else {
        return problem("unknown file type: use .yaml, .yml or .json".to_owned());
    };
    match std::fs::read_to_string(path) {
        Ok(text) => check_str(&text, format, Some(&name)),
        Err(err) => problem(format!("cannot read the file: {err}")),
    }
}
