//! Canonical paths and route matching on the request path: a plain path (the fast path), a
//! Java-style path with `;jsessionid`, an encoded and dot-segmented one, and route matching on
//! the demo's route table.
//!
//!   cargo bench --bench canonical_path
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use oidc_gateway::paths::canonicalize;
use oidc_gateway::routing::RouteTable;
use std::hint::black_box;

#[path = "support/fixtures.rs"]
mod fixtures;

fn bench(c: &mut Criterion) {
    let config = fixtures::config();
    let table = RouteTable::new(config.routes.clone(), false);
    let mut g = c.benchmark_group("canonical_path");
    for (label, path) in [
        ("plain", "/ra/records/2024/index.html"),
        ("jsessionid", "/ra;jsessionid=0A1B2C3D4E5F/records/view.do"),
        ("encoded-dots", "/public/./%2e%2e/%72a//records/caf%c3%a9"),
    ] {
        g.bench_function(BenchmarkId::new("canonicalize", label), |b| {
            b.iter(|| black_box(canonicalize(black_box(path), false)))
        });
        let canonical = canonicalize(path, false).expect("canonical");
        g.bench_function(BenchmarkId::new("match_route", label), |b| {
            b.iter(|| {
                black_box(table.match_route(Some("127.0.0.1:8080"), black_box(&canonical.matched)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
