//! Real TLS, with a CA made in the test: the proxy listener terminates TLS and offers HTTP/2 by
//! ALPN; https upstreams are verified against a configured CA file (and refused when their
//! certificate comes from elsewhere); SIGHUP swaps in a renewed listener certificate.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::ca::{ServerCert, TestCa};
use common::{Browser, Env, Options};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting only `ca`, redirects off; `http1`: never offer h2.
fn client(ca: &TestCa, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A tiny https upstream: answers every request with JSON listing what it received, like the
/// echo upstream, then closes the connection.
async fn start_tls_echo(cert: &ServerCert) -> SocketAddr {
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let path = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("")
                    .to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let body =
                    serde_json::json!({"path": path, "tls": true, "headers": headers}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn tls_env_options(ca: &TestCa, extra_routes: &str, files: Vec<(String, Vec<u8>)>) -> Options {
    let cert = ca.server_cert();
    let mut files = files;
    files.push(("server.pem".into(), cert.cert_pem.into_bytes()));
    files.push(("server.key".into(), cert.key_pem.into_bytes()));
    Options {
        https: true,
        server_extra: "tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"".into(),
        routes: format!("{extra_routes}\n{}", common::DEFAULT_ROUTES),
        files,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_terminates_tls_with_http2_by_alpn_and_http1_for_the_rest() {
    let ca = TestCa::new("oidc-gateway test CA");
    let env = Env::with(tls_env_options(&ca, "", Vec::new())).await;
    assert!(env.gateway.base.starts_with("https://"));

    let h2 = client(&ca, false)
        .get(env.url("/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), StatusCode::OK);
    let echoed: serde_json::Value = h2.json().await.unwrap();
    let proto = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-forwarded-proto")
        .map(|h| h[1].clone());
    assert_eq!(proto, Some(serde_json::json!("https")));

    let h1 = client(&ca, true)
        .get(env.url("/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), StatusCode::OK);

    // The whole login over HTTP/2 and TLS: redirects and cookies built from the https public URL.
    let mut b = Browser::with_client(client(&ca, false));
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );

    // A client that does not trust the test CA cannot talk to the gateway at all.
    let stranger = reqwest::Client::builder().build().unwrap();
    assert!(stranger.get(env.url("/public/x")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_configured_ca_file() {
    let upstream_ca = TestCa::new("upstream CA");
    let good = start_tls_echo(&upstream_ca.server_cert()).await;
    let rogue_ca = TestCa::new("some other CA");
    let rogue = start_tls_echo(&rogue_ca.server_cert()).await;
    let routes = format!(
        r#"
[[route]]
name = "secure"
path = "/secure"
upstream = "https://127.0.0.1:{}"
ca_file = "upstream-ca.pem"

[[route]]
name = "rogue"
path = "/rogue"
upstream = "https://127.0.0.1:{}"
ca_file = "upstream-ca.pem"

[[route]]
name = "system-roots"
path = "/system"
upstream = "https://127.0.0.1:{}"
"#,
        good.port(),
        rogue.port(),
        good.port()
    );
    let env = Env::with(Options {
        routes: format!("{routes}\n{}", common::DEFAULT_ROUTES),
        files: vec![("upstream-ca.pem".into(), upstream_ca.pem().into_bytes())],
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    let r = b.login(&env.url("/secure/a"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["tls"], true);
    assert_eq!(r.json()["path"], "/secure/a");
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001"),
        "identity headers reach an https upstream"
    );
    // A certificate from another CA is refused: 502, never forwarded.
    let r = b.get(&env.url("/rogue/a")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    // Without ca_file the system roots apply, and they do not know the test CA.
    let r = b.get(&env.url("/system/a")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let both_refused = common::eventually(Duration::from_secs(5), async || {
        env.gateway.logs().matches("UnknownIssuer").count() >= 2
    })
    .await;
    assert!(both_refused, "{}", env.gateway.logs());
}

/// The certificate a TLS server presents, as seen by a client that trusts `ca`.
async fn presented_certificate(addr: &str, ca: &TestCa) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_listener_certificate_to_new_connections() {
    let ca = TestCa::new("oidc-gateway test CA");
    let env = Env::with(tls_env_options(&ca, "", Vec::new())).await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let first = presented_certificate(&addr, &ca).await;
    let renewed = ca.server_cert();
    std::fs::write(env.dir.path().join("server.pem"), &renewed.cert_pem).unwrap();
    std::fs::write(env.dir.path().join("server.key"), &renewed.key_pem).unwrap();
    let logged = common::eventually(Duration::from_secs(10), async || {
        env.gateway
            .logs()
            .contains("SIGHUP reloads the configuration")
    })
    .await;
    assert!(logged);
    env.gateway.signal("HUP");
    let ok = common::eventually(Duration::from_secs(10), async || {
        env.gateway.logs().contains("configuration reloaded")
    })
    .await;
    assert!(ok, "{}", env.gateway.logs());
    let second = presented_certificate(&addr, &ca).await;
    assert_ne!(first, second, "the renewed certificate is served");
    let expected = rustls_pki_types::CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    assert_eq!(second, expected);

    // A broken key file is refused; the listener keeps the renewed certificate.
    std::fs::write(env.dir.path().join("server.key"), "garbage").unwrap();
    env.gateway.signal("HUP");
    let refused = common::eventually(Duration::from_secs(10), async || {
        env.gateway.logs().contains("reload refused")
    })
    .await;
    assert!(refused, "{}", env.gateway.logs());
    assert_eq!(presented_certificate(&addr, &ca).await, expected);
}
