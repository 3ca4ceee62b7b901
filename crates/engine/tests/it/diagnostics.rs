//! The compiler rejects bad definitions with every problem listed, each naming the file,
//! the flag, the field path and the line.

use std::path::Path;

use switchyard_engine::{check_file, load_file};

#[test]
fn every_problem_is_reported_with_its_location() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/many-problems.yaml");
    let (ruleset, diagnostics) = check_file(&path);
    assert!(ruleset.is_none(), "nothing half-loads");
    let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let expected: &[(Option<&str>, &str, usize, &str)] = &[
        (
            None,
            "segments.loop-a",
            3,
            "segments reference each other in a cycle: loop-a → loop-b → loop-a",
        ),
        (
            Some("bad regex"),
            "flags[0].key",
            8,
            "invalid flag key `bad regex`",
        ),
        (
            Some("bad regex"),
            "flags[0].rules[0].conditions[0].value",
            11,
            "invalid regular expression",
        ),
        (
            Some("bad-semver"),
            "flags[1].rules[0].conditions[0].value",
            16,
            "`one.two` is not a semantic version",
        ),
        (
            Some("weights"),
            "flags[2].fallthrough.split",
            23,
            "split weights add up to 90, not 100",
        ),
        (
            Some("unknown-variant"),
            "flags[3].rules[0].variant",
            27,
            "unknown variant `maybe`; the flag's variants are: on, off",
        ),
        (
            Some("wrong-type"),
            "flags[4].defaultValue",
            30,
            "a string is not a number value",
        ),
        (
            Some("unknown-segment"),
            "flags[5].rules[0].conditions[0].value",
            33,
            "unknown segment `nobody`; defined segments: loop-a, loop-b",
        ),
        (
            Some("cycle-a"),
            "flags[6].prerequisites",
            36,
            "prerequisites form a cycle: cycle-a → cycle-b → cycle-a",
        ),
        (
            Some("unknown-operator"),
            "flags[8].rules[0].conditions[0].operator",
            41,
            "unknown operator `looks_like`",
        ),
        (
            Some("typo"),
            "flags[9].enabeld",
            44,
            "unknown field `enabeld`",
        ),
        (
            Some("weights"),
            "flags[10].key",
            45,
            "duplicate flag key `weights`",
        ),
        (
            Some("fine-rollout"),
            "flags[11].fallthrough.percentage",
            47,
            "percentage 0.0001 must be between 0 and 100 in steps of at most 0.001",
        ),
    ];
    for (flag, field, line, message) in expected {
        let found = diagnostics.iter().any(|d| {
            d.flag.as_deref() == *flag
                && d.path.to_string() == *field
                && d.line == Some(*line)
                && d.message.contains(message)
                && d.file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("many-problems.yaml"))
        });
        assert!(
            found,
            "missing: {flag:?} {field} line {line}: {message}\ngot:\n{}",
            rendered.join("\n")
        );
    }
    assert_eq!(
        diagnostics.len(),
        expected.len(),
        "unexpected extra diagnostics:\n{}",
        rendered.join("\n")
    );
    let text = rendered
        .iter()
        .find(|r| r.contains("bad regex") && r.contains("flags[0].key"))
        .expect("key diagnostic");
    assert!(
        text.starts_with("error: ")
            && text.contains("many-problems.yaml:8: flag `bad regex`: flags[0].key: "),
        "{text}"
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    let dir = tempdir();
    let path = dir.join("broken.yaml");
    std::fs::write(&path, "flags:\n  - key: a\n    rules: [\n").unwrap();
    let err = load_file(&path).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert!(d
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("broken.yaml")));
    assert!(d.line.is_some(), "{d}");

    let json = dir.join("broken.json");
    std::fs::write(&json, "{\n  \"flags\": [\n    {\"key\": \"a\",}\n  ]\n}\n").unwrap();
    let err = load_file(&json).unwrap_err();
    assert_eq!(err.diagnostics[0].line, Some(3), "{}", err);
}

#[test]
fn unknown_extension_and_missing_file_are_reported() {
    let err = load_file(Path::new("flags.toml")).unwrap_err();
    assert!(
        err.to_string().contains("use .yaml, .yml or .json"),
        "{err}"
    );
    let err = load_file(Path::new("/nonexistent/flags.yaml")).unwrap_err();
    assert!(err.to_string().contains("cannot read the file"), "{err}");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-diag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each small document is rejected with exactly one diagnostic at the named path.
#[test]
fn single_problems_are_reported_once_at_the_right_path() {
    use switchyard_engine::{check_str, Format};
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"flags: [{key: a, fallthrough: {variant: "on", percantage: 5}}]"#,
            "flags[0].fallthrough.percantage",
            "unknown field `percantage`",
        ),
        (
            r#"flags: [{key: a, variants: [{key: "on", value: true, weight: 50}, {key: "off", value: false, weight: 50}], percentage: 10}]"#,
            "flags[0].percentage",
            "`percentage` would be ignored",
        ),
        (
            r#"flags: [{key: a, type: string, variants: {a: "A"}, defaultVariant: a, defaultValue: "B"}]"#,
            "flags[0].defaultValue",
            "not both",
        ),
        (
            r#"flags: [{key: a, rules: [{variant: maybe}], environments: {staging: {enabled: true}, production: {enabled: false}}}]"#,
            "flags[0].rules[0].variant",
            "unknown variant `maybe`",
        ),
        (
            r#"flags: [{key: a, type: number, variants: {x: "1"}, defaultVariant: x}]"#,
            "flags[0].variants.x.value",
            "has a string value but the flag is number",
        ),
        (
            r#"flags: [{key: a, defaultVariant: nope}]"#,
            "flags[0].defaultVariant",
            "unknown variant `nope`",
        ),
        (
            r#"flags: [{key: a, environments: {prod: {variant: nope}}}]"#,
            "flags[0].environments.prod.variant",
            "unknown variant `nope`",
        ),
        (
            r#"flags: [{key: a, tenantAttribute: "a..b"}]"#,
            "flags[0].tenantAttribute",
            "not a valid attribute path",
        ),
        (
            r#"flags: [{key: a, targets: [{attribute: "", values: [x], variant: "on"}]}]"#,
            "flags[0].targets[0].attribute",
            "not a valid attribute path",
        ),
        (
            "segments: {s: {attribute: \"\"}}\nflags: []",
            "segments.s.attribute",
            "not a valid attribute path",
        ),
        (
            r#"flags: [{key: a, rules: [{conditions: [{attribute: x, operator: like, value: 1}], variant: "on"}]}]"#,
            "flags[0].rules[0].conditions[0].operator",
            "not_in_segment",
        ),
    ];
    for (text, path, needle) in cases {
        let (ruleset, diagnostics) = check_str(text, Format::Yaml, Some("t.yaml"));
        assert!(ruleset.is_none(), "{text}");
        assert_eq!(diagnostics.len(), 1, "{text}: {diagnostics:#?}");
        assert_eq!(diagnostics[0].path.to_string(), *path, "{text}");
        assert!(
            diagnostics[0].message.contains(needle),
            "{text}: {}",
            diagnostics[0]
        );
    }
}

/// A boolean flag whose rules serve `on` and that names no default serves `off` to everyone
/// else: the plain-toggle fallthrough only applies to flags without rules or targets.
#[test]
fn rules_are_the_only_way_into_a_boolean_flag_without_fallthrough() {
    use switchyard_engine::{load_str, Context, Format, Reason};
    let rs = load_str(
        r#"flags: [{key: a, rules: [{id: r, conditions: [{attribute: plan, operator: equals, value: pro}], variant: "on"}]}]"#,
        Format::Yaml,
        None,
    )
    .unwrap();
    let ev = rs.evaluator("", time::OffsetDateTime::UNIX_EPOCH);
    let free = ev.evaluate("a", &Context::with_targeting_key("u").with("plan", "free"));
    assert_eq!(
        (free.value, free.reason),
        (&serde_json::json!(false), Reason::Default)
    );
    let pro = ev.evaluate("a", &Context::with_targeting_key("u").with("plan", "pro"));
    assert_eq!(pro.value, &serde_json::json!(true));
}

#[test]
fn a_file_holding_one_flag_validates_and_reports_at_the_flags_own_paths() {
    use switchyard_engine::{check_str, Format};
    let ok = "key: new-search\nfallthrough: {percentage: 5, variant: \"on\"}\n";
    let (ruleset, diagnostics) = check_str(ok, Format::Yaml, Some("f.yaml"));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert!(ruleset.unwrap().definition("new-search").is_some());
    let bad = "key: new-search\ndescription: x\nrules:\n  - conditions: [{attribute: a, operator: nope, value: 1}]\n";
    let (ruleset, diagnostics) = check_str(bad, Format::Yaml, Some("f.yaml"));
    assert!(ruleset.is_none());
    let d = diagnostics.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(d.line, Some(4), "{d}");
    assert!(d.path.to_string().starts_with("rules[0]"), "{}", d.path);
    // A document is still a document.
    let (_, diagnostics) = check_str("flags:\n  - key: a\n", Format::Yaml, None);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
}
