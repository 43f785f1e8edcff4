//! `registry_image::fuzz::challenge` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registry_image::fuzz::challenge(data));
