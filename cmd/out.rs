//! `out`: pushes the image file `params.image` names (relative to argv[1]).

use std::process::ExitCode;

use anyhow::Context as _;
use registry_image::{cli, put, source::OutRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

fn main() -> ExitCode {
    cli::finish(run().map_err(|e| format!("{e:#}")))
}

fn run() -> anyhow::Result<()> {
    let src = std::env::args_os()
        .nth(1)
        .context("sources path not specified (usage: out <sources>)")?;
    let request: OutRequest = cli::read_request("out", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let response = cli::runtime()?.block_on(put::run(request, src.as_ref(), Backoff::default()))?;
    cli::write_response(&response)?;
    Ok(())
}
