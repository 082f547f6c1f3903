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

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::future::Cache;
use moka::Expiry;
use openidconnect::core::CoreJsonWebKeySet;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::{retain_for, ClaimPath, Claims};
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
    /// The JWKS last converted to jsonwebtoken keys (converted again only when it changes).
    keys: ArcSwapOption<DecodedKeys>,
}

struct DecodedKeys {
    source: Arc<CoreJsonWebKeySet>,
    /// (kid, key, family): keys without a kid are tried when the token names none.
    keys: Vec<(Option<String>, DecodingKey, jsonwebtoken::AlgorithmFamily)>,
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
        let left = value.expires.saturating_sub(crate::session::now());
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
            keys: ArcSwapOption::empty(),
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
            if hit.expires.saturating_add(skew) >= crate::session::now() {
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
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| BearerError::Invalid("the access token is not a JWT"))?;
        let algs = allowed_algs(provider);
        if !algs.contains(&header.alg) {
            return Err(BearerError::Invalid(
                "the access token is signed with an algorithm that is not accepted",
            ));
        }
        let validation = validation(provider, header.alg)?;
        let keys = provider
            .keys()
            .await
            .map_err(|e| BearerError::Unavailable(e.to_string()))?;
        match check(
            &self.decoded(keys),
            header.kid.as_deref(),
            token,
            &validation,
        ) {
            Err(Check::UnknownKey) => match provider.refetch_keys().await {
                Some(Ok(keys)) => check(
                    &self.decoded(keys),
                    header.kid.as_deref(),
                    token,
                    &validation,
                )
                .map_err(Check::into_error),
                Some(Err(e)) => Err(BearerError::Unavailable(e.to_string())),
                None => Err(Check::UnknownKey.into_error()),
            },
            other => other.map_err(Check::into_error),
        }
    }

    /// The provider's keys as jsonwebtoken keys, converted once per JWKS.
    fn decoded(&self, source: Arc<CoreJsonWebKeySet>) -> Arc<DecodedKeys> {
        if let Some(cur) = self.keys.load_full() {
            if Arc::ptr_eq(&cur.source, &source) {
                return cur;
            }
        }
        let decoded = Arc::new(decode_keys(source));
        self.keys.store(Some(decoded.clone()));
        decoded
    }
}

/// Converts openidconnect's JWKS into jsonwebtoken keys. Keys jsonwebtoken cannot read and
/// symmetric (`oct`) keys are skipped: a public JWKS must never make HS* forgeable.
fn decode_keys(source: Arc<CoreJsonWebKeySet>) -> DecodedKeys {
    let mut keys = Vec::new();
    for k in source.keys() {
        let Ok(jwk) = serde_json::to_value(k).and_then(serde_json::from_value::<Jwk>) else {
            continue;
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => jsonwebtoken::AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => jsonwebtoken::AlgorithmFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => jsonwebtoken::AlgorithmFamily::Ed,
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.push((jwk.common.key_id.clone(), key, family));
        }
    }
    DecodedKeys { source, keys }
}

enum Check {
    UnknownKey,
    Failed(jsonwebtoken::errors::Error),
}

impl Check {
    fn into_error(self) -> BearerError {
        use jsonwebtoken::errors::ErrorKind as K;
        BearerError::Invalid(match self {
            Check::UnknownKey => "the access token is signed with an unknown key",
            Check::Failed(e) => match e.kind() {
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
}

/// Verifies with the key named by `kid` (or every key of the right family when there is none).
fn check(
    keys: &DecodedKeys,
    kid: Option<&str>,
    token: &str,
    validation: &Validation,
) -> Result<Claims, Check> {
    let family = validation
        .algorithms
        .first()
        .map(|a| a.family())
        .ok_or(Check::UnknownKey)?;
    let candidates = keys
        .keys
        .iter()
        .filter(|(k, _, f)| *f == family && (kid.is_none() || k.as_deref() == kid));
    let mut last = None;
    for (_, key, _) in candidates {
        match jsonwebtoken::decode::<Value>(token, key, validation) {
            Ok(data) => {
                return match data.claims {
                    Value::Object(map)
                        if map
                            .get("sub")
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty()) =>
                    {
                        Ok(map)
                    }
                    _ => Err(Check::Failed(
                        jsonwebtoken::errors::ErrorKind::MissingRequiredClaim("sub".into()).into(),
                    )),
                };
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map(Check::Failed).unwrap_or(Check::UnknownKey))
}

/// Issuer, audience, times (with clock skew) and the one algorithm the header names.
fn validation(provider: &Provider, alg: Algorithm) -> Result<Validation, BearerError> {
    let audience = provider
        .cfg
        .audience
        .as_deref()
        .ok_or(BearerError::Invalid("bearer tokens are not configured"))?;
    let mut v = Validation::new(alg);
    v.leeway = provider.cfg.clock_skew.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[provider.cfg.issuer.as_str()]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    Ok(v)
}

/// The provider's ID token algorithms that jsonwebtoken can verify with a public key: the
/// configured `id_token_algs`, else the advertised list; RS256 when the list says nothing.
fn allowed_algs(provider: &Provider) -> Vec<Algorithm> {
    let names: Vec<String> = match (&provider.cfg.id_token_algs, provider.discovered()) {
        (Some(list), _) => list.clone(),
        (None, Some(d)) => d
            .id_token_algs
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (None, None) => Vec::new(),
    };
    let mut algs: Vec<Algorithm> = names
        .iter()
        .filter_map(|n| n.parse::<Algorithm>().ok())
        .filter(|a| a.family() != jsonwebtoken::AlgorithmFamily::Hmac)
        .collect();
    if algs.is_empty() {
        algs.push(Algorithm::RS256);
    }
    algs
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
