//! The provider being down: start-up goes on, /readyz says so, logins get 503 with Retry-After,
//! sessions keep flowing; an issuer that does not match the config stops start-up.

use crate::common;

use std::time::Duration;

use common::{eventually, Browser, Env, Options};
use devprovider::Misbehaviour;
use reqwest::StatusCode;

async fn status(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_without_its_provider_and_becomes_ready_when_it_appears() {
    let mut env = Env::with(Options {
        start_provider: false,
        ..Default::default()
    })
    .await;
    assert_eq!(status(&format!("{}/healthz", env.gateway.admin)).await, 200);
    assert_eq!(status(&format!("{}/readyz", env.gateway.admin)).await, 503);
    let mut b = Browser::new();
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("temporarily unavailable"));
    let mut api = Browser::api();
    let r = api.get(&env.url("/app")).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "API clients are told to come back, not to log in where nobody can: {}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("provider_unavailable"), "{}", r.body);
    // Public routes do not care.
    assert_eq!(b.get(&env.url("/public/x")).await.status, StatusCode::OK);

    env.start_provider().await;
    let admin = env.gateway.admin.clone();
    let ready = eventually(Duration::from_secs(15), async || {
        status(&format!("{admin}/readyz")).await == 200
    })
    .await;
    assert!(ready, "never became ready:\n{}", env.gateway.logs());
    assert_eq!(b.login(&env.url("/"), "alice").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_sessions_keep_working_while_the_provider_is_down() {
    // Without the probe: only a failed call tells the gateway (the login below).
    let mut env = Env::with(Options {
        provider_extra: "probe_interval = \"0s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    assert_eq!(b.login(&env.url("/"), "alice").await.status, StatusCode::OK);
    env.stop_provider();
    for _ in 0..20 {
        let r = b.get(&env.url("/still/working")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.upstream_header("x-auth-sub").as_deref(),
            Some("910000000001")
        );
    }
    // A new login cannot complete: 503 with Retry-After at the callback.
    let mut other = Browser::new();
    let first = other.get(&env.url("/")).await;
    assert_eq!(
        first.status,
        StatusCode::FOUND,
        "the authorization URL is known from discovery"
    );
    let state = common::query_param(&first.location(), "state").unwrap();
    let r = other
        .get(&env.url(&format!("/oauth2/callback?code=x&state={state}")))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_mismatch_stops_start_up_naming_both_values() {
    let env = Env::start().await;
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::DiscoveryIssuerMismatch));
    let dir = tempfile::tempdir().unwrap();
    let text = env.config_text.replace(
        &format!("127.0.0.1:{}\"\npublic_url", env.gateway.port),
        &format!("127.0.0.1:{}\"\npublic_url", common::free_port()),
    );
    let text = text.replace("[admin]\nlisten", "[admin]\n#listen");
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let configured = format!("http://{}", env.provider_addr);
    assert!(
        stderr.contains("names issuer") && stderr.contains(&format!("{configured:?}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_may_live_elsewhere_than_the_issuer_as_on_nhs_spine() {
    let env = Env::with(Options {
        issuer_path: "/token".into(),
        ..Default::default()
    })
    .await;
    assert!(env.provider().issuer.ends_with("/token"));
    let mut b = Browser::new();
    assert_eq!(b.login(&env.url("/"), "alice").await.status, StatusCode::OK);
}

/// `provider_up` follows the provider in both directions within seconds, even with the hourly
/// refresh: a login's failed token call makes the gateway check the provider at once and then
/// retry with backoff (each try counted in `jwks_refresh_total`), so an alert on it neither
/// misses an outage nor keeps paging for an hour after the provider is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_brings_the_provider_check_forward_and_provider_up_follows() {
    let mut env = Env::with(Options {
        provider_extra: "probe_interval = \"0s\"".into(),
        ..Default::default()
    })
    .await;
    let admin = env.gateway.admin.clone();
    let up = "oidc_gateway_provider_up{provider=\"dev\"}";
    let errors = "oidc_gateway_jwks_refresh_total{provider=\"dev\",result=\"error\"}";
    let successes = "oidc_gateway_jwks_refresh_total{provider=\"dev\",result=\"success\"}";
    assert_eq!(common::metric(&admin, up).await, Some(1.0));
    assert_eq!(common::metric(&admin, errors).await, Some(0.0));
    let loaded = common::metric(&admin, successes).await.unwrap();

    env.stop_provider();
    let mut b = Browser::new();
    let first = b.get(&env.url("/")).await;
    let state = common::query_param(&first.location(), "state").unwrap();
    let r = b
        .get(&env.url(&format!("/oauth2/callback?code=x&state={state}")))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // The failed token call alone does not mark the provider down (a client could provoke
    // one); the check it brings forward does.
    let checked = eventually(Duration::from_secs(10), async || {
        common::metric(&admin, errors).await.unwrap_or(0.0) >= 1.0
            && common::metric(&admin, up).await == Some(0.0)
    })
    .await;
    assert!(
        checked,
        "no check of the provider after the failed call:\n{}",
        env.gateway.logs()
    );

    env.start_provider().await;
    let back = eventually(Duration::from_secs(30), async || {
        common::metric(&admin, up).await == Some(1.0)
            && common::metric(&admin, successes).await.unwrap_or(0.0) > loaded
    })
    .await;
    assert!(back, "provider_up stayed 0:\n{}", env.gateway.logs());
}

/// With the default probe (every 5 s, 4 s to answer), an outage is noticed within ten seconds
/// although nobody logs in, even when the provider hangs rather than refusing connections: new
/// logins then get the 503 page (not a redirect to a provider that cannot answer), API
/// requests 503 JSON, sessions keep flowing; when the provider answers again, logins resume by
/// themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_notices_a_hung_provider_and_logins_get_503_until_it_answers() {
    let env = Env::start().await;
    let admin = env.gateway.admin.clone();
    let up = "oidc_gateway_provider_up{provider=\"dev\"}";
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/"), "alice").await.status,
        StatusCode::OK
    );

    env.provider().controls.set_delay(Duration::from_secs(60));
    let hung = std::time::Instant::now();
    let noticed = eventually(Duration::from_secs(20), async || {
        common::metric(&admin, up).await == Some(0.0)
    })
    .await;
    let took = hung.elapsed();
    assert!(noticed, "never noticed:\n{}", env.gateway.logs());
    // Polling adds up to 100 ms; a busy machine a little more.
    assert!(
        took < Duration::from_secs(12),
        "noticed only after {took:?}"
    );

    let mut b = Browser::new();
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("location").is_none());
    let r = b.get(&env.url("/oauth2/sign_in?rd=/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = Browser::api().get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("provider_unavailable"), "{}", r.body);
    // alice's session needs no provider call.
    let r = alice.get(&env.url("/still/here")).await;
    assert_eq!(r.status, StatusCode::OK);

    env.provider().controls.set_delay(Duration::ZERO);
    let back = eventually(Duration::from_secs(40), async || {
        Browser::new().get(&env.url("/app")).await.status == StatusCode::FOUND
    })
    .await;
    assert!(back, "logins never resumed:\n{}", env.gateway.logs());
    assert_eq!(common::metric(&admin, up).await, Some(1.0));
    assert_eq!(b.login(&env.url("/"), "bob").await.status, StatusCode::OK);
}
