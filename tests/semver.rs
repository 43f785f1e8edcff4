//! `check` in semver and regex mode, through the binary, against a real registry holding
//! the tags of the Go resource's `check_test.go` table ("tracking semver tags"). Each case
//! names the upstream entry it ports; where we answer differently on purpose, it says why.

mod support;

use serde_json::{json, Value};
use support::bin::{self, Output};
use support::image::{Image, OCI_MANIFEST};
use support::registry::Registry;

/// One upstream table entry.
struct Case {
    /// The upstream entry's text.
    upstream: &'static str,
    /// Source fields besides `repository`.
    source: Value,
    /// Tags in the order pushed, each with its image.
    tags: &'static [(&'static str, u32)],
    /// The cursor: its tag and the image its digest is of (0: a digest never pushed).
    cursor: Option<(&'static str, u32)>,
    /// Expected versions, oldest first.
    expected: &'static [&'static str],
}

fn image(n: u32) -> Image {
    Image::with_file(&format!("random-{n}"), OCI_MANIFEST)
}

fn check(input: &Value) -> Output {
    bin::run("check", input, &[])
}

fn versions(out: &Output) -> Vec<(String, String)> {
    out.one_json_line("check")
        .as_array()
        .expect("check prints an array")
        .iter()
        .map(|v| {
            (
                v["tag"].as_str().unwrap().to_owned(),
                v["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Pushes the case's tags to their own repository, runs `check`, compares.
fn run_case(reg: &Registry, index: usize, case: &Case) {
    let name = format!("table{index}");
    let mut digest_of_tag = std::collections::HashMap::new();
    for (tag, n) in case.tags {
        digest_of_tag.insert(*tag, reg.push(&name, tag, &image(*n)));
    }
    let mut source = case.source.clone();
    source["repository"] = json!(reg.repo(&name));
    let mut input = json!({ "source": source });
    if let Some((tag, n)) = case.cursor {
        let digest = if n == 0 {
            support::image::sha256(b"bogus")
        } else {
            image(n).digest()
        };
        input["version"] = json!({"tag": tag, "digest": digest});
    }
    let out = check(&input);
    let mut expected: Vec<(String, String)> = case
        .expected
        .iter()
        .map(|t| ((*t).to_owned(), digest_of_tag[t].clone()))
        .collect();
    if case.source.get("tag_regex").is_some() && case.source.get("created_at_sort") != Some(&json!(true)) {
        // regex mode keeps the registry's order, which docker-registry does not define
        let listed = reg.list_tags(&name);
        expected.sort_by_key(|(tag, _)| listed.iter().position(|t| t == tag));
    }
    assert_eq!(
        versions(&out),
        expected,
        "upstream entry {:?}\nstderr:\n{}",
        case.upstream,
        out.stderr
    );
}

const PRERELEASES: &[(&str, u32)] = &[
    ("1.0.0-alpha.1", 10),
    ("1.0.0", 1),
    ("1.2.1-beta.1", 2),
    ("1.2.1", 3),
    ("2.0.0-rc.1", 4),
    ("2.0.0", 5),
];

/// The semver entries. Semver mode needs a semver option here (`pre_releases: false` is
/// the smallest); upstream enters it by leaving `tag` out, where we keep tracking `latest`.
fn semver_cases() -> Vec<Case> {
    let semver = || json!({"pre_releases": false});
    vec![
        Case {
            upstream: "no semver tags",
            source: semver(),
            tags: &[("non-semver-tag", 1)],
            cursor: None,
            expected: &[],
        },
        Case {
            upstream: "latest tag",
            source: semver(),
            tags: &[("non-semver-tag", 1), ("latest", 2)],
            cursor: None,
            expected: &["latest"],
        },
        Case {
            upstream: "semver and non-semver tags",
            source: semver(),
            tags: &[("1.0.0", 1), ("non-semver-tag", 2)],
            cursor: None,
            expected: &["1.0.0"],
        },
        Case {
            upstream: "semver tag ordering",
            source: semver(),
            tags: &[("1.0.0", 1), ("1.2.1", 3), ("2.0.0", 5)],
            cursor: None,
            expected: &["1.0.0", "1.2.1", "2.0.0"],
        },
        Case {
            upstream: "semver tag ordering with cursor",
            source: semver(),
            tags: &[("1.0.0", 1), ("1.2.1", 3), ("2.0.0", 5)],
            cursor: Some(("1.2.1", 3)),
            expected: &["1.2.1", "2.0.0"],
        },
        Case {
            upstream: "semver tag ordering with cursor with different digest",
            source: semver(),
            tags: &[("1.0.0", 1), ("1.2.1", 3), ("2.0.0", 5)],
            cursor: Some(("1.2.1", 0)),
            expected: &["1.0.0", "1.2.1", "2.0.0"],
        },
        Case {
            upstream: "semver constraint",
            source: json!({"semver_constraint": "1.2.x"}),
            tags: &[
                ("1.0.0", 1),
                ("1.2.1", 3),
                ("1.2.2", 4),
                ("v1.2.3", 9),
                ("2.0.0", 5),
                ("latest", 6),
            ],
            cursor: None,
            expected: &["1.2.1", "1.2.2", "v1.2.3"],
        },
        Case {
            upstream: "prereleases ignored by default",
            source: semver(),
            tags: PRERELEASES,
            cursor: None,
            expected: &["1.0.0", "1.2.1", "2.0.0"],
        },
        Case {
            upstream: "prereleases opted in",
            source: json!({"pre_releases": true}),
            tags: PRERELEASES,
            cursor: None,
            expected: &[
                "1.0.0-alpha.1",
                "1.0.0",
                "1.2.1-beta.1",
                "1.2.1",
                "2.0.0-rc.1",
                "2.0.0",
            ],
        },
        Case {
            upstream: "prerelease prefixes opted in",
            source: json!({"pre_releases": true, "pre_release_prefixes": ["build"]}),
            tags: &[
                ("1.0.0-alpha.1", 10),
                ("1.0.0", 1),
                ("1.2.1-beta.1", 2),
                ("1.2.1", 3),
                ("2.0.0-rc.1", 4),
                ("2.0.0", 5),
                ("2.0.0-build.1", 6),
            ],
            cursor: None,
            expected: &[
                "1.0.0-alpha.1",
                "1.0.0",
                "1.2.1-beta.1",
                "1.2.1",
                "2.0.0-build.1",
                "2.0.0-rc.1",
                "2.0.0",
            ],
        },
        Case {
            upstream: "prereleases do not include 'variants'",
            source: json!({"pre_releases": true}),
            tags: &[
                ("1.0.0-alpha.1", 10),
                ("1.0.0-beta.1", 1),
                ("1.0.0-rc.1", 2),
                ("1.0.0-foo.1", 3),
            ],
            cursor: None,
            expected: &["1.0.0-alpha.1", "1.0.0-beta.1", "1.0.0-rc.1"],
        },
        Case {
            upstream: "prereleases do not require dot",
            source: json!({"pre_releases": true}),
            tags: &[
                ("1.0.0-alpha1", 10),
                ("1.0.0-alpha2", 1),
                ("1.0.0-beta1", 2),
                ("1.0.0-beta2", 3),
                ("1.0.0-rc1", 4),
                ("1.0.0-rc2", 5),
                ("1.0.0-foo1", 6),
                ("1.0.0-foo2", 7),
            ],
            cursor: None,
            expected: &[
                "1.0.0-alpha1",
                "1.0.0-alpha2",
                "1.0.0-beta1",
                "1.0.0-beta2",
                "1.0.0-rc1",
                "1.0.0-rc2",
            ],
        },
        Case {
            upstream: "prereleases do not require number",
            source: json!({"pre_releases": true}),
            tags: &[
                ("1.0.0-alpha", 10),
                ("1.0.0-beta", 1),
                ("1.0.0-rc", 2),
                ("1.0.0-foo", 3),
            ],
            cursor: None,
            expected: &["1.0.0-alpha", "1.0.0-beta", "1.0.0-rc"],
        },
        Case {
            upstream: "final versions take priority over rcs",
            source: json!({"pre_releases": true}),
            tags: &[("1.0.0-rc.1", 2), ("1.0.0-rc1", 2), ("1.0.0-rc", 2), ("1.0.0", 2)],
            cursor: None,
            expected: &["1.0.0"],
        },
        Case {
            upstream: "mixed specificity semver tags",
            source: semver(),
            tags: &[
                ("1", 1),
                ("2", 2),
                ("2.1", 2),
                ("latest", 3),
                ("3", 3),
                ("3.2", 3),
                ("3.2.1", 3),
                ("3.1", 4),
                ("3.1.0", 4),
                ("3.0", 5),
                ("3.0.0", 5),
            ],
            cursor: None,
            expected: &["1", "2.1", "3.0.0", "3.1.0", "3.2.1"],
        },
        // Upstream appends `latest` here, its digest being no version's. That is the
        // rule behind its #316 and #351: we never list the bare tag beside versions.
        Case {
            upstream: "semver tags with latest tag having unique digest (we: no latest, #316/#351)",
            source: semver(),
            tags: &[("1.0.0", 1), ("non-semver-tag", 2), ("latest", 3)],
            cursor: None,
            expected: &["1.0.0"],
        },
        Case {
            upstream: "latest tag pointing to latest version",
            source: semver(),
            tags: &[("1", 1), ("2", 2), ("3", 3), ("latest", 3)],
            cursor: None,
            expected: &["1", "2", "3"],
        },
        Case {
            upstream: "latest tag pointing to older version",
            source: semver(),
            tags: &[("1", 1), ("2", 2), ("latest", 2), ("3", 3)],
            cursor: None,
            expected: &["1", "2", "3"],
        },
        Case {
            upstream: "variants",
            source: json!({"variant": "foo"}),
            tags: &[
                ("latest", 1),
                ("1.0.0", 1),
                ("0.9.0", 2),
                ("foo", 3),
                ("1.0.0-foo", 3),
                ("0.9.0-foo", 4),
                ("bar", 5),
                ("1.0.0-bar", 5),
                ("0.9.0-bar", 6),
            ],
            cursor: None,
            expected: &["0.9.0-foo", "1.0.0-foo"],
        },
        // Upstream: [0.8.0-foo, foo]; the bare variant is `latest`'s twin (see above).
        Case {
            upstream:
                "variant with bare variant tag pointing to unique digest (we: no bare variant, #316/#351)",
            source: json!({"variant": "foo"}),
            tags: &[
                ("latest", 1),
                ("1.0.0", 1),
                ("0.9.0", 2),
                ("foo", 3),
                ("0.8.0-foo", 4),
                ("bar", 5),
                ("1.0.0-bar", 5),
                ("0.9.0-bar", 6),
            ],
            cursor: None,
            expected: &["0.8.0-foo"],
        },
        Case {
            upstream: "bare variant alone (ours: the bare tag stands in when no tag is a version)",
            source: json!({"variant": "foo"}),
            tags: &[("latest", 1), ("1.0.0", 1), ("foo", 3), ("1.0.0-bar", 5)],
            cursor: None,
            expected: &["foo"],
        },
        Case {
            upstream: "distinguishing additional variants from prereleases",
            source: json!({"variant": "foo", "pre_releases": true}),
            tags: &[
                ("1.0.0-foo", 1),
                ("1.0.0-rc.1-foo", 2),
                ("1.0.0-alpha.1-foo", 3),
                ("1.0.0-beta.1-foo", 4),
                ("1.0.0-bar-foo", 5),
                ("1.0.0-rc.1-bar-foo", 6),
                ("1.0.0-alpha.1-bar-foo", 7),
                ("1.0.0-beta.1-bar-foo", 8),
            ],
            cursor: None,
            expected: &[
                "1.0.0-alpha.1-foo",
                "1.0.0-beta.1-foo",
                "1.0.0-rc.1-foo",
                "1.0.0-foo",
            ],
        },
        Case {
            upstream: "opting in to prereleases allows additional '-' suffixes before variant",
            source: json!({"variant": "foo", "pre_releases": true, "pre_release_prefixes": ["build"]}),
            tags: &[
                ("1.0.0-build-foo", 1),
                ("1.0.0-rc.1-foo", 2),
                ("1.0.0-alpha.1-foo", 3),
                ("1.0.0-beta.1-foo", 4),
                ("1.0.0-bar-foo", 5),
                ("1.0.0-rc.1-bar-foo", 6),
                ("1.0.0-alpha.1-bar-foo", 7),
                ("1.0.0-beta.1-bar-foo", 8),
            ],
            cursor: None,
            expected: &[
                "1.0.0-alpha.1-foo",
                "1.0.0-alpha.1-bar-foo",
                "1.0.0-beta.1-foo",
                "1.0.0-beta.1-bar-foo",
                "1.0.0-build-foo",
                "1.0.0-rc.1-foo",
                "1.0.0-rc.1-bar-foo",
            ],
        },
        Case {
            upstream: "ours: pre-releases opted in still meet the constraint's rule (it names none)",
            source: json!({"pre_releases": true, "semver_constraint": "1.x"}),
            tags: &[("1.0.0", 1), ("1.1.0-rc.1", 2), ("1.1.0", 3)],
            cursor: None,
            expected: &["1.0.0", "1.1.0"],
        },
        Case {
            upstream: "ours: with a constraint the bare tag never stands in",
            source: json!({"semver_constraint": "~2"}),
            tags: &[("1.0.0", 1), ("latest", 2)],
            cursor: None,
            expected: &[],
        },
    ]
}

/// The regex entries.
fn regex_cases() -> Vec<Case> {
    vec![
        Case {
            upstream: "no matching regex tags",
            source: json!({"tag_regex": "foo.*"}),
            tags: &[("non-matching-regex-tag", 1)],
            cursor: None,
            expected: &[],
        },
        Case {
            upstream: "regex override semver constraint",
            source: json!({"tag_regex": "gr(a|e)y", "semver_constraint": "1.2.x"}),
            tags: &[
                ("1.0.0", 1),
                ("1.2.1", 3),
                ("1.2.2", 4),
                ("2.0.0", 5),
                ("latest", 6),
                ("gray", 7),
                ("grey", 8),
            ],
            cursor: None,
            expected: &["gray", "grey"],
        },
        Case {
            upstream: "simple tag regex",
            source: json!({"tag_regex": "gr(a|e)y", "created_at_sort": false}),
            tags: &[("1.0.0", 1), ("non-semver-tag", 2), ("gray", 3), ("grey", 4)],
            cursor: None,
            expected: &["gray", "grey"],
        },
        Case {
            upstream: "regex maintain ordering",
            source: json!({"tag_regex": "^[0-9a-f]{7}-dev$"}),
            tags: &[
                ("1.0.0", 1),
                ("3bd8a5e-dev", 2),
                ("3bd8a5e-stage", 3),
                ("non-matching-regex-tag", 4),
                ("67e3c33-dev", 5),
            ],
            cursor: None,
            expected: &["3bd8a5e-dev", "67e3c33-dev"],
        },
        // no cursor in regex mode: every match, whatever the cursor
        Case {
            upstream: "regex ignores the cursor (as upstream's code does)",
            source: json!({"tag_regex": "^v"}),
            tags: &[("v1", 1), ("v2", 2), ("x", 3)],
            cursor: Some(("v2", 2)),
            expected: &["v1", "v2"],
        },
    ]
}

#[test]
fn upstream_semver_table() {
    let reg = Registry::plain();
    for (i, case) in semver_cases().iter().enumerate() {
        run_case(&reg, i, case);
    }
}

#[test]
fn upstream_regex_table() {
    let reg = Registry::plain();
    for (i, case) in regex_cases().iter().enumerate() {
        run_case(&reg, i, case);
    }
}

/// Upstream "simple tag regex where sorted is true": oldest `created` first.
#[test]
fn regex_sorted_by_created_oldest_first() {
    let reg = Registry::plain();
    let dated =
        |content: &str, created: &str| Image::with_config_fields(content, json!({ "created": created }));
    let d3 = reg.push(
        "dated",
        "gem-1338-git-4bd8a5e1a244",
        &dated("3", "2024-01-04T05:00:00Z"),
    );
    let d4 = reg.push(
        "dated",
        "gem-182-git-6bd8a5e1a2b3",
        &dated("4", "2024-01-04T00:00:00Z"),
    );
    // an hour later than gem-1338's 05:00Z once its zone is taken into account
    let d5 = reg.push(
        "dated",
        "gem-1337-git-4bd8a5e1a244",
        &dated("5", "2024-01-04T07:00:00.5+01:00"),
    );
    reg.push("dated", "1.0.0", &image(1));
    reg.push("dated", "non-semver-tag", &image(2));
    let out = check(&json!({"source": {
        "repository": reg.repo("dated"),
        "tag_regex": r"gem-(\d+)-git-([a-f0-9]{12})",
        "created_at_sort": true,
    }}));
    let v = |tag: &str, digest: &str| (tag.to_owned(), digest.to_owned());
    assert_eq!(
        versions(&out),
        vec![
            v("gem-182-git-6bd8a5e1a2b3", &d4),
            v("gem-1338-git-4bd8a5e1a244", &d3),
            v("gem-1337-git-4bd8a5e1a244", &d5),
        ]
    );
}

/// Dozens of tags: the first check asks for every version's digest once; with a cursor,
/// only the cursor's and the newer ones'. The bare `latest` is never asked for while
/// versions exist, and never listed.
#[test]
fn a_cursor_limits_the_digests_asked_for() {
    let reg = Registry::plain();
    let mut digests = Vec::new();
    for minor in 0..40u32 {
        let tag = format!("1.{minor}.0");
        digests.push((tag.clone(), reg.push("many", &tag, &image(100 + minor))));
    }
    for (i, word) in ["latest", "nightly", "stable", "edge"].iter().enumerate() {
        reg.push("many", word, &image(200 + u32::try_from(i).unwrap()));
    }
    let heads = |reg: &Registry| {
        reg.requests()
            .iter()
            .filter(|r| r.starts_with("HEAD /v2/many/manifests/"))
            .count()
    };
    let before = heads(&reg);
    let out = check(&json!({"source": {"repository": reg.repo("many"), "pre_releases": false}}));
    let all = versions(&out);
    assert_eq!(all, digests, "every version, oldest first, no latest");
    assert_eq!(
        heads(&reg) - before,
        40,
        "one HEAD per version, none for the words"
    );

    let before = heads(&reg);
    let (cursor_tag, cursor_digest) = &digests[36];
    let out = check(&json!({
        "source": {"repository": reg.repo("many"), "pre_releases": false},
        "version": {"tag": cursor_tag, "digest": cursor_digest},
    }));
    assert_eq!(versions(&out), digests[36..].to_vec());
    assert_eq!(
        heads(&reg) - before,
        4,
        "the cursor's HEAD and the three newer ones'"
    );
    assert!(
        out.stderr.contains("44 tags listed, 40 of them versions"),
        "{}",
        out.stderr
    );
}

/// #351: a rebuilt version's tag is re-pointed after `latest` is; a check in between
/// must not report `latest` as a version.
#[test]
fn latest_moved_ahead_of_its_version_is_not_a_version() {
    let reg = Registry::plain();
    reg.push("golang", "1.21.4", &image(1));
    let old = reg.push("golang", "1.21.5", &image(2));
    reg.push("golang", "latest", &image(2));
    let source = json!({"repository": reg.repo("golang"), "pre_releases": false});
    // the rebuild: latest first
    reg.push("golang", "latest", &image(3));
    let out = check(&json!({"source": source, "version": {"tag": "1.21.5", "digest": old}}));
    let tags: Vec<String> = versions(&out).into_iter().map(|(t, _)| t).collect();
    assert_eq!(tags, ["1.21.5"], "the cursor, and no latest");
    // #316: `latest` pushed before the new version's tag
    reg.push("golang", "latest", &image(4));
    let out = check(&json!({"source": source}));
    let tags: Vec<String> = versions(&out).into_iter().map(|(t, _)| t).collect();
    assert_eq!(tags, ["1.21.4", "1.21.5"]);
}

#[test]
fn tag_with_a_semver_option_is_an_error_naming_both() {
    for (field, value) in [
        ("variant", json!("alpine")),
        ("semver_constraint", json!("~1")),
        ("pre_releases", json!(false)),
        ("pre_release_prefixes", json!(["build"])),
        ("tag_regex", json!("^v")),
    ] {
        let mut source = json!({"repository": "127.0.0.1:1/app", "tag": "v1"});
        source[field] = value;
        let line = check(&json!({ "source": source })).error_line();
        assert!(
            line.contains(&format!("source.tag and source.{field} cannot both be set")),
            "{field}: {line}"
        );
    }
}

#[test]
fn bad_semver_options_are_refused_before_any_request() {
    for (source, wanted) in [
        (
            json!({"semver_constraint": "~1 || >= bogus"}),
            "source.semver_constraint \">= bogus\" is not a version constraint",
        ),
        (
            json!({"tag_regex": "gr(a"}),
            "source.tag_regex \"gr(a\" is not a regex in RE2 syntax: unclosed group",
        ),
        (
            json!({"label_regex": "["}),
            "source.label_regex \"[\" is not a regex",
        ),
        (json!({"variant": "no/slash"}), "source.variant"),
        (
            json!({"pre_releases": true, "pre_release_prefixes": [""]}),
            "source.pre_release_prefixes[0]",
        ),
    ] {
        let mut source = source;
        // port 1: nothing listens, so a request would fail differently
        source["repository"] = json!("127.0.0.1:1/app");
        let line = check(&json!({ "source": source })).error_line();
        assert!(line.contains(wanted), "{line}");
    }
}

/// `tag` left out still means `latest` (the product's contract), and when `latest` is
/// missing, stderr says how to track semver tags.
#[test]
fn no_tag_means_latest_and_a_missing_latest_says_how_to_track_semver() {
    let reg = Registry::plain();
    let one = reg.push("vers", "1.0.0", &image(1));
    let out = check(&json!({"source": {"repository": reg.repo("vers")}}));
    assert_eq!(versions(&out), vec![]);
    assert!(
        out.stderr.contains(
            "to track semver tags instead, also give one of variant, semver_constraint, pre_releases"
        ),
        "{}",
        out.stderr
    );
    let latest = reg.push("vers", "latest", &image(2));
    let out = check(&json!({"source": {"repository": reg.repo("vers")}}));
    assert_eq!(versions(&out), vec![("latest".to_owned(), latest)]);
    let out = check(&json!({"source": {"repository": reg.repo("vers"), "pre_releases": false}}));
    assert_eq!(versions(&out), vec![("1.0.0".to_owned(), one)]);
}

#[test]
fn a_missing_repository_has_no_versions() {
    let reg = Registry::plain();
    let out = check(&json!({"source": {"repository": reg.repo("never"), "pre_releases": false}}));
    assert_eq!(versions(&out), vec![]);
    let out = check(&json!({"source": {"repository": reg.repo("never"), "tag_regex": "."}}));
    assert_eq!(versions(&out), vec![]);
}

/// Upstream's "HEAD with GET fallback": a registry whose HEAD gives no digest (a fake
/// server: real registries always send one) gets a GET, whose body is hashed.
#[test]
fn head_without_a_digest_falls_back_to_get() {
    use support::fake::{FakeServer, Reply};
    let body: &'static [u8] = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
    let server = FakeServer::start(move |req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/") => Reply::status(200),
        ("GET", "/v2/app/tags/list?n=1000") => Reply::status(200)
            .with_header("Content-Type", "application/json")
            .with_body(br#"{"name":"app","tags":["non-semver-tag","1.0.0"]}"#),
        ("HEAD", "/v2/app/manifests/1.0.0") => Reply::status(200).with_header("Content-Type", OCI_MANIFEST),
        ("GET", "/v2/app/manifests/1.0.0") => Reply::status(200)
            .with_header("Content-Type", OCI_MANIFEST)
            .with_body(body),
        _ => Reply::status(404),
    });
    let out =
        check(&json!({"source": {"repository": format!("{}/app", server.host), "pre_releases": false}}));
    assert_eq!(
        versions(&out),
        vec![("1.0.0".to_owned(), support::image::sha256(body))]
    );
    assert_eq!(server.count("GET", "/v2/app/manifests/1.0.0"), 1);
    assert_eq!(
        server.count("HEAD", "/v2/app/manifests/non-semver-tag"),
        0,
        "no request for a word"
    );
}

/// Upstream's "tries mirror and falls back on original repository": a repository that names
/// its registry never asks the mirror.
#[test]
fn a_mirror_is_not_asked_for_a_repository_naming_its_registry() {
    let (reg, mirror) = (Registry::plain(), Registry::plain());
    let mut expected = Vec::new();
    for (tag, n) in [("1.0.0", 1), ("1.2.1", 3), ("2.0.0", 5)] {
        expected.push((tag.to_owned(), reg.push("named", tag, &image(n))));
    }
    let source = json!({"repository": reg.repo("named"), "pre_releases": false, "registry_mirror": {"host": mirror.host}});
    assert_eq!(versions(&check(&json!({ "source": source }))), expected);
    assert!(mirror.requests().is_empty(), "{:?}", mirror.requests());
}

/// A registry listing tags in an order of its own (docker-registry sorts them), each tag
/// naming the digest given.
fn listing(tags: &'static [(&'static str, &'static str)]) -> support::fake::FakeServer {
    use support::fake::{FakeServer, Reply};
    FakeServer::start(move |req, _| {
        let names: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v2/") => Reply::status(200),
            ("GET", "/v2/app/tags/list?n=1000") => Reply::status(200)
                .with_header("Content-Type", "application/json")
                .with_body(json!({"name": "app", "tags": names}).to_string().as_bytes()),
            ("HEAD", path) => match tags
                .iter()
                .find(|(t, _)| path == format!("/v2/app/manifests/{t}"))
            {
                Some((_, d)) => Reply::status(200)
                    .with_header("Content-Type", OCI_MANIFEST)
                    .with_header("Docker-Content-Digest", &digest_named(d)),
                None => Reply::status(404),
            },
            _ => Reply::status(404),
        }
    })
}

fn digest_named(name: &str) -> String {
    support::image::sha256(name.as_bytes())
}

/// Upstream's "regex maintain ordering" with a registry that does not sort: the listed order
/// is kept. In semver mode, a digest named by two tags spelled alike goes to the first met,
/// and the cursor is met first.
#[test]
fn the_registrys_order_decides_regex_order_and_ties() {
    let server = listing(&[
        ("zeta-dev", "a"),
        ("1.0.2", "same"),
        ("alpha-dev", "b"),
        ("1.0.1", "same"),
        ("mid-stage", "c"),
    ]);
    let repository = format!("{}/app", server.host);
    let tags = |out: &Output| versions(out).into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    let out = check(&json!({"source": {"repository": repository, "tag_regex": "-dev$"}}));
    assert_eq!(tags(&out), ["zeta-dev", "alpha-dev"]);
    let out = check(&json!({"source": {"repository": repository, "pre_releases": false}}));
    assert_eq!(tags(&out), ["1.0.2"], "the first listed of two alike");
    let out = check(&json!({
        "source": {"repository": repository, "pre_releases": false},
        "version": {"tag": "1.0.1", "digest": digest_named("same")},
    }));
    assert_eq!(tags(&out), ["1.0.1"], "the cursor is met first");
}
