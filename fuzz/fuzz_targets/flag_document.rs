#![no_main]
//! See `crates/fuzz`: `switchyard_fuzz::flag_document`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::flag_document(data));
