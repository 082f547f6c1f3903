//! API clients with `Authorization: Bearer <JWT>` on routes with `bearer = true`, and signed
//! identity assertions (`X-Auth-Assertion`) checked the way an upstream would: with the JWKS
//! published at `/oauth2/jwks.json`.

use crate::common;

use common::{Browser, Env, Options};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const AUDIENCE: &str = "api://records";

const ROUTES: &str = r#"
[[route]]
name = "api"
path = "/api"
upstream = "{echo}"
bearer = true
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Org = "org.code"
X-Auth-Activities = "activities"
[route.require]
activities = ["B0008"]

[[route]]
name = "open-api"
path = "/open-api"
upstream = "{echo}"
bearer = true
assertion = true
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Org = "org.code"
X-Auth-Selected-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"

[[route]]
name = "app"
path = "/"
upstream = "{echo}"
"#;

async fn start() -> Env {
    let env_dir = tempfile::tempdir().unwrap();
    let key = jwk::generate("ES256".parse().unwrap()).unwrap();
    let key_path = env_dir.path().join("assertion.pem");
    std::fs::write(&key_path, &key.private_pem).unwrap();
    let env = Env::with(Options {
        provider_extra: format!("audience = \"{AUDIENCE}\""),
        server_extra: format!("assertion_key_file = \"{}\"", key_path.display()),
        routes: ROUTES.into(),
        ..Default::default()
    })
    .await;
    // The key file is read at start-up only.
    drop(env_dir);
    env
}

async fn api(env: &Env, path: &str, token: &str, extra: &[(&str, &str)]) -> common::Resp {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    Browser::api()
        .request(Method::GET, &env.url(path), &headers)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_access_token_reaches_the_upstream_with_identity_headers() {
    let env = start().await;
    let token = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    let r = api(&env, "/api/records?x=1", &token, &[("x-auth-org", "EVIL")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        r.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0008")
    );
    // The token goes on to the API unchanged (it may relay it); no cookie is set.
    assert_eq!(
        r.upstream_header("authorization"),
        Some(format!("Bearer {token}"))
    );
    assert!(r.set_cookies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_apply_to_bearer_tokens_with_a_json_403_and_a_forbidden_count() {
    let env = start().await;
    let token = env
        .provider()
        .mint_access_token("bob", AUDIENCE, 300)
        .unwrap();
    // Even a browser-looking request with a token is answered as an API request.
    let mut b = Browser::new();
    let auth = format!("Bearer {token}");
    let r = b
        .request(Method::GET, &env.url("/api/x"), &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "forbidden");
    let metrics = reqwest::get(format!("{}/metrics", env.gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("oidc_gateway_auth_events_total{event=\"forbidden\",provider=\"dev\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401_invalid_token_and_never_a_login_redirect() {
    let env = start().await;
    let p = env.provider();
    let good = p.mint_access_token("alice", AUDIENCE, 300).unwrap();
    let tampered = {
        // Same signature, another payload (a different sub).
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&base64_url_decode(parts[1])).unwrap();
        payload["sub"] = "someone-else".into();
        format!(
            "{}.{}.{}",
            parts[0],
            base64_url_encode(payload.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases = [
        (
            "expired",
            p.mint_access_token("alice", AUDIENCE, -600).unwrap(),
        ),
        (
            "wrong audience",
            p.mint_access_token("alice", "api://other", 300).unwrap(),
        ),
        ("tampered", tampered),
        ("not a JWT", "opaque-token-value".to_owned()),
    ];
    let sent: Vec<String> = cases.iter().map(|(_, t)| t.clone()).collect();
    for (what, token) in cases {
        for browser in [false, true] {
            let mut client = if browser {
                Browser::new()
            } else {
                Browser::api()
            };
            let auth = format!("Bearer {token}");
            let r = client
                .request(Method::GET, &env.url("/api/x"), &[("authorization", &auth)])
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
            assert_eq!(r.json()["error"], "invalid_token", "{what}");
            let www = r.header("www-authenticate").unwrap_or_default();
            assert!(
                www.starts_with("Bearer ") && www.contains("error=\"invalid_token\""),
                "{what}: {www}"
            );
        }
    }
    // No token ever reaches the logs.
    let logs = env.gateway.logs();
    for t in sent {
        assert!(!logs.contains(&t), "a token was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_a_published_1024_bit_rsa_key_is_refused() {
    let env = start().await;
    let p = env.provider();
    let good = p.mint_access_token("alice", AUDIENCE, 300).unwrap();
    assert_eq!(api(&env, "/api/x", &good, &[]).await.status, StatusCode::OK);
    p.controls.rotate_to_weak_signing_key();
    let weak = p.mint_access_token("alice", AUDIENCE, 300).unwrap();
    // The new kid makes the gateway refetch the JWKS, find the key, and still refuse it.
    let r = api(&env, "/api/x", &weak, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_issuer_is_refused() {
    let env = start().await;
    let other = devprovider::DevProvider::start(devprovider::DevProviderOptions {
        bind: common::any_loopback(),
        ..Default::default()
    })
    .await
    .unwrap();
    let token = other.mint_access_token("alice", AUDIENCE, 300).unwrap();
    let r = api(&env, "/api/x", &token, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_on_a_route_without_bearer_is_not_a_login() {
    let env = start().await;
    let token = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    let r = api(&env, "/app", &token, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "login_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_client_costs_one_signature_check_per_token() {
    let env = start().await;
    let token = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            api(&env, "/api/x", &token, &[]).await.status,
            StatusCode::OK
        );
    }
    let second = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    assert_eq!(
        api(&env, "/api/x", &second, &[]).await.status,
        StatusCode::OK
    );
    let logs = env.gateway.logs();
    assert_eq!(
        logs.matches("bearer token validated").count(),
        2,
        "one validation per distinct token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_verifies_the_identity_assertion_with_the_published_jwks() {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, DecodingKey, Validation};
    let env = start().await;
    let token = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    let r = api(
        &env,
        "/open-api/x",
        &token,
        &[("x-auth-assertion", "forged")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let assertion = r.upstream_header("x-auth-assertion").unwrap();
    assert_ne!(assertion, "forged");
    // What an upstream does: fetch the gateway's JWKS, pick the key by kid, check everything.
    let jwks_resp = reqwest::get(env.url("/oauth2/jwks.json")).await.unwrap();
    assert_eq!(jwks_resp.status(), StatusCode::OK);
    let jwks: JwkSet = jwks_resp.json().await.unwrap();
    let header = decode_header(&assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["open-api"]);
    v.set_issuer(&[env.gateway.base.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<Value>(&assertion, &key, &v).unwrap().claims;
    assert_eq!(claims["sub"], "910000000001");
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["org"]["code"], "Q14");
    assert_eq!(
        claims["$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"],
        "Q14"
    );
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60);
    // A modified assertion (claims changed, signature kept) is rejected.
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut forged: Value = serde_json::from_slice(&base64_url_decode(parts[1])).unwrap();
    forged["sub"] = "910000000002".into();
    let modified = format!(
        "{}.{}.{}",
        parts[0],
        base64_url_encode(forged.to_string().as_bytes()),
        parts[2]
    );
    assert!(decode::<Value>(&modified, &key, &v).is_err());
    // The assertion is for this route only.
    let mut other_aud = v.clone();
    other_aud.set_audience(&["api"]);
    assert!(decode::<Value>(&assertion, &key, &other_aud).is_err());
    // Routes without `assertion = true` send none; a client-sent one never passes.
    let r = api(&env, "/api/x", &token, &[("x-auth-assertion", "forged")]).await;
    assert_eq!(r.upstream_header("x-auth-assertion"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_an_assertion_too_and_it_is_reused_while_fresh() {
    let env = start().await;
    let mut b = Browser::new();
    let first = b.login(&env.url("/open-api/a"), "alice").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let a1 = first.upstream_header("x-auth-assertion").unwrap();
    let a2 = b
        .get(&env.url("/open-api/b"))
        .await
        .upstream_header("x-auth-assertion")
        .unwrap();
    assert_eq!(a1, a2, "cached per route and identity");
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_url_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
