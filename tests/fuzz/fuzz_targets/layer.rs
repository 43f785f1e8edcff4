//! `registry_image::fuzz::layer` under libFuzzer, on a fresh scratch directory per input:
//! nothing may appear in it beside `rootfs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    registry_image::fuzz::layer(data, scratch.path());
    let beside: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("the scratch directory")
        .map(|e| e.expect("an entry").file_name())
        .filter(|n| n != "rootfs")
        .collect();
    assert!(beside.is_empty(), "written beside the rootfs: {beside:?}");
});
