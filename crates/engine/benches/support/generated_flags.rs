//! The generated flag file of the scale figures: `n` flags cycling through four shapes (plain
//! on/off; a 12.5 % rollout; a rule of an `in` list and a semver condition; a string flag with
//! a 3-way split, off in production), or only the plain shape. Shared by the compile bench and
//! `examples/ruleset_memory.rs` (which prints it for `bench/http/memory.sh`).

/// The YAML text of `n` generated flags.
pub fn generated_flags(n: usize, plain_only: bool) -> String {
    let mut doc = String::from("flags:\n");
    for i in 0..n {
        doc.push_str(&format!("  - key: flag-{i}\n"));
        match if plain_only { 0 } else { i % 4 } {
            1 => doc.push_str("    fallthrough: {percentage: 12.5, variant: \"on\"}\n"),
            2 => doc.push_str(
                "    rules:\n      - conditions:\n          - {attribute: plan, operator: in, value: [a, b, c, d]}\n          - {attribute: v, operator: semver_gte, value: \"1.2.0\"}\n        variant: \"on\"\n",
            ),
            3 => doc.push_str(
                "    type: string\n    variants: {a: a, b: b, c: c}\n    defaultVariant: a\n    fallthrough: {split: {a: 50, b: 25, c: 25}}\n    environments:\n      production: {enabled: false}\n",
            ),
            _ => {}
        }
    }
    doc
}
