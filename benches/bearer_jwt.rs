//! Bearer access token validation (`Authorization: Bearer <JWT>` on `bearer = true` routes):
//! cold (a verifier that has never seen the token: JWKS keys converted, RS256 signature,
//! claims checks, claims kept) and cached (SHA-256 of the token, cache hit, expiry check).
//! The keys come from the development provider over loopback, as in production.
//!
//!   cargo bench --bench bearer_jwt
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use devprovider::{DevProvider, DevProviderOptions};
use oidc_gateway::bearer::BearerVerifier;
use oidc_gateway::config::parse_str;
use oidc_gateway::metrics::Metrics;
use oidc_gateway::oidc::Provider;

#[path = "support/fixtures.rs"]
mod fixtures;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dev = rt
        .block_on(DevProvider::start(DevProviderOptions::default()))
        .expect("dev provider");
    // The demo's routes (fixtures::CONFIG) with the dev provider's issuer and an API audience.
    let text = fixtures::CONFIG
        .replace("http://127.0.0.1:4181", &dev.issuer)
        .replace(
            "client_secret = \"bench\"",
            "client_secret = \"bench\"\naudience = \"api\"",
        );
    let config = parse_str(&text, None).unwrap_or_else(|p| panic!("config: {p}"));
    let provider = Provider::new(config.providers[0].clone(), Metrics::new()).expect("provider");
    rt.block_on(provider.load()).expect("discovery and JWKS");
    let kept = fixtures::kept_paths(&config);
    let skew = config.providers[0].clock_skew;
    let token = dev
        .mint_access_token("alice", "api", 3600)
        .expect("an access token from the dev provider");
    let warm = BearerVerifier::new(skew);
    rt.block_on(warm.verify(&provider, &kept, &token))
        .expect("the token is valid");

    let mut g = c.benchmark_group("bearer_jwt");
    g.bench_function("cold (RS256, new verifier)", |b| {
        b.iter_batched(
            || BearerVerifier::new(skew),
            |v| {
                black_box(
                    rt.block_on(v.verify(&provider, &kept, black_box(&token)))
                        .is_ok(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(warm.verify(&provider, &kept, black_box(&token)))
                    .is_ok(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
