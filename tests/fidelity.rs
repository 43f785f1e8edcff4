//! Fidelity of `in`'s rootfs on layers written by GNU tar itself, compared with what
//! `skopeo copy` + `umoci unpack` make of the same image: PAX times (nanoseconds, and
//! beyond the ustar field), owners beyond the ustar fields, extended attributes
//! (`security.capability`, `user.*` with binary values), names that are not UTF-8 in
//! entries and whiteouts, and sparse files in each format GNU tar writes (old GNU, PAX 0.0,
//! 0.1 and 1.0).

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::bin;
use support::image::{Image, OCI_MANIFEST};
use support::layer::gzip;
use support::registry::{require, Registry};
use support::tree;

/// `caf\xe9` (Latin-1 "café") and `\xff\xfe`: names that are not UTF-8.
const LATIN1: &[u8] = b"caf\xe9";
const NOT_UTF8_DIR: &[u8] = b"\xff\xfe";

/// The sparse files' size and where their data sits.
const SPARSE_SIZE: u64 = 8 * 1024 * 1024;
const SPARSE_DATA: [(u64, &[u8]); 3] = [
    (0, b"head"),
    (3 * 1024 * 1024 + 7, b"middle"),
    (SPARSE_SIZE - 4, b"tail"),
];

/// 2300-01-01T00:00:00.123456789Z: beyond the 11 octal digits of a ustar mtime.
const FUTURE: (i64, i64) = (10_413_792_000, 123_456_789);
/// 2001-02-03T04:05:06.5Z.
const FRACTIONAL: (i64, i64) = (981_173_106, 500_000_000);
/// An owner beyond the 7 octal digits of a ustar uid field.
const BIG_ID: u32 = 3_000_000;

/// The value of `security.capability` for `cap_net_raw=ep` (what `setcap` writes).
const CAP_NET_RAW: &str = "cap_net_raw=ep";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_time(path: &Path, (sec, nsec): (i64, i64)) {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

fn name(dir: &Path, bytes: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(bytes))
}

/// Makes `path` owned by [`BIG_ID`] and group `BIG_ID + 1`.
fn give_big_owner(path: &Path) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(BIG_ID)),
        Some(rustix::fs::Gid::from_raw(BIG_ID + 1)),
    )
    .unwrap();
}

/// A sparse file of [`SPARSE_SIZE`] at `path`, its data at [`SPARSE_DATA`].
fn sparse_file(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(SPARSE_SIZE).unwrap();
    for (offset, data) in SPARSE_DATA {
        std::os::unix::fs::FileExt::write_all_at(&file, data, offset).unwrap();
    }
}

fn sparse_content() -> Vec<u8> {
    let mut content = vec![0u8; usize::try_from(SPARSE_SIZE).unwrap()];
    for (offset, data) in SPARSE_DATA {
        let at = usize::try_from(offset).unwrap();
        content[at..at + data.len()].copy_from_slice(data);
    }
    content
}

/// GNU tar's archive of `dir`'s content, with `args` for the format (and `--xattrs` for
/// PAX, the only format that carries them).
fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "--sort=name"])
        .args(args)
        .arg("-C")
        .arg(dir)
        .args(if args.contains(&"--format=posix") {
            &["--xattrs", "--xattrs-include=*"][..]
        } else {
            &[]
        })
        .args(["-cf", "-", "."])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The layers, as GNU tar writes them from trees made under `work`:
/// 1. PAX (`--format=posix`, sparse format 1.0): times, owners, extended attributes,
///    names that are not UTF-8, a sparse file;
/// 2. and 3. PAX with sparse formats 0.0 and 0.1;
/// 4. PAX: whiteouts of the names that are not UTF-8, and `xattr/d` again without the
///    extended attribute it had.
///
/// umoci cannot read old GNU sparse members (type `S`): that layer is [`old_gnu_layer`].
fn gnu_tar_layers(work: &Path) -> Vec<Vec<u8>> {
    let tree = |n: usize| {
        let dir = work.join(format!("tree{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let t1 = tree(1);
    for d in ["times/dir", "owners", "caps", "xattr/d", "names", "sparse"] {
        std::fs::create_dir_all(t1.join(d)).unwrap();
    }
    std::fs::write(t1.join("times/frac"), b"fractional").unwrap();
    set_time(&t1.join("times/frac"), FRACTIONAL);
    std::fs::write(t1.join("times/future"), b"future").unwrap();
    set_time(&t1.join("times/future"), FUTURE);
    std::fs::write(t1.join("owners/big"), b"big owner").unwrap();
    give_big_owner(&t1.join("owners/big"));
    std::fs::write(t1.join("caps/ping"), b"#!/bin/true\n").unwrap();
    run(Command::new("setcap").arg(CAP_NET_RAW).arg(t1.join("caps/ping")));
    std::fs::write(t1.join("xattr/f"), b"with xattrs").unwrap();
    set_xattr(&t1.join("xattr/f"), "user.newline", b"a\nb");
    set_xattr(&t1.join("xattr/f"), "user.binary", &[0, 1, 2, 0xff, b'\n', 0]);
    set_xattr(&t1.join("xattr/f"), "trusted.fidelity", b"root only");
    set_xattr(&t1.join("xattr/d"), "user.old", b"lower");
    std::fs::write(name(&t1.join("names"), LATIN1), b"latin-1").unwrap();
    std::fs::create_dir(name(&t1.join("names"), NOT_UTF8_DIR)).unwrap();
    std::fs::write(name(&t1.join("names"), NOT_UTF8_DIR).join("inner"), b"inner").unwrap();
    std::fs::write(t1.join("names/kept"), b"kept").unwrap();
    sparse_file(&t1.join("sparse/v1.0"));
    set_time(&t1.join("times/dir"), FRACTIONAL);
    let mut layers = vec![gnu_tar(
        &t1,
        &["--format=posix", "--sparse", "--sparse-version=1.0"],
    )];

    for (n, file, version) in [(2, "v0.0", "0.0"), (3, "v0.1", "0.1")] {
        let t = tree(n);
        std::fs::create_dir(t.join("sparse")).unwrap();
        sparse_file(&t.join("sparse").join(file));
        let version = format!("--sparse-version={version}");
        layers.push(gnu_tar(&t, &["--format=posix", "--sparse", &version]));
    }

    let t5 = tree(4);
    std::fs::create_dir_all(t5.join("names")).unwrap();
    std::fs::create_dir_all(t5.join("xattr/d")).unwrap();
    for hidden in [LATIN1, NOT_UTF8_DIR] {
        std::fs::write(name(&t5.join("names"), &[b".wh.", hidden].concat()), b"").unwrap();
    }
    layers.push(gnu_tar(&t5, &["--format=posix"]));
    layers
}

/// An old GNU layer (`--format=gnu --sparse`) holding `sparse/gnu` and an owner in a
/// base-256 field.
fn old_gnu_layer(work: &Path) -> Vec<u8> {
    let t = work.join("old-gnu");
    std::fs::create_dir_all(t.join("sparse")).unwrap();
    sparse_file(&t.join("sparse/gnu"));
    std::fs::write(t.join("big-owner"), b"big owner").unwrap();
    give_big_owner(&t.join("big-owner"));
    set_time(&t.join("big-owner"), (FRACTIONAL.0, 0));
    gnu_tar(&t, &["--format=gnu", "--sparse"])
}

/// GNU tar's extraction of `layer` into the new directory `dir`, owners and modes kept.
fn gnu_tar_extract(layer: &[u8], dir: &Path) -> PathBuf {
    std::fs::create_dir(dir).unwrap();
    let mut child = Command::new("tar")
        .args([
            "--numeric-owner",
            "--same-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-xpf",
            "-",
            "-C",
        ])
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), layer).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "GNU tar extracts its own layer");
    dir.to_owned()
}

/// Pushes `layers` as an image; returns its digest.
fn push_layers(reg: &Registry, name: &str, layers: Vec<Vec<u8>>) -> String {
    let layers = layers.into_iter().map(|t| (gzip(&t), t)).collect();
    reg.push(name, "v1", &Image::from_layers(layers, OCI_MANIFEST, "amd64"))
}

/// A registry holding the GNU tar layers as the image `name`, the directory they were made
/// in, and the image's digest. Making them takes root (owners, file capabilities), GNU
/// tar, `setcap`, and the `tools` the test uses.
fn gnu_tar_image(name: &str, tools: &[&str]) -> (Registry, tempfile::TempDir, String) {
    for tool in ["tar", "setcap"].iter().chain(tools) {
        require(tool);
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the layers hold owners and file capabilities: run this test as root"
    );
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let digest = push_layers(&reg, name, gnu_tar_layers(work.path()));
    (reg, work, digest)
}

/// Checks that `path` holds the sparse file [`sparse_file`] made, holes kept.
fn assert_sparse_restored(path: &Path) {
    assert!(
        std::fs::read(path).unwrap() == sparse_content(),
        "{} holds the file GNU tar read",
        path.display()
    );
    let allocated = std::fs::metadata(path).unwrap().blocks() * 512;
    assert!(
        allocated < SPARSE_SIZE / 4,
        "{} keeps its holes: {allocated} bytes allocated of {SPARSE_SIZE}",
        path.display()
    );
}

fn fetch(reg: &Registry, name: &str, digest: &str, dest: &Path) {
    bin::run(
        "in",
        &json!({"source": {"repository": reg.repo(name)}, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    )
    .one_json_line("in");
}

fn node<'a>(snapshot: &'a std::collections::BTreeMap<String, tree::Node>, path: &str) -> &'a tree::Node {
    snapshot
        .get(path)
        .unwrap_or_else(|| panic!("{path} is missing from {:?}", snapshot.keys().collect::<Vec<_>>()))
}

#[test]
fn gnu_tar_layers_unpack_as_umoci_unpacks_them() {
    let (reg, work, digest) = gnu_tar_image("gnu-tar", &["getcap"]);
    let dest = work.path().join("in");
    fetch(&reg, "gnu-tar", &digest, &dest);
    let rootfs = dest.join("rootfs");
    let theirs_root = reg.umoci_unpack("gnu-tar", &digest, &work.path().join("umoci"));
    let ours = tree::snapshot(&rootfs);
    let mut theirs = tree::snapshot(&theirs_root);
    // umoci 0.4.7 sets a time past 2038 to -2^31 (a 32-bit conversion): for that file, GNU
    // tar's own extraction of the first layer is the reference
    let gnu = gnu_tar_extract(
        &gnu_tar_layers(&work.path().join("again"))[0],
        &work.path().join("gnu-tar"),
    );
    theirs.insert(
        "times/future".into(),
        node(&tree::snapshot(&gnu), "times/future").clone(),
    );
    let diffs = tree::diff(&ours, &theirs);
    assert!(diffs.is_empty(), "in and umoci disagree:\n{}", diffs.join("\n"));

    // and what they agree on is what GNU tar stored
    let f = node(&ours, "times/frac");
    assert_eq!((f.mtime, f.mtime_nsec), FRACTIONAL, "sub-second mtime");
    let f = node(&ours, "times/future");
    assert_eq!((f.mtime, f.mtime_nsec), FUTURE, "an mtime beyond the ustar field");
    let d = node(&ours, "times/dir");
    assert_eq!(
        (d.mtime, d.mtime_nsec),
        FRACTIONAL,
        "a directory's sub-second mtime"
    );
    let o = node(&ours, "owners/big");
    assert_eq!(
        (o.uid, o.gid),
        (BIG_ID, BIG_ID + 1),
        "owners from PAX uid and gid"
    );
    let x = node(&ours, "xattr/f");
    assert_eq!(
        x.xattrs,
        [
            ("trusted.fidelity".to_owned(), hex::encode(b"root only")),
            ("user.binary".to_owned(), hex::encode([0, 1, 2, 0xff, b'\n', 0])),
            ("user.newline".to_owned(), hex::encode(b"a\nb")),
        ],
        "binary extended attribute values"
    );
    assert!(
        node(&ours, "xattr/d").xattrs.is_empty(),
        "a directory listed again without its extended attribute loses it"
    );
    let getcap = Command::new("getcap")
        .arg(rootfs.join("caps/ping"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&getcap.stdout).contains(CAP_NET_RAW),
        "caps/ping keeps {CAP_NET_RAW}: {getcap:?}"
    );
    let names = rootfs.join("names");
    assert!(names.join("kept").exists());
    for hidden in [LATIN1, NOT_UTF8_DIR] {
        assert!(
            std::fs::symlink_metadata(name(&names, hidden)).is_err(),
            "the whiteout of {} removed it",
            String::from_utf8_lossy(hidden)
        );
    }
    for file in ["v1.0", "v0.0", "v0.1"] {
        assert_sparse_restored(&rootfs.join("sparse").join(file));
    }
}

#[test]
fn an_old_gnu_layer_unpacks_as_gnu_tar_extracts_it() {
    require("tar");
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let layer = old_gnu_layer(work.path());
    let gnu = gnu_tar_extract(&layer, &work.path().join("gnu-tar"));
    let digest = push_layers(&reg, "old-gnu", vec![layer]);
    let dest = work.path().join("in");
    fetch(&reg, "old-gnu", &digest, &dest);
    let diffs = tree::diff(&tree::snapshot(&dest.join("rootfs")), &tree::snapshot(&gnu));
    assert!(diffs.is_empty(), "in and GNU tar disagree:\n{}", diffs.join("\n"));
    assert_sparse_restored(&dest.join("rootfs/sparse/gnu"));
}

#[test]
fn not_root_the_capability_is_skipped_and_the_rest_applied() {
    let (reg, work, digest) = gnu_tar_image("gnu-tar-nobody", &["setpriv"]);
    let dest = work.path().join("nobody");
    std::fs::create_dir(&dest).unwrap();
    rustix::fs::chown(
        &dest,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let out = bin::run_wrapped(
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        "in",
        &json!({"source": {"repository": reg.repo("gnu-tar-nobody"), "debug": true}, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    );
    out.one_json_line("in");
    // what nobody may not set is skipped with a debug line, the rest applied
    for skipped in ["security.capability", "trusted.fidelity"] {
        assert!(
            out.stderr
                .contains(&format!("skipping extended attribute {skipped}")),
            "a debug line names the skipped {skipped}:\n{}",
            out.stderr
        );
    }
    let ours = tree::snapshot(&dest.join("rootfs"));
    assert!(
        node(&ours, "caps/ping").xattrs.is_empty(),
        "nobody may not set security.capability"
    );
    let user: Vec<&str> = node(&ours, "xattr/f")
        .xattrs
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        user,
        ["user.binary", "user.newline"],
        "user.* attributes are set, trusted.* not"
    );
    let f = node(&ours, "times/future");
    assert_eq!((f.mtime, f.mtime_nsec), FUTURE);
}
