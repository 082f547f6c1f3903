//! `bare-proxy` with a counting allocator, for `benches/load.sh --allocs`. Never shipped.

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[path = "alloc_report.rs"]
mod alloc_report;
#[path = "bare.rs"]
mod bare;

/// The system allocator underneath (stats_alloc's static): how many allocations a request
/// makes does not depend on which allocator serves them.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    alloc_report::report_to_file(GLOBAL);
    bare::main();
}
