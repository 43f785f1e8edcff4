//! Black-box tests of unpacking hostile and awkward trees with the `in` binary: directory
//! chains deeper than any path, and read-only directories unpacked by a user who is not root.

mod support;

use std::path::Path;

use serde_json::json;
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::layer::{gzip, Layer};
use support::registry::Registry;
use support::tree;

/// Levels of the deep chain. A tar name is a whole path of at most 4,096 bytes, so one
/// name reaches about 2,000 levels of one-letter directories; a symlink to the bottom of
/// a chain lets the next name start there, so the chain is built in [`SEGMENT`]-level
/// pieces. This is the depth of the report.
const DEPTH: usize = 6_000;

/// Levels one tar name adds to the chain (a name of about 4,000 bytes).
const SEGMENT: usize = 2_000;

/// `a/a/…/a`, `levels` deep.
fn chain(levels: usize) -> String {
    vec!["a"; levels].join("/")
}

/// A layer holding `a/a/…/a` ([`DEPTH`] levels) with a file at the bottom. Segment `k > 0`
/// is written through the symlink `l<k>`, which points at the bottom of segment `k - 1`.
fn deep_chain_layer() -> Layer {
    let mut layer = Layer::new();
    let mut bottom = chain(SEGMENT);
    layer.dir(&bottom, 0o755);
    for k in 1..DEPTH / SEGMENT {
        let link = format!("l{k}");
        layer.symlink(&link, &bottom);
        bottom = format!("{link}/{}", chain(SEGMENT));
        layer.dir(&bottom, 0o755);
    }
    layer.file(&format!("{bottom}/bottom"), b"at the bottom", 0o644);
    layer
}

/// Open files `in` may have while it removes a deep chain: far fewer than the chain's
/// levels, so a removal holding one per level would fail.
const NOFILE_LIMIT: &str = "--nofile=256";

/// Runs `in` as the user `nobody`, with no supplementary groups.
const AS_NOBODY: &[&str] = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/// Pushes an image of `layers` and fetches it with `in`, started through `wrapper`.
fn fetch_with(wrapper: &[&str], reg: &Registry, name: &str, layers: &[&Layer], dest: &Path) -> Output {
    let layers = layers
        .iter()
        .map(|l| {
            let t = l.tar();
            (gzip(&t), t)
        })
        .collect();
    let digest = reg.push(name, "v1", &Image::from_layers(layers, OCI_MANIFEST, "amd64"));
    bin::run_wrapped(
        wrapper,
        "in",
        &json!({"source": {"repository": reg.repo(name)}, "version": {"digest": digest}}),
        &[dest.to_str().unwrap()],
    )
}

/// [`fetch_with`] with few open files allowed.
fn fetch(reg: &Registry, name: &str, layers: &[&Layer], dest: &Path) -> Output {
    fetch_with(&["prlimit", NOFILE_LIMIT], reg, name, layers, dest)
}

/// Whether `dest/rootfs` holds the chain's bottom file [`DEPTH`] levels down; walked with
/// directory handles, since the path is longer than the kernel resolves at once.
fn chain_bottom_exists(rootfs: &Path) -> bool {
    let mut dir = std::fs::File::open(rootfs).unwrap();
    for _ in 0..DEPTH {
        match rustix::fs::openat(
            &dir,
            "a",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => dir = fd.into(),
            Err(_) => return false,
        }
    }
    rustix::fs::statat(&dir, "bottom", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// A temporary directory whose deep chains are taken apart before it is removed: the
/// standard library removes trees recursively, one stack frame and descriptor per level.
struct Work(tempfile::TempDir);

impl Work {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.path()).into_iter().flatten().flatten() {
            for name in [".rootfs.staging", "rootfs"] {
                dismantle_chains(&entry.path().join(name));
            }
        }
    }
}

/// Removes `dir/a/a/…` one level at a time: `dir/a/a` moves up to `dir/next`, what is
/// left of `dir/a` goes, and `dir/next` becomes `dir/a`.
fn dismantle_chains(dir: &Path) {
    let (a, next) = (dir.join("a"), dir.join("next"));
    while std::fs::symlink_metadata(&a).is_ok_and(|m| m.is_dir()) {
        let below = a.join("a");
        let deeper = std::fs::symlink_metadata(&below).is_ok_and(|m| m.is_dir());
        if deeper {
            std::fs::rename(&below, &next).unwrap();
        }
        std::fs::remove_dir_all(&a).unwrap();
        if !deeper {
            return;
        }
        std::fs::rename(&next, &a).unwrap();
    }
}

#[test]
fn a_whiteout_removes_a_chain_deeper_than_any_path() {
    let reg = Registry::plain();
    let work = Work::new();
    let built = work.path().join("built");
    let l1 = deep_chain_layer();
    fetch(&reg, "deep", &[&l1], &built).one_json_line("in");
    assert!(
        chain_bottom_exists(&built.join("rootfs")),
        "the chain is {DEPTH} deep"
    );

    let mut l2 = Layer::new();
    l2.whiteout("a");
    let dest = work.path().join("dest");
    fetch(&reg, "deep-whiteout", &[&l1, &l2], &dest).one_json_line("in");
    assert!(
        std::fs::symlink_metadata(dest.join("rootfs/a")).is_err(),
        "the whiteout removed the chain"
    );
    assert!(
        !dest.join(".rootfs.staging").exists(),
        "no staging directory left"
    );
}

#[test]
fn an_opaque_marker_clears_a_chain_deeper_than_any_path() {
    let reg = Registry::plain();
    let work = Work::new();
    let l1 = deep_chain_layer();
    let mut l2 = Layer::new();
    l2.opaque("a").file("a/kept", b"this layer's", 0o644);
    let dest = work.path().join("dest");
    fetch(&reg, "deep-opaque", &[&l1, &l2], &dest).one_json_line("in");
    let left: Vec<_> = std::fs::read_dir(dest.join("rootfs/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["kept"], "the opaque marker hid the chain below `a`");
    assert!(
        !dest.join(".rootfs.staging").exists(),
        "no staging directory left"
    );
}

/// Fedora-like layers: `usr/bin` 0555 filled by its own layer, a later layer adding a file
/// into it and whiting one out, a third whiting out a 0555 directory inside it; and a
/// directory without its search bit (0600) that a later layer writes below.
fn read_only_layers() -> [Layer; 3] {
    let mut l1 = Layer::new();
    l1.dir("usr", 0o755)
        .dir("usr/bin", 0o555)
        .file("usr/bin/a", b"a", 0o755)
        .file("usr/bin/b", b"b", 0o755)
        .dir("usr/bin/nested", 0o555)
        .file("usr/bin/nested/deep", b"deep", 0o444)
        .dir("noexec", 0o600)
        .dir("noexec/sub", 0o755)
        .file("noexec/sub/old", b"old", 0o644)
        .dir("sealed", 0o500)
        .file("sealed/f", b"f", 0o400);
    let mut l2 = Layer::new();
    l2.file("usr/bin/c", b"c", 0o755)
        .whiteout("usr/bin/a")
        .file("noexec/sub/new", b"new", 0o644)
        .opaque("sealed")
        .file("sealed/g", b"g", 0o400);
    let mut l3 = Layer::new();
    l3.whiteout("usr/bin/nested");
    [l1, l2, l3]
}

/// A 0755 directory holding `dest`, an empty directory owned by `nobody`.
fn nobodys_dest(work: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dest = work.join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::chown(&dest, Some(65534), Some(65534)).unwrap();
    dest
}

#[test]
fn read_only_directories_unpack_as_non_root_with_the_tars_modes() {
    let reg = Registry::plain();
    let layers = read_only_layers();
    let layers: Vec<&Layer> = layers.iter().collect();
    let work = tempfile::tempdir().unwrap();
    let dest = nobodys_dest(work.path());
    fetch_with(AS_NOBODY, &reg, "read-only", &layers, &dest).one_json_line("in (as nobody)");
    let ours = tree::snapshot(&dest.join("rootfs"));
    let mode = |p: &str| ours.get(p).map(|n| n.mode);
    assert_eq!(mode("usr/bin"), Some(0o555), "usr/bin ends with its mode");
    assert_eq!(mode("noexec"), Some(0o600));
    assert_eq!(mode("sealed"), Some(0o500));
    assert_eq!(mode("usr/bin/b"), Some(0o755), "its own layer's files are in it");
    assert_eq!(
        mode("usr/bin/c"),
        Some(0o755),
        "a later layer added a file into it"
    );
    assert!(
        !ours.contains_key("usr/bin/a"),
        "a later whiteout removed a file in it"
    );
    assert!(
        !ours.contains_key("usr/bin/nested") && !ours.contains_key("usr/bin/nested/deep"),
        "a whiteout removed a read-only directory inside it"
    );
    assert!(ours.contains_key("noexec/sub/old") && ours.contains_key("noexec/sub/new"));
    let sealed: Vec<_> = ours.keys().filter(|p| p.starts_with("sealed/")).collect();
    assert_eq!(sealed, ["sealed/g"], "the opaque marker emptied a 0500 directory");
    assert!(ours.values().all(|n| n.uid == 65534), "everything is nobody's");
    assert!(
        !dest.join(".rootfs.staging").exists(),
        "no staging directory left"
    );

    // as root: the same tree, the same modes
    let as_root = work.path().join("as-root");
    fetch_with(&["env"], &reg, "read-only", &layers, &as_root).one_json_line("in (as root)");
    let theirs = tree::snapshot(&as_root.join("rootfs"));
    let modes = |t: &std::collections::BTreeMap<String, tree::Node>| {
        t.iter()
            .map(|(p, n)| (p.clone(), n.kind, n.mode, n.content.clone(), n.mtime))
            .collect::<Vec<_>>()
    };
    assert_eq!(modes(&ours), modes(&theirs), "as nobody and as root agree");
}

/// Files per directory in the many-entry layers: directories stay few, so what grows with
/// the count is what the unpacker keeps per entry.
const PER_DIR: usize = 3_000;

/// A plain tar layer of `entries` empty files with names of about 100 bytes.
fn many_entries_tar(entries: usize) -> Vec<u8> {
    let mut layer = Layer::new();
    let stem = "n".repeat(80);
    for i in 0..entries {
        layer.file(&format!("d{:03}/{stem}-{i:07}", i / PER_DIR), b"", 0o644);
    }
    layer.tar()
}

/// What `in` may add per entry of a layer: twice the unpacker's own figure. A set of the
/// names themselves (about 100 bytes each here, plus their allocations) takes more.
const MEMORY_PER_ENTRY: u64 = 2 * registry_image::rootfs::BYTES_PER_PATH as u64;

#[test]
fn memory_grows_by_a_constant_per_entry_whatever_the_names() {
    let reg = Registry::plain();
    let (few, many) = (20_000, 200_000);
    let mut peaks = Vec::new();
    for entries in [few, many] {
        let tar = many_entries_tar(entries);
        let name = format!("entries{entries}");
        let digest = reg.push(
            &name,
            "v1",
            &Image::from_layers(vec![(tar.clone(), tar)], OCI_MANIFEST, "amd64"),
        );
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("d");
        let (out, peak) = bin::run_measured(
            "in",
            &json!({"source": {"repository": reg.repo(&name)}, "version": {"digest": digest}}),
            &[dest.to_str().unwrap()],
        );
        out.one_json_line("in");
        assert_eq!(
            std::fs::read_dir(dest.join("rootfs/d000")).unwrap().count(),
            PER_DIR,
            "the layer was unpacked"
        );
        peaks.push(peak);
    }
    let growth = peaks[1].saturating_sub(peaks[0]);
    let bound = (many - few) as u64 * MEMORY_PER_ENTRY;
    eprintln!(
        "peak resident set: {few} entries {} KiB, {many} entries {} KiB",
        peaks[0] / 1024,
        peaks[1] / 1024
    );
    assert!(
        growth <= bound,
        "{} more entries took {growth} more bytes (at most {bound}): peaks {peaks:?}",
        many - few
    );
}
