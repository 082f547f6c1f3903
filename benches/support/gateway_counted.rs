//! `oidc-gateway` with a counting allocator, for `benches/load.sh --allocs`: the same command
//! line and code as the shipped binary plus stats_alloc's counters. Never shipped.

use std::process::ExitCode;

use clap::Parser;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[path = "alloc_report.rs"]
mod alloc_report;

/// The system allocator underneath (stats_alloc's static): how many allocations a request
/// makes does not depend on which allocator serves them.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() -> ExitCode {
    alloc_report::report_to_file(GLOBAL);
    oidc_gateway::cli::main(oidc_gateway::cli::Cli::parse())
}
