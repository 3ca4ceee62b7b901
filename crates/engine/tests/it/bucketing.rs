//! Bucketing algorithm v1, as specified in `docs/bucketing.md`.
//!
//! - The published test vectors (`tests/fixtures/bucketing-v1.json`, computed with an
//!   independent implementation) match [`Bucketer`], and the table in the docs is exactly those
//!   vectors, so neither can drift.
//! - The engine serves exactly what the specification says at the vectors' boundaries, picks
//!   the unit through the `bucketBy` chain and salts with the flag key unless told otherwise.
//! - Properties over all strings (never filtered): determinism, every string is a unit, buckets
//!   stay in range, the encoding is unambiguous, raising a percentage only adds units, raising a
//!   variant's weight keeps its units, and ramping a rule never changes a unit's variant.
//! - Statistics on fixed unit sets: 10 %, 0.1 % and 0.001 % rollouts, the overlap of two flags,
//!   the split of a partial rollout and a 50/30/20 split are within sampling error.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_engine::bucket::{self, project, Bucketer, Domain, BUCKETS};
use switchyard_engine::{load_str, Context, ErrorCode, Evaluator, Format, Reason, Ruleset};
use time::OffsetDateTime;

const FIXTURE: &str = include_str!("../fixtures/bucketing-v1.json");
const DOCS: &str = include_str!("../../../../docs/bucketing.md");
const BEGIN: &str = "<!-- vectors:begin -->";
const END: &str = "<!-- vectors:end -->";

/// One test vector, as in the fixture and in the docs table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    domain: String,
    salt: String,
    unit: String,
    hash: u32,
    bucket: u32,
}

fn domain(name: &str) -> Domain {
    let domain = match name {
        "rollout" => Domain::Rollout,
        "split" => Domain::Split,
        other => panic!("unknown domain `{other}`"),
    };
    assert_eq!(domain.as_str(), name);
    domain
}

fn fixture() -> Vec<Vector> {
    serde_json::from_str(FIXTURE).expect("tests/fixtures/bucketing-v1.json is a list of vectors")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

fn yaml(text: &str) -> Ruleset {
    load_str(text, Format::Yaml, None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn json_doc(doc: &Value) -> Ruleset {
    let text = serde_json::to_string(doc).expect("serializable");
    load_str(&text, Format::Json, None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A percentage in thousandths of a percent, written as the format's decimal percentage.
fn percent(units: u32) -> String {
    format!("{}.{:03}", units / 1000, units % 1000)
}

fn rollout_bucket(salt: &str, unit: &str) -> u32 {
    Bucketer::new(Domain::Rollout, salt).bucket(unit.as_bytes())
}

fn split_bucket(salt: &str, unit: &str) -> u32 {
    Bucketer::new(Domain::Split, salt).bucket(unit.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Test vectors

#[test]
fn fixture_vectors_match_the_implementation() {
    for v in fixture() {
        let d = domain(&v.domain);
        let bucketer = Bucketer::new(d, &v.salt);
        assert_eq!(bucketer.hash(v.unit.as_bytes()), v.hash, "hash of {v:?}");
        assert_eq!(
            bucketer.bucket(v.unit.as_bytes()),
            v.bucket,
            "bucket of {v:?}"
        );
        assert_eq!(
            bucket::bucket(d, &v.salt, &v.unit),
            v.bucket,
            "one-shot bucket of {v:?}"
        );
        assert_eq!(project(v.hash, BUCKETS), v.bucket, "projection of {v:?}");
    }
}

#[test]
fn fixture_covers_the_cases_the_specification_promises() {
    let vectors = fixture();
    assert!(vectors.len() >= 24, "only {} vectors", vectors.len());
    let has = |what: &str, pred: &dyn Fn(&Vector) -> bool| {
        assert!(vectors.iter().any(pred), "no vector with {what}");
    };
    has("the rollout domain", &|v| v.domain == "rollout");
    has("the split domain", &|v| v.domain == "split");
    has("an empty unit", &|v| v.unit.is_empty());
    has("an empty salt", &|v| v.salt.is_empty());
    has("é", &|v| v.unit.contains('é') || v.salt.contains('é'));
    has("日本", &|v| v.unit.contains("日本"));
    has("an emoji", &|v| {
        v.unit.chars().any(|c| u32::from(c) >= 0x1_0000)
    });
    has("a quote", &|v| v.unit.contains('"'));
    has("a backslash", &|v| v.unit.contains('\\'));
    has("a 100-character unit", &|v| v.unit.chars().count() == 100);
    has("an integer-looking unit", &|v| {
        v.unit.parse::<i128>().is_ok()
    });
    has("a seed flag key as salt", &|v| {
        v.salt == "enhanced_risk_scoring"
    });
    // The pair that separator-free concatenation cannot tell apart, in both domains.
    for d in ["rollout", "split"] {
        let find = |salt: &str, unit: &str| {
            vectors
                .iter()
                .find(|v| v.domain == d && v.salt == salt && v.unit == unit)
                .unwrap_or_else(|| panic!("no {d} vector for ({salt:?}, {unit:?})"))
                .hash
        };
        assert_ne!(find("ab", "c"), find("a", "bc"));
    }
    let mut keys: Vec<_> = vectors
        .iter()
        .map(|v| (&v.domain, &v.salt, &v.unit))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), vectors.len(), "duplicate vectors");
}

/// Reads one JSON string literal at the start of `s` (after blanks); returns it and the rest.
fn json_string(s: &str) -> Result<(String, &str), String> {
    let s = s.trim_start();
    if !s.starts_with('"') {
        return Err(format!("expected a JSON string at `{s}`"));
    }
    let mut stream = serde_json::Deserializer::from_str(s).into_iter::<String>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        Some(Err(e)) => return Err(format!("bad JSON string at `{s}`: {e}")),
        None => return Err(format!("expected a JSON string at `{s}`")),
    };
    Ok((value, &s[stream.byte_offset()..]))
}

fn bar(s: &str) -> Result<&str, String> {
    s.trim_start()
        .strip_prefix('|')
        .ok_or_else(|| format!("expected `|` at `{s}`"))
}

/// Parses `domain | "salt" | "unit" | 0x0123abcd | 12345`.
fn parse_row(line: &str) -> Result<Vector, String> {
    let (domain, rest) = line.split_once('|').ok_or("no `|`")?;
    let (salt, rest) = json_string(rest)?;
    let (unit, rest) = json_string(bar(rest)?)?;
    let (hash, bucket) = bar(rest)?.split_once('|').ok_or("no bucket column")?;
    let hex = hash
        .trim()
        .strip_prefix("0x")
        .filter(|h| {
            h.len() == 8
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| format!("hash `{}` is not 0x + 8 lowercase hex digits", hash.trim()))?;
    Ok(Vector {
        domain: domain.trim().to_owned(),
        salt,
        unit,
        hash: u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?,
        bucket: bucket
            .trim()
            .parse()
            .map_err(|e| format!("bucket `{bucket}`: {e}"))?,
    })
}

/// The vectors in the docs' table: one fenced block between the markers.
fn docs_vectors() -> Vec<Vector> {
    assert_eq!(
        DOCS.matches(BEGIN).count(),
        1,
        "exactly one `{BEGIN}` in docs/bucketing.md"
    );
    assert_eq!(
        DOCS.matches(END).count(),
        1,
        "exactly one `{END}` in docs/bucketing.md"
    );
    let start = DOCS
        .find(BEGIN)
        .map(|i| i + BEGIN.len())
        .unwrap_or_default();
    let stop = DOCS.find(END).unwrap_or_default();
    assert!(start <= stop, "`{END}` comes before `{BEGIN}`");
    let mut lines = DOCS[start..stop]
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty());
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "the vectors must be a fenced block, found `{fence}`"
    );
    let header = lines.next().unwrap_or_default();
    let columns: Vec<&str> = header.split('|').map(str::trim).collect();
    assert_eq!(
        columns,
        ["domain", "salt", "unit", "hash (hex)", "bucket"],
        "header `{header}`"
    );
    let rule = lines.next().unwrap_or_default();
    assert!(
        rule.contains('-') && rule.chars().all(|c| matches!(c, '-' | '|' | ' ')),
        "expected a `---|---` line under the header, found `{rule}`"
    );
    let mut vectors = Vec::new();
    let mut closed = false;
    for line in lines {
        assert!(!closed, "text after the closing fence: `{line}`");
        if line == "```" {
            closed = true;
            continue;
        }
        vectors.push(parse_row(line).unwrap_or_else(|e| panic!("docs row `{line}`: {e}")));
    }
    assert!(closed, "the fenced block is not closed before `{END}`");
    vectors
}

#[test]
fn docs_table_is_exactly_the_fixture() {
    let (docs, fixture) = (docs_vectors(), fixture());
    for (i, (d, f)) in docs.iter().zip(&fixture).enumerate() {
        assert_eq!(
            d,
            f,
            "row {} of the docs table differs from the fixture",
            i + 1
        );
    }
    assert_eq!(
        docs.len(),
        fixture.len(),
        "the docs table and the fixture have different lengths"
    );
}

#[test]
fn docs_row_parser_handles_awkward_strings() {
    let v = parse_row(r#"split | "a|b" | "q\"\\|" | 0x0000000a | 0"#).expect("parses");
    assert_eq!(
        (v.salt.as_str(), v.unit.as_str(), v.hash),
        ("a|b", "q\"\\|", 10)
    );
    assert!(
        parse_row(r#"split | "a" | "b" | 0xABCDEF01 | 0"#).is_err(),
        "uppercase hex"
    );
    assert!(
        parse_row(r#"split | a | "b" | 0x00000001 | 0"#).is_err(),
        "bare salt"
    );
}

// ---------------------------------------------------------------------------------------------
// The engine follows the specification

/// Each vector's unit sits exactly at a percentage or split boundary: the engine must put it on
/// the side the specification says.
#[test]
fn engine_serves_exactly_at_the_vector_boundaries() {
    for v in fixture() {
        let at = |units: u32| percent(units).parse::<f64>().expect("decimal");
        let ctx = Context::with_targeting_key(v.unit.clone());
        let doc = match v.domain.as_str() {
            "rollout" => json!({"flags": [
                {"key": "inside", "salt": v.salt, "fallthrough": {"percentage": at(v.bucket + 1), "variant": "on"}},
                {"key": "outside", "salt": v.salt, "fallthrough": {"percentage": at(v.bucket), "variant": "on"}},
            ]}),
            _ => {
                let split = |first: u32| json!({"first": at(first), "second": at(BUCKETS - first)});
                let variants = json!([{"key": "first", "value": "first"}, {"key": "second", "value": "second"}]);
                json!({"flags": [
                    {"key": "inside", "salt": v.salt, "variants": variants, "defaultVariant": "first",
                     "fallthrough": {"split": split(v.bucket + 1)}},
                    {"key": "outside", "salt": v.salt, "variants": variants, "defaultVariant": "first",
                     "fallthrough": {"split": split(v.bucket)}},
                ]})
            }
        };
        let rs = json_doc(&doc);
        let ev = rs.evaluator("production", now());
        let (yes, no) = match v.domain.as_str() {
            "rollout" => (Some("on"), Some("off")),
            _ => (Some("first"), Some("second")),
        };
        assert_eq!(ev.evaluate("inside", &ctx).variant, yes, "{v:?}");
        assert_eq!(ev.evaluate("outside", &ctx).variant, no, "{v:?}");
    }
}

#[test]
fn salts_default_to_the_flag_key_and_can_be_set_per_flag_and_per_rule() {
    let rs = yaml(
        r#"
flags:
  - key: by-key
    fallthrough: {percentage: 50, variant: "on"}
  - key: by-flag-salt
    salt: shared-salt
    fallthrough: {percentage: 50, variant: "on"}
  - key: by-rule-salt
    rules:
      - {id: all, salt: rule-salt, percentage: 50, variant: "on"}
    fallthrough: {variant: "off"}
"#,
    );
    let ev = rs.evaluator("production", now());
    for i in 0..500 {
        let unit = format!("user-{i}");
        let ctx = Context::with_targeting_key(unit.clone());
        for (flag, salt) in [
            ("by-key", "by-key"),
            ("by-flag-salt", "shared-salt"),
            ("by-rule-salt", "rule-salt"),
        ] {
            let on = rollout_bucket(salt, &unit) < 50_000;
            let eval = ev.evaluate(flag, &ctx);
            assert_eq!(
                eval.variant,
                Some(if on { "on" } else { "off" }),
                "{flag} {unit}"
            );
            assert_eq!(
                eval.reason,
                if on { Reason::Split } else { Reason::Default },
                "{flag} {unit}"
            );
        }
    }
}

#[test]
fn unit_selection_follows_the_bucket_by_chain() {
    let rs = yaml(
        r#"
flags:
  - key: chained
    bucketBy: [account.id, targetingKey]
    fallthrough: {percentage: 50, variant: "on"}
"#,
    );
    let ev = rs.evaluator("production", now());
    let served = |ctx: &Context| {
        let eval = ev.evaluate("chained", ctx);
        assert_eq!(eval.error, None, "{ctx:?}");
        eval.variant == Some("on")
    };
    let expect = |unit: &str| rollout_bucket("chained", unit) < 50_000;
    for i in 0..200 {
        let key = format!("user-{i}");
        let account = format!("acct-{i}");
        // The first attribute present whose value is a string or an integer wins.
        let nested = Context::from_value(json!({"targetingKey": key, "account": {"id": account}}))
            .expect("ctx");
        assert_eq!(served(&nested), expect(&account), "nested {account}");
        let literal = Context::with_targeting_key(key.clone()).with("account.id", account.clone());
        assert_eq!(served(&literal), expect(&account), "literal {account}");
        // Integers hash as their decimal text.
        let n = 8_527_130_908_i64 * i - 1_000;
        let int = Context::with_targeting_key(key.clone()).with("account.id", n);
        assert_eq!(served(&int), expect(&n.to_string()), "integer {n}");
        // Missing, or present with a value that is not a unit: the chain goes on.
        assert_eq!(
            served(&Context::with_targeting_key(key.clone())),
            expect(&key),
            "fallback {key}"
        );
        for not_a_unit in [
            json!(true),
            json!(1.5),
            json!(2.0),
            Value::Null,
            json!({"x": 1}),
            json!(["a"]),
        ] {
            let ctx =
                Context::with_targeting_key(key.clone()).with("account.id", not_a_unit.clone());
            assert_eq!(served(&ctx), expect(&key), "{not_a_unit} is not a unit");
        }
    }
    // In JSON text, `1.0`, `1e3` and `-0` are floats, not integers; `-5` and `7` are integers.
    for (text, unit) in [
        ("1.0", "k"),
        ("1e3", "k"),
        ("-0", "k"),
        ("-5", "-5"),
        ("7", "7"),
    ] {
        let json = format!(r#"{{"targetingKey": "k", "account.id": {text}}}"#);
        let ctx = Context::from_value(serde_json::from_str(&json).expect("json")).expect("ctx");
        assert_eq!(served(&ctx), expect(unit), "{text}");
    }
    // No unit anywhere: TARGETING_KEY_MISSING, the default variant, reason ERROR.
    let eval = ev.evaluate("chained", &Context::new().with("account.id", false));
    assert_eq!(eval.reason, Reason::Error);
    assert_eq!(eval.variant, Some("off"));
    assert_eq!(
        eval.error.map(|e| e.code),
        Some(ErrorCode::TargetingKeyMissing)
    );
}

#[test]
fn only_randomizing_serves_need_a_unit() {
    let rs = yaml(
        r#"
flags:
  - key: none
    fallthrough: {percentage: 0, variant: "on"}
  - key: all
    fallthrough: {percentage: 100, variant: "on"}
  - key: one-weight
    fallthrough: {split: {"on": 100, "off": 0}}
  - key: half
    fallthrough: {percentage: 50, variant: "on"}
  - key: split-all
    fallthrough: {percentage: 100, split: {"on": 50, "off": 50}}
"#,
    );
    let ev = rs.evaluator("production", now());
    let empty = Context::new();
    assert_eq!(ev.evaluate("none", &empty).variant, Some("off"));
    assert_eq!(ev.evaluate("all", &empty).variant, Some("on"));
    assert_eq!(ev.evaluate("one-weight", &empty).variant, Some("on"));
    for flag in ["none", "all", "one-weight"] {
        assert_eq!(ev.evaluate(flag, &empty).error, None, "{flag}");
    }
    for flag in ["half", "split-all"] {
        let code = ev.evaluate(flag, &empty).error.map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::TargetingKeyMissing), "{flag}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A boolean flag `prop` at 50 %, shared by the property tests below.
static HALF: LazyLock<Ruleset> = LazyLock::new(|| {
    yaml(
        r#"
flags:
  - key: prop
    fallthrough: {percentage: 50, variant: "on"}
  - key: by-account
    bucketBy: accountId
    fallthrough: {percentage: 50, split: {a: 50, b: 50}}
    variants: [{key: a, value: a}, {key: b, value: b}, {key: none, value: none}]
    defaultVariant: none
"#,
    )
});

/// Checks what the specification promises for one (salt, unit) pair.
fn check_hash_properties(salt: &str, unit: &str) -> Result<(), TestCaseError> {
    for d in [Domain::Rollout, Domain::Split] {
        let b = Bucketer::new(d, salt);
        let hash = b.hash(unit.as_bytes());
        // Deterministic: a fresh hasher, a reused one and the one-shot form agree.
        prop_assert_eq!(Bucketer::new(d, salt).hash(unit.as_bytes()), hash);
        let _ = b.hash(b"something else first");
        prop_assert_eq!(b.hash(unit.as_bytes()), hash);
        let bucket = b.bucket(unit.as_bytes());
        prop_assert_eq!(bucket, project(hash, BUCKETS));
        prop_assert_eq!(bucket::bucket(d, salt, unit), bucket);
        prop_assert!(bucket < BUCKETS);
    }
    Ok(())
}

/// Every string is a unit, served exactly when its rollout bucket is below the percentage.
fn check_engine_unit(unit: &str) -> Result<(), TestCaseError> {
    let ev = HALF.evaluator("production", now());
    let eval = ev.evaluate("prop", &Context::with_targeting_key(unit));
    prop_assert_eq!(eval.error, None);
    let inside = rollout_bucket("prop", unit) < 50_000;
    prop_assert_eq!(eval.variant, Some(if inside { "on" } else { "off" }));
    prop_assert_eq!(
        eval.reason,
        if inside {
            Reason::Split
        } else {
            Reason::Default
        }
    );
    Ok(())
}

/// Integers bucket as their decimal text, in both domains.
fn check_integer_unit(n: Value) -> Result<(), TestCaseError> {
    let text = n.to_string();
    let ev = HALF.evaluator("production", now());
    let eval = ev.evaluate("by-account", &Context::new().with("accountId", n));
    prop_assert_eq!(eval.error, None);
    let expected = if rollout_bucket("by-account", &text) >= 50_000 {
        "none"
    } else if split_bucket("by-account", &text) < 50_000 {
        "a"
    } else {
        "b"
    };
    prop_assert_eq!(eval.variant, Some(expected), "unit {}", text);
    Ok(())
}

/// Units to check ramps with: a fixed spread plus arbitrary strings.
fn ramp_units(extra: &[String]) -> Vec<String> {
    (0..300)
        .map(|i| format!("u-{i}"))
        .chain(extra.iter().cloned())
        .collect()
}

fn variant_of<'r>(ev: &Evaluator<'r>, flag: &str, unit: &str) -> Option<&'r str> {
    let eval = ev.evaluate(flag, &Context::with_targeting_key(unit));
    assert_eq!(eval.error, None, "{flag} {unit:?}");
    eval.variant
}

fn rollout_yaml(key: &str, units: u32) -> String {
    format!(
        "flags:\n  - key: \"{key}\"\n    fallthrough: {{percentage: {}, variant: \"on\"}}\n",
        percent(units)
    )
}

/// Three variants declared red, green, blue; the split map is written in another order on
/// purpose, since ranges follow declaration order.
fn split_yaml(key: &str, w: [u32; 3]) -> String {
    format!(
        r#"flags:
  - key: "{key}"
    variants: [{{key: red, value: red}}, {{key: green, value: green}}, {{key: blue, value: blue}}]
    defaultVariant: red
    fallthrough:
      split: {{blue: {}, green: {}, red: {}}}
"#,
        percent(w[2]),
        percent(w[1]),
        percent(w[0])
    )
}

/// What the specification says a split serves: the first range whose end exceeds the split
/// bucket, ranges laid out cumulatively in declaration order, zero weights skipped.
fn spec_split(salt: &str, unit: &str, names: &[&'static str], weights: &[u32]) -> &'static str {
    let b = split_bucket(salt, unit);
    let mut end = 0;
    for (&name, &w) in names.iter().zip(weights) {
        if w == 0 {
            continue;
        }
        end += w;
        if b < end {
            return name;
        }
    }
    unreachable!("weights add up to {end}, not {BUCKETS}")
}

fn rule_split_yaml(key: &str, units: u32, w: [u32; 3]) -> String {
    format!(
        r#"flags:
  - key: "{key}"
    variants: [{{key: a, value: a}}, {{key: b, value: b}}, {{key: c, value: c}}, {{key: none, value: none}}]
    defaultVariant: none
    rules:
      - id: experiment
        percentage: {}
        split: {{a: {}, b: {}, c: {}}}
"#,
        percent(units),
        percent(w[0]),
        percent(w[1]),
        percent(w[2])
    )
}

/// Three weights in thousandths of a percent that add up to 100 %.
fn weights() -> impl Strategy<Value = [u32; 3]> {
    (0..=BUCKETS, 0..=BUCKETS).prop_map(|(x, y)| {
        let (lo, hi) = (x.min(y), x.max(y));
        [lo, hi - lo, BUCKETS - hi]
    })
}

fn flag_key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,30}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_string_hashes_deterministically_into_range(salt in any::<String>(), unit in any::<String>()) {
        check_hash_properties(&salt, &unit)?;
    }

    #[test]
    fn any_printable_string_hashes_deterministically_into_range(salt in "\\PC*", unit in "\\PC*") {
        check_hash_properties(&salt, &unit)?;
    }

    #[test]
    fn any_string_is_a_unit(unit in any::<String>()) {
        check_engine_unit(&unit)?;
    }

    #[test]
    fn any_printable_string_is_a_unit(unit in "\\PC*") {
        check_engine_unit(&unit)?;
    }

    #[test]
    fn integer_units_bucket_as_decimal_text(signed in any::<i64>(), unsigned in any::<u64>()) {
        check_integer_unit(json!(signed))?;
        check_integer_unit(json!(unsigned))?;
    }

    /// The length prefix makes (salt, unit) unambiguous: cutting one string in two different
    /// places gives two different inputs (equal hashes would be a 2^-32 accident).
    #[test]
    fn salt_and_unit_never_run_together(text in any::<String>(), i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
        let cuts: Vec<usize> = text.char_indices().map(|(k, _)| k).chain([text.len()]).collect();
        let (i, j) = (cuts[i.index(cuts.len())], cuts[j.index(cuts.len())]);
        prop_assume!(i != j);
        for d in [Domain::Rollout, Domain::Split] {
            let a = Bucketer::new(d, &text[..i]).hash(&text.as_bytes()[i..]);
            let b = Bucketer::new(d, &text[..j]).hash(&text.as_bytes()[j..]);
            prop_assert_ne!(a, b, "{:?} cut at {} and {}", text, i, j);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Raising `fallthrough.percentage` only adds units; everyone inside stays inside.
    #[test]
    fn raising_a_percentage_only_adds_units(
        key in flag_key(),
        a in 0..=BUCKETS,
        b in 0..=BUCKETS,
        extra in prop::collection::vec(any::<String>(), 0..20),
    ) {
        let (p1, p2) = (a.min(b), a.max(b));
        let low = yaml(&rollout_yaml(&key, p1));
        let high = yaml(&rollout_yaml(&key, p2));
        let (low, high) = (low.evaluator("production", now()), high.evaluator("production", now()));
        for unit in ramp_units(&extra) {
            let before = variant_of(&low, &key, &unit) == Some("on");
            let after = variant_of(&high, &key, &unit) == Some("on");
            prop_assert_eq!(before, rollout_bucket(&key, &unit) < p1, "{:?} at {}", unit, p1);
            prop_assert!(!before || after, "{:?} left when {} went up to {}", unit, p1, p2);
        }
    }

    /// Raising one variant's weight while lowering the others keeps every unit it had.
    #[test]
    fn raising_a_weight_keeps_the_variants_units(
        key in flag_key(),
        old in weights(),
        grow in 0usize..3,
        cuts in [any::<u32>(), any::<u32>(), any::<u32>()],
        extra in prop::collection::vec(any::<String>(), 0..20),
    ) {
        let mut new = old;
        for i in (0..3).filter(|&i| i != grow) {
            let cut = cuts[i] % (old[i] + 1);
            new[i] -= cut;
            new[grow] += cut;
        }
        let names = ["red", "green", "blue"];
        let before = yaml(&split_yaml(&key, old));
        let after = yaml(&split_yaml(&key, new));
        let (before, after) = (before.evaluator("production", now()), after.evaluator("production", now()));
        for unit in ramp_units(&extra) {
            let had = variant_of(&before, &key, &unit);
            prop_assert_eq!(had, Some(spec_split(&key, &unit, &names, &old)), "{:?} with {:?}", unit, old);
            let has = variant_of(&after, &key, &unit);
            prop_assert_eq!(has, Some(spec_split(&key, &unit, &names, &new)), "{:?} with {:?}", unit, new);
            if had == Some(names[grow]) {
                prop_assert_eq!(has, had, "{:?} moved when {:?} became {:?}", unit, old, new);
            }
        }
    }

    /// Ramping a rule's percentage never changes the variant its split gave a unit.
    #[test]
    fn ramping_a_split_rule_keeps_variants(
        key in flag_key(),
        a in 0..=BUCKETS,
        b in 0..=BUCKETS,
        w in weights(),
        extra in prop::collection::vec(any::<String>(), 0..20),
    ) {
        let (p1, p2) = (a.min(b), a.max(b));
        let low = yaml(&rule_split_yaml(&key, p1, w));
        let high = yaml(&rule_split_yaml(&key, p2, w));
        let (low, high) = (low.evaluator("production", now()), high.evaluator("production", now()));
        for unit in ramp_units(&extra) {
            let ctx = Context::with_targeting_key(unit.as_str());
            let before = low.evaluate(&key, &ctx);
            let after = high.evaluate(&key, &ctx);
            if before.rule_id() == Some("experiment") {
                prop_assert_eq!(after.rule_id(), Some("experiment"), "{:?} left the rule", unit);
                prop_assert_eq!(after.variant, before.variant, "{:?} changed variant from {} to {}", unit, p1, p2);
            } else {
                prop_assert_eq!(before.variant, Some("none"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics (fixed unit sets, so these are deterministic)

/// Standard deviation of a binomial count.
fn sd(n: f64, p: f64) -> f64 {
    (n * p * (1.0 - p)).sqrt()
}

fn assert_within(what: &str, count: u64, n: u64, p: f64) {
    let expected = n as f64 * p;
    let limit = 4.5 * sd(n as f64, p);
    let off = (count as f64 - expected).abs();
    assert!(
        off <= limit,
        "{what}: {count} of {n}, expected {expected} ± {limit:.1} (4.5 sd), off by {off}"
    );
}

#[test]
fn ten_percent_rollouts_hit_ten_percent_and_are_independent_of_each_other_and_of_splits() {
    let rs = yaml(
        r#"
flags:
  - key: checkout-redesign
    fallthrough: {percentage: 10, variant: "on"}
  - key: search-v2
    fallthrough: {percentage: 10, variant: "on"}
  - key: small-experiment
    variants: [{key: a, value: a}, {key: b, value: b}, {key: none, value: none}]
    defaultVariant: none
    fallthrough: {percentage: 10, split: {a: 50, b: 50}}
"#,
    );
    let ev = rs.evaluator("production", now());
    let n = 100_000u64;
    let (mut first, mut second, mut both) = (0, 0, 0);
    let (mut exposed, mut in_a) = (0, 0);
    for i in 0..n {
        let ctx = Context::with_targeting_key(format!("user-{i}"));
        let a = ev.evaluate("checkout-redesign", &ctx).variant == Some("on");
        let b = ev.evaluate("search-v2", &ctx).variant == Some("on");
        first += u64::from(a);
        second += u64::from(b);
        both += u64::from(a && b);
        match ev.evaluate("small-experiment", &ctx).variant {
            Some("a") => (exposed, in_a) = (exposed + 1, in_a + 1),
            Some("b") => exposed += 1,
            _ => {}
        }
    }
    assert_within("checkout-redesign at 10 %", first, n, 0.10);
    assert_within("search-v2 at 10 %", second, n, 0.10);
    assert_within("both at 10 % × 10 %", both, n, 0.01);
    // The rollout and split domains are independent: the 10 % exposed still split 50/50.
    assert_within("exposed at 10 %", exposed, n, 0.10);
    assert_within("variant a among the exposed", in_a, exposed, 0.5);
}

#[test]
fn a_50_30_20_split_fits_its_weights() {
    let rs = yaml(
        r#"
flags:
  - key: checkout-button
    variants: [{key: control, value: blue}, {key: green, value: green}, {key: red, value: red}]
    defaultVariant: control
    fallthrough:
      split: {control: 50, green: 30, red: 20}
"#,
    );
    let ev = rs.evaluator("production", now());
    let n = 100_000u64;
    let mut observed = [0u64; 3];
    for i in 0..n {
        let ctx = Context::with_targeting_key(format!("user-{i}"));
        let eval = ev.evaluate("checkout-button", &ctx);
        assert_eq!(eval.reason, Reason::Split);
        match eval.variant {
            Some("control") => observed[0] += 1,
            Some("green") => observed[1] += 1,
            Some("red") => observed[2] += 1,
            other => panic!("unexpected variant {other:?}"),
        }
    }
    let chi_square: f64 = observed
        .iter()
        .zip([0.5, 0.3, 0.2])
        .map(|(&o, p)| {
            let e = n as f64 * p;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    // Critical value of chi-square with 2 degrees of freedom at p = 0.001.
    assert!(
        chi_square < 13.82,
        "chi-square {chi_square:.2} for {observed:?}"
    );
}

#[test]
fn tiny_rollouts_are_as_precise_as_promised() {
    let rs = yaml(
        r#"
flags:
  - key: canary
    fallthrough: {percentage: 0.1, variant: "on"}
  - key: needle
    fallthrough: {percentage: 0.001, variant: "on"}
"#,
    );
    let ev = rs.evaluator("production", now());
    let n = 1_000_000u64;
    let (mut canary, mut needle) = (0, 0);
    for i in 0..n {
        let ctx = Context::with_targeting_key(format!("user-{i}"));
        canary += u64::from(ev.evaluate("canary", &ctx).variant == Some("on"));
        needle += u64::from(ev.evaluate("needle", &ctx).variant == Some("on"));
    }
    assert_within("0.1 %", canary, n, 0.001);
    assert_within("0.001 %", needle, n, 0.000_01);
    assert!(
        needle > 0,
        "a 0.001 % rollout of a million units reached nobody"
    );
}
