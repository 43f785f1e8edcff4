//! Layer tars built entry by entry, including the malformed and hostile ones no archiver
//! would write (names with `..`, absolute names, a missing end-of-archive).

use std::io::Write;

pub struct Layer {
    data: Vec<u8>,
}

/// 1991-06-03T05:30:30Z, the upstream suite's mtime.
pub const MTIME_1991: u64 = 675_919_830;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl Layer {
    pub fn new() -> Self {
        Self { data: Vec::new() }
    }

    /// Appends an entry, writing the name raw (no checks) or with long-name support.
    fn entry(&mut self, name: &str, mut h: tar::Header, content: &[u8], link: Option<&str>) -> &mut Self {
        let mut b = tar::Builder::new(Vec::new());
        if name.len() <= 99 && link.is_none_or(|l| l.len() <= 99) {
            write_raw_name(&mut h, name, link);
            b.append(&h, content).unwrap();
        } else {
            // long names: GNU extensions through the tar crate (it refuses `..`, which the
            // hostile cases write raw and short)
            if let Some(l) = link {
                b.append_link(&mut h, name, l).unwrap();
            } else {
                b.append_data(&mut h, name, content).unwrap();
            }
        }
        let mut bytes = b.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024); // drop this builder's end-of-archive
        self.data.extend_from_slice(&bytes);
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, header(tar::EntryType::Directory, mode, 0), b"", None)
    }

    pub fn file(&mut self, name: &str, content: &[u8], mode: u32) -> &mut Self {
        self.entry(
            name,
            header(tar::EntryType::Regular, mode, content.len() as u64),
            content,
            None,
        )
    }

    /// A file with owner and mtime.
    pub fn file_owned(
        &mut self,
        name: &str,
        content: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, mode, content.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.entry(name, h, content, None)
    }

    pub fn dir_owned(&mut self, name: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        h.set_uid(uid);
        h.set_gid(gid);
        self.entry(name, h, b"", None)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, header(tar::EntryType::Symlink, 0o777, 0), b"", Some(target))
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, header(tar::EntryType::Link, 0o644, 0), b"", Some(target))
    }

    pub fn fifo(&mut self, name: &str) -> &mut Self {
        self.entry(name, header(tar::EntryType::Fifo, 0o644, 0), b"", None)
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.entry(name, h, b"", None)
    }

    /// `dir/.wh.name`
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, b"", 0o644)
    }

    /// `dir/.wh..wh..opq`
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// A file whose name uses a PAX `path` record.
    pub fn pax_file(&mut self, name: &str, content: &[u8]) -> &mut Self {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", name.as_bytes())]).unwrap();
        let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64);
        let mut h2 = tar::Header::new_ustar();
        h2.as_mut_bytes().copy_from_slice(h.as_bytes());
        let _ = &mut h;
        write_raw_name(&mut h2, "pax-short-name", None);
        h2.set_entry_type(tar::EntryType::Regular);
        b.append(&h2, content).unwrap();
        let mut bytes = b.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024);
        self.data.extend_from_slice(&bytes);
        self
    }

    /// The tar, with its end-of-archive blocks.
    pub fn tar(&self) -> Vec<u8> {
        let mut t = self.data.clone();
        t.extend_from_slice(&[0u8; 1024]);
        t
    }

    /// The tar without end-of-archive blocks (some writers stop after the last entry).
    pub fn tar_without_end(&self) -> Vec<u8> {
        self.data.clone()
    }
}

/// Writes `name` (and `link`) into the header's fields as bytes, bypassing the tar crate's
/// path checks, and fixes the checksum.
fn write_raw_name(h: &mut tar::Header, name: &str, link: Option<&str>) {
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        old.linkname = [0; 100];
        old.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
}

pub fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(tar).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}
