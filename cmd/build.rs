//! Records the git commit the binaries are built from, for `--version`.

use std::process::Command;

fn main() {
    let commit = std::env::var("REGISTRY_IMAGE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=REGISTRY_IMAGE_COMMIT={commit}");
    // a new commit moves HEAD's branch; a checkout moves HEAD
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{reference}");
        }
    }
    println!("cargo:rerun-if-changed=.git/packed-refs");
    println!("cargo:rerun-if-env-changed=REGISTRY_IMAGE_COMMIT");
}

/// `git rev-parse --short=12 HEAD`, when this is a git checkout.
fn git_commit() -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
}
