//! `registry_image::fuzz::source` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registry_image::fuzz::source(data));
