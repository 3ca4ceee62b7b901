#![no_main]
//! See `crates/fuzz`: `switchyard_fuzz::context`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::context(data));
