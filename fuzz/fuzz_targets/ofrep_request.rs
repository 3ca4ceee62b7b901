#![no_main]
//! See `crates/fuzz`: `switchyard_fuzz::ofrep_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::ofrep_request(data));
