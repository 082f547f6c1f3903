//! The provider's signing keys as openidconnect sees them: [`CoreJsonWebKey`] in every respect
//! (kid, use, alg, EC and EdDSA keys, `at_hash`), except that RSA signatures are checked by
//! ring (see [`crate::ring_rsa`]) with the key's modulus and exponent decoded once per JWKS.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse,
    JwsSigningAlgorithm, SignatureVerificationError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ring_rsa::{self, RsaScheme};

/// A provider's JWKS.
pub type ProviderJwks = JsonWebKeySet<ProviderJwk>;

/// One key of a provider's JWKS.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderJwk {
    core: CoreJsonWebKey,
    /// `n` and `e`, big-endian, when this is an RSA key that has both.
    rsa: Option<(Vec<u8>, Vec<u8>)>,
}

impl From<CoreJsonWebKey> for ProviderJwk {
    fn from(core: CoreJsonWebKey) -> ProviderJwk {
        let rsa = match core.key_type() {
            CoreJsonWebKeyType::RSA => serde_json::to_value(&core).ok().and_then(|v| {
                let part = |name: &str| {
                    let text = v.get(name).and_then(Value::as_str)?;
                    URL_SAFE_NO_PAD.decode(text).ok()
                };
                Some((part("n")?, part("e")?))
            }),
            _ => None,
        };
        ProviderJwk { core, rsa }
    }
}

impl fmt::Debug for ProviderJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl Serialize for ProviderJwk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProviderJwk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CoreJsonWebKey::deserialize(d).map(ProviderJwk::from)
    }
}

fn rsa_scheme(alg: &CoreJwsSigningAlgorithm) -> Option<RsaScheme> {
    Some(match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => RsaScheme::Rs256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => RsaScheme::Rs384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => RsaScheme::Rs512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256 => RsaScheme::Ps256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha384 => RsaScheme::Ps384,
        CoreJwsSigningAlgorithm::RsaSsaPssSha512 => RsaScheme::Ps512,
        _ => return None,
    })
}

impl JsonWebKey for ProviderJwk {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        ProviderJwk::from(CoreJsonWebKey::new_symmetric(key))
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let Some(scheme) = rsa_scheme(alg) else {
            return self.core.verify_signature(alg, message, signature);
        };
        // The checks openidconnect makes before any signature (its `check_key_compatibility`).
        if self.key_use().is_some_and(|u| !u.allows_signature()) {
            return Err(invalid_key(
                "key usage not permitted for digital signatures",
            ));
        }
        if alg.key_type().as_ref() != Some(self.key_type()) {
            return Err(invalid_key("key type does not match signature algorithm"));
        }
        match self.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => {}
            JsonWebKeyAlgorithm::Algorithm(a) if a == alg => {}
            JsonWebKeyAlgorithm::Unsupported => {
                return Err(invalid_key("key algorithm is not a signing algorithm"))
            }
            JsonWebKeyAlgorithm::Algorithm(_) => {
                return Err(invalid_key("incompatible key algorithm"))
            }
        }
        let Some((n, e)) = &self.rsa else {
            return Err(invalid_key("RSA key without n or e"));
        };
        if ring_rsa::verify(scheme, n, e, message, signature) {
            Ok(())
        } else {
            Err(SignatureVerificationError::CryptoError(
                "bad signature".to_owned(),
            ))
        }
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

fn invalid_key(why: &str) -> SignatureVerificationError {
    SignatureVerificationError::InvalidKey(why.to_owned())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    use super::*;

    fn sign(pem: &str, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        };
        let b64 = jsonwebtoken::crypto::sign(message, &key.unwrap(), alg).unwrap();
        URL_SAFE_NO_PAD.decode(b64).unwrap()
    }

    fn jwk(value: Value) -> ProviderJwk {
        serde_json::from_value(value).expect("JWK")
    }

    fn without(mut value: Value, member: &str) -> Value {
        value.as_object_mut().unwrap().remove(member);
        value
    }

    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJhbGljZSJ9";

    #[test]
    fn rsa_signatures_of_every_algorithm_verify_and_tampered_ones_do_not() {
        let key = jwk::generate(jwk::JwkAlg::RS256).unwrap();
        let public = jwk(without(key.public_jwk.clone(), "alg"));
        for (alg, oidc) in [
            (
                Algorithm::RS256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            ),
            (
                Algorithm::RS384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            ),
            (
                Algorithm::RS512,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            ),
            (Algorithm::PS256, CoreJwsSigningAlgorithm::RsaSsaPssSha256),
            (Algorithm::PS384, CoreJwsSigningAlgorithm::RsaSsaPssSha384),
            (Algorithm::PS512, CoreJwsSigningAlgorithm::RsaSsaPssSha512),
        ] {
            let mut sig = sign(&key.private_pem, alg, MESSAGE);
            assert!(
                public.verify_signature(&oidc, MESSAGE, &sig).is_ok(),
                "{alg:?}"
            );
            assert!(
                public.verify_signature(&oidc, b"other", &sig).is_err(),
                "{alg:?}"
            );
            sig[3] ^= 0x80;
            assert!(
                public.verify_signature(&oidc, MESSAGE, &sig).is_err(),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn openidconnects_key_rules_still_apply() {
        let key = jwk::generate(jwk::JwkAlg::RS256).unwrap();
        let rs512 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512;
        let sig = sign(&key.private_pem, Algorithm::RS512, MESSAGE);
        let mut enc = without(key.public_jwk.clone(), "alg");
        enc["use"] = json!("enc");
        let refused = jwk(enc).verify_signature(&rs512, MESSAGE, &sig);
        assert!(matches!(
            refused,
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        // The JWK says RS256 only.
        let refused = jwk(key.public_jwk.clone()).verify_signature(&rs512, MESSAGE, &sig);
        assert!(matches!(
            refused,
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        // An EC algorithm with an RSA key.
        let es256 = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
        let refused = jwk(without(key.public_jwk, "alg")).verify_signature(&es256, MESSAGE, &sig);
        assert!(refused.is_err());
    }

    #[test]
    fn ec_keys_are_openidconnects_own() {
        let key = jwk::generate(jwk::JwkAlg::ES256).unwrap();
        let public = jwk(key.public_jwk.clone());
        assert!(public.rsa.is_none());
        let es256 = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
        let sig = sign(&key.private_pem, Algorithm::ES256, MESSAGE);
        assert!(public.verify_signature(&es256, MESSAGE, &sig).is_ok());
        assert!(public.verify_signature(&es256, b"other", &sig).is_err());
    }

    #[test]
    fn a_jwks_round_trips_and_skips_keys_it_cannot_read() {
        let key = jwk::generate(jwk::JwkAlg::RS256).unwrap();
        let set = json!({"keys": [key.public_jwk, {"kty": 7}, {"kty": "RSA", "kid": ["a list"]}]});
        let jwks: ProviderJwks = serde_json::from_value(set).unwrap();
        assert_eq!(jwks.keys().len(), 1);
        assert_eq!(
            serde_json::to_value(&jwks.keys()[0]).unwrap()["kid"],
            json!(key.kid)
        );
    }
}
