//! registry-image: a Concourse resource for OCI/Docker registries, without a Docker daemon.
//!
//! ```text
//!  stdin JSON ─▶ cli ─▶ check / get / put                       steps: Concourse semantics
//!                          │
//!                          ▼
//!                connect (the seam): Source + scope ─▶ Remote    auth: username/password,
//!                          │  (origin, and a mirror for pulls)   ECR, docker config
//!                          ▼
//!                registry::Client: /v2/<name>/ paths, manifests, blobs, uploads, tags
//!                          │
//!                          ▼
//!                transport: scheme probe, challenges, tokens per scope, redirects,
//!                           retries, CA roots, client certificate
//!
//!  formats (readers and writers, never a client):
//!    fetch: HTTP body + sha256 ─▶ compression ─▶ tar ─▶ rootfs    (one layer streamed,
//!    tarball (image.tar for `in`), layout (oci/ for `in`),          the next in flight)
//!    archive (image files for `out`)
//!
//!  pure types: source, reference, digest, manifest, credentials, secret, semver, time
//! ```
//!
//! Imports point one way, down this picture: steps → step support (`cli`, `error`,
//! `fetch`) → the seam (`connect`, `auth`) → `registry` → `transport` → formats and
//! utilities (`compression`, `progress`, `retry`) → pure types, which import only each
//! other. No step imports another. `tests/structure.rs` holds every module to its floor.
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
pub mod confine;
pub mod connect;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzz;
pub mod get;
pub mod layout;
pub mod manifest;
pub mod metadata;
pub mod notary;
pub mod progress;
pub mod put;
pub mod reference;
pub mod registry;
pub mod retry;
pub mod rootfs;
pub mod secret;
pub mod semver;
pub mod source;
pub mod tarball;
pub mod time;
pub mod transport;

pub use error::{Error, Result};
pub use oci_client;
pub use retry::Backoff;
