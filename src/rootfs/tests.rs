//! Layers applied in their turn and layers written ahead must give the same tree, on a real
//! filesystem.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::{Error, Rootfs, Turn};

const MTIME: u64 = 1_600_000_000;
/// Times after this were set when unpacking.
const UNPACKED_AFTER: i64 = 1_700_000_000;

/// A layer tar built entry by entry.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, content.len() as u64);
        self.0.append_data(&mut h, path, content).unwrap();
        self
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, path, target)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, path, target)
    }

    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

/// Three layers exercising what order matters for: whiteouts and opaque directories of
/// lower content, hardlinks to lower files whose name is then replaced, a type replacing
/// another, writes through a parent symlink, the same name written twice, a directory's
/// own entry after its children.
fn layers() -> Vec<Vec<u8>> {
    let mut l1 = Tar::new();
    l1.dir("a", 0o755)
        .file("a/x", b"x", 0o644)
        .file("a/y", b"y", 0o644);
    l1.dir("d", 0o755)
        .file("d/f", b"f", 0o644)
        .file("top", b"top", 0o600);
    l1.dir("o", 0o755)
        .file("o/lower1", b"lower", 0o644)
        .dir("o/sub", 0o755)
        .file("o/sub/lower2", b"lower", 0o644);
    l1.dir("hl", 0o755)
        .file("hl/orig", b"hardlinked", 0o644)
        .hardlink("hl/link", "hl/orig");
    l1.file("base", b"base target", 0o640);
    l1.dir("sym", 0o755)
        .file("sym/a", b"symlinked", 0o644)
        .symlink("sym/b", "a");
    l1.dir("df", 0o755)
        .file("df/child", b"c", 0o644)
        .file("fd", b"file", 0o644);
    l1.dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .file("usr/lib/libc", b"libc", 0o755);
    l1.symlink("lib", "usr/lib");
    let mut l2 = Tar::new();
    l2.file(".wh.top", b"", 0o644)
        .file("a/.wh.x", b"", 0o644)
        .file(".wh.d", b"", 0o644);
    l2.file("o/new1", b"new", 0o644)
        .file("o/sub/new2", b"new", 0o644)
        .file("o/.wh..wh..opq", b"", 0o644)
        .file("o/new3", b"new", 0o644);
    l2.file("hl/.wh.orig", b"", 0o644);
    l2.hardlink("cross", "base").file("base", b"new base", 0o600);
    l2.file("sym/b", b"replaced", 0o644);
    l2.file("df", b"now a file", 0o644)
        .file("fd/child", b"now a dir", 0o644)
        .dir("fd", 0o700);
    l2.file("lib/libnew", b"through the symlink", 0o644);
    l2.file("twice", b"first", 0o644).file("twice", b"second", 0o640);
    let long = format!("long/{}/file", "x".repeat(150));
    l2.dir("long", 0o755)
        .file(&long, b"long name", 0o644)
        .hardlink("long-link", &long);
    for i in 0..50 {
        l2.file(&format!("many/{i}"), format!("{i}").as_bytes(), 0o644);
    }
    let mut l3 = Tar::new();
    l3.file("fd/.wh.child", b"", 0o644)
        .file("o/new4", b"new", 0o644)
        .file("twice", b"third", 0o644)
        .hardlink("cross2", "cross")
        .file("many/.wh.7", b"", 0o644);
    vec![l1.bytes(), l2.bytes(), l3.bytes()]
}

/// Everything about a node that unpacking decides.
#[derive(Debug, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    mtime: i64,
    content: Vec<u8>,
    /// The first path (in order) sharing this file's inode, when another does.
    group: String,
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let (kind, content) = if m.is_dir() {
            ("dir", Vec::new())
        } else if m.file_type().is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            ("file", std::fs::read(&p).unwrap())
        };
        let group = if kind == "file" && m.nlink() > 1 {
            inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone()
        } else {
            String::new()
        };
        let node = Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            // the time of unpacking (implicit parents, and directories they were created
            // in, as umoci does too) differs between two unpacks by a second at times
            mtime: if m.mtime() > UNPACKED_AFTER { -1 } else { m.mtime() },
            content,
            group,
        };
        out.insert(rel, node);
    }
    out
}

/// A reader that gives `turn` once `after` bytes were read from it: the layer's entries
/// before that point are read before its turn.
struct GivesTurn<'a> {
    bytes: &'a [u8],
    read: usize,
    after: usize,
    turn: Arc<Turn>,
}

impl Read for GivesTurn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.bytes.len() - self.read).min(512);
        buf[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
        self.read += n;
        if self.read >= self.after {
            self.turn.give();
        }
        Ok(n)
    }
}

/// Unpacks `layers` into `dir/rootfs`: each layer after the first gets its turn after
/// `fraction` of its bytes were read (`None`: applied in turn from the start).
fn unpack(dir: &Path, layers: &[Vec<u8>], fraction: Option<f64>) -> BTreeMap<String, Node> {
    unpack_staging_in(dir, layers, fraction, None)
}

/// [`unpack`], with the staging directory at `staging` when given.
fn unpack_staging_in(
    dir: &Path,
    layers: &[Vec<u8>],
    fraction: Option<f64>,
    staging: Option<&Path>,
) -> BTreeMap<String, Node> {
    let mut rootfs = Rootfs::create(&dir.join("rootfs")).unwrap();
    assert!(rootfs.staging.is_some(), "a staging directory beside the rootfs");
    if let Some(path) = staging {
        rootfs.staging = Some(super::ahead::Staging::at(path));
    }
    let mut early = 0;
    for (i, layer) in layers.iter().enumerate() {
        let stats = match fraction {
            Some(f) if i > 0 => {
                let turn = Arc::new(Turn::waiting());
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let after = ((layer.len() - 1024) as f64 * f) as usize; // before the end blocks
                let reader = GivesTurn {
                    bytes: layer,
                    read: 0,
                    after,
                    turn: turn.clone(),
                };
                rootfs.apply_layer_in_turn(reader, &turn).unwrap()
            }
            _ => rootfs.apply_layer(&layer[..]).unwrap(),
        };
        early += stats.early;
    }
    match fraction {
        Some(f) if f > 0.0 => assert!(early > 0, "entries were read before their turn"),
        _ => assert_eq!(early, 0),
    }
    drop(rootfs);
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["rootfs"], "the staging directory is removed");
    assert!(
        staging.is_none_or(|p| !p.exists()),
        "the staging directory is removed"
    );
    snapshot(&dir.join("rootfs"))
}

fn differences(in_turn: &BTreeMap<String, Node>, ahead: &BTreeMap<String, Node>) -> Vec<String> {
    in_turn
        .keys()
        .chain(ahead.keys())
        .filter(|k| in_turn.get(*k) != ahead.get(*k))
        .map(|k| format!("{k}: in turn {:?}, ahead {:?}", in_turn.get(k), ahead.get(k)))
        .collect()
}

#[test]
fn layers_written_ahead_unpack_exactly_as_layers_applied_in_turn() {
    let layers = layers();
    let work = tempfile::tempdir().unwrap();
    let in_turn = unpack(&work.path().join("in-turn"), &layers, None);
    // what the cases are about, so agreement is not agreement on something wrong
    assert!(!in_turn.contains_key("top") && !in_turn.contains_key("d") && !in_turn.contains_key("a/x"));
    assert!(!in_turn.contains_key("o/lower1") && !in_turn.contains_key("o/sub/lower2"));
    assert!(in_turn.contains_key("o/new1") && in_turn.contains_key("o/sub/new2"));
    assert_eq!(in_turn["cross"].content, b"base target");
    assert_eq!(in_turn["cross"].group, "cross");
    assert_eq!(in_turn["cross2"].group, "cross");
    assert_eq!(
        (in_turn["base"].content.as_slice(), in_turn["base"].mode),
        (&b"new base"[..], 0o600)
    );
    assert_eq!(in_turn["usr/lib/libnew"].content, b"through the symlink");
    assert_eq!(in_turn["lib"].kind, "symlink");
    assert_eq!(
        (in_turn["sym/b"].kind, in_turn["df"].kind, in_turn["fd"].kind),
        ("file", "file", "dir")
    );
    assert_eq!(in_turn["fd"].mode, 0o700);
    assert!(!in_turn.contains_key("fd/child") && !in_turn.contains_key("many/7"));
    assert_eq!(in_turn["twice"].content, b"third");
    assert_eq!(
        in_turn["long-link"].group,
        in_turn[&format!("long/{}/file", "x".repeat(150))].group
    );
    for fraction in [1.0, 0.5, 0.05] {
        let ahead = unpack(
            &work.path().join(format!("ahead-{fraction}")),
            &layers,
            Some(fraction),
        );
        let differences = differences(&in_turn, &ahead);
        assert!(
            differences.is_empty(),
            "turn after {fraction} of each layer:\n{}",
            differences.join("\n")
        );
    }
}

#[test]
fn a_withdrawn_turn_stops_the_layer_without_touching_the_rootfs() {
    let layers = layers();
    let work = tempfile::tempdir().unwrap();
    let rootfs = Rootfs::create(&work.path().join("rootfs")).unwrap();
    rootfs.apply_layer(&layers[0][..]).unwrap();
    let before = snapshot(&work.path().join("rootfs"));
    let turn = Arc::new(Turn::waiting());
    let reader = GivesTurn {
        bytes: &layers[1],
        read: 0,
        after: usize::MAX,
        turn: turn.clone(),
    };
    let withdraw = {
        let turn = turn.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            turn.withdraw();
        })
    };
    let result = rootfs.apply_layer_in_turn(reader, &turn);
    withdraw.join().unwrap();
    assert!(matches!(result, Err(Error::Abandoned)), "{result:?}");
    assert_eq!(snapshot(&work.path().join("rootfs")), before);
}

#[test]
fn a_hostile_entry_is_refused_before_the_turn_and_nothing_is_written() {
    let mut t = Tar::new();
    t.file("fine", b"fine", 0o644);
    let mut h = Tar::header(tar::EntryType::Regular, 0o644, 4);
    // tar::Builder refuses `..` itself: write the name into the header directly
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    t.0.append(&h, &b"evil"[..]).unwrap();
    let hostile = t.bytes();
    let work = tempfile::tempdir().unwrap();
    let rootfs = Rootfs::create(&work.path().join("rootfs")).unwrap();
    let turn = Turn::waiting();
    let result = rootfs.apply_layer_in_turn(&hostile[..], &turn);
    assert!(
        matches!(&result, Err(Error::Hostile { entry, .. }) if entry == "../escape"),
        "{result:?}"
    );
    drop(rootfs);
    assert!(snapshot(&work.path().join("rootfs")).is_empty());
    assert!(!work.path().join("escape").exists());
}

/// A reader that notes whether it was read before `turn` was given.
struct NotesTurn<'a> {
    bytes: &'a [u8],
    turn: Arc<Turn>,
    read_early: bool,
}

impl Read for NotesTurn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_early |= self.turn.poll().is_none();
        self.bytes.read(buf)
    }
}

#[test]
fn without_a_staging_directory_a_layer_waits_for_its_turn_before_reading() {
    let layers = layers();
    let work = tempfile::tempdir().unwrap();
    let mut rootfs = Rootfs::create(&work.path().join("rootfs")).unwrap();
    rootfs.staging = None;
    rootfs.apply_layer(&layers[0][..]).unwrap();
    let turn = Arc::new(Turn::waiting());
    let mut reader = NotesTurn {
        bytes: &layers[1],
        turn: turn.clone(),
        read_early: false,
    };
    let give = {
        let turn = turn.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            turn.give();
        })
    };
    let stats = rootfs.apply_layer_in_turn(&mut reader, &turn).unwrap();
    give.join().unwrap();
    assert!(!reader.read_early, "the layer was read before its turn");
    assert_eq!(stats.early, 0);
    assert!(work.path().join("rootfs/o/new3").exists());
}

#[test]
fn a_turn_once_given_or_withdrawn_stays_so() {
    let turn = Turn::waiting();
    assert_eq!(turn.poll(), None);
    turn.give();
    turn.withdraw();
    assert_eq!(turn.poll(), Some(true));
    assert!(turn.wait());
    let turn = Turn::waiting();
    turn.withdraw();
    turn.give();
    assert_eq!(turn.poll(), Some(false));
    assert!(!turn.wait());
}

#[test]
fn a_layer_over_its_memory_budget_waits_for_its_turn_and_unpacks_the_same() {
    let layers = layers();
    let work = tempfile::tempdir().unwrap();
    let in_turn = unpack(&work.path().join("in-turn"), &layers, None);
    let dir = work.path().join("budget");
    let mut rootfs = Rootfs::create(&dir.join("rootfs")).unwrap();
    rootfs.early_budget = 2048;
    rootfs.apply_layer(&layers[0][..]).unwrap();
    for (i, layer) in layers.iter().enumerate().skip(1) {
        let turn = Arc::new(Turn::waiting());
        let give = {
            let turn = turn.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                turn.give();
            })
        };
        let stats = rootfs.apply_layer_in_turn(&layer[..], &turn).unwrap();
        give.join().unwrap();
        if i == 1 {
            assert!(
                stats.early > 0 && stats.early < stats.entries,
                "held {} of {} entries, then waited",
                stats.early,
                stats.entries
            );
        }
    }
    drop(rootfs);
    let differences = differences(&in_turn, &snapshot(&dir.join("rootfs")));
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn names_longer_than_the_kernel_takes_are_refused_before_they_are_held() {
    let long = format!("{}f", "a/".repeat(2100));
    let mut t = Tar::new();
    t.file(&long, b"x", 0o644);
    let mut s = Tar::new();
    s.symlink("s", &long);
    for (tar, reason) in [
        (t.bytes(), "its name is longer"),
        (s.bytes(), "its link target is longer"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let rootfs = Rootfs::create(&work.path().join("rootfs")).unwrap();
        let result = rootfs.apply_layer_in_turn(&tar[..], &Turn::waiting());
        assert!(
            matches!(&result, Err(Error::Hostile { reason: r, .. }) if r.starts_with(reason)),
            "{result:?}"
        );
    }
}

#[test]
fn files_written_ahead_on_another_filesystem_are_copied_into_place() {
    let layers = layers();
    let work = tempfile::tempdir().unwrap();
    // /dev/shm is a tmpfs: rename from there into the work directory fails with EXDEV
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    let device = |p: &Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(device(work.path()), device(elsewhere.path()), "two filesystems");
    let in_turn = unpack(&work.path().join("in-turn"), &layers, None);
    let staging = elsewhere.path().join("staging");
    let ahead = unpack_staging_in(&work.path().join("ahead"), &layers, Some(1.0), Some(&staging));
    let differences = differences(&in_turn, &ahead);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// The stack a layer's thread must be enough with, however deep the tree it removes.
const SMALL_STACK: usize = 256 * 1024;

#[test]
fn a_chain_deeper_than_any_path_is_whited_out_or_hidden_on_a_small_stack() {
    // 2,000 levels a name, the next name starting at a symlink to the bottom: 6,000
    let segment = vec!["a"; 2000].join("/");
    let deep = move || {
        let mut t = Tar::new();
        t.dir(&segment, 0o755)
            .symlink("l1", &segment)
            .dir(&format!("l1/{segment}"), 0o755)
            .symlink("l2", &format!("l1/{segment}"))
            .file(&format!("l2/{segment}/bottom"), b"6,000 levels down", 0o644);
        t.bytes()
    };
    let gone = Tar::new().file(".wh.a", b"", 0o644).bytes();
    let hidden = Tar::new().file("a/.wh..wh..opq", b"", 0o644).bytes();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().to_owned();
    let (whited_out, opaque) = std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            (
                unpack(&path.join("whiteout"), &[deep(), gone], None),
                unpack(&path.join("opaque"), &[deep(), hidden], None),
            )
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert_eq!(
        whited_out.keys().collect::<Vec<_>>(),
        ["l1", "l2"],
        "the chain is gone"
    );
    assert_eq!(
        opaque.keys().collect::<Vec<_>>(),
        ["a", "l1", "l2"],
        "only the chain's top is left"
    );
}
