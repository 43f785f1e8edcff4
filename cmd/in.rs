//! `in`: fetches the version's image into the directory given as argv[1].

use std::path::Path;
use std::process::ExitCode;

use registry_image::{cli, get, source::InRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

const STEP: cli::Step = cli::Step {
    name: "in",
    summary:
        "Concourse `in` (get) of the registry-image resource: fetches the version's image into <destination>.",
    stdin: r#"{"source": {...}, "version": {"digest": "sha256:..."}, "params": {"format": "rootfs" | "oci", "skip_download": false}}"#,
    stdout: r#"{"version": {...}, "metadata": [{"name": ..., "value": ...}]}; files in <destination>: rootfs/ + metadata.json or image.tar, digest, tag, repository"#,
    argument: Some(("destination", "the directory to write the image into")),
    example: r#"echo '{"source":{"repository":"busybox"},"version":{"digest":"sha256:<hex>"}}' | in /tmp/busybox"#,
    deadline: cli::GET_DEADLINE,
};

fn main() -> ExitCode {
    let dest = match cli::command_line(&STEP) {
        Ok(dest) => dest.unwrap_or_default(),
        Err(code) => return code,
    };
    cli::finish(run(&dest).map_err(|e| format!("{e:#}")))
}

fn run(dest: &Path) -> anyhow::Result<()> {
    let request: InRequest = cli::read_request("in", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let response = cli::run_step(&STEP, get::run(request, dest, Backoff::default()))?;
    cli::write_response(&response)?;
    Ok(())
}
