//! What the upstream receives: identity only from validated claims, never from the client;
//! the gateway's cookies removed; X-Forwarded-* believed only from trusted proxies; and the
//! request limits of the contract (paths, header size).

use crate::common;

use common::{Browser, Env, Options};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_identity_headers_are_stripped_in_any_spelling() {
    let env = Env::start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "bob").await;
    let spoofed = [
        ("X-Auth-Sub", "evil"),
        ("x-auth-org", "Q14"),
        ("X_Auth_Role", "admin"),
        ("X-AUTH-ACTIVITIES", "B0008"),
        ("X-Auth-Anything-Else", "evil"),
        ("X-User", "root@example"),
        ("x_user", "root@example"),
    ];
    let r = b.request(Method::GET, &env.url("/page"), &spoofed).await;
    assert_eq!(r.status, StatusCode::OK);
    let h = r.upstream_headers();
    assert_eq!(h["x-auth-sub"], ["910000000002"]);
    assert_eq!(h["x-user"].len(), 1);
    assert_ne!(h["x-user"][0], "root@example");
    assert!(!h.contains_key("x_auth_role") && !h.contains_key("x_user"));
    assert!(!h.contains_key("x-auth-anything-else"));
    for (_, values) in h.iter() {
        assert!(!values.iter().any(|v| v == "evil" || v == "admin"), "{h:?}");
    }
    // Bob has no B0008: a forged header does not get him past the rule either.
    let r = b
        .request(
            Method::GET,
            &env.url("/ra"),
            &[("X-Auth-Activities", "B0008")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_stripped_on_public_routes_too() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b
        .request(
            Method::GET,
            &env.url("/public/x"),
            &[("X-Auth-Sub", "evil"), ("X_User", "evil")],
        )
        .await;
    let h = r.upstream_headers();
    assert!(
        !h.contains_key("x-auth-sub") && !h.contains_key("x_user") && !h.contains_key("x-user"),
        "{h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_cookies_never_reach_the_upstream_but_the_apps_do() {
    let env = Env::start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    b.cookies.insert("app_pref".into(), "dark".into());
    b.cookies
        .insert("oidc_session_login_zzz".into(), "stale".into());
    let r = b.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.upstream_header("cookie").as_deref(),
        Some("app_pref=dark")
    );
    // Only gateway cookies: no Cookie header at all upstream.
    b.cookies.remove("app_pref");
    let r = b.get(&env.url("/")).await;
    assert!(r.upstream_header("cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_untrusted_clients_are_replaced() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let r = b
        .request(
            Method::GET,
            &env.url("/public/a?b=c"),
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Proto", "https"),
                ("X-Original-URI", "/admin"),
            ],
        )
        .await;
    let h = r.upstream_headers();
    assert_eq!(h["x-forwarded-for"], ["127.0.0.1"]);
    assert_eq!(h["x-forwarded-proto"], ["http"]);
    assert_eq!(
        h["x-forwarded-host"],
        [env.gateway.base.trim_start_matches("http://")]
    );
    assert_eq!(h["x-forwarded-uri"], ["/public/a?b=c"]);
    assert!(!h.contains_key("x-original-uri"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_trusted_proxies_are_kept_and_extended() {
    let env = Env::with(Options {
        server_extra: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let r = b
        .request(
            Method::GET,
            &env.url("/public/a"),
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await;
    let h = r.upstream_headers();
    assert_eq!(h["x-forwarded-for"], ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(h["x-forwarded-proto"], ["https"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let env = Env::start().await;
    let mut b = Browser::api();
    // /public/../ra is /ra, which needs a session: no sneaking past the rule through a public prefix.
    for path in [
        "/public/../ra",
        "/public/%2e%2e/ra",
        "/public/./../ra",
        "//public/../ra",
    ] {
        let r = b.get(&env.url(path)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = b.get(&env.url("/public/x/../y//z")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["path"], "/public/y/z");
    for path in [
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%5cb",
    ] {
        let r = b.get(&env.url(path)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_routes_forward_the_rest_of_the_path() {
    let env = Env::with(Options {
        routes: format!("[[route]]\npath = \"/legacy\"\nupstream = \"{{echo}}\"\nauth = \"public\"\nstrip_prefix = true\n{}", common::DEFAULT_ROUTES),
        ..Default::default()
    })
    .await;
    let mut b = Browser::api();
    assert_eq!(
        b.get(&env.url("/legacy/a/b?q=1")).await.json()["path"],
        "/a/b"
    );
    assert_eq!(b.get(&env.url("/legacy")).await.json()["path"], "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_choose_routes_and_unknown_routes_get_404() {
    let env = Env::with(Options {
        routes: "[[route]]\nhost = \"app.example\"\npath = \"/\"\nupstream = \"{echo}\"\nauth = \"public\"\n".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::api();
    let r = b
        .request(Method::GET, &env.url("/x"), &[("host", "App.Example:8080")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = b
        .request(Method::GET, &env.url("/x"), &[("host", "other.example")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_get_431() {
    let env = Env::with(Options {
        server_extra: "max_request_header_bytes = 8192".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::api();
    let big = "x".repeat(9000);
    let r = b
        .request(Method::GET, &env.url("/public/a"), &[("x-big", &big)])
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let r = b
        .request(Method::GET, &env.url("/public/a"), &[("x-small", "y")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_gets_a_502_page() {
    let port = common::free_port();
    let env = Env::with(Options {
        routes: format!(
            "[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:{port}\"\nauth = \"public\"\n"
        ),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let r = b.get(&env.url("/x")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("Application unavailable"), "{}", r.body);
}

/// An upstream that keeps every request head it reads, as bytes, and answers with header
/// names in several spellings.
async fn spelling_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        kept.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-lower-resp: a\r\n\
                            ETag: \"1\"\r\nX-MiXed-Resp: b\r\nContent-Type: text/plain\r\n\r\nok";
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_keep_their_spelling_both_ways() {
    let (upstream, heads) = spelling_upstream().await;
    let env = Env::with(Options {
        routes: format!(
            r#"
[[route]]
name = "spelled"
path = "/"
upstream = "http://{upstream}"
[route.headers]
X-Auth-Sub = "sub"
x-lower-name = "name"
X-Auth-EMAIL = "email"
"#
        ),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/first"), "alice").await;
    let gateway = env.gateway.base.trim_start_matches("http://").to_owned();
    let cookie = b.cookie_header();
    let r = common::raw::get(
        &gateway,
        "/second",
        &[
            ("Cookie", &cookie),
            ("X-Custom-Thing", "1"),
            ("x-lower-thing", "2"),
            ("Sec-CH-UA", "3"),
            ("X-MiXeD", "4"),
            ("x-mixed", "5"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let head = heads.lock().unwrap().last().cloned().unwrap();
    assert!(head.starts_with("GET /second HTTP/1.1\r\n"), "{head}");
    for line in [
        "X-Custom-Thing: 1",
        "x-lower-thing: 2",
        "Sec-CH-UA: 3",
        "X-MiXeD: 4",
        "x-mixed: 5",
        "X-Forwarded-For: 127.0.0.1",
        "X-Real-IP: 127.0.0.1",
        "X-Forwarded-Proto: http",
        "X-Forwarded-Uri: /second",
    ] {
        assert!(
            head.contains(&format!("\r\n{line}\r\n")),
            "{line:?} not in {head}"
        );
    }
    for name in [
        "X-Auth-Sub: ",
        "x-lower-name: ",
        "X-Auth-EMAIL: ",
        "X-Forwarded-Host: ",
    ] {
        assert!(
            head.contains(&format!("\r\n{name}")),
            "{name:?} not in {head}"
        );
    }
    for line in [
        "x-lower-resp: a",
        "ETag: \"1\"",
        "X-MiXed-Resp: b",
        "Content-Type: text/plain",
    ] {
        assert!(
            r.head.contains(&format!("\r\n{line}\r\n")),
            "{line:?} not in {}",
            r.head
        );
    }
}
