//! `in`: fetches the version's image into the directory given as argv[1].

use std::process::ExitCode;

use anyhow::Context as _;
use registry_image::{cli, get, source::InRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

fn main() -> ExitCode {
    cli::finish(run().map_err(|e| format!("{e:#}")))
}

fn run() -> anyhow::Result<()> {
    let dest = std::env::args_os()
        .nth(1)
        .context("destination path not specified (usage: in <destination>)")?;
    let request: InRequest = cli::read_request("in", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let response = cli::runtime()?.block_on(get::run(request, dest.as_ref(), Backoff::default()))?;
    cli::write_response(&response)?;
    Ok(())
}
