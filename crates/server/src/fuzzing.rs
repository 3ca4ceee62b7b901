//! Entry points for the fuzz targets (`fuzz/`, and the corpus replay in `crates/fuzz`): the
//! request-body readers exactly as the handlers run them, with the invariants every input must
//! keep. Not part of the server's API.

use std::sync::OnceLock;

use switchyard_api_types::admin::{
    ExplainRequest, NewEnvironment, NewToken, Reason, SetEnabled, SetRollout, SetRules, SetTargets,
    SetTenant,
};
use switchyard_engine::{Context, Ruleset};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::listen::Limits;

/// The example flags, compiled once: what fuzzed contexts are evaluated against.
pub fn examples() -> &'static Ruleset {
    static RULESET: OnceLock<Ruleset> = OnceLock::new();
    RULESET.get_or_init(|| {
        switchyard_engine::load_str(
            crate::state::EXAMPLE_FLAGS,
            switchyard_engine::Format::Yaml,
            None,
        )
        .expect("the example flags compile")
    })
}

/// Evaluates and explains every example flag for `ctx` in every environment.
pub fn evaluate_everything(ruleset: &Ruleset, ctx: &Context) {
    let envs: Vec<&str> = ruleset.environments().chain([""]).collect();
    for env in envs {
        let evaluator = ruleset.evaluator(env, OffsetDateTime::UNIX_EPOCH);
        for key in ruleset.keys() {
            let eval = evaluator.evaluate(key, ctx);
            let explained = evaluator.explain(key, ctx);
            assert_eq!(explained.variant.as_deref(), eval.variant, "{key} in {env}");
            assert_eq!(explained.reason, eval.reason.as_str(), "{key} in {env}");
        }
    }
}

const RAW_VALUE_KEY: &[u8] = b"$serde_json::private::RawValue";

/// An OFREP request body (`POST /ofrep/v1/evaluate/flags[/{key}]`): read with the default
/// limits; a context that is read is then evaluated against the example flags.
pub fn ofrep_request(body: &[u8]) {
    // Reading the context straight from the text gives what going through a JSON tree gives:
    // the same context, or the same error (the direct reading hands every refusal to it).
    let direct = crate::ofrep::parse_context(body, &Limits::default());
    let tree = crate::ofrep::parse_context_via_tree(body, &Limits::default());
    // The reference has a quirk of its own: serde_json's `Value` takes an object whose key is
    // this magic name for an embedded raw value and re-parses its string as JSON. That is not
    // JSON's meaning, so such text is not compared (what is read is still evaluated).
    let quirk = body
        .windows(RAW_VALUE_KEY.len())
        .any(|w| w == RAW_VALUE_KEY);
    if !quirk {
        assert_eq!(direct, tree, "the two ways to read a context disagree");
    }
    match direct {
        Ok(ctx) => evaluate_everything(examples(), &ctx),
        Err((code, details)) => {
            assert!(
                code == "PARSE_ERROR" || code == "INVALID_CONTEXT",
                "unexpected OFREP error code {code}"
            );
            assert!(!details.is_empty(), "an OFREP error without details");
        }
    }
}

fn client_error(e: &ApiError) {
    assert!(
        e.code.status().is_client_error(),
        "a request body produced a {} ({})",
        e.code.status(),
        e.message
    );
    assert!(!e.message.is_empty(), "an error without a message");
}

/// Every admin request body reader: flag and segment writes (bare or resource shape), the
/// partial changes, tokens, environments and explain. A body they accept as a flag is
/// compiled; an explain request's context is evaluated.
pub fn admin_request(body: &[u8]) {
    for key in [None, Some("fuzzed-flag")] {
        match crate::admin::read_flag(body, key) {
            Ok((def, _, _)) => {
                let doc = switchyard_engine::Document {
                    version: 1,
                    segments: Default::default(),
                    flags: vec![def],
                };
                let (ruleset, _diagnostics) = switchyard_engine::compile(&doc);
                evaluate_everything(&ruleset, &Context::new());
            }
            Err(e) => client_error(&e),
        }
    }
    if let Err(e) = crate::admin::read_segment(body) {
        client_error(&e);
    }
    macro_rules! read {
        ($($t:ty),*) => {$(
            if let Err(e) = crate::admin::parse_body::<$t>(body) {
                client_error(&e);
            }
        )*};
    }
    read!(
        Reason,
        SetEnabled,
        SetRollout,
        SetTargets,
        SetRules,
        SetTenant,
        NewToken,
        NewEnvironment
    );
    if let Ok(ExplainRequest { context, .. }) = crate::admin::parse_body::<ExplainRequest>(body) {
        let context = serde_json::Value::Object(context);
        if crate::ofrep::check_shape(&context, &Limits::default()).is_ok() {
            if let Ok(ctx) = Context::from_value(context) {
                evaluate_everything(examples(), &ctx);
            }
        }
    }
}
