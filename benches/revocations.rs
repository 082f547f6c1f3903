//! The in-memory revocation list of cookie sessions (back-channel logout, issue 18): what
//! 10,000 revoked provider sessions cost in memory, and what the request path's check costs
//! with an empty list and with 10,000 entries.
//!
//!   cargo bench --bench revocations
//!
//! Memory: the package forbids `unsafe_code` in every target, so a counting global allocator
//! (an `unsafe impl GlobalAlloc`) cannot be written here. Instead the bench runs on the
//! gateway's own allocator (mimalloc, as `src/main.rs` sets it) and reads the process's
//! anonymous resident memory (`RssAnon` in /proc/self/status) before and after: 20 lists of
//! 10,000 entries are built one after the other and kept, and the mean growth per list is
//! reported (RSS grows in steps of up to 2 MiB here; twenty lists average that out). Every `revoke` also remembers the logout
//! token's `jti` (replay check, 24 minutes with the default clock skew), so the entries' own
//! share is reported next to that of a `jti` cache built the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use oidc_gateway::metrics::Metrics;
use oidc_gateway::session::revocation::Revocations;
use oidc_gateway::session::Session;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Anonymous resident memory of this process, bytes.
fn rss_anon() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .expect("RssAnon in /proc/self/status")
        * 1024
}

/// Lists of 10,000 entries built (and kept) for the memory figure.
const SAMPLES: usize = 20;

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The gateway's settings: `max_lifetime = "8h"`, `max_revocations = 100000`, and the `jti`
/// memory of the default `clock_skew` (60 s): `backchannel::jti_keep` = (10 min + 2 × 60 s) × 2.
const KEEP: Duration = Duration::from_secs(8 * 3600);
const CAPACITY: usize = 100_000;
const JTI_KEEP: Duration = Duration::from_secs(24 * 60);
const ENTRIES: usize = 10_000;
const REGISTRATION: &str = "http://127.0.0.1:4181";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A provider session id as providers send them (32 hex characters).
fn sid(i: usize) -> String {
    format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    )
}

/// A user id (a UUID, as many providers' `sub`).
fn sub(i: usize) -> String {
    let h = sid(i + 1_000_000);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A cookie session as the callback builds it (only what the check reads matters).
fn session(sub: &str, sid: &str, created: u64) -> Session {
    serde_json::from_value(json!({
        "p": "dev", "c": {"sub": sub}, "i": created, "l": created, "x": created + 8 * 3600,
        "s": sid,
    }))
    .expect("a session")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn list() -> Revocations {
    Revocations::new(KEEP, CAPACITY, JTI_KEEP, None, Metrics::new())
}

/// `n` logouts into `list`, revoked at `at`: provider session `sid(i)`, and with `with_sub`
/// the user `sub(i)` too (a logout token naming both also revokes that user's sessions that
/// carry no `sid`: two entries).
fn revoke_many(
    rt: &tokio::runtime::Runtime,
    list: &Revocations,
    n: usize,
    with_sub: bool,
    at: u64,
) {
    rt.block_on(async {
        for i in 0..n {
            let user = sub(i);
            let user = with_sub.then_some(user.as_str());
            list.revoke(REGISTRATION, Some(&sid(i)), user, &format!("jti-{i}"), at)
                .await
                .expect("recorded");
        }
    });
}

/// A list holding `n` revoked provider sessions (sid 0..n).
fn filled(rt: &tokio::runtime::Runtime, n: usize, at: u64) -> Revocations {
    let l = list();
    revoke_many(rt, &l, n, false, at);
    l
}

fn jti_cache(n: usize, salt: u64) -> moka::sync::Cache<[u8; 32], ()> {
    // As `Revocations::new` builds its own: 100,000 at most, kept JTI_KEEP.
    let jtis = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(JTI_KEEP)
        .build();
    for i in 0..n as u64 {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k[8..16].copy_from_slice(&salt.to_le_bytes());
        k[16..24].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        let _ = jtis.entry(k).or_insert(());
    }
    jtis.run_pending_tasks();
    assert_eq!(jtis.entry_count(), n as u64);
    jtis
}

/// Mean growth of RssAnon per list over `SAMPLES` lists of `ENTRIES` logouts each (the lists go
/// to `kept`, alive until the end, so that no freed page is reused by the next one), and the
/// median time per logout.
fn measure(
    rt: &tokio::runtime::Runtime,
    with_sub: bool,
    at: u64,
    kept: &mut Vec<Revocations>,
) -> (i64, i64) {
    let mut per_revoke = Vec::new();
    let start = rss_anon();
    for _ in 0..SAMPLES {
        let l = list();
        let started = Instant::now();
        revoke_many(rt, &l, ENTRIES, with_sub, at);
        per_revoke.push(started.elapsed().as_nanos() as i64 / ENTRIES as i64);
        let expected = if with_sub { 2 * ENTRIES } else { ENTRIES };
        assert_eq!(l.len(), expected, "every entry is held");
        kept.push(l);
    }
    ((rss_anon() - start) / SAMPLES as i64, median(per_revoke))
}

/// Resident bytes of 10,000 revocations, printed before criterion's timings.
fn memory() {
    let rt = runtime();
    let at = now();
    // Warm up whatever is allocated once per process (metrics registry, moka's statics).
    drop(filled(&rt, 1000, at));
    drop(jti_cache(1000, 0));

    // Empty lists (what a gateway holds before any logout), then the jti caches alone.
    let start = rss_anon();
    let empties: Vec<Revocations> = (0..SAMPLES).map(|_| list()).collect();
    let empty = (rss_anon() - start) / SAMPLES as i64;
    let start = rss_anon();
    let kept_jtis: Vec<_> = (0..SAMPLES as u64)
        .map(|s| jti_cache(ENTRIES, s + 1))
        .collect();
    let jti = (rss_anon() - start) / SAMPLES as i64;
    let mut kept = Vec::new();
    let (sid_only, sid_time) = measure(&rt, false, at, &mut kept);
    let (sid_sub, sid_sub_time) = measure(&rt, true, at, &mut kept);

    // Revoked sessions are refused, and a session that was not revoked is not.
    let l = filled(&rt, 100, at);
    assert!(l
        .revoked(REGISTRATION, &session("u", &sid(1), at - 10))
        .unwrap());
    assert!(!l
        .revoked(REGISTRATION, &session("u", "not-revoked", at - 10))
        .unwrap());

    let kb = |b: i64| b as f64 / 1024.0;
    let each = |b: i64, n: usize| b as f64 / n as f64;
    println!("revocations memory (RssAnon growth under mimalloc, mean of {SAMPLES} lists each):");
    println!(
        "  Revocations::new (capacity {CAPACITY}, nothing revoked): {:.0} KiB",
        kb(empty)
    );
    println!(
        "  jti replay cache alone (kept {} min), {ENTRIES} tokens: {:.0} KiB",
        JTI_KEEP.as_secs() / 60,
        kb(jti)
    );
    println!(
        "  {ENTRIES} logouts naming sid: {:.0} KiB ({:.2} µs per revoke); without the jti cache: {:.0} KiB per {ENTRIES} entries ({:.0} B per entry)",
        kb(sid_only),
        sid_time as f64 / 1000.0,
        kb(sid_only - jti),
        each(sid_only - jti, ENTRIES)
    );
    println!(
        "  {ENTRIES} logouts naming sid and sub (2 entries each): {:.0} KiB ({:.2} µs per revoke); without the jti cache: {:.0} KiB per {} entries ({:.0} B per entry)",
        kb(sid_sub),
        sid_sub_time as f64 / 1000.0,
        kb(sid_sub - jti),
        2 * ENTRIES,
        each(sid_sub - jti, 2 * ENTRIES)
    );
    drop(kept);
    drop(kept_jtis);
    drop(empties);
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let at = now();
    let mut g = c.benchmark_group("revocations_check");
    let empty = list();
    let alice = session("alice", "0123456789abcdef0123456789abcdef", at - 10);
    g.bench_function(BenchmarkId::from_parameter("empty list"), |b| {
        b.iter(|| black_box(empty.revoked(black_box(REGISTRATION), black_box(&alice))))
    });
    let full = filled(&rt, ENTRIES, at);
    assert_eq!(full.len(), ENTRIES);
    assert!(!full.revoked(REGISTRATION, &alice).unwrap());
    g.bench_function(
        BenchmarkId::from_parameter("10000 entries, not revoked (sid and sub looked up)"),
        |b| b.iter(|| black_box(full.revoked(black_box(REGISTRATION), black_box(&alice)))),
    );
    let revoked = session("bob", &sid(4321), at - 10);
    assert!(full.revoked(REGISTRATION, &revoked).unwrap());
    g.bench_function(
        BenchmarkId::from_parameter("10000 entries, revoked sid"),
        |b| b.iter(|| black_box(full.revoked(black_box(REGISTRATION), black_box(&revoked)))),
    );
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs each benchmark once to see
    // that it works, and has no use for the (slow) memory figure.
    if std::env::args().any(|a| a == "--bench") {
        memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
