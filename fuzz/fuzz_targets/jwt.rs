//! JWS/JWT parsing: bearer access tokens (`Authorization: Bearer`), back-channel logout tokens
//! (form body, the unverified issuer peek that picks the provider, the logout claim rules) and
//! ID tokens (openidconnect's verifier plus the gateway's policy), all against the fixture
//! JWKS.
//!
//! Input: a compact JWS as sent; or `sign:` and a payload (any bytes) that the fuzz target
//! signs with the fixture ES256 key, so that hostile claims get past the signature; or
//! `header:` + header JSON + newline + payload, both signed the same way.
//!
//! Invariants: nothing panics; `Authorization: Bearer <t>` yields `t` trimmed; a logout token
//! survives the form body; a verified token's claims name the configured issuer and audience,
//! and the unverified issuer peek agrees with them; an accepted logout token names `sub` or
//! `sid` and a `jti`, and is never dated after `now`; an accepted ID token has a `sub`.
#![no_main]

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use oidc_gateway::bearer::bearer_token;
use oidc_gateway::fuzzing::{
    allowed_algs, bearer_validation, claimed_issuer, jws_check, logout_claims, logout_token,
    logout_validation,
};
use oidc_gateway::oidc::verify::{verify_id_token, Expectations};
use oidc_gateway_fuzz::{FIXTURE, NOW};
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let token = if let Some(payload) = data.strip_prefix(b"sign:") {
        f.sign_raw(None, payload)
    } else if let Some(rest) = data.strip_prefix(b"header:") {
        let mut parts = rest.splitn(2, |&b| b == b'\n');
        let header = parts.next().unwrap_or_default();
        f.sign_raw(Some(header), parts.next().unwrap_or_default())
    } else {
        match std::str::from_utf8(data) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    };
    let provider = &f.providers[0];
    let cfg = f.cis2();

    // Authorization: Bearer.
    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v);
        if let Some(t) = bearer_token(&h) {
            assert!(
                !t.is_empty() && t == t.trim(),
                "bearer token {t:?} is not trimmed"
            );
            assert!(
                token.contains(t),
                "bearer token {t:?} is not from the header"
            );
        }
    }
    // The form body of a back-channel logout.
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &token)
        .finish();
    match logout_token(body.as_bytes()) {
        Ok(t) => assert_eq!(t, token, "logout_token changed in the form body"),
        Err(_) => assert!(token.is_empty(), "a non-empty logout_token was refused"),
    }
    let _ = logout_token(data);
    let peek = claimed_issuer(&token);

    // Signature and registered claims, as KeyRing::verify checks them.
    if let Ok(header) = jsonwebtoken::decode_header(&token) {
        let kid = header.kid.as_deref();
        if allowed_algs(provider).contains(&header.alg) {
            assert!(
                !matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ),
                "an HMAC algorithm is allowed"
            );
            if let Ok(v) = bearer_validation(provider, header.alg) {
                if let Ok(claims) = jws_check(f.jwks.clone(), kid, &token, &v) {
                    assert_eq!(
                        claims.get("iss").and_then(Value::as_str),
                        Some(cfg.issuer.as_str()),
                        "a bearer token of another issuer verified"
                    );
                    let (iss, aud) = peek
                        .clone()
                        .expect("a verified token has a readable issuer");
                    assert_eq!(
                        iss, cfg.issuer,
                        "issuer peek disagrees with the verified token"
                    );
                    assert!(
                        aud.iter()
                            .any(|a| Some(a.as_str()) == cfg.audience.as_deref()),
                        "audience peek {aud:?} disagrees with the verified token"
                    );
                }
            }
            let v = logout_validation(provider, header.alg);
            if let Ok(claims) = jws_check(f.jwks.clone(), kid, &token, &v) {
                let (iss, aud) = peek
                    .clone()
                    .expect("a verified token has a readable issuer");
                assert_eq!(
                    iss, cfg.issuer,
                    "issuer peek disagrees with the verified token"
                );
                assert!(
                    aud.contains(&cfg.client_id),
                    "audience peek {aud:?} disagrees with the verified token"
                );
                let skew = cfg.clock_skew.as_secs();
                if let Ok(req) = logout_claims(&claims, skew, NOW) {
                    assert!(req.iat <= NOW, "logout dated after now");
                    assert!(
                        req.sub.is_some() || req.sid.is_some(),
                        "logout names no one"
                    );
                    assert!(!req.jti.is_empty(), "logout without jti");
                }
            }
        }
    }
    // Unverified claims through the logout rules too (they are pure).
    if let Some(payload) = token.split('.').nth(1) {
        use base64::Engine;
        if let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) {
            if let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) {
                let _ = logout_claims(&claims, 60, NOW);
                let _ = logout_claims(&claims, 600, u64::MAX);
                let _ = logout_claims(&claims, 0, 0);
            }
        }
    }

    // ID token.
    let nonce = "fuzz-nonce";
    let expect = Expectations {
        provider: cfg,
        algs: &[
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ],
        nonce: Some(nonce),
        access_token: Some("fuzz-access-token"),
        now: chrono::DateTime::from_timestamp(NOW as i64, 0).expect("fixed now"),
    };
    if let Ok(claims) = verify_id_token(&token, &f.jwks, &expect) {
        assert!(
            claims
                .get("sub")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "an ID token without sub was accepted"
        );
        assert_eq!(
            claims.get("nonce").and_then(Value::as_str),
            Some(nonce),
            "an ID token with another nonce was accepted"
        );
        assert_eq!(
            claims.get("iss").and_then(Value::as_str),
            Some(cfg.issuer.as_str()),
            "an ID token of another issuer was accepted"
        );
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == &cfg.client_id,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&cfg.client_id)),
            _ => false,
        };
        assert!(aud_ok, "an ID token for another audience was accepted");
    }
});
