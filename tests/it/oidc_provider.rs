//! Interoperability with an independent, OpenID Certified provider: the npm package
//! `oidc-provider` (version pinned in tests/interop/op/package-lock.json), with its own login
//! and logout pages, PKCE required, refresh tokens (rotating in one test), RP-initiated logout and
//! NHS CIS2-shaped accounts. Each client authentication method runs the whole flow through the
//! gateway to the echo upstream. The last test drives the same flow in headless Chromium.

use crate::common;
use crate::interop;

use std::process::Command;
use std::time::Duration;

use common::redis::RedisServer;
use common::Browser;
use interop::{
    confirm_logout_at_op, ensure_npm_packages, login, login_at_op, op_dir, OpClient, OpEnv,
    OpEnvOptions,
};
use reqwest::StatusCode;

async fn metric(env: &OpEnv, needle: &str) -> Option<f64> {
    common::metric(&env.gateway.admin, needle).await
}

async fn env_with(client: OpClient) -> OpEnv {
    OpEnv::start(OpEnvOptions {
        client,
        ..OpEnvOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_basic_login_forwards_cis2_claims_from_userinfo() {
    let env = env_with(OpClient::Basic).await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/app/page?x=1", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["path"], "/app/page");
    let h = |n: &str| r.upstream_header(n);
    assert_eq!(h("x-auth-sub").as_deref(), Some("910000000001"));
    assert_eq!(h("x-auth-name").as_deref(), Some("Alice Example"));
    assert_eq!(
        h("x-auth-email").as_deref(),
        Some("alice.example@nhs.example")
    );
    assert_eq!(h("x-auth-role").as_deref(), Some("S0080:G0450:R8000"));
    assert_eq!(h("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(h("x-auth-activities").as_deref(), Some("B0005,B0008"));
    assert_eq!(h("x-auth-workgroups").as_deref(), Some("Ward 7 Nursing"));
    assert_eq!(h("x-auth-selected-org").as_deref(), Some("Q14"));
    // acr and amr come from oidc-provider's ID token (the login recorded them).
    assert_eq!(h("x-auth-acr").as_deref(), Some("AAL3_ANY"));
    assert_eq!(h("x-auth-amr").as_deref(), Some("pin"));
    // The Registration Authority route admits her (B0008).
    let r = b.get(&env.url("/ra")).await;
    assert_eq!(r.status, StatusCode::OK);
    // What a single-page app learns about the session: oidc-provider's acr and auth_time.
    let s = b.get(&env.url("/oauth2/session")).await.json();
    assert_eq!(s["authenticated"], true, "{s}");
    assert_eq!(s["sub"], "910000000001");
    assert_eq!(s["acr"], "AAL3_ANY");
    assert_eq!(s["refresh_token"], true);
    // oidc-provider puts auth_time in ID tokens only when asked (max_age): null, not absent.
    assert!(s["auth_time"].is_null(), "{s}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        s["idle_expires_at"].as_u64().unwrap_or_default() > now,
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_assertions_use_the_algorithm_the_provider_advertises_for_the_key() {
    // oidc-provider refuses an assertion in any other algorithm than the client's registered
    // one, so a completed login shows which one the gateway chose without being told.
    for alg in ["RS512", "ES384"] {
        let env = env_with(OpClient::JwtAdvertised(alg)).await;
        let mut b = Browser::new();
        let r = login(&mut b, &env, "/app/x", "alice").await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
        assert_eq!(
            r.upstream_header("x-auth-sub").as_deref(),
            Some("910000000001")
        );
    }
}

fn session_acr(s: &serde_json::Value) -> &str {
    s["acr"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aal3_route_steps_a_weaker_session_up_and_checks_what_comes_back() {
    let env = env_with(OpClient::Basic).await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/app/x", "alice#AAL2_ANY").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = b.get(&env.url("/oauth2/session")).await.json();
    assert_eq!(session_acr(&s), "AAL2_ANY");
    // An API client with this session: RFC 9470's challenge, the usual JSON shape.
    let mut api = Browser::api();
    api.cookies = b.cookies.clone();
    let r = api.get(&env.url("/aal3/records")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.json()["error"], "insufficient_user_authentication");
    assert_eq!(r.json()["acr_values"], "AAL3_ANY");
    assert!(r.json()["login_url"]
        .as_str()
        .unwrap()
        .contains("/oauth2/sign_in?rd="));
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(
        www.contains("error=\"insufficient_user_authentication\"")
            && www.contains("acr_values=\"AAL3_ANY\""),
        "{www}"
    );
    // A browser is sent to sign in again, asking for AAL3 (and to authenticate anew: the
    // provider's session is AAL2).
    let step = b.get(&env.url("/aal3/records")).await;
    assert_eq!(step.status, StatusCode::FOUND);
    let to = step.location();
    assert!(
        to.contains("acr_values=AAL3_ANY") && to.contains("prompt=login"),
        "{to}"
    );
    // Signing in at AAL2 again does not pass: the login fails and the old session remains.
    let weak = login_at_op(&mut b, &env.op, &step, "alice#AAL2_ANY").await;
    assert_eq!(weak.status, StatusCode::UNAUTHORIZED, "{}", weak.body);
    assert!(env.gateway.logs().contains("requested level (acr)"));
    let s = b.get(&env.url("/oauth2/session")).await.json();
    assert_eq!(session_acr(&s), "AAL2_ANY");
    assert_eq!(b.get(&env.url("/app/x")).await.status, StatusCode::OK);
    // With the smartcard it does, and the new session replaces the old one.
    let step = b.get(&env.url("/aal3/records")).await;
    let back = login_at_op(&mut b, &env.op, &step, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["path"], "/aal3/records");
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    let s = b.get(&env.url("/oauth2/session")).await.json();
    assert_eq!(session_acr(&s), "AAL3_ANY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_max_auth_age_asks_for_a_fresh_login_when_the_last_is_too_old() {
    let env = env_with(OpClient::Basic).await;
    let mut b = Browser::new();
    // A first login for the route asks for max_age and gets auth_time.
    let first = b.get(&env.url("/recent/a")).await;
    assert!(
        first.location().contains("max_age=3"),
        "{}",
        first.location()
    );
    let back = login_at_op(&mut b, &env.op, &first, "alice").await;
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(b.get(&env.url("/oauth2/session")).await.json()["auth_time"].is_u64());
    assert_eq!(b.get(&env.url("/recent/b")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Too old now: sign in again (the provider, told max_age, asks for the password again).
    let again = b.get(&env.url("/recent/c")).await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert!(again.location().contains("max_age=3"));
    let back = login_at_op(&mut b, &env.op, &again, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert_eq!(b.get(&back.location()).await.status, StatusCode::OK);
    // The rest of the application did not care.
    assert_eq!(b.get(&env.url("/app/x")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_login_lets_a_cis2_user_pick_another_role() {
    let env = env_with(OpClient::Basic).await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/app/x", "alice").await;
    assert_eq!(
        r.upstream_header("x-auth-selected-org").as_deref(),
        Some("Q14")
    );
    let old_cookies = b.session_cookie_names();
    // The provider would sign her in again silently; prompt=login makes it ask.
    let start = b
        .get(&env.url("/oauth2/sign_in?rd=%2Fapp%2Fx&prompt=login"))
        .await;
    assert_eq!(start.status, StatusCode::FOUND);
    assert!(
        start.location().contains("&prompt=login"),
        "{}",
        start.location()
    );
    // Until the new login succeeds the old session still works.
    let r = b.get(&env.url("/app/x")).await;
    assert_eq!(
        r.upstream_header("x-auth-selected-org").as_deref(),
        Some("Q14")
    );
    let back = login_at_op(&mut b, &env.op, &start, "alice/555000000012").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The new selected role replaced the old one: RW3's medical secretary role.
    assert_eq!(
        r.upstream_header("x-auth-selected-org").as_deref(),
        Some("RW3")
    );
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(b.session_cookie_names(), old_cookies);
    // Only the prompts a browser can come back from are passed on.
    for bad in ["none", "login%20none", "other", ""] {
        let r = b
            .get(&env.url(&format!("/oauth2/sign_in?rd=%2F&prompt={bad}")))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "prompt={bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_login_carries_a_non_ascii_name() {
    let env = env_with(OpClient::Post).await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/", "jose").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("José Müller")
    );
    assert_eq!(
        r.upstream_header("x-auth-workgroups").as_deref(),
        Some("Équipe de garde")
    );
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000003")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_login_and_a_user_without_b0008_is_forbidden() {
    let env = env_with(OpClient::Jwt).await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/", "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("RR8"));
    assert_eq!(
        r.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0264")
    );
    let r = b.get(&env.url("/ra")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_refresh_tokens_are_used_once_even_under_concurrency() {
    // oidc-provider revokes the whole grant when a rotated refresh token is presented again, so
    // a second refresh with the same token would end the session.
    let env = OpEnv::start(OpEnvOptions {
        client: OpClient::Jwt,
        access_token_ttl: 1,
        id_token_ttl: 1,
        rotate_refresh_token: true,
        ..OpEnvOptions::default()
    })
    .await;
    let mut b = Browser::new();
    let r = login(&mut b, &env, "/", "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_secs(
            oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS + 1,
        ))
        .await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let mut c = Browser::api();
            c.cookies = b.cookies.clone();
            let url = env.url(&format!("/api/{round}/{i}"));
            tasks.push(tokio::spawn(async move { c.get(&url).await }));
        }
        let mut last = None;
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.body);
            assert_eq!(
                r.upstream_header("x-auth-selected-org").as_deref(),
                Some("Q14")
            );
            last = Some(r);
        }
        // Carry on with the refreshed cookie (holding the rotated refresh token).
        b.absorb(&last.unwrap());
        assert_eq!(
            metric(
                &env,
                "oidc_gateway_auth_events_total{event=\"refreshed\",provider=\"op\"}"
            )
            .await,
            Some(round as f64)
        );
    }
    assert_eq!(
        metric(
            &env,
            "oidc_gateway_auth_events_total{event=\"refresh_failed\",provider=\"op\"}"
        )
        .await,
        // The series exists from the start (at zero), so a rate over it does too.
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_ends_the_session_at_the_gateway_and_the_provider() {
    let env = env_with(OpClient::Basic).await;
    let mut b = Browser::new();
    login(&mut b, &env, "/", "alice").await;
    let r = b.get(&env.url("/oauth2/logout?rd=/bye")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let end_session = r.location();
    assert!(
        end_session.starts_with(&format!("{}/session/end", env.op.issuer)),
        "{end_session}"
    );
    assert!(end_session.contains("id_token_hint="), "{end_session}");
    assert!(b.session_cookie_names().is_empty());
    let back = confirm_logout_at_op(&mut b, &env.op, &end_session).await;
    assert_eq!(back, env.url("/bye"));
    // Signed out at the provider too: the next visit shows its login page again.
    let r = b.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let at_op = b.get(&r.location()).await;
    let (_, page) = interop::follow_at(&mut b, r.location(), at_op, &env.op.issuer).await;
    assert!(page.body.contains("name=\"login\""), "{}", page.body);
}

/// The user signs out at the provider itself (as from another application of the same SSO):
/// oidc-provider sends a back-channel logout token for the session to the gateway, which
/// revokes it in Redis. The browser still holds the gateway's cookie, and it no longer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_at_the_provider_reaches_the_gateway_by_back_channel() {
    let redis = RedisServer::start();
    let env = OpEnv::start(OpEnvOptions {
        session_extra: format!("store = \"redis\"\nredis_url = \"{}\"", redis.url()),
        ..OpEnvOptions::default()
    })
    .await;
    let mut b = Browser::new();
    login(&mut b, &env, "/", "alice").await;
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);

    let end_session = format!("{}/session/end", env.op.issuer);
    confirm_logout_at_op(&mut b, &env.op, &end_session).await;
    assert!(!b.session_cookie_names().is_empty());
    let api = b.get_api(&env.url("/")).await;
    assert_eq!(
        api.status,
        StatusCode::UNAUTHORIZED,
        "{}\nprovider: {}",
        api.body,
        env.op.log()
    );
    assert_eq!(
        metric(
            &env,
            "oidc_gateway_backchannel_logout_total{provider=\"op\",result=\"revoked\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(redis.cli(&["--scan", "--pattern", "oidc-gateway:s:*"]), "");
}

/// Headless Chromium (Debian's package) driven by playwright-core: login on oidc-provider's
/// page, the app, a reload with the cookie, logout. Proves the cookie attributes (HttpOnly,
/// SameSite=Lax, Secure on an http://127.0.0.1 origin, chunks) work in a real browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_logs_in_reloads_and_logs_out() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: tests/run.sh installs Debian's chromium"
    );
    ensure_npm_packages();
    // max_chunks and a small cookie limit are not configurable; the secure flag is on (the
    // default), so this also proves browsers keep Secure cookies from http://127.0.0.1.
    let env = env_with(OpClient::Basic).await;
    let app = env.url("/app/page?from=browser");
    // A page on another origin (the echo upstream's, in server.cors_origins) calls the gateway.
    let other_origin = env.echo.base_url();
    let out = tokio::task::spawn_blocking({
        let app = app.clone();
        let base = env.gateway.base.clone();
        let other_origin = other_origin.clone();
        move || {
            Command::new("node")
                .arg(op_dir().join("browser.js"))
                .args([&app, &base, "big", &other_origin])
                .env("CHROMIUM", &chromium)
                .current_dir(op_dir())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser.js failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway log tail:\n{}",
        tail(&env.gateway.logs(), 40)
    );
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no report: {stderr}")),
    )
    .unwrap();
    // What the upstream saw, as the browser rendered it.
    assert_eq!(report["first"]["path"], "/app/page");
    assert_eq!(report["first"]["sub"], "910000000004");
    assert_eq!(report["first"]["name"], "Bartholomew Big-Claims");
    // The reload was served from the cookies alone, and the app never saw them.
    assert_eq!(report["reload"]["sub"], "910000000004");
    assert!(
        report["reload"]["cookie_header"].is_null()
            || !report["reload"]["cookie_header"]
                .as_str()
                .unwrap()
                .contains("oidc_session")
    );
    // The browser kept every chunk of the large session, with the gateway's attributes.
    let cookies = report["cookies"].as_object().unwrap();
    let chunks: Vec<_> = cookies
        .iter()
        .filter(|(name, _)| name.starts_with("oidc_session_") && !name.contains("_login_"))
        .collect();
    assert!(chunks.len() >= 2, "expected a chunked session: {cookies:?}");
    assert!(!cookies.contains_key("oidc_session"), "{cookies:?}");
    for (name, c) in chunks {
        assert_eq!(c["httpOnly"], true, "{name}");
        assert_eq!(c["sameSite"], "Lax", "{name}");
        assert_eq!(c["secure"], true, "{name}");
        assert_eq!(c["path"], "/", "{name}");
    }
    // The login-state cookie was deleted at the callback.
    assert!(
        !cookies.keys().any(|k| k.contains("_login_")),
        "{cookies:?}"
    );
    // From a page on the listed origin, a credentialed PUT with a JSON body (so Chromium sends
    // a preflight first) reached the API with the user's identity; the same call to a route
    // without `cors` was blocked by the browser.
    assert_eq!(report["cors"]["status"], 200, "{}", report["cors"]);
    assert_eq!(report["cors"]["method"], "PUT");
    assert_eq!(report["cors"]["sub"], "910000000004");
    assert_eq!(report["cors_without_route_cors"], "blocked");
    // After logout: no session cookie, back on the gateway's public page.
    assert_eq!(report["after_logout"]["session_cookies"], 0);
    assert_eq!(
        report["after_logout"]["url"],
        format!("{}/bye", env.gateway.base)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
