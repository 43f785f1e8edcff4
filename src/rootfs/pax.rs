//! PAX extended headers (POSIX.1-2001 `pax` format), read record by record by their lengths.
//!
//! A record is `<length> <key>=<value>\n`, and a value is bytes: an extended attribute's
//! value may hold a newline. The tar crate splits its copy of the header at newlines, so a
//! crafted value could make it see a `path` or `linkpath` that a reader going by lengths
//! does not, and a value with a newline hides the `size`, `uid` and `gid` records after it
//! from it. Owners are taken from here; a header on which the tar crate would read another
//! size (where members start) or name is refused.

use rustix::fs::Timespec;

/// The records of one extended header that unpacking applies beyond what the tar crate does
/// itself (`path`, `linkpath`, `size`, `uid`, `gid`).
#[derive(Debug, Default)]
pub(super) struct Extended {
    /// `size`: the data size of the member it describes.
    pub(super) size: Option<u64>,
    /// `uid` and `gid`: owners beyond the ustar fields. Taken from here, not from the tar
    /// crate, which misses them after a value with a newline.
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
    /// `mtime`, with its fraction of a second.
    pub(super) mtime: Option<Timespec>,
    /// `SCHILY.xattr.<name>`, in their order.
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `GNU.sparse.*`.
    pub(super) sparse: SparseRecords,
}

/// What GNU tar records about a sparse file in PAX formats 0.0, 0.1 and 1.0.
#[derive(Debug, Default)]
pub(super) struct SparseRecords {
    /// `GNU.sparse.major` and `.minor`: (1, 0) keeps the map in the member's data.
    pub(super) version: Option<(u64, u64)>,
    /// `GNU.sparse.name`: the file's name (the member's name is a placeholder).
    pub(super) name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` (1.0) or `GNU.sparse.size` (0.x): the file's size.
    pub(super) size: Option<u64>,
    /// `GNU.sparse.map` (0.1), or the `GNU.sparse.offset` / `.numbytes` pairs (0.0):
    /// offset, length, offset, length…
    pub(super) map: Option<Vec<u64>>,
}

/// Keys that decide where members start and what they are: each may appear once.
const FRAMING: [&str; 5] = ["size", "path", "linkpath", "uid", "gid"];

/// Of those, the ones the tar crate takes from its own reading of the header, which must
/// then agree with ours.
const READ_BY_THE_TAR_CRATE: [&str; 3] = ["size", "path", "linkpath"];

/// Parses extended header `data`, or says what is wrong with it.
pub(super) fn parse(data: &[u8]) -> Result<Extended, String> {
    let mut ext = Extended::default();
    // the framing records (and mtime) read, each at most once
    let mut seen: Vec<(&[u8], &[u8])> = Vec::new();
    let mut rest = data;
    let mut offsets = Vec::new();
    let mut lengths = Vec::new();
    while !rest.is_empty() {
        let (key, value, after) = record(rest)?;
        rest = after;
        if FRAMING.iter().any(|k| k.as_bytes() == key) || key == b"mtime" {
            if seen.iter().any(|(k, _)| *k == key) {
                return Err(format!("record {} appears twice", String::from_utf8_lossy(key)));
            }
            seen.push((key, value));
        }
        let text = || std::str::from_utf8(value).ok();
        let number = || {
            text()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| format!("record {} is not a number", String::from_utf8_lossy(key)))
        };
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            ext.xattrs.push((name.to_vec(), value.to_vec()));
            continue;
        }
        match key {
            b"size" => ext.size = Some(number()?),
            b"uid" => ext.uid = Some(number()?),
            b"gid" => ext.gid = Some(number()?),
            b"mtime" => {
                ext.mtime = Some(text().and_then(time).ok_or("record mtime is not a time")?);
            }
            b"GNU.sparse.major" => {
                let minor = ext.sparse.version.map_or(0, |v| v.1);
                ext.sparse.version = Some((number()?, minor));
            }
            b"GNU.sparse.minor" => {
                let major = ext.sparse.version.map_or(0, |v| v.0);
                ext.sparse.version = Some((major, number()?));
            }
            b"GNU.sparse.name" => ext.sparse.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => ext.sparse.size = Some(number()?),
            b"GNU.sparse.map" => {
                let map = text()
                    .and_then(|t| {
                        t.split(',')
                            .filter(|n| !n.is_empty())
                            .map(|n| n.parse().ok())
                            .collect::<Option<Vec<u64>>>()
                    })
                    .ok_or("record GNU.sparse.map is not a list of numbers")?;
                ext.sparse.map = Some(map);
            }
            b"GNU.sparse.offset" => offsets.push(number()?),
            b"GNU.sparse.numbytes" => lengths.push(number()?),
            _ => {}
        }
    }
    if !offsets.is_empty() || !lengths.is_empty() {
        if offsets.len() != lengths.len() {
            return Err("its GNU.sparse.offset and .numbytes records do not pair up".to_owned());
        }
        ext.sparse.map = Some(
            offsets
                .into_iter()
                .zip(lengths)
                .flat_map(|(o, l)| [o, l])
                .collect(),
        );
    }
    agrees_with_tar_crate(data, &seen)?;
    Ok(ext)
}

/// A record's key and value, and the bytes after it.
type Record<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// One record at the start of `rest`: key, value, and what follows.
fn record(rest: &[u8]) -> Result<Record<'_>, String> {
    let malformed = || "a record is malformed".to_owned();
    let space = rest
        .iter()
        .take(20)
        .position(|&b| b == b' ')
        .ok_or_else(malformed)?;
    let digits = &rest[..space];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(malformed)?;
    if len < space + 3 || len > rest.len() || rest[len - 1] != b'\n' {
        return Err(malformed());
    }
    let body = &rest[space + 1..len - 1];
    let eq = body.iter().position(|&b| b == b'=').ok_or_else(malformed)?;
    if eq == 0 {
        return Err(malformed());
    }
    Ok((&body[..eq], &body[eq + 1..], &rest[len..]))
}

/// A PAX time: seconds since the epoch, maybe negative, with up to nanoseconds after a `.`
/// (further digits are dropped, as GNU tar does).
pub(super) fn time(text: &str) -> Option<Timespec> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in fraction.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10_i64.pow(8 - u32::try_from(i).ok()?);
    }
    Some(if !negative {
        Timespec {
            tv_sec: seconds,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -seconds,
            tv_nsec: 0,
        }
    } else {
        // -1.25 is 1.25 s before the epoch: second -2, plus 0.75
        Timespec {
            tv_sec: -seconds - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

/// Refuses a header whose size or name records the tar crate reads otherwise than
/// [`parse`]: it splits at every newline, stops looking for `size` at the first piece that
/// is not a record, and skips such pieces when it looks for `path` and `linkpath`. `ours`
/// are the records [`parse`] read, by key.
fn agrees_with_tar_crate(data: &[u8], ours: &[(&[u8], &[u8])]) -> Result<(), String> {
    let pieces = || tar::PaxExtensions::new(data);
    for key in READ_BY_THE_TAR_CRATE {
        let ours = ours.iter().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| *v);
        let theirs = if matches!(key, "path" | "linkpath") {
            pieces()
                .filter_map(Result::ok)
                .find(|p| p.key_bytes() == key.as_bytes())
                .map(|p| p.value_bytes())
        } else {
            let mut found = None;
            for piece in pieces() {
                let Ok(piece) = piece else { break };
                if piece.key_bytes() == key.as_bytes() {
                    found = Some(piece.value_bytes());
                    break;
                }
            }
            found
        };
        if ours != theirs {
            return Err(if theirs.is_some() {
                format!("a value with a newline in it forges a {key} record for line-splitting tar readers")
            } else {
                format!(
                    "a value with a newline in it hides its {key} record from the tar reader this \
                     resource uses (it splits records at newlines)"
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            let body = k.len() + v.len() + 3;
            let mut len = body + 1;
            while len.to_string().len() + body != len {
                len += 1;
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn reads_times_xattrs_and_sparse_records() {
        let data = records(&[
            ("mtime", b"10413792000.123456789"),
            ("SCHILY.xattr.user.test", b"a\nb"),
            ("SCHILY.xattr.security.capability", &[1, 0, 0, 2, 0, 0x20, 0, 0]),
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"d/sparse"),
            ("GNU.sparse.realsize", b"5242880"),
        ]);
        let ext = parse(&data).unwrap();
        assert_eq!(
            ext.mtime.map(|t| (t.tv_sec, t.tv_nsec)),
            Some((10_413_792_000, 123_456_789))
        );
        assert_eq!(ext.xattrs[0], (b"user.test".to_vec(), b"a\nb".to_vec()));
        assert_eq!(ext.xattrs[1].1, [1, 0, 0, 2, 0, 0x20, 0, 0]);
        assert_eq!(ext.sparse.version, Some((1, 0)));
        assert_eq!(ext.sparse.name.as_deref(), Some(&b"d/sparse"[..]));
        assert_eq!(ext.sparse.size, Some(5_242_880));
        let old = records(&[
            ("GNU.sparse.size", b"100"),
            ("GNU.sparse.offset", b"10"),
            ("GNU.sparse.numbytes", b"5"),
            ("GNU.sparse.offset", b"100"),
            ("GNU.sparse.numbytes", b"0"),
        ]);
        assert_eq!(parse(&old).unwrap().sparse.map, Some(vec![10, 5, 100, 0]));
        let map = records(&[("GNU.sparse.map", b"1,2,3,0")]);
        assert_eq!(parse(&map).unwrap().sparse.map, Some(vec![1, 2, 3, 0]));
    }

    #[test]
    fn times_keep_their_fraction_and_sign() {
        let t = |s| time(s).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("981173106.5"), Some((981_173_106, 500_000_000)));
        assert_eq!(t("1.0123456789"), Some((1, 12_345_678)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1e3", "1.5.5", "x", "-"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_malformed_repeated_and_smuggled_records() {
        for bad in [&b"5 a=b"[..], b"99 a=b\n", b"6 =bb\n", b"x a=b\n", b"6 abcd\n"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let twice = records(&[("size", b"1"), ("size", b"2")]);
        assert!(parse(&twice).unwrap_err().contains("twice"));
        // a newline in a value that, split there, reads as a path record
        let smuggled = records(&[("SCHILY.xattr.user.x", b"a\n11 path=/x")]);
        assert!(parse(&smuggled).unwrap_err().contains("path record"));
        // a value with a newline before a real size record hides it from the tar crate
        let hidden = records(&[("SCHILY.xattr.user.x", b"a\nb"), ("size", b"7")]);
        assert!(parse(&hidden).unwrap_err().contains("size record"));
        // owners after such a value are read here, whatever the tar crate misses
        let owners = records(&[
            ("SCHILY.xattr.user.x", b"a\nb"),
            ("uid", b"3000000"),
            ("gid", b"7"),
        ]);
        let ext = parse(&owners).unwrap();
        assert_eq!((ext.uid, ext.gid), (Some(3_000_000), Some(7)));
        // but a newline in a value is fine when nothing depends on it
        let fine = records(&[("path", b"p"), ("SCHILY.xattr.user.x", b"a\nb")]);
        assert!(parse(&fine).is_ok());
    }
}
