//! The binaries as a person meets them by hand: `--help` says what each reads and prints,
//! with an example; `--version` names the crate version and the commit; a wrong command
//! line is one line and exit 1; on a terminal, a hint instead of silent waiting. The
//! protocol itself (stdin JSON, stdout JSON) is what every other test drives.

mod support;

use std::process::Command;
use std::time::Duration;

use support::bin;

fn run_args(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin::path(name))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn help_says_what_each_binary_reads_prints_and_takes() {
    for (name, argument, stdin_words) in [
        ("check", None, "\"version\""),
        ("in", Some("<destination>"), "\"params\""),
        ("out", Some("<sources>"), "\"params\""),
    ] {
        let out = run_args(name, &["--help"]);
        assert!(out.status.success(), "{name} --help: {out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for needle in [
            "stdin: {\"source\"",
            "stdout: ",
            "Example:",
            "README.md",
            stdin_words,
        ] {
            assert!(help.contains(needle), "{name} --help lacks {needle:?}:\n{help}");
        }
        assert!(
            help.contains(&format!("| {name}")),
            "{name}: the example pipes into {name}:\n{help}"
        );
        match argument {
            Some(arg) => assert!(help.contains(&format!("Usage: {name} {arg}")), "{help}"),
            None => assert!(help.contains(&format!("Usage: {name}\n")), "{help}"),
        }
        assert!(out.stderr.is_empty(), "{name} --help wrote to stderr");
    }
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    for name in ["check", "in", "out"] {
        let out = run_args(name, &["--version"]);
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert!(line.starts_with(&format!("{name} {version} (commit ")), "{line}");
        if let Some(commit) = &commit {
            // the binaries were built from this checkout (a commit made since changes the
            // build script's input, so cargo rebuilds them)
            assert!(line.contains(commit.as_str()), "{line} is not commit {commit}");
        }
    }
}

#[test]
fn a_wrong_command_line_is_one_line_and_exit_1() {
    for (name, args, needle) in [
        (
            "in",
            vec![],
            "destination path not specified (usage: in <destination>; see in --help)",
        ),
        (
            "out",
            vec![],
            "sources path not specified (usage: out <sources>; see out --help)",
        ),
        ("in", vec!["a", "b"], "unexpected argument 'b'"),
        (
            "check",
            vec!["--frobnicate"],
            "unexpected argument '--frobnicate'",
        ),
    ] {
        let out = run_args(name, &args);
        assert_eq!(out.status.code(), Some(1), "{name} {args:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{stderr}"
        );
    }
}

#[test]
fn on_a_terminal_a_hint_comes_first_and_the_request_is_still_read() {
    // a pseudo-terminal on stdin, from Python's pty module: the hint must appear while the
    // binary waits, and a request typed there (ended with Ctrl-D) is then acted on
    let script = r#"
import os, pty, select, subprocess, sys
master, slave = pty.openpty()
p = subprocess.Popen([sys.argv[1]], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
os.close(slave)
ready, _, _ = select.select([p.stderr], [], [], 20)
hint = p.stderr.readline().decode() if ready else ""
os.write(master, b'{"source":{"repository":"UPPER/case"}}\n')
os.write(master, b'\x04')
out, err = p.communicate(timeout=60)
print("HINT " + hint.strip())
print("CODE %d" % p.returncode)
print("ERR " + err.decode().strip())
"#;
    let python = support::registry::python();
    let out = Command::new(python)
        .args(["-c", script, bin::path("check")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HINT check: reading a JSON request on stdin"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CODE 1"), "{text}");
    assert!(text.contains("ERR error: source.repository"), "{text}");
    // without a terminal there is no hint: Concourse's logs stay as they were
    let out = bin::run_with_timeout(
        "check",
        r#"{"source":{"repository":"UPPER/case"}}"#,
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
