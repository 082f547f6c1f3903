//! ID token validation policy. openidconnect checks the signature (kid and alg against the
//! cached JWKS), `iss`, `aud`, `exp` and the nonce; this module adds what it leaves out:
//! clock skew, `iat` and `nbf`, `azp`, and `at_hash` (see TECH-NOTES §4c).

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessToken, AccessTokenHash, ClaimsVerificationError, ClientId, ClientSecret, IdTokenVerifier,
    IssuerUrl, Nonce, SignatureVerificationError,
};
use serde_json::Value;

use crate::claims::Claims;
use crate::config::{ClientAuth, ProviderConfig};
use crate::oidc::ProviderJwks;

/// Why an ID token was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// Signed with a key the cached JWKS does not have: worth one JWKS refetch.
    #[error("ID token is signed with an unknown key")]
    UnknownKey,
    #[error("ID token is invalid: {0}")]
    Invalid(String),
}

/// What a token must match besides its signature.
pub struct Expectations<'a> {
    pub provider: &'a ProviderConfig,
    pub algs: &'a [CoreJwsSigningAlgorithm],
    /// `None` for tokens without a nonce (refresh).
    pub nonce: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Validates an ID token and returns its claims exactly as the provider sent them.
pub fn verify_id_token(
    raw: &str,
    keys: &ProviderJwks,
    expect: &Expectations<'_>,
) -> Result<Claims, IdTokenError> {
    let cfg = expect.provider;
    let token =
        CoreIdToken::from_str(raw).map_err(|e| IdTokenError::Invalid(format!("malformed: {e}")))?;
    let issuer =
        IssuerUrl::new(cfg.issuer.clone()).map_err(|e| IdTokenError::Invalid(e.to_string()))?;
    let client_id = ClientId::new(cfg.client_id.clone());
    let verifier = match &cfg.client_auth {
        // HS* algorithms use the client secret as key; only allowed when configured explicitly.
        ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s) => {
            IdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(s.expose().clone()),
                issuer,
                keys.clone(),
            )
        }
        ClientAuth::PrivateKeyJwt(_) => {
            IdTokenVerifier::new_public_client(client_id, issuer, keys.clone())
        }
    };
    let skew = chrono::Duration::from_std(expect.provider.clock_skew).unwrap_or_default();
    let now = expect.now;
    let trusted = cfg.trusted_audiences.clone();
    let verifier = verifier
        .set_allowed_algs(expect.algs.iter().cloned())
        .set_time_fn(move || now - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + skew {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        })
        .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()));
    let nonce_check = |n: Option<&Nonce>| -> Result<(), String> {
        match (expect.nonce, n) {
            (Some(want), Some(got)) if got.secret() == want => Ok(()),
            (Some(_), _) => Err("nonce mismatch".to_owned()),
            (None, _) => Ok(()),
        }
    };
    let verified = token.claims(&verifier, nonce_check).map_err(|e| match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => IdTokenError::UnknownKey,
        other => IdTokenError::Invalid(describe(&other)),
    })?;
    let audiences = verified.audiences();
    if audiences.len() > 1 || verified.authorized_party().is_some() {
        match verified.authorized_party() {
            Some(azp) if azp.as_str() == cfg.client_id => {}
            Some(_) => return Err(IdTokenError::Invalid("azp is not this client".into())),
            None => return Err(IdTokenError::Invalid("several audiences but no azp".into())),
        }
    }
    if let (Some(expected), Some(access_token)) =
        (verified.access_token_hash(), expect.access_token)
    {
        let alg = token
            .signing_alg()
            .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        let key = token
            .signing_key(&verifier)
            .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        let actual =
            AccessTokenHash::from_token(&AccessToken::new(access_token.to_owned()), alg, key)
                .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        if actual != *expected {
            return Err(IdTokenError::Invalid(
                "at_hash does not match the access token".into(),
            ));
        }
    }
    let claims = payload(raw)?;
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf > (now + skew).timestamp() {
            return Err(IdTokenError::Invalid("not valid yet (nbf)".into()));
        }
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(IdTokenError::Invalid("no sub".into()));
    }
    Ok(claims)
}

/// The JSON payload of a compact JWS whose signature has been checked.
fn payload(raw: &str) -> Result<Claims, IdTokenError> {
    let part = raw
        .split('.')
        .nth(1)
        .ok_or_else(|| IdTokenError::Invalid("malformed".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| IdTokenError::Invalid("payload is not base64url".into()))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(IdTokenError::Invalid("payload is not a JSON object".into())),
    }
}

/// A short reason without token contents.
fn describe(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::Expired(_) => "expired".into(),
        ClaimsVerificationError::InvalidAudience(_) => "wrong audience".into(),
        ClaimsVerificationError::InvalidIssuer(_) => "wrong issuer".into(),
        ClaimsVerificationError::InvalidNonce(_) => "nonce mismatch".into(),
        ClaimsVerificationError::SignatureVerification(s) => format!("bad signature ({s})"),
        ClaimsVerificationError::Other(s) => s.clone(),
        other => other.to_string(),
    }
}
