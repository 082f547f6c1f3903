//! `oidc-gateway`: parse the command line, run the command, exit with its code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: a proxied request allocates and frees many small and a few
/// multi-kilobyte buffers (headers, session cookies) across worker threads, which glibc's
/// malloc handles with costly frees and bin consolidation. Set here, in the binary only, so the
/// library keeps the host program's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    oidc_gateway::cli::main(oidc_gateway::cli::Cli::parse())
}
