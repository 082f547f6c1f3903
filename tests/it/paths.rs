//! Canonical paths at the proxy: what is matched, what the upstream receives, what is refused.
//! Requests are written byte for byte (`common::raw`), since URL libraries resolve dot segments
//! and escapes before sending. The last tests put upstreams nobody here wrote behind the
//! gateway (Debian's Tomcat 10, Python's http.server) and prove that the forms they read as a
//! protected path cannot reach it through a public or less-protected route.

use crate::common;

use std::sync::{Arc, Mutex};

use common::raw;
use common::upstreams::{self, SECRET};
use common::{Browser, Env, Options};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway's `host:port`.
fn addr(env: &Env) -> String {
    format!("127.0.0.1:{}", env.gateway.port)
}

/// A logged-in user's `Cookie` header.
async fn session_of(env: &Env, user: &str) -> String {
    let mut b = Browser::new();
    let r = b.login(&env.url("/index.txt"), user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b.cookie_header()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_letters_and_parameters_cannot_walk_around_a_routes_rules() {
    let env = Env::start().await;
    let gw = addr(&env);
    let bob = session_of(&env, "bob").await;
    let alice = session_of(&env, "alice").await;
    // bob lacks B0008, which /ra requires: every spelling of /ra is /ra.
    for target in [
        "/%72a/",
        "/%72%61/records",
        "/ra;x/",
        "/ra;jsessionid=1/records",
        "/public/../ra/",
        "/public/%2e%2e/ra/",
        "/public;x/../ra/",
        "//ra//records",
        "/x/./.%2E/ra",
    ] {
        let r = raw::get(&gw, target, &[("cookie", &bob)]).await;
        assert_eq!(r.status, 403, "{target}: {r:?}");
    }
    // alice may: the upstream receives the canonical path, parameters kept.
    for (target, seen) in [
        ("/%72a/x", "/ra/x"),
        ("/ra;jsessionid=1/x", "/ra;jsessionid=1/x"),
        ("/public/./%2E%2E/ra//x?q=1", "/ra/x"),
        ("/ra/%7euser/caf%c3%a9", "/ra/~user/caf%C3%A9"),
    ] {
        let r = raw::get(&gw, target, &[("cookie", &alice)]).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        assert_eq!(r.upstream_path(), seen, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_refused_with_400_even_on_public_routes() {
    let env = Env::start().await;
    let gw = addr(&env);
    for target in [
        "/public/..;/ra/",
        "/public/.;x/ra/",
        "/public/%2e%2e;/ra/",
        "/public/;x/ra/",
        "/public/a%2Fb",
        "/public/a%5Cb",
        "/public/a\\b",
        "/public/a%00",
        "/public/a%0d%0aX:1",
        "/public/a%3Bb",
        "/public/a%zz",
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert!(
            !r.body.contains("\"path\""),
            "{target} reached the upstream"
        );
    }
    // The refusals are logged with the reason, never the path.
    let logs = env.gateway.logs();
    assert!(logs.contains("refused request path"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_works_on_the_canonical_path_with_parameters() {
    let env = Env::with(Options {
        routes: r#"
[[route]]
name = "app"
path = "/app"
upstream = "{echo}"
auth = "public"
strip_prefix = true
"#
        .into(),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    for (target, seen) in [
        ("/app;jsessionid=1/x/y", "/x/y"),
        ("/%61pp/x;v=1", "/x;v=1"),
        ("/app", "/"),
        ("/app/", "/"),
        ("/app/a/../b", "/b"),
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        assert_eq!(r.upstream_path(), seen, "{target}");
    }
    assert_eq!(raw::get(&gw, "/application", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_paths_match_every_case_of_a_protected_prefix() {
    let env = Env::with(Options {
        server_extra: "case_insensitive_paths = true".into(),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    let bob = session_of(&env, "bob").await;
    for target in ["/RA/", "/Ra;x/records", "/%52a/"] {
        assert_eq!(
            raw::get(&gw, target, &[("cookie", &bob)]).await.status,
            403,
            "{target}"
        );
    }
    let alice = session_of(&env, "alice").await;
    let r = raw::get(&gw, "/RA/X", &[("cookie", &alice)]).await;
    assert_eq!(r.status, 200);
    // Matching ignores case; the upstream still gets the case the client sent.
    assert_eq!(r.upstream_path(), "/RA/X");

    // Without the setting, case counts (as for most upstreams).
    let plain = Env::start().await;
    let bob = session_of(&plain, "bob").await;
    let r = raw::get(&addr(&plain), "/RA/", &[("cookie", &bob)]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// An upstream that answers the first request on a connection (keep-alive) and closes the
/// connection when a second one arrives on it, recording every request line it reads.
async fn closing_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                loop {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte).await {
                            Ok(1) => buf.push(byte[0]),
                            _ => return,
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(line.clone());
                    if answered == 1 {
                        // A keep-alive connection the upstream has given up on.
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                    let body = format!("{{\"path\":\"{path}\"}}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    answered += 1;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_still_sends_the_canonical_path() {
    let (upstream, seen) = closing_upstream().await;
    let env = Env::with(Options {
        routes: format!(
            r#"
[[route]]
name = "app"
path = "/app"
upstream = "http://{upstream}"
auth = "public"
strip_prefix = true
"#
        ),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    // The first request leaves a pooled keep-alive connection; the next is sent on it, the
    // upstream closes it, and pingora retries on a new connection with a fresh copy of the
    // client's request header. The connection goes back to the pool a moment after the
    // response, so a request may still find the pool empty: try a few times.
    let first = raw::get(&gw, "/app/one", &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    let mut sent = 1;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let next = raw::get(&gw, "/%61pp/./two", &[]).await;
        sent += 1;
        assert_eq!(next.status, 200, "{next:?}");
        assert_eq!(next.upstream_path(), "/two");
        if seen.lock().unwrap().len() > sent {
            break;
        }
    }
    let lines = seen.lock().unwrap().clone();
    assert!(lines.len() > sent, "no request was retried: {lines:?}");
    for line in &lines {
        assert!(
            line.starts_with("GET /one ") || line.starts_with("GET /two "),
            "an attempt sent a path that is not canonical: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_client_ip_headers_from_untrusted_clients_never_reach_the_upstream() {
    let env = Env::start().await;
    let gw = addr(&env);
    let forged = [
        ("X-Original-URL", "/ra/"),
        ("X-Rewrite-URL", "/ra/"),
        ("X-Forwarded-Prefix", "/ra"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("Front-End-Https", "on"),
        ("True-Client-IP", "10.9.9.9"),
        ("X-Client-IP", "10.9.9.9"),
        ("CF-Connecting-IP", "10.9.9.9"),
        ("Forwarded", "for=10.9.9.9;host=evil.example;proto=https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X_Forwarded_Host", "evil.example"),
        ("X-Forwarded-For", "10.9.9.9"),
        ("X-Original-URI", "/ra/"),
    ];
    let r = raw::get(&gw, "/public/%7Ex?a=1", &forged).await;
    assert_eq!(r.status, 200, "{r:?}");
    let echoed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let headers: Vec<(String, String)> = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_ascii_lowercase(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, _) in &forged {
        let lower = name.to_ascii_lowercase();
        for (k, v) in &headers {
            if *k == lower || k.replace('_', "-") == lower.replace('_', "-") {
                assert!(
                    !v.contains("10.9.9.9") && !v.contains("evil") && !v.contains("/ra"),
                    "{name} reached the upstream: {k}: {v}"
                );
            }
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // What the gateway saw instead.
    assert_eq!(get("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(get("x-forwarded-host"), Some(gw.clone()));
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(get("x-forwarded-uri").as_deref(), Some("/public/~x?a=1"));
}

/// Routes of the Tomcat and Python tests: `/public` is public, `/` needs a session, `/ra`
/// needs B0008; all three go to the same upstream, which serves `/ra/secret.txt`.
fn three_routes(upstream: &str) -> String {
    format!(
        r#"
[[route]]
name = "public"
path = "/public"
upstream = "{upstream}"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "{upstream}"

[[route]]
name = "ra"
path = "/ra"
upstream = "{upstream}"
[route.require]
activities = ["B0008"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_behind_the_gateway_never_serves_a_protected_path_through_another_route() {
    let tomcat = upstreams::tomcat();
    // Tomcat itself serves the protected file for every one of these spellings: the attack is
    // real, and a gateway that routed them elsewhere would leak it.
    for target in [
        "/public/..;/ra/secret.txt",
        "/ra;x/secret.txt",
        "/public;x/../ra/secret.txt",
        "/%72a/secret.txt",
    ] {
        let direct = raw::get(&tomcat.addr, target, &[]).await;
        assert_eq!(direct.status, 200, "Tomcat, {target}: {direct:?}");
        assert!(direct.body.contains(SECRET), "Tomcat, {target}");
    }
    let env = Env::with(Options {
        routes: three_routes(&tomcat.url()),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    // No session: refused, or sent to log in; never the file.
    for target in [
        "/public/..;/ra/secret.txt",
        "/public/.;/ra/secret.txt",
        "/public;x/../ra/secret.txt",
        "/public/%2e%2e;x/ra/secret.txt",
        "/ra;x/secret.txt",
        "/%72a/secret.txt",
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert!(
            r.status == 400 || r.status == 401,
            "{target}: {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.contains(SECRET), "{target} leaked the file");
    }
    // bob (signed in, without B0008): 403 or 400 for every spelling.
    let bob = session_of(&env, "bob").await;
    for target in [
        "/public/..;/ra/secret.txt",
        "/ra;jsessionid=ABC/secret.txt",
        "/public;x/../ra/secret.txt",
        "/%72a/secret.txt",
        "/x/..;/ra/secret.txt",
    ] {
        let r = raw::get(&gw, target, &[("cookie", &bob)]).await;
        assert!(r.status == 400 || r.status == 403, "{target}: {r:?}");
        assert!(!r.body.contains(SECRET), "{target} leaked the file");
    }
    // Public files still work, and alice (B0008) gets the file, parameters and all.
    let r = raw::get(&gw, "/public/x.txt", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "PUBLIC");
    let alice = session_of(&env, "alice").await;
    let r = raw::get(&gw, "/ra;jsessionid=ABC/secret.txt", &[("cookie", &alice)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoding_upstream_never_serves_a_protected_path_through_another_route() {
    let python = upstreams::python_http_server();
    for target in ["/%72a/secret.txt", "/%72%61/secret%2Etxt"] {
        let direct = raw::get(&python.addr, target, &[]).await;
        assert_eq!(direct.status, 200, "python, {target}: {direct:?}");
        assert!(direct.body.contains(SECRET), "python, {target}");
    }
    let env = Env::with(Options {
        routes: three_routes(&python.url()),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    let bob = session_of(&env, "bob").await;
    for target in [
        "/%72a/secret.txt",
        "/%72%61/secret%2Etxt",
        "/public/%2e%2e/ra/secret.txt",
        "/public/%2E%2E/%72a/secret.txt",
    ] {
        let r = raw::get(&gw, target, &[("cookie", &bob)]).await;
        assert_eq!(r.status, 403, "{target}: {r:?}");
        assert!(!r.body.contains(SECRET), "{target} leaked the file");
        let anon = raw::get(&gw, target, &[]).await;
        assert_eq!(anon.status, 401, "{target}: {anon:?}");
    }
    let alice = session_of(&env, "alice").await;
    let r = raw::get(&gw, "/%72a/secret.txt", &[("cookie", &alice)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(SECRET));
}

const HOSTED: &str = r#"
[[route]]
name = "public"
path = "/"
upstream = "{echo}"
auth = "public"

[[route]]
name = "admin"
host = "admin.example.org"
path = "/"
upstream = "{echo}"
[route.require]
activities = ["B0008"]

[[route]]
name = "at-admin"
path = "/@admin"
upstream = "{echo}"
[route.require]
activities = ["B0008"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_and_target_cannot_be_spelt_to_skip_a_host_route() {
    let env = Env::with(Options {
        routes: HOSTED.into(),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    // An absolute-form target names a host besides Host: refused, even for a public route.
    for target in [
        "http://admin.example.org/x",
        "https://admin.example.org/x",
        "*",
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
    }
    let r = raw::exchange(&gw, "GET http://admin.example.org/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 400, "{r:?}");
    // No Host at all, while a route names one: the upstream's default virtual host could be
    // any of them.
    let r = raw::exchange(&gw, "GET /x HTTP/1.0\r\nAccept: application/json\r\n\r\n").await;
    assert_eq!(r.status, 400, "{r:?}");
    // A Host that servers split differently (nginx: before the first ':') is refused; an
    // empty one is no host.
    for host in [
        "admin.example.org:x",
        "admin.example.org:80:80",
        ":80",
        "user@admin.example.org",
        "",
    ] {
        let r = raw::get(&gw, "/x", &[("host", host)]).await;
        assert_eq!(r.status, 400, "{host:?}: {r:?}");
    }
    // A trailing dot is the same host.
    for host in [
        "admin.example.org",
        "ADMIN.example.org.",
        "admin.example.org.:80",
    ] {
        let r = raw::get(&gw, "/x", &[("host", host)]).await;
        assert_eq!(r.status, 401, "{host}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_with_other_characters_matches_every_encoding_of_them() {
    let env = Env::with(Options {
        routes: HOSTED.into(),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    for target in [
        "/@admin/x",
        "/%40admin/x",
        "/%40admin;p/x",
        "/x/../%40admin",
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 401, "{target}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_endpoints_answer_only_their_exact_path() {
    let env = Env::with(Options {
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Default::default()
    })
    .await;
    let gw = addr(&env);
    // `/oauth2/auth;x` slips past an nginx `location = /oauth2/auth { internal; }`: it must
    // not be forward-auth.
    let r = raw::get(&gw, "/oauth2/auth;x", &[("x-original-uri", "/public/x")]).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = raw::get(&gw, "/oauth2/auth", &[("x-original-uri", "/public/x")]).await;
    assert_eq!(r.status, 202, "{r:?}");
    // `//..` is read two ways (RFC 3986 pops the empty segment, slash-merging servers pop
    // the one before): refused.
    for target in [
        "/ra//../public/x",
        "/ra//./../public/x",
        "/ra//b/../../public/x",
    ] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
    }
    // The gateway's prefix is its own: no other path under it reaches an application.
    for target in ["/oauth2/anything", "/oauth2/auth/", "/oauth2"] {
        let r = raw::get(&gw, target, &[]).await;
        assert_eq!(r.status, 404, "{target}: {r:?}");
    }
}
