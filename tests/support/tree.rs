//! A comparable listing of a directory tree: for each path its type, permissions, owner,
//! size, content hash, link target, mtime and hardlink group.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: String,
    pub link: String,
    /// The mtime, or -1 for "set when unpacked" (at or after the snapshot's `since`):
    /// directories an unpacker creates on its own get the current time, which differs by
    /// a second between two unpackers.
    pub mtime: i64,
    /// Nanoseconds of the mtime (0 when the mtime is "set when unpacked").
    pub mtime_nsec: i64,
    /// Extended attributes: name and hex value, sorted.
    pub xattrs: Vec<(String, String)>,
    /// The first path (in sorted order) sharing this inode, for hardlinked files.
    pub hardlink_group: String,
}

/// path (relative, `/`-separated) → node. The root itself is left out. Times from `since`
/// (seconds since the epoch) to an hour from now count as "unpack time".
pub fn snapshot_since(root: &Path, since: i64) -> BTreeMap<String, Node> {
    let mut paths = Vec::new();
    walk(root, root, &mut paths);
    paths.sort();
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    // times from the unpack are at most a moment from now; later ones came from a layer
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    let unpacked = |t: i64| t >= since && t <= until;
    let mut out = BTreeMap::new();
    for (rel, full) in paths {
        let md = std::fs::symlink_metadata(&full).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let group = if ft.is_file() && md.nlink() > 1 {
            first_of_inode
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            String::new()
        };
        let content = if ft.is_file() {
            hex::encode(Sha256::digest(std::fs::read(&full).unwrap()))
        } else {
            String::new()
        };
        let link = if ft.is_symlink() {
            std::fs::read_link(&full).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_file() { md.len() } else { 0 },
                content,
                link,
                mtime: if unpacked(md.mtime()) { -1 } else { md.mtime() },
                mtime_nsec: if unpacked(md.mtime()) { 0 } else { md.mtime_nsec() },
                xattrs: xattrs(&full),
                hardlink_group: group,
            },
        );
    }
    out
}

/// [`snapshot_since`] with "unpack time" starting an hour ago: test images use older times.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    snapshot_since(root, i64::try_from(hour_ago).unwrap())
}

/// A node's extended attributes (not followed through a symlink).
pub fn xattrs(path: &Path) -> Vec<(String, String)> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => panic!("list extended attributes of {}: {e}", path.display()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value[..]).unwrap();
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            hex::encode(&value[..len]),
        ));
    }
    out.sort();
    out
}

/// Every path below `dir`: its name relative to `root` for showing (names that are not
/// UTF-8 shown lossily), and the path itself.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        out.push((
            path.strip_prefix(root).unwrap().display().to_string(),
            path.clone(),
        ));
        if entry.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Lines describing every difference, empty when the trees are equal.
pub fn diff(ours: &BTreeMap<String, Node>, theirs: &BTreeMap<String, Node>) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, node) in ours {
        match theirs.get(path) {
            None => lines.push(format!("only in ours: {path} {node:?}")),
            Some(other) if other != node => lines.push(format!(
                "differs: {path}\n  ours:   {node:?}\n  theirs: {other:?}"
            )),
            Some(_) => {}
        }
    }
    for (path, node) in theirs {
        if !ours.contains_key(path) {
            lines.push(format!("only in theirs: {path} {node:?}"));
        }
    }
    lines
}
