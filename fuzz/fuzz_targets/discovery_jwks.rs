//! Provider documents: the discovery document (`oidc::discovery::parse`: openidconnect's
//! metadata, the issuer check, endpoint schemes, ID token algorithms) and the JWKS (parsed as
//! the key cache parses it, converted as `KeyRing` converts it, and used by the ID token
//! verifier).
//!
//! Input: one JSON document, read both as discovery metadata and as a JWKS.
//!
//! Invariants: nothing panics; accepted discovery names the configured issuer, https (or
//! loopback http) endpoints, and ID token algorithms without `none` and HS* unless configured;
//! no JWKS makes an HS256 token verify (symmetric keys are skipped: a public JWKS must never
//! make HMAC forgeable), nor an unsigned (`alg: none`) one.
#![no_main]

use std::sync::{Arc, LazyLock};

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use libfuzzer_sys::fuzz_target;
use oidc_gateway::fuzzing::jws_check;
use oidc_gateway::oidc::discovery::parse;
use oidc_gateway::oidc::verify::{verify_id_token, Expectations};
use oidc_gateway::oidc::ProviderJwks;
use oidc_gateway_fuzz::{FIXTURE, NOW};
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::json;

/// An ES256 ID token from the fixture key, an HS256 one whose secret is the `oct` key of the
/// seed JWKS (`c2VjcmV0`, "secret"), and an unsigned one.
static TOKENS: LazyLock<[String; 3]> = LazyLock::new(|| {
    let f = &*FIXTURE;
    let claims = json!({
        "iss": f.cis2().issuer, "aud": f.cis2().client_id, "sub": "uid=240000109896",
        "iat": NOW - 10, "exp": 4102444800u64, "nonce": "n",
    });
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("hmac".into());
    let hs256 = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"secret"))
        .expect("HS256 signing");
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims.to_string()
        )
    );
    [f.sign(&claims), hs256, none]
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    for (i, cfg) in f.config.providers.iter().enumerate() {
        let Ok(d) = parse(data, cfg) else { continue };
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri]
            .into_iter()
            .chain(d.userinfo_endpoint.as_ref())
            .chain(d.end_session_endpoint.as_ref())
        {
            let loopback = matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
                || u.host_str().is_some_and(|h| h.starts_with("127."));
            assert!(
                u.scheme() == "https"
                    || (u.scheme() == "http" && (loopback || cfg.allow_insecure_http)),
                "provider {i}: endpoint {u} accepted"
            );
        }
        assert!(!d.id_token_algs.is_empty(), "no ID token algorithm");
        if cfg.id_token_algs.is_none() {
            for a in &d.id_token_algs {
                assert!(
                    !matches!(
                        a,
                        CoreJwsSigningAlgorithm::None
                            | CoreJwsSigningAlgorithm::HmacSha256
                            | CoreJwsSigningAlgorithm::HmacSha384
                            | CoreJwsSigningAlgorithm::HmacSha512
                    ),
                    "advertised {a:?} accepted"
                );
            }
        }
    }

    let Ok(set) = serde_json::from_slice::<ProviderJwks>(data) else {
        return;
    };
    if set.keys().is_empty() {
        return; // the key cache refuses it ("no usable keys")
    }
    let set = Arc::new(set);
    let [es256, hs256, none] = &*TOKENS;
    let _ = jws_check(set.clone(), None, es256, &Validation::new(Algorithm::ES256));
    let mut hmac = Validation::new(Algorithm::HS256);
    hmac.validate_aud = false;
    assert!(
        jws_check(set.clone(), None, hs256, &hmac).is_err()
            && jws_check(set.clone(), Some("hmac"), hs256, &hmac).is_err(),
        "an HS256 token verified against a public JWKS"
    );
    let expect = Expectations {
        provider: f.cis2(),
        algs: &[
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ],
        nonce: Some("n"),
        access_token: None,
        now: chrono::DateTime::from_timestamp(NOW as i64, 0).expect("fixed now"),
    };
    let _ = verify_id_token(es256, &set, &expect);
    assert!(
        verify_id_token(hs256, &set, &expect).is_err(),
        "HS256 ID token accepted"
    );
    assert!(
        verify_id_token(none, &set, &expect).is_err(),
        "unsigned ID token accepted"
    );
});
