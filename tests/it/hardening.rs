//! Smaller holes, each pinned: responses carrying the gateway's cookie stay out of shared
//! caches, an upstream cannot plant the gateway's cookie, a cross-site logout link asks first,
//! the callback refuses repeated parameters, provider answers are read with a size cap, and a
//! failed JWKS refetch for an unknown `kid` keeps the good keys.

use crate::common;

use std::time::Duration;

use common::{metric, Browser, Env, Options};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw upstream that answers every request with `head` (status line and headers) and a
/// small body; keep-alive connections are served one request after another.
async fn scripted_upstream(head: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte).await {
                            Ok(1) => buf.push(byte[0]),
                            _ => return,
                        }
                    }
                    let resp = format!("{head}\r\ncontent-length: 2\r\n\r\nok");
                    if conn.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_cookie_is_never_cached_publicly_nor_set_by_the_upstream() {
    let upstream = scripted_upstream(
        "HTTP/1.1 200 OK\r\nset-cookie: oidc_session=planted; Path=/\r\nset-cookie: oidc_session_0=x\r\nset-cookie: app=1; Path=/\r\ncache-control: public, max-age=600",
    )
    .await;
    let env = Env::with(Options {
        // Two seconds between idle touches (idle_timeout / 10).
        session_extra: "idle_timeout = \"20s\"".into(),
        routes: format!(
            r#"
[[route]]
name = "app"
path = "/"
upstream = "http://{upstream}"
"#
        ),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let r = b.login(&env.url("/page"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let session = b.cookies["oidc_session"].clone();
    assert_ne!(session, "planted");
    // No session cookie of the gateway in this answer: the upstream's caching stands, and its
    // own cookie passes; its attempt at the gateway's cookies does not.
    let r = b.get(&env.url("/page")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=600")
    );
    let set = r.set_cookies();
    assert!(set.iter().any(|c| c.starts_with("app=1")), "{set:?}");
    assert!(
        !set.iter().any(|c| c.starts_with("oidc_session")),
        "the upstream set the gateway's cookie: {set:?}"
    );
    assert_eq!(b.cookies["oidc_session"], session);
    // A touched session is written back: that answer must stay private.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = b.get(&env.url("/page")).await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.set_cookies();
    assert!(
        set.iter().any(|c| c.starts_with("oidc_session=")),
        "no touch: {set:?}"
    );
    assert!(!set.iter().any(|c| c.contains("planted")), "{set:?}");
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("private, max-age=600")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_logout_link_asks_for_confirmation() {
    let env = Env::start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let r = b
        .request(
            Method::GET,
            &env.url("/oauth2/logout?rd=%2Fbye"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("method=\"post\""), "{}", r.body);
    assert!(
        r.body.contains("action=\"/oauth2/logout?rd=%2Fbye\""),
        "{}",
        r.body
    );
    assert!(r.set_cookies().is_empty());
    // Still signed in.
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    // The button (a same-origin POST) logs out; so does a same-origin GET.
    let r = b
        .request(
            Method::POST,
            &env.url("/oauth2/logout?rd=%2Fbye"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(b.session_cookie_names().is_empty());
    let mut c = Browser::new();
    c.login(&env.url("/"), "alice").await;
    let r = c
        .request(
            Method::GET,
            &env.url("/oauth2/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(c.session_cookie_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_refuses_repeated_state_code_or_iss() {
    let env = Env::start().await;
    for extra in ["&state=other", "&code=other", "&iss=x&iss=y"] {
        let mut b = Browser::new();
        let first = b.get(&env.url("/")).await;
        let state = common::query_param(&first.location(), "state").unwrap();
        let r = b
            .get(&env.url(&format!("/oauth2/callback?code=c&state={state}{extra}")))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{extra}: {}", r.body);
        assert!(r.body.contains("Sign in again"));
        assert!(b.session_cookie_names().is_empty());
    }
    assert!(env.gateway.logs().contains("parameter repeated"));
}

/// A provider that answers discovery with a document of `size` bytes.
async fn bloated_provider(size: usize) -> String {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                // No content-length: the reader has to cut it off itself.
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answers_beyond_the_size_cap_are_refused_with_a_clear_error() {
    let bloated = bloated_provider(8 * 1024 * 1024).await;
    let env = Env::with(Options {
        start_provider: false,
        routes: format!(
            r#"
[providers.big]
issuer = "http://{bloated}"
client_id = "c"
client_secret = "s"
timeout = "5s"

[[route]]
name = "app"
path = "/"
upstream = "{{echo}}"
provider = "big"
"#
        ),
        ..Default::default()
    })
    .await;
    let logs = env.gateway.logs();
    let found = common::eventually(Duration::from_secs(10), async || {
        env.gateway
            .logs()
            .contains("larger than 1048576 bytes (providers.*.max_response_bytes)")
    })
    .await;
    assert!(found, "{logs}");
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap()
        .status();
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
}

const AUDIENCE: &str = "api://records";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refetch_for_an_unknown_kid_keeps_the_good_keys() {
    let mut env = Env::with(Options {
        provider_extra: format!("audience = \"{AUDIENCE}\""),
        routes: r#"
[[route]]
name = "api"
path = "/api"
upstream = "{echo}"
bearer = true
"#
        .into(),
        ..Default::default()
    })
    .await;
    let bearer = |t: &str| format!("Bearer {t}");
    let first = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    let unused = env
        .provider()
        .mint_access_token("bob", AUDIENCE, 300)
        .unwrap();
    let r = Browser::api()
        .request(
            Method::GET,
            &env.url("/api/x"),
            &[("authorization", &bearer(&first))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A token signed with a key the cached JWKS lacks, while the provider is down.
    env.provider().controls.rotate_signing_key();
    let unknown = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    env.stop_provider();
    let r = Browser::api()
        .request(
            Method::GET,
            &env.url("/api/x"),
            &[("authorization", &bearer(&unknown))],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(
        metric(
            &env.gateway.admin,
            "oidc_gateway_jwks_refresh_total{provider=\"dev\",result=\"error\"}"
        )
        .await
        .unwrap_or(0.0)
            >= 1.0
    );
    // The good keys are still there: ready, and a token they sign (never seen before) passes.
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap()
        .status();
    assert_eq!(ready, StatusCode::OK);
    let r = Browser::api()
        .request(
            Method::GET,
            &env.url("/api/x"),
            &[("authorization", &bearer(&unused))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_after_the_idle_timeout_still_ends_the_provider_session() {
    let env = Env::with(Options {
        session_extra: "idle_timeout = \"2s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // Too idle for the application...
    assert_eq!(
        b.get_api(&env.url("/")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // ...but a shared workstation's next user must not inherit the provider's session.
    let r = b.get(&env.url("/oauth2/logout?rd=%2Fbye")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let loc = r.location();
    assert!(
        loc.starts_with(&env.provider().end_session_endpoint()),
        "{loc}"
    );
    assert!(common::query_param(&loc, "id_token_hint").is_some());
    assert!(b.session_cookie_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refreshed_on_a_forbidden_request_keeps_the_refresh() {
    let env = Env::with(Options {
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut bob = Browser::new();
    bob.login(&env.url("/"), "bob").await;
    tokio::time::sleep(Duration::from_secs(
        oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS + 1,
    ))
    .await;
    let grants = || {
        env.provider()
            .controls
            .token_requests()
            .into_iter()
            .filter(|t| t.grant_type.as_deref() == Some("refresh_token"))
            .count()
    };
    // bob may not use /ra: 403, but the refresh it took is kept (the provider rotated the
    // refresh token the old cookie holds).
    let r = bob.get(&env.url("/ra")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(grants(), 1);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("oidc_session")),
        "{:?}",
        r.set_cookies()
    );
    let r = bob.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(grants(), 1);
}
