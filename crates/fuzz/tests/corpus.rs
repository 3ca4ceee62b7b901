//! The fuzz targets on stable: every committed corpus input (`fuzz/corpus/<target>/`, seeds and
//! what libFuzzer kept), then random inputs — arbitrary JSON in the shapes each target reads,
//! and mutations of the seeds — so an invariant broken by a code change fails `cargo test`
//! even where libFuzzer cannot run.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_fuzz::TARGETS;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// One corpus input: its file and its bytes.
type Input = (PathBuf, Vec<u8>);

/// A target's corpus; every corpus is read once per test binary.
fn inputs(target: &str) -> &'static [Input] {
    static CORPORA: std::sync::OnceLock<std::collections::HashMap<&'static str, Vec<Input>>> =
        std::sync::OnceLock::new();
    CORPORA
        .get_or_init(|| {
            TARGETS
                .iter()
                .map(|(name, _)| (*name, read_inputs(name)))
                .collect()
        })
        .get(target)
        .unwrap_or_else(|| panic!("no fuzz target `{target}`"))
}

fn read_inputs(target: &str) -> Vec<Input> {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn every_corpus_input_keeps_the_invariants() {
    for (target, run) in TARGETS {
        let inputs = inputs(target);
        assert!(
            inputs.len() >= 5,
            "fuzz/corpus/{target} has only {} inputs",
            inputs.len()
        );
        for (path, bytes) in inputs {
            let outcome = std::panic::catch_unwind(|| run(bytes));
            assert!(
                outcome.is_ok(),
                "{target} broke on {} (replay: cargo +nightly fuzz run {target} {})",
                path.display(),
                path.display()
            );
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 ._@-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "on",
            "off",
            "production",
            "in",
            "equals",
            "semver_gt",
            "1.2.3",
            "targetingKey",
            "in_segment",
            "beta-testers",
            "2026-01-01T00:00:00Z",
            "matches",
            "(",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            prop::sample::select(vec![
                "key",
                "variants",
                "defaultVariant",
                "fallthrough",
                "rules",
                "conditions",
                "attribute",
                "operator",
                "value",
                "variant",
                "split",
                "percentage",
                "targets",
                "values",
                "enabled",
                "killSwitch",
                "environments",
                "prerequisites",
                "flag",
                "segments",
                "tenants",
                "bucketBy",
                "salt",
                "context",
                "targetingKey",
                "environment",
                "reason",
                "definition",
                "version",
                "all",
                "any",
                "not",
                "included",
                "excluded",
                "role",
                "name",
                "flags",
            ])
            .prop_map(str::to_owned),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Flips, inserts and deletes bytes of a seed.
fn mutated(seed: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut bytes = seed;
    for (at, op, byte) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = at % bytes.len();
        match op % 3 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_documents_keep_the_invariants(flags in prop::collection::vec(arb_json(), 0..4), segments in arb_json()) {
        let doc = json!({"flags": flags, "segments": segments});
        switchyard_fuzz::flag_document(doc.to_string().as_bytes());
        switchyard_fuzz::admin_request(flags.first().unwrap_or(&Value::Null).to_string().as_bytes());
    }

    #[test]
    fn random_contexts_and_bodies_keep_the_invariants(ctx in arb_json()) {
        switchyard_fuzz::context(ctx.to_string().as_bytes());
        switchyard_fuzz::ofrep_request(json!({"context": ctx}).to_string().as_bytes());
        switchyard_fuzz::admin_request(json!({"environment": "production", "context": ctx}).to_string().as_bytes());
    }

    #[test]
    fn mutated_seeds_keep_the_invariants(
        which in 0usize..1000,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"{}[]:,-\"' \n\t#&*!|>%@`0a".to_vec())), 1..8),
    ) {
        for (target, run) in TARGETS {
            let seeds = inputs(target);
            let (_, seed) = &seeds[which % seeds.len()];
            run(&mutated(seed.clone(), edits.clone()));
        }
    }
}
