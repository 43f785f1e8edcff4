//! Runs the built resource binaries the way Concourse does: JSON on stdin, argv[1] a dir.

use std::io::{Read as _, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a binary printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as JSON; panics with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success with exactly one line on stdout, and returns it parsed as JSON;
    /// `binary` names the command in the failure message.
    pub fn one_json_line(&self, binary: &str) -> serde_json::Value {
        assert!(self.success, "{binary} failed:\n{}", self.stderr);
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "stdout must be one JSON line: {:?}",
            self.stdout
        );
        self.json()
    }

    /// Asserts failure and returns the last stderr line (the error).
    pub fn error_line(&self) -> String {
        assert!(
            !self.success,
            "expected failure, got success:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "stdout must be empty on failure: {}",
            self.stdout
        );
        self.stderr.lines().last().unwrap_or_default().to_owned()
    }
}

/// Path of a built binary.
pub fn path(name: &str) -> &'static str {
    match name {
        "check" => env!("CARGO_BIN_EXE_check"),
        "in" => env!("CARGO_BIN_EXE_in"),
        "out" => env!("CARGO_BIN_EXE_out"),
        other => panic!("unknown binary {other}"),
    }
}

/// Variables no binary under test inherits: they could point it at real AWS, real
/// instance metadata, or this machine's docker credentials.
const SCRUBBED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_STS",
    "DOCKER_CONFIG",
    "REGISTRY_IMAGE_DOCKER_HUB_ENDPOINT",
];

/// Runs `name` with `input` on stdin and `args`, killing it after `timeout`.
pub fn run_with_timeout(name: &str, input: &str, args: &[&str], timeout: Duration) -> Output {
    run_with_env(name, input, args, timeout, &[])
}

/// Runs `name` like [`run_with_timeout`] with `env` set. Every run starts from a clean
/// slate: no AWS or docker settings inherited, instance metadata off, no AWS config files
/// and an empty docker config directory, unless `env` says otherwise.
pub fn run_with_env(
    name: &str,
    input: &str,
    args: &[&str],
    timeout: Duration,
    env: &[(&str, &str)],
) -> Output {
    run_command(Command::new(path(name)), name, input, args, timeout, env)
}

/// Runs `name` like [`run`], started through `wrapper`: a command and its arguments that
/// end by executing the binary, such as `setpriv --reuid=65534 …` or `prlimit --nofile=…`.
pub fn run_wrapped(wrapper: &[&str], name: &str, input: &serde_json::Value, args: &[&str]) -> Output {
    let (program, options) = wrapper.split_first().expect("a wrapper command");
    let mut command = Command::new(program);
    command.args(options).arg(path(name));
    run_command(
        command,
        name,
        &input.to_string(),
        args,
        Duration::from_secs(120),
        &[],
    )
}

/// Starts a binary, waits for it, and writes its peak resident set (KiB, from
/// `getrusage(RUSAGE_CHILDREN)`) to the file named first; the wrapper's own memory is not
/// counted.
const MEASURE_PEAK: &str = "import resource, subprocess, sys\n\
r = subprocess.run(sys.argv[2:])\n\
open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
sys.exit(r.returncode)\n";

/// Runs `name` like [`run`] and returns, with its output, its peak resident set in bytes.
pub fn run_measured(name: &str, input: &serde_json::Value, args: &[&str]) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("peak");
    let report_arg = report.to_str().unwrap();
    let out = run_wrapped(&["python3", "-c", MEASURE_PEAK, report_arg], name, input, args);
    let kib: u64 = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("{name} left no peak memory report: {e}; {}", out.stderr))
        .trim()
        .parse()
        .unwrap();
    (out, kib * 1024)
}

fn run_command(
    mut command: Command,
    name: &str,
    input: &str,
    args: &[&str],
    timeout: Duration,
    env: &[(&str, &str)],
) -> Output {
    for var in SCRUBBED {
        command.env_remove(var);
    }
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("DOCKER_CONFIG", "/nonexistent/registry-image-test/docker");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    // A binary may exit before reading stdin (a missing argument): a closed pipe is fine.
    if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write stdin of {name}: {e}"
        );
    }
    // Both pipes are read while the binary runs: one that fills a pipe (64 KiB of
    // progress) would otherwise block on its next write and look hung.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{name} ran longer than {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
    }
}

/// Runs `name` with a 120 s limit.
pub fn run(name: &str, input: &serde_json::Value, args: &[&str]) -> Output {
    run_with_timeout(name, &input.to_string(), args, Duration::from_secs(120))
}
