//! Authorization: route rules for browsers and API clients, and several providers side by side
//! (a session belongs to the provider that issued it and counts nowhere else).

use crate::common;

use common::{free_port, Browser, Env, Options};
use devprovider::{DevClient, DevClientAuth, DevProvider, DevProviderOptions};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rule_gives_api_clients_a_json_403_and_browsers_a_page() {
    let env = Env::start().await;
    let mut bob = Browser::new();
    bob.login(&env.url("/"), "bob").await;
    let page = bob.get(&env.url("/ra")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    bob.accept_html = false;
    let api = bob.get(&env.url("/ra/records")).await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert_eq!(
        api.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(api.json()["error"], "forbidden");
    // Rules hold on every request, not only the first.
    assert_eq!(bob.get(&env.url("/ra")).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_provider_is_not_accepted_on_a_route_of_another() {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let other = DevProvider::start(DevProviderOptions {
        bind: common::any_loopback(),
        clients: vec![DevClient::new(
            "gateway-b",
            DevClientAuth::SecretBasic("secret-b".into()),
            format!("{public}/oauth2/callback"),
        )],
        ..Default::default()
    })
    .await
    .unwrap();
    let routes = format!(
        r#"
[providers.other]
issuer = "{issuer}"
client_id = "gateway-b"
client_secret = "secret-b"
timeout = "2s"

[[route]]
name = "a"
path = "/a"
provider = "dev"
upstream = "{{echo}}"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Issuer = "iss"

[[route]]
name = "b"
path = "/b"
provider = "other"
upstream = "{{echo}}"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Issuer = "iss"
"#,
        issuer = other.issuer
    );
    let env = Env::with(Options {
        port: Some(port),
        routes,
        // The test itself asks forward-auth below, as the proxy in front would.
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let at_a = b.login(&env.url("/a/x"), "alice").await;
    assert_eq!(at_a.status, StatusCode::OK, "{}", at_a.body);
    assert_eq!(
        at_a.upstream_header("x-auth-issuer"),
        Some(env.provider().issuer.clone())
    );

    // A's session on B's route: a login at B, and no identity for API clients or forward-auth.
    let to_b = b.get(&env.url("/b/y")).await;
    assert_eq!(to_b.status, StatusCode::FOUND);
    assert!(
        to_b.location().starts_with(&other.authorization_endpoint()),
        "{}",
        to_b.location()
    );
    let cookie = b.cookie_header();
    let api = Browser::api()
        .request(Method::GET, &env.url("/b/y"), &[("cookie", &cookie)])
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let fa = Browser::api()
        .request(
            Method::GET,
            &env.url("/oauth2/auth"),
            &[("cookie", &cookie), ("x-original-uri", "/b/y")],
        )
        .await;
    assert_eq!(fa.status, StatusCode::UNAUTHORIZED);

    // Signing in at B gives B's identity on B's route, and A's route now wants A again.
    let back = b.through_provider(&to_b, "bob").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let at_b = b.get(&back.location()).await;
    assert_eq!(at_b.status, StatusCode::OK, "{}", at_b.body);
    assert_eq!(
        at_b.upstream_header("x-auth-issuer"),
        Some(other.issuer.clone())
    );
    let bob_sub = devprovider::user("bob").unwrap().sub().to_owned();
    assert_eq!(at_b.upstream_header("x-auth-sub"), Some(bob_sub));
    let again_a = b.get(&env.url("/a/x")).await;
    assert_eq!(again_a.status, StatusCode::FOUND);
    assert!(again_a
        .location()
        .starts_with(&env.provider().authorization_endpoint()));
}
