#![no_main]
//! See `crates/fuzz`: `switchyard_fuzz::admin_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::admin_request(data));
