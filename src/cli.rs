//! What the three binaries share: reading the request, logging, the runtime, the response.
//! Kept here so each `cmd/*.rs` stays a dozen lines.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

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
    serde_path_to_error::deserialize(&mut deserializer).map_err(|source| Error::Request { step, source })
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
