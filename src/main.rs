//! `oidc-gateway`: parse the command line, run the command, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    oidc_gateway::cli::main(oidc_gateway::cli::Cli::parse())
}
