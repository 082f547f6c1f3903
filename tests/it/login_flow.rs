//! The authorization code flow end to end: a browser without a session is sent to the
//! provider, comes back through the callback, and the upstream sees the identity.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{query_param, Browser, Env, Options};
use reqwest::StatusCode;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_session_is_sent_to_the_provider_with_state_nonce_and_pkce() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b.get(&env.url("/app/page?x=1")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location();
    assert!(
        loc.starts_with(&env.provider().authorization_endpoint()),
        "{loc}"
    );
    assert_eq!(query_param(&loc, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query_param(&loc, "client_id").as_deref(),
        Some(common::CLIENT_ID)
    );
    assert_eq!(
        query_param(&loc, "redirect_uri"),
        Some(env.url("/oauth2/callback"))
    );
    assert_eq!(
        query_param(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    for p in ["state", "nonce", "code_challenge"] {
        assert!(
            query_param(&loc, p).is_some_and(|v| v.len() >= 43),
            "{p} missing or short"
        );
    }
    let login_cookies: Vec<_> = b
        .cookies
        .keys()
        .filter(|k| k.starts_with("oidc_session_login_"))
        .collect();
    assert_eq!(login_cookies.len(), 1);
    let sc = r.set_cookies().join("\n");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Max-Age=600"),
        "{sc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_login_the_upstream_receives_identity_headers_and_the_original_path() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b.login(&env.url("/app/page?x=1&y=%2F"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let json = r.json();
    assert_eq!(json["path"], "/app/page");
    assert_eq!(json["query"], "x=1&y=%2F");
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(
        r.upstream_header("x-auth-role").as_deref(),
        Some("S0080:G0450:R8000")
    );
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        r.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0008")
    );
    assert_eq!(
        r.upstream_header("x-user").as_deref(),
        Some("alice.example@nhs.example")
    );
    assert_eq!(
        r.upstream_header("x-auth-selected-org").as_deref(),
        Some("Q14")
    );
    // The login-state cookie is gone, the session cookie is a single bare cookie.
    assert_eq!(b.session_cookie_names(), ["oidc_session"]);
    assert!(!b.cookies.keys().any(|k| k.contains("_login_")));
    // Later requests reuse the session without the provider.
    let before = env.provider().controls.token_requests().len();
    let again = b.get(&env.url("/other")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(env.provider().controls.token_requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_name_reaches_the_upstream_as_utf8() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b.login(&env.url("/"), "jose").await;
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("José Müller")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_request_without_session_gets_401_json_not_a_redirect() {
    let env = Env::start().await;
    let mut api = Browser::api();
    let r = api.get(&env.url("/api/items?page=2")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|w| w.starts_with("Bearer")));
    assert_eq!(r.json()["error"], "login_required");
    assert_eq!(
        r.json()["login_url"].as_str(),
        Some(
            env.url("/oauth2/sign_in?rd=%2Fapi%2Fitems%3Fpage%3D2")
                .as_str()
        )
    );
    assert!(r.header("access-control-allow-origin").is_none());
    // Without Sec-Fetch-Mode, an Accept with text/html is a browser navigation.
    let r = api
        .request(
            reqwest::Method::GET,
            &env.url("/x"),
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    // Sec-Fetch-Mode decides over Accept.
    let mut b = Browser::new();
    let r = b
        .request(
            reqwest::Method::GET,
            &env.url("/x"),
            &[("sec-fetch-mode", "cors"), ("accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = b
        .request(
            reqwest::Method::GET,
            &env.url("/x"),
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_401_carries_cors_headers_only_for_the_own_or_configured_origins() {
    let env = Env::with(common::Options {
        server_extra: "cors_origins = [\"https://spa.example.org\"]".into(),
        ..Default::default()
    })
    .await;
    let mut api = Browser::api();
    let own = env.gateway.base.clone();
    for (origin, allowed) in [
        (own.as_str(), true),
        ("https://spa.example.org", true),
        ("https://evil.example", false),
    ] {
        let r = api
            .request(
                reqwest::Method::GET,
                &env.url("/api"),
                &[("origin", origin)],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            allowed.then_some(origin),
            "{origin}"
        );
        if allowed {
            assert_eq!(
                r.header("access-control-allow-credentials").as_deref(),
                Some("true")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_pass_without_a_session_and_without_identity() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b
        .request(
            reqwest::Method::GET,
            &env.url("/public/page"),
            &[("x-auth-sub", "forged")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["path"], "/public/page");
    assert!(r.upstream_header("x-auth-sub").is_none());
    // Whole segments only: /publicity is not under /public.
    let r = b.get(&env.url("/publicity")).await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tabs_can_log_in_at_once() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let tab1 = b.get(&env.url("/one")).await;
    let tab2 = b.get(&env.url("/two")).await;
    assert_eq!(
        b.cookies.keys().filter(|k| k.contains("_login_")).count(),
        2
    );
    let back2 = b.through_provider(&tab2, "alice").await;
    assert_eq!(back2.location(), env.url("/two"));
    let back1 = b.through_provider(&tab1, "alice").await;
    assert_eq!(back1.location(), env.url("/one"));
    assert!(!b.cookies.keys().any(|k| k.contains("_login_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_state_cookies_are_capped_at_five_per_browser() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let mut first = None;
    for i in 0..8 {
        let r = b.get(&env.url(&format!("/tab{i}"))).await;
        if i == 0 {
            first = Some(r);
        }
    }
    assert_eq!(
        b.cookies.keys().filter(|k| k.contains("_login_")).count(),
        5
    );
    // The oldest login was dropped: its callback fails cleanly.
    let back = b.through_provider(&first.unwrap(), "alice").await;
    assert_eq!(back.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_session_is_split_into_chunks_that_each_fit_a_cookie() {
    let env = Env::with(common::Options {
        routes: common::DEFAULT_ROUTES.replace(
            "X-Auth-Activities = \"activities\"",
            "X-Auth-Activities = \"activities\"\nX-Auth-Roles = \"$.nhsid_nrbac_roles[0:15]\"",
        ),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let first = b.get(&env.url("/")).await;
    let back = b.through_provider(&first, "big").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let chunks = b.session_cookie_names();
    assert!(chunks.len() >= 2, "{chunks:?}");
    assert!(!chunks.contains(&"oidc_session".to_owned()));
    for (i, name) in chunks.iter().enumerate() {
        assert_eq!(name, &format!("oidc_session_{i}"));
    }
    for sc in back.set_cookies() {
        assert!(sc.len() < 4096, "cookie of {} bytes", sc.len());
    }
    let r = b.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .upstream_header("x-auth-activities")
        .is_some_and(|a| a.split(',').count() > 50));
    // The chunks never reach the upstream.
    assert!(r.upstream_header("cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_beyond_the_chunk_limit_is_refused_with_a_clear_page_and_log_line() {
    let env = Env::with(common::Options {
        routes: common::DEFAULT_ROUTES.replace(
            "X-Auth-Activities = \"activities\"",
            "X-Auth-Activities = \"activities\"\nX-Auth-Roles = \"nhsid_nrbac_roles\"",
        ),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let first = b.get(&env.url("/")).await;
    let back = b.through_provider(&first, "big").await;
    assert_eq!(back.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(back.body.contains("session_too_large"), "{}", back.body);
    assert!(b.session_cookie_names().is_empty());
    let logs = env.gateway.logs();
    assert!(
        logs.contains("does not fit in cookies") && logs.contains("max_chunks"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_goes_to_the_provider_and_returns_to_rd() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b
        .get(&env.url("/oauth2/sign_in?rd=%2Fdeep%2Fpage%3Fa%3D1"))
        .await;
    let back = b.through_provider(&r, "alice").await;
    assert_eq!(back.location(), env.url("/deep/page?a=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_attempts_land_on_the_gateway_root() {
    let env = Env::start().await;
    for rd in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "javascript:alert(1)",
        "/%0D%0ALocation:%20https://evil.example",
    ] {
        let mut b = Browser::new();
        let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = b
            .get(&env.url(&format!("/oauth2/sign_in?rd={encoded}")))
            .await;
        let back = b.through_provider(&r, "alice").await;
        assert_eq!(back.location(), env.url("/"), "rd {rd:?}");
        let out = b
            .get(&env.url(&format!("/oauth2/logout?rd={encoded}")))
            .await;
        assert_eq!(out.status, StatusCode::FOUND);
        let loc = out.location();
        let target = query_param(&loc, "post_logout_redirect_uri").unwrap_or(loc);
        assert_eq!(target, env.url("/"), "logout rd {rd:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_clears_the_session_and_ends_it_at_the_provider() {
    let env = Env::start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let r = b.get(&env.url("/oauth2/logout?rd=%2Fbye")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(b.session_cookie_names().is_empty(), "{:?}", b.cookies);
    let loc = r.location();
    assert!(
        loc.starts_with(&env.provider().end_session_endpoint()),
        "{loc}"
    );
    assert!(query_param(&loc, "id_token_hint").is_some());
    assert_eq!(
        query_param(&loc, "post_logout_redirect_uri"),
        Some(env.url("/bye"))
    );
    let at_provider = b.get(&loc).await;
    assert_eq!(at_provider.status, StatusCode::FOUND);
    assert_eq!(at_provider.location(), env.url("/bye"));
    assert_eq!(env.provider().controls.end_session_calls().len(), 1);
    // The session is gone: the next visit logs in again.
    let again = b.get(&env.url("/")).await;
    assert_eq!(again.status, StatusCode::FOUND);
    // POST works too, and without a session it just returns to rd.
    let r = b
        .request(reqwest::Method::POST, &env.url("/oauth2/logout"), &[])
        .await;
    assert_eq!(r.location(), env.url("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_shows_the_session_claims() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b.get(&env.url("/oauth2/userinfo")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    b.login(&env.url("/"), "alice").await;
    let r = b.get(&env.url("/oauth2/userinfo")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sub"], "910000000001");
    assert_eq!(r.json()["org"]["code"], "Q14");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_endpoint_tells_an_app_when_its_session_ends_and_never_a_token() {
    let env = Env::with(Options {
        session_extra: "idle_timeout = \"10m\"\nmax_lifetime = \"2h\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let r = b.get(&env.url("/oauth2/session")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({"authenticated": false}));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let before = unix_now();
    b.login(&env.url("/"), "alice").await;
    let after = unix_now();
    let r = b.get(&env.url("/oauth2/session")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let s = r.json();
    assert_eq!(s["authenticated"], true);
    assert_eq!(s["sub"], "910000000001");
    assert_eq!(s["provider"], "dev");
    assert_eq!(s["acr"], "AAL3_ANY");
    assert_eq!(s["refresh_token"], true);
    let within = |v: &serde_json::Value, lo: u64, hi: u64| {
        v.as_u64().is_some_and(|t| (lo..=hi).contains(&t))
    };
    assert!(within(&s["auth_time"], before - 1, after), "{s}");
    assert!(
        within(&s["expires_at"], before + 7200 - 1, after + 7200),
        "{s}"
    );
    assert!(
        within(&s["idle_expires_at"], before + 600 - 1, after + 600),
        "{s}"
    );
    // Times and flags only: no token, no cookie value, and asking is not activity.
    assert!(!r.body.contains("eyJ"), "{}", r.body);
    assert!(r.set_cookies().is_empty());
    assert_eq!(
        b.get(&env.url("/oauth2/logout")).await.status,
        StatusCode::FOUND
    );
    let r = b.get(&env.url("/oauth2/session")).await;
    assert_eq!(r.json(), serde_json::json!({"authenticated": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_the_session_endpoint_does_not_keep_an_idle_session_alive() {
    let env = Env::with(Options {
        session_extra: "idle_timeout = \"2s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let deadline = std::time::Instant::now() + Duration::from_millis(3500);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        let r = b.get(&env.url("/oauth2/session")).await;
        assert_eq!(r.status, StatusCode::OK);
        seen.push(r.json()["authenticated"] == true);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen[0], "signed in at first");
    assert!(
        !seen[seen.len() - 1],
        "still signed in after 3.5 s of polling: {seen:?}"
    );
    // The page itself asks for a login again.
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_forbid_users_without_the_activity() {
    let env = Env::start().await;
    let mut bob = Browser::new();
    bob.login(&env.url("/"), "bob").await;
    let r = bob.get(&env.url("/ra/admin")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Access denied"));
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    assert_eq!(
        alice.get(&env.url("/ra/admin")).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_sees_each_client_authentication_method() {
    use devprovider::ClientAuthMethod;
    for (auth, method) in [
        (common::Auth::Basic, ClientAuthMethod::SecretBasic),
        (common::Auth::Post, ClientAuthMethod::SecretPost),
        (common::Auth::Jwt("RS256"), ClientAuthMethod::PrivateKeyJwt),
        (common::Auth::Jwt("ES256"), ClientAuthMethod::PrivateKeyJwt),
        (common::Auth::Jwt("PS256"), ClientAuthMethod::PrivateKeyJwt),
    ] {
        let env = Env::with(common::Options {
            auth,
            ..Default::default()
        })
        .await;
        let mut b = Browser::new();
        let r = b.login(&env.url("/"), "alice").await;
        assert_eq!(r.status, StatusCode::OK, "{auth:?}: {}", r.body);
        let reqs = env.provider().controls.token_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].auth_method, method, "{auth:?}");
        if let common::Auth::Jwt(_) = auth {
            assert!(!reqs[0].authorization_header);
            assert!(reqs[0].form_fields.iter().any(|f| f == "client_assertion"));
            assert!(!reqs[0].form_fields.iter().any(|f| f == "client_secret"));
        }
    }
}
