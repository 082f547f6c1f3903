//! CORS on routes with `cors = true`: preflights from `server.cors_origins` are answered by the
//! gateway (never sent to login or upstream), other origins get no CORS headers, and the
//! route's responses carry the gateway's CORS headers instead of the upstream's.

use crate::common;

use common::{Browser, Env, Options};
use reqwest::{Method, StatusCode};

const APP: &str = "https://app.example.org";
const EVIL: &str = "https://evil.example.net";

async fn start() -> Env {
    Env::with(Options {
        server_extra: format!("cors_origins = [\"{APP}\"]"),
        routes: r#"
[[route]]
name = "api"
path = "/api"
upstream = "{echo}"
cors = true

[[route]]
name = "app"
path = "/"
upstream = "{echo}"
"#
        .into(),
        ..Default::default()
    })
    .await
}

async fn preflight(env: &Env, path: &str, origin: &str, method: &str) -> common::Resp {
    Browser::api()
        .request(
            Method::OPTIONS,
            &env.url(path),
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                (
                    "access-control-request-headers",
                    "content-type, x-requested-with",
                ),
            ],
        )
        .await
}

fn vary(r: &common::Resp) -> String {
    r.headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_a_listed_origin_is_answered_by_the_gateway() {
    let env = start().await;
    let r = preflight(&env, "/api/records/7", APP, "PUT").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        r.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.split(", ").any(|m| m == "PUT"), "{methods}");
    assert_eq!(
        r.header("access-control-allow-headers").as_deref(),
        Some("content-type, x-requested-with")
    );
    assert_eq!(r.header("access-control-max-age").as_deref(), Some("600"));
    assert!(vary(&r).contains("Origin"), "{}", vary(&r));
    assert!(r.header("content-length").is_none());
    // No login started (no login-state cookie), nothing sent upstream.
    assert!(r.set_cookies().is_empty());
    assert!(r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_from_other_origins_or_for_other_methods_get_403_without_cors_headers() {
    let env = start().await;
    for (origin, method) in [
        (EVIL, "GET"),
        ("null", "GET"),
        (APP, "CONNECT"),
        (APP, "TRACE"),
    ] {
        let r = preflight(&env, "/api/x", origin, method).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin} {method}");
        assert_eq!(r.json()["error"], "cors_refused");
        assert!(
            r.headers
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{origin} {method}: {:?}",
            r.headers
        );
    }
    assert!(env
        .gateway
        .logs()
        .contains("CORS preflight from an origin not in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_on_a_route_without_cors_is_not_answered_as_one() {
    let env = start().await;
    let r = preflight(&env, "/other", APP, "GET").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.header("access-control-allow-methods").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_gateways_cors_headers_not_the_upstreams() {
    let env = start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    // The upstream says `Access-Control-Allow-Origin: *` on this path.
    let r = b
        .request(Method::GET, &env.url("/api/cors-open"), &[("origin", APP)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        r.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(vary(&r).contains("Origin"));
    for origin in [EVIL, "null"] {
        let r = b
            .request(
                Method::GET,
                &env.url("/api/cors-open"),
                &[("origin", origin)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{origin}: the upstream's * went through"
        );
        assert!(r.header("access-control-allow-credentials").is_none());
    }
    // A route without `cors` is the upstream's business.
    let r = b
        .request(Method::GET, &env.url("/cors-open"), &[("origin", EVIL)])
        .await;
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_reads_the_gateways_own_answers_and_the_session_status() {
    let env = start().await;
    let r = Browser::api()
        .request(Method::GET, &env.url("/api/x"), &[("origin", APP)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let r = preflight(&env, "/oauth2/session", APP, "GET").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let r = b
        .request(Method::GET, &env.url("/oauth2/session"), &[("origin", APP)])
        .await;
    assert_eq!(r.json()["authenticated"], true);
    assert_eq!(r.json()["refresh_due"], false);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        r.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let r = b
        .request(
            Method::GET,
            &env.url("/oauth2/session"),
            &[("origin", EVIL)],
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(vary(&r).contains("Origin"));
}
