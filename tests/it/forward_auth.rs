//! Forward-auth (`/oauth2/auth`) fails closed: only trusted proxies are answered, the original
//! URI goes through the proxy's path rules and route match, nothing matched means 403, and a
//! session is refreshed and extended exactly as on the proxied path.

use crate::common;

use std::time::Duration;

use common::{Browser, Env, Options};
use oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS;
use reqwest::{Method, StatusCode};

const ROUTES: &str = r#"
[[route]]
name = "public"
path = "/public"
upstream = "{echo}"
auth = "public"

[[route]]
name = "app"
path = "/app"
upstream = "{echo}"

[[route]]
name = "ra"
path = "/ra"
upstream = "{echo}"
[route.require]
activities = ["B0008"]

[[route]]
name = "hosted"
host = "apps.example.org"
path = "/h"
upstream = "{echo}"
"#;

fn trusted(extra: Options) -> Options {
    Options {
        routes: ROUTES.into(),
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..extra
    }
}

/// A browser signed in as `user` at `/app`, then asking as an API client does.
async fn signed_in(env: &Env, user: &str) -> Browser {
    let mut b = Browser::new();
    let r = b.login(&env.url("/app"), user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b.accept_html = false;
    b
}

/// Asks forward-auth as a proxy would, with `b`'s cookies and these headers.
async fn ask(env: &Env, b: &mut Browser, headers: &[(&str, &str)]) -> common::Resp {
    b.request(Method::GET, &env.url("/oauth2/auth"), headers)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_answers_only_trusted_proxies() {
    let env = Env::with(Options {
        routes: ROUTES.into(),
        ..Default::default()
    })
    .await;
    let mut alice = signed_in(&env, "alice").await;
    let r = ask(&env, &mut alice, &[("x-original-uri", "/app/x")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "forbidden");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("trusted_proxies"),
        "{}",
        r.body
    );
    assert!(r.header("x-auth-sub").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_never_says_yes_unless_a_route_matched_and_its_rules_passed() {
    let env = Env::with(trusted(Options::default())).await;
    let mut bob = signed_in(&env, "bob").await;
    // Path rules as at the proxy: ambiguous or encoded separators are 400.
    for uri in [
        "/ra/x%5C",
        "/ra/x%2F",
        "/public/..;/ra/",
        "/public/%2e%2e;/ra/",
        "ra/relative",
    ] {
        let r = ask(&env, &mut bob, &[("x-original-uri", uri)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
    }
    // Every spelling of /ra is /ra: bob lacks B0008.
    for uri in [
        "/ra/",
        "/%72a/",
        "/ra;x/",
        "/public/../ra/x?y=1",
        "/app/%2e%2e/ra",
    ] {
        let r = ask(&env, &mut bob, &[("x-original-uri", uri)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.body);
    }
    // Two forwarded URIs that disagree: 400, whichever is harmless.
    let r = ask(
        &env,
        &mut bob,
        &[("x-forwarded-uri", "/ra/"), ("x-original-uri", "/public/x")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = ask(
        &env,
        &mut bob,
        &[("x-forwarded-uri", "/app/"), ("x-original-uri", "/app/")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "agreeing headers: {}",
        r.body
    );
    // No original URI at all: 400; one that no route serves: 403.
    let r = ask(&env, &mut bob, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = ask(&env, &mut bob, &[("x-original-uri", "/nowhere")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A host route: only for its host.
    let r = ask(
        &env,
        &mut bob,
        &[
            ("x-original-uri", "/h/x"),
            ("x-forwarded-host", "apps.example.org"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    for host in [Some("evil.example"), None] {
        let mut headers = vec![("x-original-uri", "/h/x")];
        if let Some(h) = host {
            headers.push(("x-forwarded-host", h));
        }
        let r = ask(&env, &mut bob, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{host:?}: {}", r.body);
    }
    // One original host, or nothing is believed.
    for hosts in [
        &[
            ("x-forwarded-host", "apps.example.org"),
            ("x-forwarded-host", "evil.example"),
        ][..],
        &[("x-forwarded-host", "evil.example, apps.example.org")][..],
        &[("x-forwarded-host", "apps.example.org:x")][..],
    ] {
        let mut headers = vec![("x-original-uri", "/h/x")];
        headers.extend_from_slice(hosts);
        let r = ask(&env, &mut bob, &headers).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{hosts:?}: {}", r.body);
    }
    // A public route needs nobody; a protected one without a session is 401.
    let mut nobody = Browser::api();
    let r = ask(&env, &mut nobody, &[("x-original-uri", "/public/x")]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = ask(&env, &mut nobody, &[("x-original-uri", "/app/x")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "login_required");

    // alice has B0008: the same spellings pass, with her identity.
    let mut alice = signed_in(&env, "alice").await;
    for uri in ["/ra/", "/%72a/", "/ra;jsessionid=1/x"] {
        let r = ask(&env, &mut alice, &[("x-original-uri", uri)]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{uri}: {}", r.body);
        assert_eq!(r.header("x-auth-sub").as_deref(), Some("910000000001"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_extends_an_idle_session_like_the_proxy() {
    let env = Env::with(trusted(Options {
        session_extra: "idle_timeout = \"3s\"".into(),
        ..Default::default()
    }))
    .await;
    let mut alice = signed_in(&env, "alice").await;
    // Only forward-auth sees the user from now on (nginx in front, the app behind it): its
    // Set-Cookie keeps the session alive well past one idle timeout.
    let mut extended = false;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = ask(&env, &mut alice, &[("x-original-uri", "/app/x")]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        extended |= !r.set_cookies().is_empty();
    }
    assert!(extended, "forward-auth never wrote the session back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_refreshes_expired_provider_tokens() {
    let env = Env::with(trusted(Options {
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(1),
        ..Default::default()
    }))
    .await;
    let mut alice = signed_in(&env, "alice").await;
    tokio::time::sleep(Duration::from_secs(MIN_TOKEN_LIFETIME_SECS + 1)).await;
    let r = ask(&env, &mut alice, &[("x-original-uri", "/app/x")]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("oidc_session")),
        "the refreshed session travels back: {:?}",
        r.set_cookies()
    );
    let grants = env
        .provider()
        .controls
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(grants, 1);
    // The refreshed cookie works without another grant.
    let again = ask(&env, &mut alice, &[("x-original-uri", "/app/y")]).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let grants = env
        .provider()
        .controls
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(grants, 1);
}
