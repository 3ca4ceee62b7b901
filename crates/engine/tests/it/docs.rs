//! Keeps the format documentation and the example file honest.
//!
//! Every fenced ```yaml block of `docs/flag-format.md` that is a complete document (it starts
//! with `flags:`, `version:` or `segments:` at column 0) must load; every block whose first line
//! is `# invalid` must fail, and when the marker goes on (`# invalid: split weights add up`) one
//! diagnostic must contain the rest. Every ```json block is a complete document and must load.
//! Fragments (blocks starting with anything else) are illustrations and are not checked.
//!
//! `examples/flags.yaml` must load, hold at least eight flags, use every operator, and evaluate
//! the way its comments say.

use serde_json::{json, Value};
use switchyard_engine::{
    load_file, load_str, Context, Detail, ErrorCode, Evaluation, Format, LoadError, Reason,
    Ruleset, OPERATORS,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/flag-format.md");
const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/flags.yaml");
const DOC_NAME: &str = "docs/flag-format.md";

/// A fenced code block: its language, the 1-based line of its opening fence, and its text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(lang) = line.strip_prefix("```") {
                    open = Some(Block {
                        lang: lang.trim().to_owned(),
                        line: i + 1,
                        text: String::new(),
                    });
                }
            }
            Some(mut block) => {
                if line.trim_end() == "```" {
                    blocks.push(block);
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                    open = Some(block);
                }
            }
        }
    }
    assert!(open.is_none(), "{DOC_NAME}: a code block is not closed");
    blocks
}

/// The diagnostics of `err`, with lines counted from the top of the doc rather than the block.
fn render(err: &LoadError, block: &Block) -> String {
    err.diagnostics
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.line = d.line.map(|line| line + block.line);
            format!("  {d}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn doc_text() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|err| panic!("cannot read {DOC_PATH}: {err}"))
}

#[test]
fn every_complete_example_in_the_format_doc_loads_and_every_invalid_one_fails() {
    let doc = doc_text();
    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for block in fenced_blocks(&doc) {
        let format = match block.lang.as_str() {
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            _ => continue,
        };
        let first = block.text.lines().next().unwrap_or("");
        let where_ = format!("{DOC_NAME}:{} ({})", block.line, block.lang);
        if let Some(rest) = first.strip_prefix("# invalid") {
            invalid += 1;
            let expected = rest.strip_prefix(':').map(str::trim).unwrap_or("");
            match load_str(&block.text, format, Some(DOC_NAME)) {
                Ok(_) => failures.push(format!("{where_}: marked `# invalid` but loads")),
                Err(err) => {
                    let found = err.diagnostics.iter().any(|d| d.message.contains(expected));
                    if !found {
                        failures.push(format!(
                            "{where_}: expected a diagnostic containing {expected:?}, got:\n{}",
                            render(&err, &block)
                        ));
                    }
                }
            }
            continue;
        }
        let complete = match format {
            Format::Yaml => ["flags:", "version:", "segments:"]
                .iter()
                .any(|start| first.starts_with(start)),
            Format::Json => true,
        };
        if !complete {
            continue;
        }
        valid += 1;
        if let Err(err) = load_str(&block.text, format, Some(DOC_NAME)) {
            failures.push(format!(
                "{where_}: does not load:\n{}",
                render(&err, &block)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Guards against the extraction silently finding nothing.
    assert!(
        valid >= 15,
        "only {valid} complete examples found in {DOC_NAME}"
    );
    assert!(
        invalid >= 8,
        "only {invalid} `# invalid` examples found in {DOC_NAME}"
    );
}

#[test]
fn the_format_doc_names_every_operator() {
    let doc = doc_text();
    for op in OPERATORS.iter().chain(&["not_in_segment"]) {
        assert!(
            doc.contains(&format!("| `{op}`")) || doc.contains(&format!(", `{op}`")),
            "{DOC_NAME} does not document operator `{op}` in its operator table"
        );
    }
}

fn example() -> Ruleset {
    load_file(std::path::Path::new(EXAMPLE_PATH))
        .unwrap_or_else(|err| panic!("{EXAMPLE_PATH}: {err}"))
}

#[test]
fn the_example_file_loads_with_at_least_eight_flags() {
    let ruleset = example();
    assert!(
        ruleset.len() >= 8,
        "only {} flags in {EXAMPLE_PATH}",
        ruleset.len()
    );
}

/// Every `operator` used anywhere in a JSON value.
fn operators_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(op)) = map.get("operator") {
                out.push(op.clone());
            }
            map.values().for_each(|v| operators_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| operators_in(v, out)),
        _ => {}
    }
}

#[test]
fn the_example_file_uses_every_operator() {
    let mut used = Vec::new();
    operators_in(&example().to_document().to_value(), &mut used);
    for op in OPERATORS.iter().chain(&["not_in_segment"]) {
        assert!(
            used.iter().any(|u| u == op),
            "{EXAMPLE_PATH} never uses `{op}`"
        );
    }
}

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339")
}

/// Evaluates `flag` of the example in `env` at `now` for `ctx`.
fn eval<'r>(ruleset: &'r Ruleset, env: &str, now: &str, flag: &str, ctx: &Value) -> Evaluation<'r> {
    let ctx = Context::from_value(ctx.clone()).expect("valid context");
    ruleset.evaluator(env, at(now)).evaluate(flag, &ctx)
}

#[test]
fn the_example_file_behaves_as_its_comments_say() {
    let rs = example();
    let spring = "2026-03-01T12:00:00Z";
    let prod = |flag: &str, ctx: Value| eval(&rs, "production", spring, flag, &ctx);

    // Kill switch: killed in production only.
    let e = prod("carrier-quotes-api", json!({"targetingKey": "u"}));
    assert_eq!(
        (e.value, e.reason, e.detail),
        (&json!(false), Reason::Disabled, Some(Detail::KillSwitch))
    );
    let e = eval(
        &rs,
        "staging",
        spring,
        "carrier-quotes-api",
        &json!({"targetingKey": "u"}),
    );
    assert_eq!((e.value, e.reason), (&json!(true), Reason::Static));

    // Payments v2: tenant overrides, per-organization rollout, static in staging.
    let e = prod(
        "payments-api-v2",
        json!({"targetingKey": "u", "tenant": {"id": "globex"}}),
    );
    assert_eq!(
        (e.value, e.reason, e.detail),
        (&json!(false), Reason::Disabled, Some(Detail::Tenant))
    );
    let e = prod(
        "payments-api-v2",
        json!({"targetingKey": "u", "tenant": {"id": "initech"}}),
    );
    assert_eq!(
        (e.value, e.reason, e.detail),
        (&json!(true), Reason::TargetingMatch, Some(Detail::Tenant))
    );
    let e = eval(&rs, "staging", spring, "payments-api-v2", &json!({}));
    assert_eq!((e.value, e.reason), (&json!(true), Reason::Static));
    for user in ["a", "b", "c"] {
        // Organization 1 is inside the 50 %, organization 5 outside, whoever the user is.
        let e = prod(
            "payments-api-v2",
            json!({"targetingKey": user, "tenant": {"id": 1}}),
        );
        assert_eq!((e.value, e.reason), (&json!(true), Reason::Split), "{user}");
        let e = prod(
            "payments-api-v2",
            json!({"targetingKey": user, "tenant": {"id": 5}}),
        );
        assert_eq!(
            (e.value, e.reason),
            (&json!(false), Reason::Default),
            "{user}"
        );
    }

    // Checkout redesign: targets, prerequisite, rules, environments.
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "user-7", "tenant": {"id": 1}}),
    );
    assert_eq!(
        (e.variant, e.reason, e.detail),
        (Some("on"), Reason::TargetingMatch, Some(Detail::Target))
    );
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "user-7", "tenant": {"id": 5}}),
    );
    assert_eq!(
        (e.variant, e.reason, e.detail),
        (
            Some("off"),
            Reason::Default,
            Some(Detail::PrerequisiteFailed("payments-api-v2"))
        )
    );
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "x", "email": "ceo@acme.example", "tenant": {"id": 1}}),
    );
    assert_eq!((e.variant, e.detail), (Some("off"), Some(Detail::Target)));
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "x", "email": "kiosk@acme.example", "tenant": {"id": 1},
               "app": {"platform": "ios", "version": "4.8.1"}}),
    );
    assert_eq!(
        (e.variant, e.rule_id()),
        (Some("off"), Some("old-mobile-apps"))
    );
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "u9", "settings": {"betaOptIn": true}, "tenant": {"id": 1},
               "app": {"platform": "web"}}),
    );
    assert_eq!((e.variant, e.rule_id()), (Some("on"), Some("beta")));
    let e = eval(
        &rs,
        "development",
        spring,
        "checkout-redesign",
        &json!({"targetingKey": "u9"}),
    );
    assert_eq!((e.variant, e.reason), (Some("on"), Reason::Static));

    // Pricing experiment: tenant pinned to control, enterprise excluded, unit required.
    let e = prod(
        "pricing-experiment",
        json!({"targetingKey": "u", "tenant": {"id": "acme-corp"}}),
    );
    assert_eq!(
        (e.variant, e.detail),
        (Some("control"), Some(Detail::Tenant))
    );
    let e = prod(
        "pricing-experiment",
        json!({"targetingKey": "u", "tenant": {"id": 4711}}),
    );
    assert_eq!(e.rule_id(), Some("no-experiments-for-enterprise"));
    let e = prod("pricing-experiment", json!({}));
    assert_eq!(
        e.error.map(|err| err.code),
        Some(ErrorCode::TargetingKeyMissing)
    );
    assert_eq!(e.variant, Some("control"));

    // Search page size: a number, static in development.
    let e = prod("search-page-size", json!({"tenant": {"id": "globex"}}));
    assert_eq!((e.value, e.rule_id()), (&json!(96), Some("enterprise")));
    let e = prod(
        "search-page-size",
        json!({"ordersLastYear": "72", "accountAgeDays": 400}),
    );
    assert_eq!(e.value, &json!(48));
    let e = eval(&rs, "development", spring, "search-page-size", &json!({}));
    assert_eq!((e.value, e.reason), (&json!(4), Reason::Static));

    // Recommendations: the holiday window depends on the evaluation time only.
    let e = eval(
        &rs,
        "production",
        "2026-12-01T00:00:00Z",
        "recommendations-config",
        &json!({}),
    );
    assert_eq!(e.variant, Some("holiday"));
    let e = prod("recommendations-config", json!({}));
    assert_eq!(
        (e.variant, e.reason, e.detail),
        (
            Some("two-tower"),
            Reason::Default,
            Some(Detail::Fallthrough)
        )
    );

    // Support chat: tenants by org.id.
    let e = prod("support-chat-provider", json!({"org": {"id": "org-17"}}));
    assert_eq!(
        (e.value, e.detail),
        (&json!("intercom"), Some(Detail::Tenant))
    );

    // Onboarding: a 0.1 % canary; off in development except for acme-corp.
    let e = prod("onboarding-v2", json!({"targetingKey": "user-3368"}));
    assert_eq!((e.value, e.reason), (&json!(true), Reason::Split));
    let e = prod("onboarding-v2", json!({"targetingKey": "user-1"}));
    assert_eq!((e.value, e.reason), (&json!(false), Reason::Default));
    let e = eval(
        &rs,
        "development",
        spring,
        "onboarding-v2",
        &json!({"targetingKey": "u"}),
    );
    assert_eq!((e.value, e.reason), (&json!(false), Reason::Disabled));
    let e = eval(
        &rs,
        "development",
        spring,
        "onboarding-v2",
        &json!({"targetingKey": "u", "tenant": {"id": "acme-corp"}}),
    );
    assert_eq!(e.value, &json!(true));

    // The README's session: a beta tenant gets the redesign through its rule.
    let e = prod(
        "checkout-redesign",
        json!({"targetingKey": "user-42", "tenant": {"id": "tenant-beta-1"}}),
    );
    assert_eq!(
        (e.value, e.reason, e.rule_id()),
        (&json!(true), Reason::TargetingMatch, Some("beta-tenants"))
    );

    // Entitlement with a tenant switched off by an integer id.
    let e = prod(
        "advanced-analytics",
        json!({"tenant": {"id": 9001, "plan": "enterprise"}}),
    );
    assert_eq!((e.value, e.detail), (&json!(false), Some(Detail::Tenant)));
    let e = prod(
        "advanced-analytics",
        json!({"tenant": {"id": "9002", "plan": "enterprise"}}),
    );
    assert_eq!(
        (e.value, e.rule_id()),
        (&json!(true), Some("enterprise-plan"))
    );

    // A top-level kill switch wins over an environment's `killSwitch: false`.
    let e = eval(
        &rs,
        "staging",
        spring,
        "image-cdn",
        &json!({"targetingKey": "u"}),
    );
    assert_eq!(
        (e.variant, e.reason, e.detail),
        (Some("legacy"), Reason::Disabled, Some(Detail::KillSwitch))
    );

    // Older layout and archived flag.
    let e = prod(
        "bulk-order-upload",
        json!({"tenant": {"type": "enterprise"}}),
    );
    assert_eq!(
        (e.value, e.rule_id()),
        (&json!(true), Some("business-plans"))
    );
    let e = prod("legacy-cart-endpoint", json!({}));
    assert_eq!(e.error.map(|err| err.code), Some(ErrorCode::FlagNotFound));
}
