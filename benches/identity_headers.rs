//! Identity header rendering for the demo's `app` route (sub, name, email, role/org fallbacks,
//! activities joined, a JSONPath result) over sessions of each size.
//!
//!   cargo bench --bench identity_headers
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use oidc_gateway::identity;
use std::hint::black_box;

#[path = "support/fixtures.rs"]
mod fixtures;

fn bench(c: &mut Criterion) {
    let config = fixtures::config();
    let route = fixtures::route(&config, "app");
    let mut g = c.benchmark_group("identity_headers");
    for (label, session) in fixtures::sessions(&config) {
        let n = identity::headers(&route.headers, &session.claims).len();
        g.bench_function(
            BenchmarkId::from_parameter(format!("{label} ({n} headers)")),
            |b| {
                b.iter(|| {
                    black_box(identity::headers(
                        &route.headers,
                        black_box(&session.claims),
                    ))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
