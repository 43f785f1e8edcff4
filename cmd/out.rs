//! `out`: pushes the image `params.image` names, from the directory given as argv[1].

use std::path::Path;
use std::process::ExitCode;

use registry_image::{cli, put, source::OutRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

const STEP: cli::Step = cli::Step {
    name: "out",
    summary: "Concourse `out` (put) of the registry-image resource: pushes the image file params.image names, under the source tag and the additional tags.",
    stdin: r#"{"source": {...}, "params": {"image": "<glob relative to <sources>>", "additional_tags": "<file of tags>"}}"#,
    stdout: r#"{"version": {"tag": ..., "digest": "sha256:..."}, "metadata": [{"name": "repository", ...}, {"name": "tags", ...}]}"#,
    argument: Some(("sources", "the directory params.image and params.additional_tags are relative to")),
    example: r#"echo '{"source":{"repository":"127.0.0.1:5000/app"},"params":{"image":"image/image.tar"}}' | out ."#,
    deadline: cli::PUT_DEADLINE,
};

fn main() -> ExitCode {
    let src = match cli::command_line(&STEP) {
        Ok(src) => src.unwrap_or_default(),
        Err(code) => return code,
    };
    cli::finish(run(&src).map_err(|e| format!("{e:#}")))
}

fn run(src: &Path) -> anyhow::Result<()> {
    let request: OutRequest = cli::read_request("out", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let response = cli::run_step(&STEP, put::run(request, src, Backoff::default()))?;
    cli::write_response(&response)?;
    Ok(())
}
