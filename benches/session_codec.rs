//! Session cookie on the request path: pick the gateway's cookies out of `Cookie`, base64url
//! decode, AES-256-GCM open, JSON deserialize; the same when the opened session is cached; and
//! the re-seal a touched session costs.
//!
//!   cargo bench --bench session_codec
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oidc_gateway::session::cache::OpenedSessions;
use oidc_gateway::session::cookies::write_session;
use oidc_gateway::session::{Codec, RequestCookies};
use std::hint::black_box;
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;

fn bench(c: &mut Criterion) {
    let config = fixtures::config();
    let cfg = &config.session;
    let codec = Codec::new(cfg.keys.expose());
    let mut open = c.benchmark_group("session_open");
    for (label, session) in fixtures::sessions(&config) {
        let header = fixtures::sealed_cookie_header(&config, &session).expect("fits");
        // Prove the input is what it claims before timing it.
        let opened = RequestCookies::parse(
            std::iter::once(header.as_bytes()),
            &cfg.cookie_name,
            cfg.max_chunks,
        )
        .session(cfg, &codec)
        .expect("opens");
        assert!(opened == session);
        let id = format!("{label} ({} B cookie)", header.len());
        open.throughput(Throughput::Bytes(header.len() as u64));
        open.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| {
                let cookies = RequestCookies::parse(
                    std::iter::once(black_box(header.as_bytes())),
                    &cfg.cookie_name,
                    cfg.max_chunks,
                );
                black_box(cookies.session(cfg, &codec).is_ok())
            })
        });
    }
    open.finish();
    // The same, when the cookie opened before (the cookie store keeps opened sessions briefly):
    // the cookies are picked out and the sealed text is hashed and compared.
    let cache = OpenedSessions::new();
    let mut cached = c.benchmark_group("session_open_cached");
    for (label, session) in fixtures::sessions(&config) {
        let header = fixtures::sealed_cookie_header(&config, &session).expect("fits");
        let cookies = RequestCookies::parse(
            std::iter::once(header.as_bytes()),
            &cfg.cookie_name,
            cfg.max_chunks,
        );
        let sealed = cookies.sealed().expect("sealed text");
        cache.insert(&sealed, Arc::new(session.clone()));
        cached.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let cookies = RequestCookies::parse(
                    std::iter::once(black_box(header.as_bytes())),
                    &cfg.cookie_name,
                    cfg.max_chunks,
                );
                let sealed = cookies.sealed().expect("sealed text");
                black_box(cache.get(&sealed).is_some())
            })
        });
    }
    cached.finish();
    let mut seal = c.benchmark_group("session_reseal");
    for (label, session) in fixtures::sessions(&config) {
        seal.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                black_box(write_session(
                    cfg,
                    &codec,
                    black_box(&session),
                    &RequestCookies::default(),
                    4_000_000_000,
                ))
            })
        });
    }
    seal.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
