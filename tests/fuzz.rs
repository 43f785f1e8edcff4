//! The fuzz targets of `registry_image::fuzz` on stable Rust: each replays its seeds and
//! the committed corpus (`tests/fuzz/corpus/<target>/`, inputs worth keeping, such as
//! those that once failed), then runs mutations of them (bit flips, interesting bytes, cut, repeated and
//! spliced ranges) for `FUZZ_SECONDS` (default 10) per target. No input may panic or take
//! longer than [`SLOW`]; the layer target must also write nothing outside its rootfs. A
//! failing input is saved under `target/fuzz-failures/`. This is not coverage-guided: the
//! coverage-guided runs are the `cargo fuzz` targets in `tests/fuzz/`, whose findings
//! worth keeping go into the same corpus.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::layer::{gzip, zstd, Layer};

/// The longest one input may take.
const SLOW: Duration = Duration::from_secs(10);

/// xorshift64*: deterministic, so a failure is repeatable from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap()
    }
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80 07/.\n\"\\:@%x";

fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below(len - at).min(64) + 1;
                data.drain(at..(at + n).min(len));
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = (rng.below(len - at) + 1).min(512);
                let piece = data[at..at + n].to_vec();
                let to = rng.below(len);
                data.splice(to..to, piece);
            }
            4 => data.truncate(rng.below(len + 1)),
            5 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len());
                let cut = rng.below(len + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..rng.below(16) + 1).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
        }
    }
    data.truncate(1 << 20);
    data
}

fn corpus(target: &str, mut seeds: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        seeds.extend(files.iter().map(|f| std::fs::read(f).unwrap()));
    }
    seeds
}

fn budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(seconds)
}

fn save(target: &str, data: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-{}", &support::image::sha256(data)[7..23]));
    std::fs::write(&path, data).unwrap();
    path
}

/// Runs `run` on every seed, then on mutations until the budget is spent; returns how
/// many inputs ran.
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, run: impl Fn(&[u8]) + std::panic::RefUnwindSafe) -> usize {
    let inputs = corpus(target, seeds);
    assert!(!inputs.is_empty());
    let seed = 0x9e37_79b9_7f4a_7c15 ^ target.len() as u64;
    let mut rng = Rng(seed);
    let check = |data: &[u8]| {
        let start = Instant::now();
        if std::panic::catch_unwind(|| run(data)).is_err() {
            panic!("{target}: panicked on {}", save(target, data).display());
        }
        assert!(
            start.elapsed() < SLOW,
            "{target}: {:?} on {}",
            start.elapsed(),
            save(target, data).display()
        );
    };
    for input in &inputs {
        check(input);
    }
    let (start, mut ran) = (Instant::now(), inputs.len());
    while start.elapsed() < budget() {
        let base = &inputs[rng.below(inputs.len())];
        check(&mutate(&mut rng, base, &inputs));
        ran += 1;
    }
    eprintln!("{target}: {ran} inputs in {:?} (seed {seed:#x})", start.elapsed());
    ran
}

fn layers() -> Vec<Vec<u8>> {
    let mut a = Layer::new();
    a.dir("etc", 0o755)
        .file("etc/os-release", b"ID=test\n", 0o644)
        .symlink("etc/link", "os-release")
        .hardlink("etc/hard", "etc/os-release")
        .dir("usr/bin", 0o555)
        .file("usr/bin/x", b"#!/bin/sh\n", 0o755)
        .pax_file("p/long-named-file", b"pax");
    let mut b = Layer::new();
    b.whiteout("etc/link")
        .opaque("usr")
        .file("usr/new", b"n", 0o644)
        .fifo("f");
    let (a, b) = (a.tar(), b.tar());
    vec![a.clone(), gzip(&a), zstd(&b), b]
}

#[test]
fn fuzz_source() {
    let seeds = [
        r#"{"source":{"repository":"127.0.0.1:5000/app","tag":"1.0","username":"u","password":"p"}}"#,
        r#"{"source":{"repository":"busybox","registry_mirror":{"host":"m:5000"},"platform":{"os":"linux"}},"version":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}}"#,
        r#"{"source":{"repository":"a/b","aws_region":"us-east-1","aws_role_arn":"arn:aws:iam::1:role/r","content_trust":{"server":"https://n:4443","repository_key_id":"ab","repository_key":"k"}},"params":{"image":"i.tar","additional_tags":"t"}}"#,
        r#"{"source":{"repository":"x","ca_certs":["-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----"],"insecure":true,"debug":true}}"#,
    ];
    let ran = fuzz(
        "source",
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        registry_image::fuzz::source,
    );
    assert!(ran > 100, "{ran}");
}

#[test]
fn fuzz_challenge() {
    let seeds = [
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        r#"Basic realm="registry", Bearer realm="http://127.0.0.1/token""#,
        r#"bearer realm=x, error="insufficient_scope""#,
    ];
    let ran = fuzz(
        "challenge",
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        registry_image::fuzz::challenge,
    );
    assert!(ran > 100, "{ran}");
}

#[test]
fn fuzz_decompressor() {
    let ran = fuzz("decompressor", layers(), registry_image::fuzz::decompressor);
    assert!(ran > 20, "{ran}");
}

#[test]
fn fuzz_layer() {
    let ran = fuzz("layer", layers(), |data| {
        let scratch = tempfile::tempdir().unwrap();
        registry_image::fuzz::layer(data, scratch.path());
        let left: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "rootfs")
            .collect();
        assert!(left.is_empty(), "written beside the rootfs: {left:?}");
    });
    assert!(ran > 20, "{ran}");
}
