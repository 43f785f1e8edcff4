//! The README's pipeline examples are what the binaries accept: every `source` (and `get`
//! params) in its YAML blocks goes through `in` with `skip_download`, which validates the
//! whole request and touches no network. (The by-hand commands and the first run are
//! `scripts/demo`, which CI runs.)

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::bin;

/// Every YAML block of the README as JSON, parsed by PyYAML.
fn yaml_blocks() -> Vec<Value> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
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
        let dest = tempfile::tempdir().unwrap();
        let out = bin::run("in", &request, &[dest.path().to_str().unwrap()]);
        assert!(out.success, "{request}: {}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("digest")).unwrap(),
            digest
        );
    }
}
