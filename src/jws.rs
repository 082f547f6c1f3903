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
    /// Keys without a kid are tried when the token names none.
    keys: Vec<Decoded>,
}

struct Decoded {
    kid: Option<String>,
    key: DecodingKey,
    family: jsonwebtoken::AlgorithmFamily,
    /// The JWK's `alg`: the only algorithm the key may verify, when it names one.
    alg: Option<Algorithm>,
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
/// symmetric (`oct`) keys are skipped: a public JWKS must never make HS* forgeable. So are keys
/// whose `use` is not `sig` or whose `alg` is no signature algorithm, as openidconnect skips
/// them for ID tokens.
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
        let for_signing = matches!(
            jwk.common.public_key_use,
            None | Some(jsonwebtoken::jwk::PublicKeyUse::Signature)
        );
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(alg) => Some(alg),
                Err(_) => continue,
            },
        };
        if let (true, Ok(key)) = (for_signing, DecodingKey::from_jwk(&jwk)) {
            keys.push(Decoded {
                kid: jwk.common.key_id.clone(),
                key,
                family,
                alg,
            });
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
    let alg = *validation.algorithms.first().ok_or(JwsError::UnknownKey)?;
    let candidates = keys.keys.iter().filter(|k| {
        k.family == alg.family()
            && k.alg.is_none_or(|a| a == alg)
            && (kid.is_none() || k.kid.as_deref() == kid)
    });
    let mut last = None;
    for Decoded { key, .. } in candidates {
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn keys(jwk: Value) -> DecodedKeys {
        let set: ProviderJwks = serde_json::from_value(json!({ "keys": [jwk] })).unwrap();
        decode_keys(Arc::new(set))
    }

    fn token(pem: &str, alg: Algorithm) -> String {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(alg), &json!({"sub": "alice"}), &key).unwrap()
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v
    }

    #[test]
    fn a_key_verifies_only_the_algorithm_and_use_its_jwk_names() {
        let key = jwk::generate(jwk::JwkAlg::RS256).unwrap();
        let (rs256, ps256) = (
            token(&key.private_pem, Algorithm::RS256),
            token(&key.private_pem, Algorithm::PS256),
        );
        let published = keys(key.public_jwk.clone());
        assert!(check(&published, None, &rs256, &validation(Algorithm::RS256)).is_ok());
        // The JWK says RS256: a PS256 token finds no key, though the key could verify it.
        let ps = check(&published, None, &ps256, &validation(Algorithm::PS256));
        assert!(matches!(ps, Err(JwsError::UnknownKey)));
        let mut any_alg = key.public_jwk.clone();
        any_alg.as_object_mut().unwrap().remove("alg");
        assert!(check(&keys(any_alg), None, &ps256, &validation(Algorithm::PS256)).is_ok());
        let mut encryption = key.public_jwk;
        encryption["use"] = json!("enc");
        let enc = check(
            &keys(encryption),
            None,
            &rs256,
            &validation(Algorithm::RS256),
        );
        assert!(matches!(enc, Err(JwsError::UnknownKey)));
    }
}
