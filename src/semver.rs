//! Semantic versions as tags spell them, and the constraint syntax pipelines written for the
//! Go resource use (Masterminds/semver v3): `~1.2.x`, `^1`, `>= 1.2 < 3.0.0 || >= 4.2.3`,
//! `1.2 - 1.4.5`, `!= 2.0`.
//!
//! A version may start with `v` and leave out its minor or patch part (`1` and `v1.2` are
//! `1.0.0` and `1.2.0`). Leading zeros in the numbers are read as numbers (`1.02` is
//! `1.2.0`), as Masterminds' default does; a numeric pre-release part must not have one.
//! Build metadata (`+build.5`) is kept in the text but does not order versions.

use std::cmp::Ordering;
use std::fmt;

/// The longest version or constraint text read: tags are at most 128 characters, and a
/// constraint is written by a person.
pub const MAX_TEXT: usize = 1024;

/// A semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major number.
    pub major: u64,
    /// Minor number (0 when the text left it out).
    pub minor: u64,
    /// Patch number (0 when the text left it out).
    pub patch: u64,
    /// Pre-release part, without its `-`; empty for a release.
    pub pre: String,
    /// Build metadata, without its `+`.
    pub build: String,
    /// How many of major, minor and patch the text spelled out (1 to 3).
    pub parts: u8,
}

impl Version {
    /// Reads `text` as a version; `None` when it is not one.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_TEXT {
            return None;
        }
        let rest = text.strip_prefix('v').unwrap_or(text);
        let (rest, build) = match rest.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (rest, None),
        };
        let (numbers, pre) = match rest.split_once('-') {
            Some((numbers, pre)) => (numbers, Some(pre)),
            None => (rest, None),
        };
        let mut parts = [0u64; 3];
        let mut count = 0u8;
        for (i, number) in numbers.split('.').enumerate() {
            if i >= 3 || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[i] = number.parse().ok()?;
            count += 1;
        }
        if let Some(pre) = pre {
            if !valid_identifiers(pre, true) {
                return None;
            }
        }
        if let Some(build) = build {
            if !valid_identifiers(build, false) {
                return None;
            }
        }
        Some(Self {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre: pre.unwrap_or_default().to_owned(),
            build: build.unwrap_or_default().to_owned(),
            parts: count,
        })
    }

    /// Whether it has a pre-release part.
    #[must_use]
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// `major.minor.patch` alone.
    #[must_use]
    pub fn core(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, none empty; for a pre-release, a numeric
/// one without a leading zero.
fn valid_identifiers(text: &str, pre: bool) -> bool {
    text.split('.').all(|id| {
        let allowed = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        allowed && !(pre && numeric && id.len() > 1 && id.starts_with('0'))
    })
}

/// Normalised: `1.2.0`, `1.2.0-rc.1`, `1.2.0+build`.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

impl Version {
    /// Semver precedence: the numbers, then a release above its pre-releases, then the
    /// pre-release identifiers (numbers below words, numbers by value, a shorter list
    /// first). Build metadata does not count.
    #[must_use]
    pub fn precedence(&self, other: &Self) -> Ordering {
        self.core()
            .cmp(&other.core())
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Which tags semver mode takes as versions: the source's `variant`, `semver_constraint`,
/// `pre_releases` and `pre_release_prefixes`.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Only `<version>-<variant>` tags; the bare variant plays `latest`'s part.
    pub variant: Option<String>,
    /// Only versions meeting it.
    pub constraint: Option<Constraint>,
    /// Pre-releases too, when they start with an allowed prefix.
    pub pre_releases: bool,
    /// Prefixes allowed besides `alpha`, `beta`, `rc`.
    pub prefixes: Vec<String>,
}

/// The pre-release prefixes semver mode always allows.
pub const PRE_RELEASE_PREFIXES: [&str; 3] = ["alpha", "beta", "rc"];

impl Rules {
    /// The tag that stands for "newest" in this mode: the variant, or `latest`.
    #[must_use]
    pub fn bare(&self) -> &str {
        self.variant.as_deref().unwrap_or("latest")
    }

    /// The version `tag` stands for under these rules, or `None` when it is not one.
    ///
    /// - With a variant, the tag must end in `-<variant>`, which is taken off.
    /// - A pre-release needs `pre_releases` and an allowed prefix; without extra prefixes,
    ///   one holding a `-` (`1.0.0-rc.1-slim`) is another variant, not a pre-release.
    /// - With a constraint, the version must meet it; a pre-release only when the
    ///   constraint names one (Masterminds' rule).
    #[must_use]
    pub fn version_of(&self, tag: &str) -> Option<Version> {
        let version = Version::parse(without_variant(tag, self.variant.as_deref())?)?;
        if let Some(constraint) = &self.constraint {
            if !constraint.matches(&version, false) {
                return None;
            }
        }
        if version.is_prerelease() && !self.allows_prerelease(&version.pre) {
            return None;
        }
        Some(version)
    }

    fn allows_prerelease(&self, pre: &str) -> bool {
        if !self.pre_releases || (self.prefixes.is_empty() && pre.contains('-')) {
            return false;
        }
        PRE_RELEASE_PREFIXES
            .iter()
            .copied()
            .chain(self.prefixes.iter().map(String::as_str))
            .any(|prefix| pre.starts_with(prefix))
    }
}

/// The release versions among `tags` with `variant`'s suffix (taken off), for alias
/// decisions: pre-releases, other variants and other words are left out.
#[must_use]
pub fn releases(tags: &[String], variant: Option<&str>) -> Vec<Version> {
    tags.iter()
        .filter_map(|tag| Version::parse(without_variant(tag, variant)?).filter(|v| !v.is_prerelease()))
        .collect()
}

/// `tag` without its `-<variant>` suffix; `None` when a variant is asked for and the tag
/// lacks it.
fn without_variant<'a>(tag: &'a str, variant: Option<&str>) -> Option<&'a str> {
    match variant {
        Some(v) => tag.strip_suffix(v)?.strip_suffix('-'),
        None => Some(tag),
    }
}

/// Why a constraint does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{part:?} is not a version constraint (write e.g. `~1.2`, `^1`, `>= 1.2, < 3` or `1.2.x || >= 4.2.3`)"
)]
pub struct ConstraintError {
    /// The part at fault.
    pub part: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=` or nothing: equal, or a range when the version has wildcards.
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    /// `~` or `~>`: same minor (same major when only the major is given).
    Tilde,
    /// `^`: same major (same minor, same patch below 1.0.0).
    Caret,
}

/// Which parts of a comparison's version are wildcards, as Masterminds reads them: `*`
/// (or a wild major, `x.2.3`) leaves the version `0.0.0` with everything wild but counted
/// as neither minor nor patch; `1`, `1.x` (and `1.x.2`) have a wild minor; `1.2` and
/// `1.2.x` a wild patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wild {
    None,
    All,
    Minor,
    Patch,
}

/// The version of one comparison and its wildcards.
#[derive(Debug, Clone)]
struct Bound {
    version: Version,
    wild: Wild,
}

impl Bound {
    fn dirty(&self) -> bool {
        self.wild != Wild::None
    }
    fn minor_wild(&self) -> bool {
        self.wild == Wild::Minor
    }
    fn patch_wild(&self) -> bool {
        self.wild == Wild::Patch
    }
}

#[derive(Debug, Clone)]
struct Comparison {
    op: Op,
    bound: Bound,
}

/// A constraint: groups joined by `||`, each a list of comparisons that must all hold.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<Group>,
}

#[derive(Debug, Clone)]
struct Group {
    comparisons: Vec<Comparison>,
    /// Some comparison names a pre-release, which lets pre-releases through this group.
    names_prerelease: bool,
}

impl Constraint {
    /// Reads a constraint.
    ///
    /// # Errors
    /// When some part is not a comparison.
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let error = |part: &str| ConstraintError {
            part: part.trim().chars().take(80).collect(),
        };
        if text.len() > MAX_TEXT {
            return Err(error(text));
        }
        let groups = text
            .split("||")
            .map(|group| {
                let comparisons = parse_group(group).ok_or_else(|| error(group))?;
                let names_prerelease = comparisons.iter().any(|c| c.bound.version.is_prerelease());
                Ok(Group {
                    comparisons,
                    names_prerelease,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { groups })
    }

    /// Whether `version` satisfies it. A pre-release satisfies a group only when one of
    /// the group's comparisons names a pre-release, or when `prereleases` is set.
    #[must_use]
    pub fn matches(&self, version: &Version, prereleases: bool) -> bool {
        self.groups.iter().any(|group| {
            (!version.is_prerelease() || prereleases || group.names_prerelease)
                && group.comparisons.iter().all(|c| c.holds(version))
        })
    }
}

/// `A - B` ranges, then comparisons separated by spaces or commas.
fn parse_group(group: &str) -> Option<Vec<Comparison>> {
    let words: Vec<&str> = group
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    // an operator may stand apart from its version: `>= 1.2`
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_op: Option<&str> = None;
    for word in words {
        if word.bytes().all(|b| b"=!<>~^".contains(&b)) {
            if pending_op.replace(word).is_some() {
                return None;
            }
            continue;
        }
        tokens.push(format!("{}{word}", pending_op.take().unwrap_or("")));
    }
    if pending_op.is_some() || tokens.is_empty() {
        return None;
    }
    let mut comparisons = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // a hyphen range: `<version> - <version>`, the `-` standing alone
        if tokens.get(i + 1).map(String::as_str) == Some("-") {
            let low = parse_bound(&tokens[i])?;
            let high = parse_bound(tokens.get(i + 2)?)?;
            comparisons.push(Comparison {
                op: Op::GreaterEqual,
                bound: low,
            });
            comparisons.push(Comparison {
                op: Op::LessEqual,
                bound: high,
            });
            i += 3;
            continue;
        }
        comparisons.push(parse_comparison(&tokens[i])?);
        i += 1;
    }
    Some(comparisons)
}

fn parse_comparison(token: &str) -> Option<Comparison> {
    let split = token.find(|c: char| !"=!<>~^".contains(c)).unwrap_or(token.len());
    let (op, version) = token.split_at(split);
    let op = match op {
        "" | "=" => Op::Equal,
        "!=" => Op::NotEqual,
        ">" => Op::Greater,
        "<" => Op::Less,
        ">=" | "=>" => Op::GreaterEqual,
        "<=" | "=<" => Op::LessEqual,
        "~" | "~>" => Op::Tilde,
        "^" => Op::Caret,
        _ => return None,
    };
    Some(Comparison {
        op,
        bound: parse_bound(version)?,
    })
}

fn is_wild(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// `1`, `1.2`, `1.x`, `1.2.*`, `v1.2.3-rc.1`, `*`. Build metadata is dropped, as
/// Masterminds drops it.
fn parse_bound(text: &str) -> Option<Bound> {
    let rest = text.strip_prefix('v').unwrap_or(text);
    let (rest, build) = match rest.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (rest, None),
    };
    if build.is_some_and(|b| !valid_identifiers(b, false)) {
        return None;
    }
    let (numbers, pre) = match rest.split_once('-') {
        Some((numbers, pre)) => (numbers, format!("-{pre}")),
        None => (rest, String::new()),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let number_or_wild = |p: &&str| is_wild(p) || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if parts.len() > 3 || !parts.iter().all(number_or_wild) {
        return None;
    }
    let part = |i: usize| parts.get(i).copied().filter(|p| !is_wild(p));
    let (text, wild) = match (part(0), part(1), part(2)) {
        (None, _, _) => (format!("0.0.0{pre}"), Wild::All),
        (Some(major), None, _) => (format!("{major}.0.0{pre}"), Wild::Minor),
        (Some(major), Some(minor), None) => (format!("{major}.{minor}.0{pre}"), Wild::Patch),
        (Some(major), Some(minor), Some(patch)) => (format!("{major}.{minor}.{patch}{pre}"), Wild::None),
    };
    Some(Bound {
        version: Version::parse(&text)?,
        wild,
    })
}

impl Comparison {
    /// Masterminds' operators, pre-releases aside (the group decides those).
    fn holds(&self, v: &Version) -> bool {
        let b = &self.bound;
        let c = &b.version;
        let order = v.precedence(c);
        match self.op {
            Op::Equal if b.dirty() => tilde(v, b),
            Op::Equal => order == Ordering::Equal,
            Op::NotEqual => not_equal(v, b),
            Op::Greater if !b.dirty() => order == Ordering::Greater,
            // `> 1.x` means 2 or more; `> 1.2` means 1.3 or more
            Op::Greater => match v.major.cmp(&c.major) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal if b.minor_wild() => false,
                Ordering::Equal if b.patch_wild() => v.minor > c.minor,
                Ordering::Equal => order == Ordering::Greater,
            },
            Op::Less => order == Ordering::Less,
            Op::GreaterEqual => order != Ordering::Less,
            Op::LessEqual if !b.dirty() => order != Ordering::Greater,
            // `<= 1.2` takes in all of 1.2.x; `<= 1` all of 1.x
            Op::LessEqual => {
                !(v.major > c.major || (v.major == c.major && v.minor > c.minor && !b.minor_wild()))
            }
            Op::Tilde => tilde(v, b),
            Op::Caret => caret(v, b),
        }
    }
}

/// `!= 1.2.3`; `!= 1.2` excludes all of 1.2.x, `!= 1` all of 1.x.
fn not_equal(v: &Version, b: &Bound) -> bool {
    let c = &b.version;
    if b.dirty() {
        if c.major != v.major || (c.minor != v.minor && !b.minor_wild()) {
            return true;
        }
        if b.minor_wild() {
            return false;
        }
        if c.patch != v.patch && !b.patch_wild() {
            return true;
        }
        if b.patch_wild() {
            return (!v.pre.is_empty() || !c.pre.is_empty())
                && compare_pre(&v.pre, &c.pre) != Ordering::Equal;
        }
    }
    v.precedence(c) != Ordering::Equal
}

/// `~1.2.3`: at least 1.2.3, below 1.3.0; `~1`: below 2.0.0; `~0.0.0` and `~*`: anything.
fn tilde(v: &Version, b: &Bound) -> bool {
    let c = &b.version;
    if v.precedence(c) == Ordering::Less {
        return false;
    }
    if c.core() == (0, 0, 0) && !b.minor_wild() && !b.patch_wild() {
        return true;
    }
    v.major == c.major && (b.minor_wild() || v.minor == c.minor)
}

/// `^1.2.3`: at least 1.2.3, below 2.0.0; `^0.2.3`: below 0.3.0; `^0.0.3`: only 0.0.3.
/// (`^*` is read as Masterminds reads it: as `^0.0.0`.)
fn caret(v: &Version, b: &Bound) -> bool {
    let c = &b.version;
    if v.precedence(c) == Ordering::Less {
        return false;
    }
    if c.major > 0 || b.minor_wild() {
        return v.major == c.major;
    }
    if v.major > 0 {
        return false;
    }
    if c.minor > 0 || b.patch_wild() {
        return v.minor == c.minor;
    }
    if v.minor > 0 {
        return false;
    }
    v.patch == c.patch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn versions_parse_loosely() {
        assert_eq!(v("1").to_string(), "1.0.0");
        assert_eq!(v("v1.2").to_string(), "1.2.0");
        assert_eq!(v("1.02.3").to_string(), "1.2.3");
        assert_eq!(v("1.2.3-rc.1+build.7").to_string(), "1.2.3-rc.1+build.7");
        assert_eq!(v("1.2").parts, 2);
        for bad in [
            "",
            "v",
            "latest",
            "1.2.3.4",
            "1..2",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "-1",
            "1.2.3+",
            "1.2.a",
            "V1",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn precedence_follows_semver() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1",
            "2",
        ];
        for pair in order.windows(2) {
            assert_eq!(v(pair[0]).precedence(&v(pair[1])), Ordering::Less, "{pair:?}");
        }
        assert_eq!(v("1.0.0+a").precedence(&v("1.0.0+b")), Ordering::Equal);
    }

    fn holds(constraint: &str, version: &str) -> bool {
        Constraint::parse(constraint)
            .unwrap_or_else(|e| panic!("{constraint}: {e}"))
            .matches(&v(version), false)
    }

    /// Cases from Masterminds' own documentation of each operator.
    #[test]
    fn constraints_match_as_masterminds_documents() {
        let table: &[(&str, &str, bool)] = &[
            ("1.2.3", "1.2.3", true),
            ("1.2.3", "1.2.4", false),
            ("=1.2", "1.2.9", true),
            ("1.2.x", "1.2.9", true),
            ("1.2.x", "1.3.0", false),
            ("1.x", "1.9.0", true),
            ("*", "7.0.0", true),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1.2.3", "1.2.2", false),
            ("~1", "1.9.9", true),
            ("~1", "2.0.0", false),
            ("~1.2.x", "1.2.0", true),
            ("~1.2.x", "1.3.0", false),
            ("~>1.2", "1.2.5", true),
            ("^1.2.3", "1.9.0", true),
            ("^1.2.3", "2.0.0", false),
            ("^1.2.3", "1.2.2", false),
            ("^1", "1.0.0", true),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.9", true),
            ("^0.0", "0.1.0", false),
            ("^0", "0.9.0", true),
            ("^0", "1.0.0", false),
            (">= 1.2 < 3.0.0 || >= 4.2.3", "2.9.9", true),
            (">= 1.2 < 3.0.0 || >= 4.2.3", "3.5.0", false),
            (">= 1.2 < 3.0.0 || >= 4.2.3", "4.2.3", true),
            (">=1.2, <3", "1.2.0", true),
            (">=1.2, <3", "3.0.0", false),
            ("1.2 - 1.4.5", "1.4.5", true),
            ("1.2 - 1.4.5", "1.4.6", false),
            ("1.2 - 1.4.5", "1.1.9", false),
            ("1.2.3 - 2", "2.9.0", true),
            ("1.2.3 - 2", "3.0.0", false),
            ("!=1.2.3", "1.2.4", true),
            ("!=1.2.3", "1.2.3", false),
            ("!=1.2", "1.2.7", false),
            ("!=1.2", "1.3.0", true),
            (">1.2", "1.2.9", false),
            (">1.2", "1.3.0", true),
            (">1", "1.9.0", false),
            (">1", "2.0.0", true),
            (">1.2.3", "1.2.4", true),
            ("<=1.2", "1.2.9", true),
            ("<=1.2", "1.3.0", false),
            ("<1.2", "1.1.9", true),
            ("<1.2", "1.2.0", false),
            ("v1.2.x", "1.2.1", true),
            ("~*", "7.0.0", true),
            ("1.x.2", "1.5.0", true),
            ("x.2.3", "9.0.0", true),
            // Masterminds' readings of the odd forms, kept so pipelines see what they saw
            (">*", "0.5.0", true),
            ("<=*", "0.5.0", false),
            ("<=*", "0.0.5", true),
            ("!=*", "0.5.0", true),
            ("!=*", "0.0.0", false),
            ("!=1.2-rc", "1.2.5", true),
            ("^*", "1.0.0", false),
            ("=1.2.3+build", "1.2.3", true),
        ];
        for (constraint, version, expected) in table {
            assert_eq!(holds(constraint, version), *expected, "{constraint} on {version}");
        }
    }

    #[test]
    fn prereleases_pass_only_when_named_or_allowed() {
        assert!(!holds(">=1.0.0", "1.1.0-rc.1"));
        assert!(holds(">=1.0.0-0", "1.1.0-rc.1"));
        assert!(holds(">=1.0.0-beta || >=9", "1.0.0-rc.1"));
        let c = Constraint::parse("~1.1").unwrap();
        assert!(c.matches(&v("1.1.1-rc.1"), true));
        assert!(!c.matches(&v("1.1.1-rc.1"), false));
    }

    #[test]
    fn bad_constraints_are_refused() {
        for bad in [
            "", "latest", ">=", "1.2.3.4", "> > 1", "=~1", "1.2 -", "|| 1", "1.2.3+", "1.a",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?}");
        }
        let e = Constraint::parse(">= 1 || bogus").unwrap_err();
        assert_eq!(e.part, "bogus");
    }
}
