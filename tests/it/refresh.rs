//! Refresh: a session whose provider tokens have expired is refreshed (refresh_token grant, same
//! client authentication) before its request is forwarded; concurrent requests share one
//! refresh; a refused refresh ends the session; an unreachable provider gets 503. And UserInfo:
//! merged at login and again at each refresh.

use crate::common;

use std::time::Duration;

use common::{eventually, Auth, Browser, Env, Options};
use devprovider::{ClientAuthMethod, Misbehaviour};
use oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS;
use reqwest::StatusCode;
use serde_json::json;

/// Provider tokens that expire at once; the gateway then believes MIN_TOKEN_LIFETIME_SECS.
fn short_lived(auth: Auth, provider_extra: &str) -> Options {
    Options {
        auth,
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(1),
        provider_extra: provider_extra.to_owned(),
        ..Options::default()
    }
}

/// Sleeps until tokens issued now count as expired (whole seconds, plus one for rounding).
async fn until_expired() {
    tokio::time::sleep(Duration::from_secs(MIN_TOKEN_LIFETIME_SECS + 1)).await;
}

fn refresh_grants(env: &Env) -> Vec<ClientAuthMethod> {
    env.provider()
        .controls
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .map(|r| r.auth_method)
        .collect()
}

async fn metric(env: &Env, needle: &str) -> Option<f64> {
    common::metric(&env.gateway.admin, needle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refreshed_before_forwarding_with_the_same_client_auth() {
    let env = Env::with(short_lived(Auth::Post, "")).await;
    let mut b = Browser::new();
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    let first_cookie = b.cookies["oidc_session"].clone();
    // Still fresh: no refresh.
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(refresh_grants(&env).is_empty());

    until_expired().await;
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        r.upstream_header("x-auth-selected-org").as_deref(),
        Some("Q14")
    );
    assert_eq!(refresh_grants(&env), [ClientAuthMethod::SecretPost]);
    // The refreshed session travels back in the response.
    let sc = r.set_cookies().join("\n");
    assert!(sc.starts_with("oidc_session="), "{sc}");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );
    assert_ne!(b.cookies["oidc_session"], first_cookie);
    // The new cookie is good for a while without the provider.
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(refresh_grants(&env).len(), 1);

    assert_eq!(
        metric(
            &env,
            "oidc_gateway_auth_events_total{event=\"refreshed\",provider=\"dev\"}"
        )
        .await,
        Some(1.0)
    );
    let logs = env.gateway.logs();
    assert!(logs
        .lines()
        .any(|l| l.contains("audit") && l.contains("session refreshed")));
    // Never a token in the logs.
    assert!(!logs.contains(&first_cookie));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_one_session_trigger_one_refresh() {
    // The dev provider rotates refresh tokens: a second grant with the old one would fail.
    let env = Env::with(short_lived(Auth::Basic, "")).await;
    let mut b = Browser::new();
    b.login(&env.url("/app"), "alice").await;
    until_expired().await;

    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = Browser::api();
        c.cookies = b.cookies.clone();
        let url = env.url(&format!("/api/{i}"));
        tasks.push(tokio::spawn(async move { c.get(&url).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.upstream_header("x-auth-sub").as_deref(),
            Some("910000000001")
        );
        assert!(r
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("oidc_session=")));
    }
    assert_eq!(refresh_grants(&env), [ClientAuthMethod::SecretBasic]);

    // A late request still carrying the old cookie reuses the outcome instead of presenting
    // the spent refresh token.
    let r = b.get(&env.url("/late")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(refresh_grants(&env).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_ends_the_session_browser_to_login_api_401() {
    let env = Env::with(short_lived(Auth::Basic, "")).await;
    let mut b = Browser::new();
    b.login(&env.url("/app"), "alice").await;
    let mut api = Browser::api();
    api.cookies = b.cookies.clone();
    until_expired().await;
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::TokenError));

    let r = b.get(&env.url("/app/page")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(r
        .location()
        .starts_with(&env.provider().authorization_endpoint()));
    // The dead session's cookie is deleted on the way.
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("oidc_session=") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies()
    );
    assert!(!b.cookies.contains_key("oidc_session"));

    let r = api.get(&env.url("/api/items")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "login_required");
    assert_eq!(
        metric(
            &env,
            "oidc_gateway_auth_events_total{event=\"refresh_failed\",provider=\"dev\"}"
        )
        .await,
        Some(1.0)
    );
    assert!(env.gateway.logs().contains("refresh_failed"));

    // Logging in again works.
    env.provider().controls.set_misbehaviour(None);
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_during_refresh_gives_503_and_keeps_the_session() {
    let env = Env::with(short_lived(Auth::Basic, "")).await;
    let mut b = Browser::new();
    b.login(&env.url("/app"), "alice").await;
    let cookie = b.cookies["oidc_session"].clone();
    until_expired().await;
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::Unavailable));
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(b.cookies["oidc_session"], cookie);

    // Back up: once the gateway sees it answer again (its probe, within seconds), the same
    // cookie refreshes and flows again.
    env.provider().controls.set_misbehaviour(None);
    let admin = env.gateway.admin.clone();
    let up = eventually(Duration::from_secs(40), async || {
        common::metric(&admin, "oidc_gateway_provider_up{provider=\"dev\"}").await == Some(1.0)
    })
    .await;
    assert!(up, "provider_up stayed 0:\n{}", env.gateway.logs());
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(refresh_grants(&env).len(), 2);
}

/// The access token expired during an outage but the ID token still holds: the session goes on
/// (no 503, no provider call per request) and is refreshed once the provider is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_does_not_stop_a_session_whose_id_token_is_still_valid() {
    let env = Env::with(Options {
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(300),
        ..Options::default()
    })
    .await;
    let admin = env.gateway.admin.clone();
    let up = "oidc_gateway_provider_up{provider=\"dev\"}";
    let mut b = Browser::new();
    b.login(&env.url("/app"), "alice").await;
    until_expired().await;
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::Unavailable));
    for _ in 0..5 {
        let r = b.get(&env.url("/app")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.upstream_header("x-auth-sub").as_deref(),
            Some("910000000001")
        );
    }
    // The failed refresh brings a check of the provider forward, which marks it down.
    let down = eventually(Duration::from_secs(20), async || {
        common::metric(&admin, up).await == Some(0.0)
    })
    .await;
    assert!(down, "provider_up stayed 1:\n{}", env.gateway.logs());
    let tried = refresh_grants(&env).len();
    for _ in 0..5 {
        assert_eq!(b.get(&env.url("/app")).await.status, StatusCode::OK);
    }
    assert_eq!(
        refresh_grants(&env).len(),
        tried,
        "a provider known to be down is not asked on every request"
    );

    env.provider().controls.set_misbehaviour(None);
    let refreshed = eventually(Duration::from_secs(40), async || {
        b.get(&env.url("/app")).await.status == StatusCode::OK
            && common::metric(
                &admin,
                "oidc_gateway_auth_events_total{event=\"refreshed\",provider=\"dev\"}",
            )
            .await
            .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    assert!(
        refreshed,
        "never refreshed after the outage:\n{}",
        env.gateway.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_with_private_key_jwt_uses_a_fresh_assertion() {
    let env = Env::with(short_lived(Auth::Jwt("RS256"), "")).await;
    let mut b = Browser::new();
    b.login(&env.url("/app"), "jose").await;
    until_expired().await;
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("José Müller")
    );
    assert_eq!(refresh_grants(&env), [ClientAuthMethod::PrivateKeyJwt]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_is_merged_at_login_and_fetched_again_at_refresh() {
    let mut opts = short_lived(Auth::Basic, "userinfo = true");
    opts.routes = r#"
[[route]]
name = "app"
path = "/"
upstream = "{echo}"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Picture = "picture"
X-Auth-Acr = "acr"
X-Auth-Iss = "iss"
X-Auth-Role = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].role_code"
"#
    .into();
    let env = Env::with(opts).await;
    let controls = &env.provider().controls;
    // UserInfo disagrees with the ID token: profile claims follow UserInfo, protocol claims
    // (acr, iss) stay the ID token's.
    controls.set_userinfo_extra(
        json!({
            "name": "Alice From UserInfo",
            "picture": "https://pictures.example/alice.jpg",
            "acr": "forged",
            "iss": "https://evil.example",
        })
        .as_object()
        .cloned()
        .unwrap(),
    );
    let mut b = Browser::new();
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(controls.userinfo_calls(), 1);
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("Alice From UserInfo")
    );
    assert_eq!(
        r.upstream_header("x-auth-picture").as_deref(),
        Some("https://pictures.example/alice.jpg")
    );
    assert_eq!(r.upstream_header("x-auth-acr").as_deref(), Some("AAL3_ANY"));
    assert_eq!(
        r.upstream_header("x-auth-iss").as_deref(),
        Some(env.provider().issuer.as_str())
    );

    // The user's role changes at the provider; the refresh picks it up (JSONPath re-evaluated).
    controls.set_userinfo_extra(
        json!({
            "name": "Alice Renamed",
            "selected_roleid": "555000000012",
        })
        .as_object()
        .cloned()
        .unwrap(),
    );
    until_expired().await;
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(controls.userinfo_calls(), 2);
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("Alice Renamed")
    );
    assert_eq!(
        r.upstream_header("x-auth-role").as_deref(),
        Some("S8000:G8000:R8003")
    );
    assert_eq!(r.upstream_header("x-auth-picture"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_for_another_subject_at_refresh_ends_the_session() {
    let env = Env::with(short_lived(Auth::Basic, "userinfo = true")).await;
    let mut api = Browser::api();
    let mut b = Browser::new();
    b.login(&env.url("/app"), "alice").await;
    api.cookies = b.cookies.clone();
    until_expired().await;
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::UserinfoSubMismatch));
    let r = api.get(&env.url("/api")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(env.gateway.logs().contains("invalid_userinfo"));
}
