//! `route.require` evaluation: the demo's `activities = ["B0008"]` rule (met by alice, unmet by
//! bob, found among 60 activities for "big") and a three-key rule like a CIS2 deployment's.
//!
//!   cargo bench --bench authz_rules
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use devprovider::user;
use oidc_gateway::authz;
use oidc_gateway::claims::ClaimPath;
use oidc_gateway::config::Requirement;
use std::hint::black_box;

#[path = "support/fixtures.rs"]
mod fixtures;

fn req(path: &str, values: &[&str]) -> Requirement {
    Requirement {
        path: ClaimPath::parse(path).expect("path"),
        values: values.iter().map(|s| s.to_string()).collect(),
    }
}

fn bench(c: &mut Criterion) {
    let config = fixtures::config();
    let demo_rule = &fixtures::route(&config, "registration-authority").require;
    let cis2 = vec![
        req("activities", &["B0008", "B0264"]),
        req("org.code", &["Q14", "RR8", "RW3"]),
        req("role.code", &["S0080:G0450:R8000", "S8000:G8000:R8001"]),
    ];
    let mut g = c.benchmark_group("authz_rules");
    for id in ["alice", "bob", "big"] {
        let claims = &user(id).expect("dev user").claims;
        for (rule_label, rules) in [("demo", demo_rule.as_slice()), ("cis2", cis2.as_slice())] {
            let met = authz::first_unmet(rules, claims).is_none();
            let label = format!("{rule_label}/{id} ({})", if met { "met" } else { "unmet" });
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| black_box(authz::first_unmet(black_box(rules), black_box(claims))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
