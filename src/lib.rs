//! registry-image: a Concourse resource for OCI/Docker registries, without a Docker daemon.
//!
//! ```text
//!  stdin JSON ─▶ source (wire types, validate) ─▶ check / get / put    Concourse semantics
//!                                                   │
//!        ┌──────────────────────┬───────────────────┼──────────────────────┐
//!        ▼                      ▼                   ▼                      ▼
//!  registry::Client        rootfs (layers →      tarball (image.tar    archive (image files
//!  auth, retry, token,     a directory, in-root  for `in`)             on disk for `out`)
//!  blobs, uploads          resolution)
//!        │                      ▲
//!        └── fetch: HTTP body + sha256 ─▶ compression ─▶ tar ─┘   (one layer, streamed,
//!                                                                  the next one in flight)
//!
//!  pure types: reference, digest, manifest, secret, source, error
//! ```
//!
//! Dependencies point one way: the steps (`check`, `get`, `put`) use the registry client
//! and the format modules; the format modules take readers and writers and never see a
//! client; everything uses the pure types, which use nothing.
#![deny(missing_docs)]
// The exceptions: the calls into ISA-L (`compression::member`) and the binaries'
// allocator (`alloc`).
#![deny(unsafe_code)]
#![warn(clippy::pedantic)]
// Every fallible function returns this crate's documented `Error`; repeating the variants
// in a `# Errors` section of each private helper would add nothing.
#![allow(clippy::missing_errors_doc)]
// Registry errors carry the method, URL, status, codes and message they concern, which makes
// them a few hundred bytes. A command meets at most one, on its way out; boxing them would
// buy nothing measurable and cost clarity at every match.
#![allow(clippy::result_large_err)]

pub mod alloc;
pub mod archive;
pub mod auth;
pub mod check;
#[doc(hidden)]
pub mod cli;
pub mod compression;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod get;
pub mod manifest;
pub mod metadata;
pub mod progress;
pub mod put;
pub mod reference;
pub mod registry;
pub mod retry;
pub mod rootfs;
pub mod secret;
pub mod source;
pub mod tarball;

pub use error::{Error, Result};
pub use oci_client;
pub use retry::Backoff;
