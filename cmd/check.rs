//! `check`: prints the versions of the source's tag, oldest first.

use std::process::ExitCode;

use registry_image::{check, cli, source::CheckRequest, Backoff};

/// Keeps hyper's large read buffers mapped between HTTP chunks (see `alloc`).
#[global_allocator]
static ALLOCATOR: registry_image::alloc::Recycling = registry_image::alloc::Recycling;

const STEP: cli::Step = cli::Step {
    name: "check",
    summary: "Concourse `check` of the registry-image resource: the current digest of the source's tag.",
    stdin: r#"{"source": {...}, "version": {"digest": "sha256:..."}} (version: the cursor, optional)"#,
    stdout: r#"the versions, oldest first: [{"tag": "latest", "digest": "sha256:..."}]"#,
    argument: None,
    example: r#"echo '{"source":{"repository":"busybox"}}' | check"#,
    deadline: cli::CHECK_DEADLINE,
};

fn main() -> ExitCode {
    if let Err(code) = cli::command_line(&STEP) {
        return code;
    }
    cli::finish(run().map_err(|e| format!("{e:#}")))
}

fn run() -> anyhow::Result<()> {
    let request: CheckRequest = cli::read_request("check", std::io::stdin().lock())?;
    cli::init_logging(request.source.debug);
    let versions = cli::run_step(&STEP, check::run(request, Backoff::default()))?;
    cli::write_response(&versions)?;
    Ok(())
}
