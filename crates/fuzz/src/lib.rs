//! The fuzz targets, as functions of the input bytes. Each panics when an input breaks an
//! invariant, which is what a fuzzer looks for:
//!
//! - [`flag_document`]: the flag-file reader and compiler (YAML and JSON) — any text either
//!   compiles without an error diagnostic, or is refused with at least one; what compiles
//!   evaluates and explains every flag without panicking, and explanations agree with
//!   evaluation.
//! - [`context`]: the evaluation-context reader — any JSON evaluates against the example
//!   flags in every environment.
//! - [`ofrep_request`]: OFREP request bodies, read as the handler reads them (limits
//!   included); errors are `PARSE_ERROR` / `INVALID_CONTEXT` with details.
//! - [`admin_request`]: every admin request body reader; failures are 4xx with a message.
//!
//! `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run <target>`); `tests/corpus.rs`
//! replays the committed corpus `fuzz/corpus/<target>/` and random inputs on stable in the test
//! suite. See `docs/fuzzing.md`.

use switchyard_engine::{check_str, has_errors, Context, Format};

pub use switchyard_server::fuzzing::{admin_request, ofrep_request};
use switchyard_server::fuzzing::{evaluate_everything, examples};

/// A fuzz target: it panics when the input breaks an invariant.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus directory names).
pub const TARGETS: &[(&str, Target)] = &[
    ("flag_document", flag_document),
    ("context", context),
    ("ofrep_request", ofrep_request),
    ("admin_request", admin_request),
];

/// A flag file, read as YAML and as JSON.
pub fn flag_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Yaml, Format::Json] {
        let (ruleset, diagnostics) = check_str(text, format, Some("fuzzed.yaml"));
        for d in &diagnostics {
            assert!(!d.message.is_empty(), "a diagnostic without a message");
        }
        match ruleset {
            Some(ruleset) => {
                assert!(
                    !has_errors(&diagnostics),
                    "a ruleset came with errors: {diagnostics:?}"
                );
                evaluate_everything(&ruleset, &Context::new());
                evaluate_everything(
                    &ruleset,
                    &Context::from_value(serde_json::json!({"targetingKey": "u-1"}))
                        .expect("a plain context"),
                );
            }
            None => assert!(
                has_errors(&diagnostics),
                "refused without an error diagnostic: {diagnostics:?}"
            ),
        }
    }
}

/// An evaluation context (JSON), evaluated against the example flags.
pub fn context(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(ctx) = Context::from_value(value) {
        evaluate_everything(examples(), &ctx);
    }
}
