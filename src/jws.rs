//! Signed JWTs from a provider (bearer access tokens, back-channel logout tokens), checked with
//! jsonwebtoken against the provider's cached JWKS: the keys converted once per JWKS, only the
//! provider's asymmetric ID token algorithms, one rate-limited JWKS refetch on an unknown `kid`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::claims::Claims;
use crate::oidc::{Provider, ProviderJwks};

/// Why a token's signature or registered claims were not accepted.
#[derive(Debug)]
pub enum JwsError {
    NotJwt,
    /// The header names an algorithm the provider may not use.
    Algorithm,
    UnknownKey,
    /// Signature, times, issuer or audience (jsonwebtoken's verdict).
    Failed(jsonwebtoken::errors::Error),
    /// The gateway cannot validate this kind of token (not configured).
    Config(&'static str),
    /// The provider's keys are not loaded: the token may well be fine.
    Unavailable(String),
}

/// One provider's keys as jsonwebtoken keys, converted again only when the JWKS changes.
#[derive(Default)]
pub struct KeyRing {
    keys: ArcSwapOption<DecodedKeys>,
}

pub(crate) struct DecodedKeys {
    source: Arc<ProviderJwks>,
    /// (kid, key, family): keys without a kid are tried when the token names none.
    keys: Vec<(Option<String>, DecodingKey, jsonwebtoken::AlgorithmFamily)>,
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Verifies `token` with `provider`'s keys under the [`Validation`] that `validation`
    /// builds for the header's algorithm, and returns its payload. An unknown `kid` refetches
    /// the JWKS once (rate-limited per provider).
    pub async fn verify(
        &self,
        provider: &Provider,
        token: &str,
        validation: impl Fn(Algorithm) -> Result<Validation, JwsError>,
    ) -> Result<Claims, JwsError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwsError::NotJwt)?;
        if !allowed_algs(provider).contains(&header.alg) {
            return Err(JwsError::Algorithm);
        }
        let validation = validation(header.alg)?;
        let keys = provider
            .keys()
            .await
            .map_err(|e| JwsError::Unavailable(e.to_string()))?;
        let kid = header.kid.as_deref();
        match check(&self.decoded(keys), kid, token, &validation) {
            Err(JwsError::UnknownKey) => match provider.refetch_keys().await {
                Some(Ok(keys)) => check(&self.decoded(keys), kid, token, &validation),
                Some(Err(e)) => Err(JwsError::Unavailable(e.to_string())),
                None => Err(JwsError::UnknownKey),
            },
            other => other,
        }
    }

    fn decoded(&self, source: Arc<ProviderJwks>) -> Arc<DecodedKeys> {
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
pub(crate) fn decode_keys(source: Arc<ProviderJwks>) -> DecodedKeys {
    crate::ring_rsa::install();
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

/// Verifies with the key named by `kid` (or every key of the right family when there is none).
pub(crate) fn check(
    keys: &DecodedKeys,
    kid: Option<&str>,
    token: &str,
    validation: &Validation,
) -> Result<Claims, JwsError> {
    let family = validation
        .algorithms
        .first()
        .map(|a| a.family())
        .ok_or(JwsError::UnknownKey)?;
    let candidates = keys
        .keys
        .iter()
        .filter(|(k, _, f)| *f == family && (kid.is_none() || k.as_deref() == kid));
    let mut last = None;
    for (_, key, _) in candidates {
        match jsonwebtoken::decode::<Value>(token, key, validation) {
            Ok(data) => {
                return match data.claims {
                    Value::Object(map) => Ok(map),
                    _ => Err(JwsError::NotJwt),
                };
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map(JwsError::Failed).unwrap_or(JwsError::UnknownKey))
}

/// The provider's ID token algorithms that jsonwebtoken can verify with a public key: the
/// configured `id_token_algs`, else the advertised list; RS256 when the list says nothing.
pub fn allowed_algs(provider: &Provider) -> Vec<Algorithm> {
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
