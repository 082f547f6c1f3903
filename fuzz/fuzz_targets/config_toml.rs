//! The TOML config loader and validator (`config::parse_str`, what `oidc-gateway check` and
//! every start and reload run): TOML syntax, unknown keys, `${ENV}` expansion, `*_file` secrets,
//! durations, URLs, CIDRs, claim paths, keys, certificates and cross-checks.
//!
//! Input: config file text. Relative files resolve against fuzz/fixtures (keys, a CA
//! certificate, secret files); the environment variables the example configs use are set.
//!
//! Invariants: `Ok` or a typed list of problems, never a panic; every problem has a message;
//! a valid config's routes canonicalise (the route table never falls back to "never match"),
//! and its identity header names are valid header names.
#![no_main]

use std::path::Path;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use oidc_gateway::config::parse_str;
use oidc_gateway::paths::canonicalize;
use oidc_gateway::routing::RouteTable;
use oidc_gateway_fuzz::FIXTURES;

static ENV: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    ENV.call_once(|| {
        let key = std::fs::read_to_string(Path::new(FIXTURES).join("cookie-key"))
            .expect("fixture cookie key");
        std::env::set_var("GATEWAY_COOKIE_KEY", key.trim());
        std::env::set_var("CIS2_CLIENT_ID", "example-client");
        std::env::set_var("OIDC_CLIENT_SECRET", "example-secret");
        std::env::set_var(
            "OIDC_GATEWAY_PRIVATE_KEY_FILE",
            Path::new(FIXTURES).join("rs256.pem"),
        );
        std::env::set_var("CREDENTIALS_DIRECTORY", FIXTURES);
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Device and kernel files block or never end (`/dev/zero`, `/proc/kmsg`): an operator's
    // config is not the place that defends against them.
    if ["/dev", "/proc", "/sys", "/run"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    match parse_str(text, Some(Path::new(FIXTURES))) {
        Ok(config) => {
            let fold = config.server.case_insensitive_paths;
            for r in &config.routes {
                assert!(
                    canonicalize(&r.path, fold).is_ok(),
                    "route[{}] path {:?} passed check but does not canonicalise",
                    r.index,
                    r.path
                );
                assert!(r.provider < config.providers.len(), "route provider index");
            }
            let table = RouteTable::new(config.routes.clone(), fold);
            let _ = table.match_route(None, "/");
            for p in &config.warnings {
                assert!(!p.message.is_empty(), "a warning without a message");
                let _ = p.to_string();
            }
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "Err without any problem");
            for p in &problems.0 {
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
            let _ = problems.to_string();
        }
    }
});
