//! `out` with `params.version`, `bump_aliases` and `tag_prefix`, through the binary against
//! a real registry. The alias cases port the Go resource's `out_test.go` table ("pushing
//! semver tags"), each naming its entry.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::archive::oci_archive;
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::registry::Registry;

fn push(source: &Value, params: &Value, src: &Path) -> Output {
    bin::run(
        "out",
        &json!({"source": source, "params": params}),
        &[src.to_str().unwrap()],
    )
}

/// A work directory holding `image.tar` of a fresh image; returns it and the digest.
fn work(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::with_file(content, OCI_MANIFEST);
    let digest = oci_archive(&[(&image, "amd64")], &dir.path().join("image.tar"));
    (dir, digest)
}

/// The tags `out` reported, in order.
fn pushed(out: &Output) -> Vec<String> {
    let response = out.one_json_line("out");
    let tags = response["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tags")
        .expect("a tags metadata field")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response["version"]["tag"].as_str().unwrap(),
        tags.split(' ').next().unwrap(),
        "the version's tag is the first pushed"
    );
    tags.split(' ').map(str::to_owned).collect()
}

struct Case {
    upstream: &'static str,
    variant: Option<&'static str>,
    /// Tags in the repository before the push (`None`: no repository at all).
    existing: Option<&'static [&'static str]>,
    version: &'static str,
    /// Expected tags, in push order.
    expected: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let case = |upstream, variant, existing, version, expected| Case {
        upstream,
        variant,
        existing,
        version,
        expected,
    };
    vec![
        case(
            "bumping aliases with no existing image",
            None,
            None,
            "1.2.3",
            &["1.2.3", "latest", "1", "1.2"],
        ),
        case(
            "bumping aliases with no existing tags",
            None,
            Some(&[]),
            "1.2.3",
            &["1.2.3", "latest", "1", "1.2"],
        ),
        case(
            "not bumping aliases if a prerelease is given",
            None,
            Some(&[]),
            "1.2.3-alpha.1",
            &["1.2.3-alpha.1"],
        ),
        case(
            "bumping aliases if only older versions exist",
            None,
            Some(&["1.2.2"]),
            "1.2.3",
            &["1.2.3", "latest", "1", "1.2"],
        ),
        case(
            "not bumping anything if a newer patch already exists",
            None,
            Some(&["1.2.4"]),
            "1.2.3",
            &["1.2.3"],
        ),
        case(
            "not bumping major if a newer minor already exists",
            None,
            Some(&["1.3.0"]),
            "1.2.3",
            &["1.2.3", "1.2"],
        ),
        case(
            "bumping minor and major, but not latest, if a newer major version exists",
            None,
            Some(&["2.0.0"]),
            "1.2.3",
            &["1.2.3", "1", "1.2"],
        ),
        case(
            "bumping everything even if a newer non-variant minor exists",
            Some("lts"),
            Some(&["1.3.0"]),
            "1.2.3",
            &["1.2.3-lts", "lts", "1-lts", "1.2-lts"],
        ),
        case(
            "bumping everything if the only available version is a prerelease",
            None,
            Some(&["2.0.0-rc.1"]),
            "1.2.3",
            &["1.2.3", "latest", "1", "1.2"],
        ),
        case(
            "bumping everything if the only available version is a different variant",
            Some("hello"),
            Some(&["2.0.0-goodbye"]),
            "1.2.3",
            &["1.2.3-hello", "hello", "1-hello", "1.2-hello"],
        ),
        case(
            "bumping variant aliases with no existing image",
            Some("hello"),
            None,
            "1.2.3",
            &["1.2.3-hello", "hello", "1-hello", "1.2-hello"],
        ),
        case(
            "bumping variant aliases with no existing tags",
            Some("hello"),
            Some(&[]),
            "1.2.3",
            &["1.2.3-hello", "hello", "1-hello", "1.2-hello"],
        ),
        case(
            "bumping minor and major, but not latest, if a newer major version exists with the same variant",
            Some("hello"),
            Some(&["2.0.0-hello"]),
            "1.2.3",
            &["1.2.3-hello", "1-hello", "1.2-hello"],
        ),
        case(
            "bumping aliases if only older versions exist of the same variant",
            Some("hello"),
            Some(&["1.2.2-hello"]),
            "1.2.3",
            &["1.2.3-hello", "hello", "1-hello", "1.2-hello"],
        ),
        case(
            "not bumping anything if a newer patch already exists of the same variant",
            Some("hello"),
            Some(&["1.2.4-hello"]),
            "1.2.3",
            &["1.2.3-hello"],
        ),
        case(
            "not bumping major if a newer minor already exists of the same variant",
            Some("hello"),
            Some(&["1.3.0-hello"]),
            "1.2.3",
            &["1.2.3-hello", "1.2-hello"],
        ),
        case(
            "semver tag with no variant (v and missing parts normalised)",
            None,
            Some(&[]),
            "v1.2",
            &["1.2.0", "latest", "1", "1.2"],
        ),
    ]
}

#[test]
fn upstream_alias_table() {
    let reg = Registry::plain();
    for (i, case) in cases().iter().enumerate() {
        let name = format!("aliases{i}");
        let old = Image::with_file(&format!("old-{i}"), OCI_MANIFEST);
        let mut before = std::collections::HashMap::new();
        for tag in case.existing.unwrap_or(&[]) {
            before.insert(*tag, reg.push(&name, tag, &old));
        }
        if case.existing == Some(&[]) {
            // a repository that exists, with no tags left
            let digest = reg.push(&name, "gone", &old);
            reg.delete(&name, &digest);
        }
        let (dir, digest) = work(&format!("new-{i}"));
        let mut source = json!({"repository": reg.repo(&name)});
        if let Some(variant) = case.variant {
            source["variant"] = json!(variant);
        }
        let out = push(
            &source,
            &json!({"image": "image.tar", "version": case.version, "bump_aliases": true}),
            dir.path(),
        );
        assert_eq!(
            pushed(&out),
            case.expected,
            "upstream entry {:?}\nstderr:\n{}",
            case.upstream,
            out.stderr
        );
        for tag in case.expected {
            assert_eq!(
                reg.digest_of(&name, tag).as_deref(),
                Some(digest.as_str()),
                "{}: {tag}",
                case.upstream
            );
        }
        for (tag, old) in before {
            assert_eq!(
                reg.digest_of(&name, tag).as_deref(),
                Some(old.as_str()),
                "{}: {tag} untouched",
                case.upstream
            );
        }
    }
}

/// The scenario: 1.2.3 moves 1.2, 1 and latest; a 1.1.9 pushed after it moves none.
#[test]
fn an_older_release_pushed_later_moves_no_alias() {
    let reg = Registry::plain();
    let source = json!({"repository": reg.repo("app")});
    let (dir, newer) = work("1.2.3");
    let out = push(
        &source,
        &json!({"image": "image.tar", "version": "1.2.3", "bump_aliases": true}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["1.2.3", "latest", "1", "1.2"]);
    let (dir, older) = work("1.1.9");
    let out = push(
        &source,
        &json!({"image": "image.tar", "version": "1.1.9", "bump_aliases": true}),
        dir.path(),
    );
    assert_eq!(
        pushed(&out),
        ["1.1.9", "1.1"],
        "1.1 is new, so it is the newest of its line"
    );
    for (tag, digest) in [
        ("latest", &newer),
        ("1", &newer),
        ("1.2", &newer),
        ("1.2.3", &newer),
        ("1.1.9", &older),
        ("1.1", &older),
    ] {
        assert_eq!(reg.digest_of("app", tag).as_ref(), Some(digest), "{tag}");
    }
}

#[test]
fn version_tags_come_between_the_source_tag_and_the_additional_tags() {
    let reg = Registry::plain();
    let (dir, digest) = work("ordered");
    std::fs::write(dir.path().join("tags"), "extra other\n").unwrap();
    // no source.tag: `latest` only through bump_aliases, which is off
    let out = push(
        &json!({"repository": reg.repo("ordered")}),
        &json!({"image": "image.tar", "version": "2.0.0", "additional_tags": "tags"}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["2.0.0", "extra", "other"]);
    assert_eq!(
        reg.digest_of("ordered", "latest"),
        None,
        "a version push does not imply latest"
    );
    // with source.tag, it comes first; the prefix goes on the additional tags only
    let out = push(
        &json!({"repository": reg.repo("ordered"), "tag": "edge"}),
        &json!({"image": "image.tar", "version": "2.0.1", "additional_tags": "tags", "tag_prefix": "dev-"}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["edge", "2.0.1", "dev-extra", "dev-other"]);
    // a variant is appended to the version (variant and tag exclude each other, as in check)
    let out = push(
        &json!({"repository": reg.repo("ordered"), "variant": "slim"}),
        &json!({"image": "image.tar", "version": "2.0.2"}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["2.0.2-slim"]);
    // a variant's source implies no `latest`: without a version, only the additional tags
    let out = push(
        &json!({"repository": reg.repo("ordered"), "variant": "slim"}),
        &json!({"image": "image.tar", "additional_tags": "tags"}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["extra", "other"]);
    for tag in [
        "edge",
        "2.0.1",
        "2.0.2-slim",
        "dev-extra",
        "dev-other",
        "2.0.0",
        "extra",
    ] {
        assert_eq!(
            reg.digest_of("ordered", tag).as_deref(),
            Some(digest.as_str()),
            "{tag}"
        );
    }
    // without a version, the source tag (default latest) and the additional tags, as always
    let out = push(
        &json!({"repository": reg.repo("ordered")}),
        &json!({"image": "image.tar", "additional_tags": "tags", "tag_prefix": "v-"}),
        dir.path(),
    );
    assert_eq!(pushed(&out), ["latest", "v-extra", "v-other"]);
}

/// Errors found before any request: a registry that is not there would fail otherwise.
#[test]
fn bad_version_params_fail_before_any_request() {
    let (dir, _) = work("never pushed");
    let nowhere = json!({"repository": "127.0.0.1:1/app"});
    for (source, params, wanted) in [
        (
            nowhere.clone(),
            json!({"image": "image.tar", "version": "hoogily-boogily"}),
            "params.version \"hoogily-boogily\" is not a semantic version",
        ),
        (
            nowhere.clone(),
            json!({"image": "image.tar", "version": "1.2.3+build.4"}),
            "has build metadata",
        ),
        (
            nowhere.clone(),
            json!({"image": "image.tar", "tag_prefix": "dev-"}),
            "params.tag_prefix is set but there are no additional tags",
        ),
        (
            json!({"repository": "127.0.0.1:1/app", "variant": "slim"}),
            json!({"image": "image.tar"}),
            "nothing to push: source.variant is set",
        ),
        (
            nowhere.clone(),
            json!({"image": "image.tar", "additional_tags": "tags", "tag_prefix": "bad/"}),
            "params.tag_prefix \"bad/\" makes \"bad/x\", which is not a valid tag",
        ),
    ] {
        std::fs::write(dir.path().join("tags"), "x\n").unwrap();
        let line = push(&source, &params, dir.path()).error_line();
        assert!(line.contains(wanted), "{params}: {line}");
    }
}
