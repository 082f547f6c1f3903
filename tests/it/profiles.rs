//! The seeds' providers as shipped profiles: each test runs the example file from config/ itself
//! (only addresses, secrets and keys swapped for test ones) against a provider showing that
//! provider's quirks: NHS CIS2 and Signicat against the development provider, the Token Server
//! against oidc-provider.

use crate::common;
use crate::interop;

use std::path::Path;
use std::time::Duration;

use common::{free_port, spawn_gateway, Browser, Gateway, CLIENT_ID, CLIENT_SECRET};
use devprovider::{
    start_echo, ClientAuthMethod, DevClient, DevClientAuth, DevProvider, DevProviderOptions,
    EchoServer,
};
use reqwest::StatusCode;
use serde_json::json;
use toml::{Table, Value};

/// A profile from config/ running on loopback.
struct Profile {
    gateway: Gateway,
    _echo: EchoServer,
    _dir: tempfile::TempDir,
}

impl Profile {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.base)
    }
}

/// Reads config/`file`, points it at loopback (listeners, public URL, upstreams), gives it a
/// cookie key, lets `provider` set the provider's keys, and starts the gateway.
async fn run_profile(file: &str, port: u16, provider: impl FnOnce(&mut Table, &Path)) -> Profile {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(file),
    )
    .unwrap();
    let mut cfg: Table = text.parse().unwrap();
    let admin = free_port();
    let echo = start_echo(common::any_loopback()).await.unwrap();
    let section = |cfg: &mut Table, name: &str| -> Table {
        cfg.get(name)
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let mut server = section(&mut cfg, "server");
    server.insert("listen".into(), format!("127.0.0.1:{port}").into());
    server.insert(
        "public_url".into(),
        format!("http://127.0.0.1:{port}").into(),
    );
    server.insert("threads".into(), 2.into());
    cfg.insert("server".into(), server.into());
    let mut admin_t = section(&mut cfg, "admin");
    admin_t.insert("listen".into(), format!("127.0.0.1:{admin}").into());
    cfg.insert("admin".into(), admin_t.into());
    let mut session = section(&mut cfg, "session");
    session.insert(
        "keys".into(),
        Value::Array(vec![oidc_gateway::keygen::cookie_key().into()]),
    );
    cfg.insert("session".into(), session.into());
    let mut providers = section(&mut cfg, "providers");
    assert_eq!(providers.len(), 1, "a profile has one provider");
    let p = providers
        .iter_mut()
        .next()
        .and_then(|(_, v)| v.as_table_mut())
        .unwrap();
    p.insert("timeout".into(), "5s".into());
    provider(p, dir.path());
    cfg.insert("providers".into(), providers.into());
    for route in cfg
        .get_mut("route")
        .and_then(Value::as_array_mut)
        .unwrap()
        .iter_mut()
    {
        route
            .as_table_mut()
            .unwrap()
            .insert("upstream".into(), echo.base_url().into());
    }
    let text = toml::to_string(&cfg).unwrap();
    let gateway = spawn_gateway(dir.path(), &text, port, admin, true);
    Profile {
        gateway,
        _echo: echo,
        _dir: dir,
    }
}

fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

/// NHS CIS2 (seeds 000–002): discovery at another URL than the issuer (`/token`),
/// private_key_jwt with RS256, nested role/org, activities, acr/amr as claim paths, UserInfo's
/// nhsid_nrbac_roles and the ID token's selected_roleid through JSONPath headers and a route rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cis2_profile() {
    let port = free_port();
    let key = jwk::generate("RS256".parse().unwrap()).unwrap();
    let provider = DevProvider::start(DevProviderOptions {
        bind: common::any_loopback(),
        issuer_path: "/token".into(),
        clients: vec![DevClient::new(
            CLIENT_ID,
            DevClientAuth::PrivateKeyJwt(jwk::public_jwks(key.public_jwk)),
            format!("http://127.0.0.1:{port}/oauth2/callback"),
        )],
        ..DevProviderOptions::default()
    })
    .await
    .unwrap();
    assert_ne!(
        provider.discovery_url,
        format!("{}/.well-known/openid-configuration", provider.issuer)
    );
    let profile = run_profile("cis2.example.toml", port, |p, dir| {
        std::fs::write(dir.join("rp.pem"), &key.private_pem).unwrap();
        p.insert("issuer".into(), provider.issuer.clone().into());
        p.insert(
            "discovery_url".into(),
            provider.discovery_url.clone().into(),
        );
        p.insert("client_id".into(), CLIENT_ID.into());
        p.insert(
            "private_key_file".into(),
            dir.join("rp.pem").display().to_string().into(),
        );
    })
    .await;

    let mut alice = Browser::new();
    let r = alice.login(&profile.url("/"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let h = |n: &str| r.upstream_header(n);
    assert_eq!(h("x-auth-sub").as_deref(), Some("910000000001"));
    assert_eq!(h("x-auth-role").as_deref(), Some("S0080:G0450:R8000"));
    assert_eq!(h("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(h("x-auth-activities").as_deref(), Some("B0005,B0008"));
    assert_eq!(h("x-auth-acr").as_deref(), Some("AAL3_ANY"));
    assert_eq!(h("x-auth-amr").as_deref(), Some("pin"));
    assert_eq!(h("x-auth-selected-role-org").as_deref(), Some("Q14"));
    assert_eq!(
        h("x-auth-selected-role-code").as_deref(),
        Some("S0080:G0450:R8000")
    );
    assert_eq!(
        h("x-auth-selected-role-activities").as_deref(),
        Some("B0005,B0008")
    );
    assert!(provider
        .controls
        .token_requests()
        .iter()
        .all(|t| t.auth_method == ClientAuthMethod::PrivateKeyJwt));
    assert!(provider.controls.userinfo_calls() >= 1);
    assert_eq!(alice.get(&profile.url("/ra")).await.status, StatusCode::OK);

    let mut bob = Browser::new();
    bob.login(&profile.url("/"), "bob").await;
    assert_eq!(
        bob.get(&profile.url("/ra")).await.status,
        StatusCode::FORBIDDEN
    );

    // Alice signs in with her other role (RW3, no B0008): the rule follows the selected role,
    // although her ID token's activities still list B0008.
    provider
        .controls
        .set_userinfo_extra(claims(json!({"selected_roleid": "555000000012"})));
    let mut other = Browser::new();
    let r = other.login(&profile.url("/"), "alice").await;
    assert_eq!(
        r.upstream_header("x-auth-selected-role-org").as_deref(),
        Some("RW3")
    );
    assert_eq!(
        r.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0008")
    );
    assert_eq!(
        other.get(&profile.url("/ra")).await.status,
        StatusCode::FORBIDDEN
    );
}

/// Signicat (seed 003): client_secret_post, expires_in in milliseconds, the refresh_token grant,
/// UserInfo with preferred_username and picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signicat_profile() {
    let port = free_port();
    let provider = DevProvider::start(DevProviderOptions {
        bind: common::any_loopback(),
        clients: vec![DevClient::new(
            CLIENT_ID,
            DevClientAuth::SecretPost(CLIENT_SECRET.into()),
            format!("http://127.0.0.1:{port}/oauth2/callback"),
        )],
        access_token_lifetime: Duration::from_secs(6),
        ..DevProviderOptions::default()
    })
    .await
    .unwrap();
    // 6000 "ms": read as seconds, the gateway would not refresh for 100 minutes.
    provider.controls.set_expires_in_millis(true);
    provider.controls.set_userinfo_extra(claims(json!({
        "preferred_username": "alice.example",
        "picture": "https://pictures.example/alice.jpg",
    })));
    let profile = run_profile("signicat.example.toml", port, |p, _| {
        p.insert("issuer".into(), provider.issuer.clone().into());
        p.insert("client_id".into(), CLIENT_ID.into());
        p.insert("client_secret".into(), CLIENT_SECRET.into());
    })
    .await;

    let mut b = Browser::new();
    let r = b.login(&profile.url("/"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-username").as_deref(),
        Some("alice.example")
    );
    assert_eq!(
        r.upstream_header("x-auth-picture").as_deref(),
        Some("https://pictures.example/alice.jpg")
    );
    let grants = |g: &str| {
        provider
            .controls
            .token_requests()
            .into_iter()
            .filter(|t| t.grant_type.as_deref() == Some(g))
            .map(|t| t.auth_method)
            .collect::<Vec<_>>()
    };
    assert_eq!(grants("authorization_code"), [ClientAuthMethod::SecretPost]);
    assert!(grants("refresh_token").is_empty());

    tokio::time::sleep(Duration::from_secs(7)).await;
    let r = b.get(&profile.url("/")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(grants("refresh_token"), [ClientAuthMethod::SecretPost]);
    assert_eq!(provider.controls.userinfo_calls(), 2);
    assert_eq!(
        r.upstream_header("x-auth-username").as_deref(),
        Some("alice.example")
    );
}

/// Token Server (seed 004), against oidc-provider: scopes openid/profile/email/address/phone, and
/// the `address` object through dotted claim paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_profile() {
    let port = free_port();
    let op = interop::Op::start(&interop::OpOptions {
        gateway: format!("http://127.0.0.1:{port}"),
        jwks: json!({"keys": []}),
        jwt_alg: "RS256",
        access_token_ttl: 600,
        id_token_ttl: 600,
        rotate_refresh_token: false,
    });
    let profile = run_profile("token-server.example.toml", port, |p, _| {
        p.insert("issuer".into(), op.issuer.clone().into());
        p.insert("client_id".into(), "gw-basic".into());
        p.insert("client_secret".into(), interop::OP_SECRET.into());
    })
    .await;

    let mut b = Browser::new();
    let first = b.get(&profile.url("/")).await;
    let scope = common::query_param(&first.location(), "scope").unwrap();
    assert_eq!(scope, "openid profile email address phone");
    let back = interop::login_at_op(&mut b, &op, &first, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let h = |n: &str| r.upstream_header(n);
    assert_eq!(h("x-auth-postal-code").as_deref(), Some("M1 1AA"));
    assert_eq!(h("x-auth-locality").as_deref(), Some("Manchester"));
    assert_eq!(h("x-auth-street").as_deref(), Some("1 Ward Road"));
    assert_eq!(h("x-auth-country").as_deref(), Some("United Kingdom"));
    assert_eq!(h("x-auth-phone").as_deref(), Some("+44 161 496 0000"));
    assert_eq!(h("x-auth-username").as_deref(), Some("alice.example"));
    assert_eq!(
        h("x-auth-email").as_deref(),
        Some("alice.example@nhs.example")
    );
    // No locale in her profile: no header at all.
    assert_eq!(h("x-auth-locale"), None);

    // Bob has no address, phone or preferred_username: those headers are absent, the username
    // falls back to his email.
    let mut bob = Browser::new();
    let first = bob.get(&profile.url("/")).await;
    let back = interop::login_at_op(&mut bob, &op, &first, "bob").await;
    let r = bob.get(&back.location()).await;
    assert_eq!(r.upstream_header("x-auth-postal-code"), None);
    assert_eq!(r.upstream_header("x-auth-phone"), None);
    assert_eq!(
        r.upstream_header("x-auth-username").as_deref(),
        Some("bob.builder@nhs.example")
    );
}

/// NHS CIS2 with AAL3 areas (config/cis2-aal3.example.toml), against oidc-provider: the client
/// key signs with RS512 without being told (what the provider advertises first), an AAL2 login
/// serves the application but is stepped up on /prescribing, and the route's rule still applies
/// after the smartcard login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cis2_aal3_step_up_profile() {
    let port = free_port();
    let key = jwk::generate("RS512".parse().unwrap()).unwrap();
    let op = interop::Op::start(&interop::OpOptions {
        gateway: format!("http://127.0.0.1:{port}"),
        jwks: jwk::public_jwks(key.public_jwk.clone()),
        jwt_alg: "RS512",
        access_token_ttl: 600,
        id_token_ttl: 600,
        rotate_refresh_token: false,
    });
    let profile = run_profile("cis2-aal3.example.toml", port, |p, dir| {
        std::fs::write(dir.join("rp.pem"), &key.private_pem).unwrap();
        p.insert("issuer".into(), op.issuer.clone().into());
        p.remove("discovery_url");
        p.insert("client_id".into(), "gw-jwt".into());
        p.insert(
            "private_key_file".into(),
            dir.join("rp.pem").display().to_string().into(),
        );
    })
    .await;

    let mut b = Browser::new();
    let first = b.get(&profile.url("/")).await;
    let back = interop::login_at_op(&mut b, &op, &first, "alice#AAL2_ANY").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-acr").as_deref(), Some("AAL2_ANY"));
    // The prescribing area wants the smartcard.
    let step = b.get(&profile.url("/prescribing/new")).await;
    assert_eq!(step.status, StatusCode::FOUND);
    assert!(
        step.location().contains("acr_values=AAL3_ANY"),
        "{}",
        step.location()
    );
    let back = interop::login_at_op(&mut b, &op, &step, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    // Now AAL3, but her selected role has no B0570: the route's rule refuses her.
    let r = b.get(&back.location()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = b.get(&profile.url("/")).await;
    assert_eq!(r.upstream_header("x-auth-acr").as_deref(), Some("AAL3_ANY"));
}
