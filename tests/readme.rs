//! The README's pipeline examples are what the binaries accept: every `source` (and `get`
//! params) in its YAML blocks goes through `in`'s request parser and the source's checks,
//! which touch no network. The by-hand commands run against a local
//! registry, their Docker Hub and `127.0.0.1:5000` repositories pointed at it. (The first
//! run is `scripts/demo`, which CI runs.)

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::archive::oci_archive;
use support::bin;
use support::image::{tar_with_file, Image, OCI_MANIFEST};
use support::registry::Registry;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// Every YAML block of the README as JSON, parsed by PyYAML.
fn yaml_blocks() -> Vec<Value> {
    let readme = readme();
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```yaml" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    let script =
        "import json, sys, yaml\nprint(json.dumps([yaml.safe_load(b) for b in json.load(sys.stdin)]))";
    let mut child = Command::new(support::registry::python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&blocks).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read the README's YAML");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every object with a `source` whose `type` is ours (or unnamed, as under `content_trust`
/// examples), and every `get` step's params.
fn collect(value: &Value, sources: &mut Vec<Value>, get_params: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            let ours = map
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t.starts_with("registry-image"));
            if let (Some(source), true) = (map.get("source"), ours) {
                if source.get("repository").is_some() {
                    sources.push(source.clone());
                }
            }
            if let (Some(_), Some(params)) = (map.get("get"), map.get("params")) {
                get_params.push(params.clone());
            }
            for v in map.values() {
                collect(v, sources, get_params);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, sources, get_params)),
        _ => {}
    }
}

/// `((var))` placeholders as Concourse fills them: a key id is hex, the rest any text.
fn fill(value: &mut Value) {
    match value {
        Value::String(text) if text.starts_with("((") && text.ends_with("))") => {
            *text = if text.contains("key_id") {
                "ab".repeat(32)
            } else {
                "a-value".to_owned()
            };
        }
        Value::Object(map) => map.values_mut().for_each(fill),
        Value::Array(items) => items.iter_mut().for_each(fill),
        _ => {}
    }
}

#[test]
fn every_source_in_the_readme_is_accepted() {
    let (mut sources, mut get_params) = (Vec::new(), Vec::new());
    for mut block in yaml_blocks() {
        fill(&mut block);
        collect(&block, &mut sources, &mut get_params);
    }
    assert!(sources.len() >= 8, "found only {} sources", sources.len());
    assert!(!get_params.is_empty());
    let digest = format!("sha256:{}", "0".repeat(64));
    let mut requests: Vec<Value> = sources
        .iter()
        .map(|s| json!({"source": s, "version": {"digest": digest}, "params": {"skip_download": true}}))
        .collect();
    for params in &get_params {
        let mut params = params.clone();
        params["skip_download"] = json!(true);
        requests.push(json!({"source": sources[0], "version": {"digest": digest}, "params": params}));
    }
    for request in requests {
        // what `in` reads and checks before any request (skip_download now fetches the
        // manifest, and these sources name registries beyond loopback)
        let text = request.to_string();
        let parsed: registry_image::source::InRequest =
            registry_image::cli::read_request("in", text.as_bytes())
                .unwrap_or_else(|e| panic!("{request}: {}", chain(&e)));
        parsed
            .source
            .validate()
            .unwrap_or_else(|e| panic!("{request}: {}", chain(&e)));
        let format = parsed.params.format.as_deref().unwrap_or("rootfs");
        assert!(["rootfs", "oci", "oci-layout"].contains(&format), "{request}");
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// Every `echo '<request>' | <path>/<binary> [dir]` line of the README's `sh` blocks, as
/// (binary, request text, directory), in the README's order.
fn by_hand_commands() -> Vec<(String, String, Option<String>)> {
    let readme = readme();
    let mut commands = Vec::new();
    for block in readme.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for line in block.lines() {
            let Some(rest) = line.strip_prefix("echo '") else {
                continue;
            };
            let (request, command) = rest.split_once("' | ").unwrap();
            let mut words = command.split_whitespace();
            let binary = words.next().unwrap().rsplit('/').next().unwrap().to_owned();
            commands.push((binary, request.to_owned(), words.next().map(str::to_owned)));
        }
    }
    commands
}

#[test]
fn the_by_hand_commands_work_against_a_registry() {
    let reg = Registry::plain();
    let image = Image::from_layers(
        vec![(
            support::image::gzip(&tar_with_file("bin/hello", b"hi\n")),
            tar_with_file("bin/hello", b"hi\n"),
        )],
        OCI_MANIFEST,
        "amd64",
    );
    let digest = reg.push("library/busybox", "latest", &image);
    reg.push("app", "1.10", &image);
    let older = reg.push("app", "1.9", &Image::with_file("1.9", OCI_MANIFEST));
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("build")).unwrap();
    let archive_digest = oci_archive(&[(&image, "amd64")], &work.path().join("build/image.tar"));

    let commands = by_hand_commands();
    assert_eq!(
        commands.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["check", "check", "check", "in", "out"]
    );
    for (binary, request, dir) in commands {
        let request = request.replace("sha256:<digest>", &digest);
        let mut request: Value = serde_json::from_str(&request)
            .unwrap_or_else(|e| panic!("the README's {binary} request is not JSON: {e}"));
        let repository = request["source"]["repository"].as_str().unwrap().to_owned();
        request["source"]["repository"] = json!(match repository.as_str() {
            "busybox" => reg.repo("library/busybox"),
            other => reg.repo(other.strip_prefix("127.0.0.1:5000/").unwrap()),
        });
        let dir = dir.map(|d| {
            work.path()
                .join(d.trim_start_matches("./").trim_start_matches('/'))
        });
        let args: Vec<&str> = dir.iter().map(|d| d.to_str().unwrap()).collect();
        let out = bin::run(&binary, &request, &args).one_json_line(&binary);
        match binary.as_str() {
            "check" if request["source"].get("pre_releases").is_some() => {
                let versions = json!([{"tag": "1.9", "digest": older}, {"tag": "1.10", "digest": digest}]);
                assert_eq!(out, versions, "{request}");
            }
            "check" => {
                let tag = request["source"]["tag"].as_str().unwrap_or("latest");
                assert_eq!(out, json!([{"digest": digest, "tag": tag}]), "{request}");
            }
            "in" => {
                assert_eq!(out["version"]["digest"], json!(digest));
                let dir = dir.unwrap();
                assert!(dir.join("image.tar").is_file(), "format oci writes image.tar");
            }
            _ => assert_eq!(out["version"]["digest"], json!(archive_digest)),
        }
    }
}

/// Every test the README's table of promises names exists, in the file it names.
#[test]
fn the_promises_name_tests_that_exist() {
    let readme = readme();
    let table = readme
        .split("The promises, and the tests that hold the binaries to them")
        .nth(1)
        .expect("README lists its promises")
        .split("\n\n")
        .nth(1)
        .unwrap();
    let mut named = 0;
    for row in table.lines().skip(2) {
        let test_cell = row.rsplit('|').nth(1).unwrap_or_default();
        for part in test_cell.split(';') {
            let file = part
                .split('`')
                .find(|w| w.starts_with("tests/"))
                .unwrap_or("tests/hostile.rs");
            let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            for name in part.split('`').skip(1).step_by(2).filter(|w| !w.contains('/')) {
                assert!(
                    source.contains(&format!("fn {name}()")),
                    "{file} has no test {name}"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 15, "only {named} tests named");
}

/// The fields of the Go resource's v1.18.0, by where they go (its `types.go`).
const UPSTREAM_FIELDS: &[(&str, &[&str])] = &[
    (
        "source",
        &[
            "repository",
            "insecure",
            "pre_releases",
            "pre_release_prefixes",
            "variant",
            "semver_constraint",
            "tag",
            "tag_regex",
            "created_at_sort",
            "annotation_regex",
            "label_regex",
            "registry_mirror",
            "content_trust",
            "ca_certs",
            "platform",
            "debug",
            "username",
            "password",
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "aws_region",
            "aws_ecr_registry_id",
            "aws_role_arn",
            "aws_role_arns",
            "aws_account_id",
            "azure_acr",
            "azure_client_id",
            "azure_tenant_id",
            "azure_environment",
        ],
    ),
    ("source.registry_mirror", &["host", "username", "password"]),
    (
        "source.content_trust",
        &[
            "server",
            "repository_key_id",
            "repository_key",
            "repository_passphrase",
            "tls_key",
            "tls_cert",
            "scopes",
            "username",
            "password",
        ],
    ),
    ("source.platform", &["architecture", "os"]),
    ("version", &["tag", "digest"]),
    ("in params", &["format", "platform", "skip_download"]),
    (
        "out params",
        &[
            "image",
            "version",
            "bump_aliases",
            "additional_tags",
            "tag_prefix",
        ],
    ),
];

/// The rows of the README's field table: (where, field, here).
fn field_table() -> Vec<(String, String, String)> {
    let readme = readme();
    let table = readme
        .split("| Where | Field | Go resource v1.18 | Here |")
        .nth(1)
        .expect("the README has the field table");
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[3].clone())
        })
        .collect()
}

/// The fields a binary accepts at one place, from the error naming an unknown one there.
fn accepted(binary: &str, request: &Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = if binary == "check" {
        vec![]
    } else {
        vec![dir.path().to_str().unwrap()]
    };
    let line = bin::run(binary, request, &args).error_line();
    let listed = line.split("expected").nth(1).unwrap_or_else(|| panic!("{line}"));
    let mut names: Vec<String> = listed.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    names.sort();
    names
}

#[test]
fn the_field_table_matches_the_parser() {
    let digest = format!("sha256:{}", "0".repeat(64));
    let unknown = json!(1);
    let probes = [
        (
            "source",
            "check",
            json!({"source": {"repository": "a", "zz_unknown": unknown}}),
        ),
        (
            "source.registry_mirror",
            "check",
            json!({"source": {"repository": "a", "registry_mirror": {"host": "h", "zz_unknown": unknown}}}),
        ),
        (
            "source.content_trust",
            "check",
            json!({"source": {"repository": "a", "content_trust": {"repository_key_id": "ab", "repository_key": "k", "zz_unknown": unknown}}}),
        ),
        (
            "source.platform",
            "check",
            json!({"source": {"repository": "a", "platform": {"zz_unknown": unknown}}}),
        ),
        (
            "version",
            "check",
            json!({"source": {"repository": "a"}, "version": {"digest": digest, "zz_unknown": unknown}}),
        ),
        (
            "in params",
            "in",
            json!({"source": {"repository": "a"}, "version": {"digest": digest}, "params": {"zz_unknown": unknown}}),
        ),
        (
            "out params",
            "out",
            json!({"source": {"repository": "a"}, "params": {"image": "x", "zz_unknown": unknown}}),
        ),
    ];
    let table = field_table();
    for (place, binary, request) in probes {
        let mut documented: Vec<String> = table
            .iter()
            .filter(|(w, _, _)| w == place)
            .map(|(_, f, _)| f.clone())
            .collect();
        documented.sort();
        assert_eq!(
            accepted(binary, &request),
            documented,
            "{place}: the parser and the README's table"
        );
        let (_, upstream) = UPSTREAM_FIELDS.iter().find(|(w, _)| *w == place).unwrap();
        for field in *upstream {
            assert!(
                documented.iter().any(|d| d == field),
                "{place}.{field} of the Go resource is in the table"
            );
        }
    }
    let refused: Vec<&(String, String, String)> = table
        .iter()
        .filter(|(_, _, here)| here.starts_with("refused"))
        .collect();
    assert_eq!(refused.len(), 4, "the Azure fields");
    for (place, field, _) in refused {
        assert_eq!(place, "source");
        let value = if field == "azure_acr" {
            json!(true)
        } else {
            json!("x")
        };
        let mut source = json!({"repository": "127.0.0.1:1/a"});
        source[field.as_str()] = value;
        let line = bin::run("check", &json!({ "source": source }), &[]).error_line();
        assert!(
            line.contains(&format!("source.{field} is not implemented by this resource")),
            "{field}: {line}"
        );
    }
}
