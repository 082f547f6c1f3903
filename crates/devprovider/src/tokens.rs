//! Token material of the development provider: the RS256 signing key, JWT signing (and the
//! deliberately broken variants the misbehaviour switches need), `at_hash`, PKCE S256 and random
//! opaque tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use jwk::{JwkAlg, KeyError};

/// An RS256 key the provider signs ID tokens with.
pub(crate) struct SigningKey {
    pub kid: String,
    /// Public JWK as served in the JWKS.
    pub public_jwk: Value,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    /// A fresh RSA 2048 key; its kid is the RFC 7638 thumbprint.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let key = jwk::generate(JwkAlg::RS256)?;
        let bad = |e: jsonwebtoken::errors::Error| KeyError::Encode(e.to_string());
        let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).map_err(bad)?;
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone())
            .map_err(|e| KeyError::Encode(format!("generated JWK does not parse: {e}")))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(bad)?;
        Ok(SigningKey {
            kid: key.kid,
            public_jwk: key.public_jwk,
            encoding,
            decoding,
        })
    }

    /// A 1024-bit RSA key, published like any other: a provider whose key is too weak to trust
    /// (the gateway refuses RSA keys under 2048 bits, as `jwk::generate` never makes them).
    pub fn generate_weak() -> Result<SigningKey, KeyError> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut OsRng, 1024).map_err(KeyError::RsaGenerate)?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        let mut public_jwk = serde_json::json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(&n),
            "e": URL_SAFE_NO_PAD.encode(&e),
            "alg": "RS256",
            "use": "sig",
        });
        let kid = jwk::thumbprint(&public_jwk)?;
        public_jwk["kid"] = Value::String(kid.clone());
        Ok(SigningKey {
            kid,
            public_jwk,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
        })
    }

    /// Signs `claims` as an RS256 JWT with this key's kid.
    pub fn sign(&self, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Signs `claims` plus one more claim `name` given as raw JSON text (spliced into the
    /// payload, never parsed), for claims too deep to hold as a `serde_json::Value`.
    pub fn sign_with_raw_claim(
        &self,
        claims: &Value,
        name: &str,
        raw_json: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let header = serde_json::to_vec(&header)?;
        let payload = with_raw_claim(&claims.to_string(), name, raw_json);
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::RS256)?;
        Ok(format!("{message}.{signature}"))
    }

    /// Checks a JWT's signature against this key only (no claim checks: an expired
    /// `id_token_hint` is still a valid hint).
    pub fn verify_signature(&self, token: &str) -> Option<Value> {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

/// An unsigned JWT (`alg: none`, empty signature), for [`super::Misbehaviour::AlgNone`].
pub(crate) fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// `object_json` (a serialised JSON object) with one more member `name` whose value is the raw
/// JSON text `raw_json`.
pub(crate) fn with_raw_claim(object_json: &str, name: &str, raw_json: &str) -> String {
    let body = object_json.trim_end();
    let inner = body.strip_suffix('}').unwrap_or(body);
    let sep = if inner.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!(
        "{inner}{sep}{}:{raw_json}}}",
        Value::String(name.to_owned())
    )
}

/// JSON text of arrays nested `depth` deep: `[[[...]]]`.
pub(crate) fn nested_arrays(depth: usize) -> String {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s
}

/// The same JWT with one signature bit flipped, for [`super::Misbehaviour::BadSignature`].
pub(crate) fn flip_signature(token: &str) -> String {
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    // Flip a byte in the middle rather than the last one: the last base64 character carries
    // padding bits, and some decoders ignore those.
    let mid = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(mid) {
        *b ^= 0x01;
    }
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// OIDC `at_hash` for RS256: base64url of the left half of SHA-256 of the access token.
pub(crate) fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// PKCE S256: base64url(SHA-256(verifier)).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A random opaque token (codes, access and refresh tokens, login transactions): 32 bytes from
/// the OS, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn at_hash_is_16_bytes() {
        assert_eq!(URL_SAFE_NO_PAD.decode(at_hash("abc")).unwrap().len(), 16);
    }

    #[test]
    fn broken_variants_fail_verification() {
        let key = SigningKey::generate().unwrap();
        let claims = serde_json::json!({"sub": "x"});
        let good = key.sign(&claims).unwrap();
        assert_eq!(key.verify_signature(&good).unwrap()["sub"], "x");
        assert!(key.verify_signature(&flip_signature(&good)).is_none());
        assert!(key.verify_signature(&unsigned(&claims)).is_none());
        assert!(unsigned(&claims).ends_with('.'));
    }

    #[test]
    fn a_raw_claim_is_spliced_into_the_signed_payload() {
        assert_eq!(with_raw_claim("{}", "d", "[[]]"), r#"{"d":[[]]}"#);
        assert_eq!(with_raw_claim(r#"{"a":1}"#, "d", "[]"), r#"{"a":1,"d":[]}"#);
        assert_eq!(nested_arrays(3), "[[[]]]");
        let key = SigningKey::generate().unwrap();
        let claims = serde_json::json!({"sub": "x"});
        let token = key.sign_with_raw_claim(&claims, "d", "[[1]]").unwrap();
        let verified = key.verify_signature(&token).unwrap();
        assert_eq!(verified["sub"], "x");
        assert_eq!(verified["d"], serde_json::json!([[1]]));
    }
}
