//! What the three binaries share: reading the request, logging, the runtime, the response.
//! Kept here so each `cmd/*.rs` stays a dozen lines.

use std::io::{IsTerminal as _, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The crate's version and the git commit the binaries were built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REGISTRY_IMAGE_COMMIT"),
    ")"
);

/// Where the user contract is.
pub const README: &str = "README.md at the root of the registry-image source repository";

/// What a binary says about itself in `--help`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// `check`, `in` or `out`.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// What it reads on stdin.
    pub stdin: &'static str,
    /// What it prints on stdout.
    pub stdout: &'static str,
    /// Its one argument, name and meaning, if it takes one.
    pub argument: Option<(&'static str, &'static str)>,
    /// A command line a user can run.
    pub example: &'static str,
    /// The most the step may take, all retries included.
    pub deadline: Duration,
}

/// The most `check` may take: one tag's digest, retries included.
pub const CHECK_DEADLINE: Duration = Duration::from_mins(10);
/// The most `in` may take: the largest images over slow links.
pub const GET_DEADLINE: Duration = Duration::from_hours(4);
/// The most `out` may take.
pub const PUT_DEADLINE: Duration = Duration::from_hours(4);
/// An environment variable that may shorten (never lengthen) a step's deadline: seconds.
pub const DEADLINE_VAR: &str = "REGISTRY_IMAGE_STEP_DEADLINE";

/// Runs `step`'s work on a fresh runtime within its deadline (or the shorter one
/// [`DEADLINE_VAR`] sets); past it, the work is dropped and the step fails.
///
/// # Errors
/// The work's error, or the deadline passing, or no runtime.
pub fn run_step<T>(step: &Step, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let shorter = std::env::var(DEADLINE_VAR)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let limit = shorter.map_or(step.deadline, |s| s.min(step.deadline));
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Error::Deadline {
                step: step.name,
                limit,
            })?
    });
    // blocking work still running past the deadline (a layer being written) is not waited for
    runtime.shutdown_background();
    result
}

/// Reads the command line: answers `--help` and `--version` (exit 0), refuses anything
/// but the step's one argument (exit 1, one line), and returns that argument. On a
/// terminal, says on stderr that a JSON request is awaited on stdin.
///
/// # Errors
/// The exit code to end with, once the answer or the error has been printed.
pub fn command_line(step: &Step) -> std::result::Result<Option<PathBuf>, std::process::ExitCode> {
    let mut command = clap::Command::new(step.name)
        .version(VERSION)
        .about(step.summary)
        .long_about(format!(
            "{}\n\nstdin: {}\nstdout: {}\nstderr: logs; on failure, one line `error: ...` and exit status 1.",
            step.summary, step.stdin, step.stdout
        ))
        .after_help(format!("Example:\n  {}\n\nReference: {README}", step.example))
        .help_template("{about-section}\n{usage-heading} {usage}\n\n{all-args}{after-help}\n");
    if let Some((name, help)) = step.argument {
        command = command.arg(
            clap::Arg::new(name)
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help(help),
        );
    }
    match command.try_get_matches_from(std::env::args_os()) {
        Ok(matches) => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "{}: reading a JSON request on stdin (paste it, then Ctrl-D); `{} --help` shows an example",
                    step.name, step.name
                );
            }
            Ok(step
                .argument
                .and_then(|(name, _)| matches.get_one::<PathBuf>(name).cloned()))
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return Err(std::process::ExitCode::SUCCESS);
            }
            let text = e.to_string();
            let first = match (e.kind(), step.argument) {
                (ErrorKind::MissingRequiredArgument, Some((name, _))) => {
                    format!("error: {name} path not specified")
                }
                _ => text.lines().next().unwrap_or_default().to_owned(),
            };
            let usage = step.argument.map_or_else(
                || step.name.to_owned(),
                |(name, _)| format!("{} <{name}>", step.name),
            );
            eprintln!("{} (usage: {usage}; see {} --help)", first.trim_end(), step.name);
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

/// Largest request read from stdin (real ones are a few KiB, CA certificates included).
pub const REQUEST_LIMIT: u64 = 4 * 1024 * 1024;

/// Parses one JSON request from `input`, naming the JSON path of any error.
///
/// # Errors
/// Empty input, input over [`REQUEST_LIMIT`], malformed JSON, unknown or missing fields.
pub fn read_request<T: DeserializeOwned>(step: &'static str, input: impl Read) -> Result<T> {
    let mut text = String::new();
    input
        .take(REQUEST_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|source| Error::Stdin { step, source })?;
    if text.len() as u64 > REQUEST_LIMIT {
        return Err(Error::Stdin {
            step,
            source: std::io::Error::other(format!("the request is over {REQUEST_LIMIT} bytes")),
        });
    }
    if text.trim().is_empty() {
        return Err(Error::EmptyRequest { step });
    }
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let request = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|source| Error::Request { step, source })?;
    deserializer
        .end()
        .map_err(|source| Error::TrailingInput { step, source })?;
    Ok(request)
}

/// Sends logs to stderr: info and up, or debug and up for our own crate with `debug: true`.
/// Other crates stay at warn, so no HTTP library ever prints headers.
pub fn init_logging(debug: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let ours = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("registry_image", ours);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false);
    let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
}

/// A runtime for one command.
///
/// # Errors
/// When the OS refuses threads.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Ends a binary: success, or `error: <message>` on stderr (one line: the whole cause
/// chain, formatted by the caller) and exit status 1.
#[must_use]
pub fn finish(result: std::result::Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints the response as one line of JSON on stdout.
///
/// # Errors
/// When stdout is closed.
pub fn write_response<T: Serialize>(response: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, response).map_err(|e| Error::Output(e.into()))?;
    writeln!(out).and_then(|()| out.flush()).map_err(Error::Output)
}
