//! `check`: prints the versions of the source's tag, oldest first.

use std::process::ExitCode;

use registry_image::{check, cli, source::CheckRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

fn main() -> ExitCode {
    cli::finish(run().map_err(|e| format!("{e:#}")))
}

fn run() -> anyhow::Result<()> {
    let request: CheckRequest = cli::read_request("check", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let versions = cli::runtime()?.block_on(check::run(request, Backoff::default()))?;
    cli::write_response(&versions)?;
    Ok(())
}
