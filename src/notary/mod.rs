//! Notary v1 (Docker Content Trust): repository keys (`key`), canonical JSON
//! (`canonical`), the TUF metadata chain (`tuf`), the server's API over the shared
//! transport (`client`), and signing pushed tags with them (`trust`).

pub mod canonical;
pub mod client;
pub mod key;
pub mod trust;
pub mod tuf;
