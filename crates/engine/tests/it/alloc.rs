//! Evaluation allocates nothing on the common paths: a counting global allocator proves it
//! (an exact count, not a timing).
//!
//! `unsafe` here (and in `examples/ruleset_memory.rs`, the only other place in the workspace):
//! a global allocator must implement an unsafe trait. It forwards every call unchanged to the
//! system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;
use switchyard_engine::{load_str, Context, Format};
use time::OffsetDateTime;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; counting touches a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn common_evaluations_do_not_allocate() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/flags.yaml"
    ))
    .unwrap();
    let ruleset = load_str(&text, Format::Yaml, None).unwrap();
    let eval = ruleset.evaluator("production", OffsetDateTime::UNIX_EPOCH);
    let ctx = Context::from_value(json!({
        "targetingKey": "user-123456", "account": "acct-0099", "email": "jane.doe@example.com",
        "app": {"version": "2.10.1"}, "userAgent": "Mobile", "age": 34, "plan": "pro",
        "tenant": {"id": 12345}
    }))
    .unwrap();
    // The regex engine builds its per-thread search cache on first use; steady state is what
    // the hot path sees, so warm up once.
    for (_, e) in eval.evaluate_all(&ctx) {
        assert!(e.error.is_none());
    }
    for key in [
        "plain",
        "rollout-25",
        "five-conditions",
        "split-3",
        "extra-3",
        "extra-5",
    ] {
        let n = allocations_during(|| {
            for _ in 0..100 {
                let e = eval.evaluate(key, &ctx);
                assert!(e.error.is_none());
            }
        });
        assert_eq!(n, 0, "evaluating `{key}` allocated {n} times");
    }
    let n = allocations_during(|| {
        let count = eval
            .evaluate_all(&ctx)
            .filter(|(_, e)| e.error.is_none())
            .count();
        assert_eq!(count, 20);
    });
    assert_eq!(n, 0, "evaluating all flags allocated {n} times");
    let n = allocations_during(|| {
        assert!(eval.evaluate_as("plain", &ctx, false).value);
    });
    assert_eq!(n, 0);
}
