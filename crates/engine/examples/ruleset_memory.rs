//! Heap bytes held by a compiled ruleset of N generated flags (the shapes of the 10 000-flag
//! compile bench, `benches/support/generated_flags.rs`), counted by a wrapping allocator: what
//! memory per flag the engine accounts for, apart from the server's other copies.
//! `cargo run --release -p switchyard-engine --example ruleset_memory -- 10000 [plain] [--yaml]`
//!
//! `unsafe` only because a global allocator must implement an unsafe trait (as in
//! `tests/it/alloc.rs`); it forwards to the system allocator.
#![allow(unsafe_code)]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "../benches/support/generated_flags.rs"]
mod generated_flags;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    // `plain`: only the plain on/off shape (what a flag costs at least). `--yaml`: print the
    // generated file instead (what `bench/http/memory.sh` imports).
    let plain = args.iter().any(|a| a == "plain");
    let doc = generated_flags::generated_flags(n, plain);
    if args.iter().any(|a| a == "--yaml") {
        print!("{doc}");
        return;
    }
    let before = LIVE.load(Ordering::Relaxed);
    let ruleset = switchyard_engine::load_str(&doc, switchyard_engine::Format::Yaml, None)
        .expect("the generated flags compile");
    let held = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{n} flags ({} bytes of YAML): the ruleset holds {:.1} MiB on the heap, {:.0} bytes per flag",
        doc.len(),
        held as f64 / 1048576.0,
        held as f64 / n as f64
    );
    println!(
        "a flag definition (`FlagDef`) is {} bytes before what it points to",
        std::mem::size_of::<switchyard_engine::FlagDef>()
    );
    drop(ruleset);
}
