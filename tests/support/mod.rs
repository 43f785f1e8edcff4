//! Test support: real registries, test images made in code, a fake server for faults a real
//! registry cannot produce, and a runner for the built binaries.
#![allow(dead_code)]

pub mod archive;
pub mod bin;
pub mod fake;
pub mod image;
pub mod layer;
pub mod moto;
pub mod notary;
pub mod registry;
pub mod tree;
