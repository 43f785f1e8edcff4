//! The crate's import structure, as `src/lib.rs` draws it: every module on a floor, and
//! imports (`crate::<module>` anywhere in a file) only to the same floor or below; no
//! step imports another step; no import circle among the top-level modules.
//!
//! A new module must be given a floor here, which is the point: where it sits is a
//! decision, not an accident.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Floors, bottom first.
const FLOORS: &[(&str, &[&str])] = &[
    // pure types: no I/O, no clients
    (
        "pure types",
        &[
            "credentials",
            "digest",
            "manifest",
            "reference",
            "secret",
            "semver",
            "source",
            "time",
        ],
    ),
    // utilities that know no registry
    (
        "utilities",
        &["alloc", "compression", "confine", "progress", "retry"],
    ),
    // formats take readers and writers, never a client
    ("formats", &["archive", "layout", "metadata", "rootfs", "tarball"]),
    ("transport", &["transport"]),
    ("registry and notary clients", &["notary", "registry"]),
    ("connection seam", &["auth", "connect"]),
    ("step support", &["cli", "error", "fetch", "fuzz"]),
    ("steps", &["check", "get", "put"]),
];

const STEPS: &str = "steps";

fn floor_of(module: &str) -> Option<(usize, &'static str)> {
    FLOORS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/registry/blob.rs` → `registry`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every top-level module a file names as `crate::<module>`, also inside `use crate::{…}`.
fn imports_of(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let imports = imports_of(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports.into_iter().filter(|i| *i != module));
    }
    graph
}

#[test]
fn every_module_has_a_floor_and_imports_point_down() {
    let graph = graph();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        let Some((floor, floor_name)) = floor_of(module) else {
            wrong.push(format!("module `{module}` has no floor in tests/structure.rs"));
            continue;
        };
        for import in imports {
            let Some((target, target_name)) = floor_of(import) else {
                wrong.push(format!("`{module}` imports `{import}`, which has no floor"));
                continue;
            };
            if target > floor {
                wrong.push(format!(
                    "`{module}` ({floor_name}) imports `{import}` ({target_name}), a floor above it"
                ));
            }
            if target == floor && floor_name == STEPS {
                wrong.push(format!("step `{module}` imports step `{import}`"));
            }
        }
    }
    assert!(wrong.is_empty(), "import structure broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_import_circles() {
    let graph = graph();
    // depth-first search for a back edge
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node);
            return Some(circle.join(" -> "));
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {circle}");
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let text =
        "use crate::{digest::Digest, source};\nfn f() { crate::reference::describe(); } // crate::nope\n";
    let found: Vec<String> = imports_of(text).into_iter().collect();
    assert_eq!(found, ["digest", "reference", "source"]);
}
