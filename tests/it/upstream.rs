//! What the gateway does with its upstreams beyond plain requests: a WebSocket upgrade on an
//! authenticated route passes through with identity headers on the upgrade request, and an
//! upstream that accepts but never answers gets a clear 504 within the read timeout.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Browser, Env, Options};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

type SeenHeaders = Arc<Mutex<Vec<(String, String)>>>;

/// A WebSocket echo upstream that records the headers of the last upgrade request.
// The handshake callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn start_ws_echo() -> (u16, SeenHeaders) {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: SeenHeaders = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let callback = |req: &Request, resp: Response| {
                    *record.lock().unwrap() = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn header(seen: &SeenHeaders, name: &str) -> Option<String> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_passes_through_with_identity_headers() {
    let (ws_port, seen) = start_ws_echo().await;
    let routes = format!(
        "[[route]]\nname = \"ws\"\npath = \"/ws\"\nupstream = \"http://127.0.0.1:{ws_port}\"\n{}",
        common::DEFAULT_ROUTES
    );
    let env = Env::with(Options {
        routes,
        ..Default::default()
    })
    .await;
    let ws_url = env.url("/ws/chat").replace("http://", "ws://");

    // Without a session the upgrade is an API request: 401, and the upstream sees nothing.
    let err = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect_err("no session, no WebSocket");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected an HTTP 401, got {other}"),
    }
    assert!(seen.lock().unwrap().is_empty());

    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", alice.cookie_header().parse().unwrap());
    // A spoofed identity header on the upgrade request must not survive.
    req.headers_mut()
        .insert("x-auth-sub", "someone-else".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    for text in ["hello", "über"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo")
            .unwrap()
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}",
                    env.gateway
                        .logs()
                        .lines()
                        .filter(|l| l.contains("ws")
                            || l.contains("ERROR")
                            || l.contains("WARN")
                            || l.contains("pingora"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
    assert_eq!(header(&seen, "x-auth-sub").as_deref(), Some("910000000001"));
    assert_eq!(header(&seen, "x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        header(&seen, "upgrade").map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_owned())
    );
    let cookies = header(&seen, "cookie").unwrap_or_default();
    assert!(
        !cookies.contains("oidc_session"),
        "the session cookie stays at the gateway: {cookies}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_a_504_within_the_read_timeout() {
    // Accepted by the kernel's backlog, never answered.
    let hung = std::net::TcpListener::bind(common::any_loopback()).unwrap();
    let routes = format!(
        "[[route]]\nname = \"hung\"\npath = \"/hung\"\nauth = \"public\"\nupstream = \"http://127.0.0.1:{}\"\n{}",
        hung.local_addr().unwrap().port(),
        common::DEFAULT_ROUTES
    );
    let env = Env::with(Options {
        routes,
        server_extra: "upstream_read_timeout = \"1s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let started = Instant::now();
    let r = b.get(&env.url("/hung/x")).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.body.contains("not answering"), "{}", r.body);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The same for a slow upstream past the timeout; a fast one is unaffected.
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    assert_eq!(
        alice.get(&env.url("/slow?ms=3000")).await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        alice.get(&env.url("/slow?ms=100")).await.status,
        StatusCode::OK
    );
    drop(hung);
}
