//! Bearer access tokens for API clients (`Authorization: Bearer <JWT>` on routes with
//! `bearer = true`): validation against the route provider's cached JWKS, and a cache of
//! validated tokens so that a client reusing one token costs one signature check, not one per
//! request.
//!
//! A token is accepted when its signature verifies with a key of the provider's JWKS under an
//! allowed algorithm (the provider's ID token algorithms, never `none` or HS*), `iss` is the
//! configured issuer, `aud` holds the provider's configured `audience`, `exp` and `nbf` hold
//! within `clock_skew`, and it has a `sub`. Its claims are then kept exactly like a session's
//! ([`retain_for`]), so headers and rules see the same shape either way. This module never
//! logs or stores a token, only its SHA-256.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation};
use moka::future::Cache;
use moka::Expiry;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::{retain_for, ClaimPath, Claims};
use crate::jws::{JwsError, KeyRing};
use crate::oidc::Provider;

/// Validated tokens kept per provider; beyond this the least used are dropped.
const CACHE_CAPACITY: u64 = 10_000;

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BearerError {
    /// The token is not acceptable: 401 `invalid_token`. The text is safe to show the client
    /// (it never holds token contents).
    #[error("{0}")]
    Invalid(&'static str),
    /// The provider's keys are not loaded (start-up, or the provider is down with an expired
    /// cache): 503, the token may well be fine.
    #[error("provider keys unavailable: {0}")]
    Unavailable(String),
}

/// What a validated token yields: the kept claims and when the token expires.
#[derive(Debug)]
pub struct BearerIdentity {
    pub claims: Claims,
    /// `exp` (Unix seconds).
    pub expires: u64,
}

/// One provider's bearer validation state: decoded keys and the validated-token cache.
pub struct BearerVerifier {
    /// Keyed by SHA-256 of the token, so the cache never holds a usable token.
    cache: Cache<[u8; 32], Arc<BearerIdentity>>,
    /// The provider's keys as jsonwebtoken keys.
    keys: KeyRing,
}

/// Entries live until the token's `exp` (plus clock skew), never longer.
struct UntilExp {
    skew: Duration,
}

impl Expiry<[u8; 32], Arc<BearerIdentity>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<BearerIdentity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = value.expires.saturating_sub(crate::clock::now());
        Some(Duration::from_secs(left) + self.skew)
    }
}

impl BearerVerifier {
    /// An empty verifier for a provider with this `clock_skew`.
    pub fn new(skew: Duration) -> BearerVerifier {
        BearerVerifier {
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilExp { skew })
                .build(),
            keys: KeyRing::new(),
        }
    }

    /// Validates `token` for `provider` (cached), keeping the claims at `kept` paths.
    pub async fn verify(
        &self,
        provider: &Provider,
        kept: &[ClaimPath],
        token: &str,
    ) -> Result<Arc<BearerIdentity>, BearerError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let skew = provider.cfg.clock_skew.as_secs();
        if let Some(hit) = self.cache.get(&digest).await {
            // The cache evicts at exp + skew, but only lazily: check again.
            if hit.expires.saturating_add(skew) >= crate::clock::now() {
                return Ok(hit);
            }
            self.cache.invalidate(&digest).await;
            return Err(BearerError::Invalid("the access token expired"));
        }
        let claims = self.validate(provider, token).await?;
        tracing::debug!(provider = provider.name(), "bearer token validated");
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let identity = Arc::new(BearerIdentity {
            claims: retain_for(&claims, kept),
            expires,
        });
        self.cache.insert(digest, identity.clone()).await;
        Ok(identity)
    }

    /// Full validation, with one rate-limited JWKS refetch when the `kid` is unknown.
    async fn validate(&self, provider: &Provider, token: &str) -> Result<Claims, BearerError> {
        let claims = self
            .keys
            .verify(provider, token, |alg| validation(provider, alg))
            .await
            .map_err(into_error)?;
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(BearerError::Invalid(
                "the access token lacks a required claim (exp, iss, aud, sub)",
            ));
        }
        Ok(claims)
    }
}

fn into_error(e: JwsError) -> BearerError {
    use jsonwebtoken::errors::ErrorKind as K;
    BearerError::Invalid(match e {
        JwsError::Unavailable(reason) => return BearerError::Unavailable(reason),
        JwsError::Config(msg) => msg,
        JwsError::NotJwt => "the access token is not a JWT",
        JwsError::Algorithm => "the access token is signed with an algorithm that is not accepted",
        JwsError::UnknownKey => "the access token is signed with an unknown key",
        JwsError::Failed(e) => match e.kind() {
            K::ExpiredSignature => "the access token expired",
            K::ImmatureSignature => "the access token is not valid yet",
            K::InvalidIssuer => "the access token has another issuer",
            K::InvalidAudience => "the access token is not meant for this API (aud)",
            K::InvalidSignature => "the access token signature is invalid",
            K::MissingRequiredClaim(_) => {
                "the access token lacks a required claim (exp, iss, aud, sub)"
            }
            K::InvalidAlgorithm => "the access token algorithm does not fit its key",
            _ => "the access token is invalid",
        },
    })
}

/// Issuer, audience, times (with clock skew) and the one algorithm the header names.
pub(crate) fn validation(provider: &Provider, alg: Algorithm) -> Result<Validation, JwsError> {
    let audience = provider
        .cfg
        .audience
        .as_deref()
        .ok_or(JwsError::Config("bearer tokens are not configured"))?;
    let mut v = Validation::new(alg);
    v.leeway = provider.cfg.clock_skew.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[provider.cfg.issuer.as_str()]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    Ok(v)
}

/// The token of an `Authorization: Bearer` header (scheme compared case-insensitively, as
/// RFC 7235 says), or `None` for any other or no authorization.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn only_the_bearer_scheme_yields_a_token() {
        assert_eq!(
            bearer_token(&headers("Bearer abc.def.ghi")),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers("bearer  abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&http::HeaderMap::new()), None);
    }
}
