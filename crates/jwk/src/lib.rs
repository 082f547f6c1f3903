//! JSON Web Keys for the keys this project signs with: generating `private_key_jwt` and
//! assertion keys, reading a private key PEM into its public JWK, and RFC 7638 thumbprints as
//! `kid`. Shared by the gateway (configuration, client assertions, `keygen`) and the
//! development provider, which is why it is a crate of its own.
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rand::rngs::OsRng;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// RSA modulus size for generated keys, and the minimum accepted from a PEM: jsonwebtoken (and
/// most providers) refuse smaller RSA keys.
const RSA_BITS: usize = 2048;

/// Everything that can go wrong while making or reading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown key algorithm {0:?} (expected RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384)")]
    UnknownAlg(String),
    #[error("RSA key generation failed: {0}")]
    RsaGenerate(#[source] rsa::Error),
    #[error("cannot encode the private key as PKCS#8 PEM: {0}")]
    Encode(String),
    #[error("{alg} needs {expected}, but the PEM could not be read as one: {detail}")]
    BadPem {
        alg: JwkAlg,
        expected: &'static str,
        detail: String,
    },
    #[error("RSA key is {bits} bits; at least {RSA_BITS} bits are required")]
    RsaTooSmall { bits: usize },
    #[error("JWK has no string member {0:?} (required for its thumbprint)")]
    JwkMissingMember(&'static str),
    #[error("JWK key type {0:?} is not supported for thumbprints (RSA, EC, OKP, oct are)")]
    JwkUnsupportedKty(String),
}

/// Signature algorithms offered for `private_key_jwt` client keys and identity assertions.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwkAlg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

/// The kind of private key an algorithm signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
}

impl KeyKind {
    /// The algorithm a key of this kind signs with unless told otherwise.
    pub fn default_alg(self) -> JwkAlg {
        match self {
            KeyKind::Rsa => JwkAlg::RS256,
            KeyKind::P256 => JwkAlg::ES256,
            KeyKind::P384 => JwkAlg::ES384,
        }
    }
}

impl JwkAlg {
    pub const ALL: [JwkAlg; 8] = [
        JwkAlg::RS256,
        JwkAlg::RS384,
        JwkAlg::RS512,
        JwkAlg::PS256,
        JwkAlg::PS384,
        JwkAlg::PS512,
        JwkAlg::ES256,
        JwkAlg::ES384,
    ];

    /// The name used in JWS headers and JWKs.
    pub fn as_str(self) -> &'static str {
        match self {
            JwkAlg::RS256 => "RS256",
            JwkAlg::RS384 => "RS384",
            JwkAlg::RS512 => "RS512",
            JwkAlg::PS256 => "PS256",
            JwkAlg::PS384 => "PS384",
            JwkAlg::PS512 => "PS512",
            JwkAlg::ES256 => "ES256",
            JwkAlg::ES384 => "ES384",
        }
    }

    pub fn jsonwebtoken_alg(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwkAlg::RS256 => A::RS256,
            JwkAlg::RS384 => A::RS384,
            JwkAlg::RS512 => A::RS512,
            JwkAlg::PS256 => A::PS256,
            JwkAlg::PS384 => A::PS384,
            JwkAlg::PS512 => A::PS512,
            JwkAlg::ES256 => A::ES256,
            JwkAlg::ES384 => A::ES384,
        }
    }

    /// The kind of key that signs with this algorithm.
    pub fn key_kind(self) -> KeyKind {
        match self {
            JwkAlg::ES256 => KeyKind::P256,
            JwkAlg::ES384 => KeyKind::P384,
            _ => KeyKind::Rsa,
        }
    }

    fn is_rsa(self) -> bool {
        self.key_kind() == KeyKind::Rsa
    }
}

impl fmt::Display for JwkAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwkAlg {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JwkAlg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| KeyError::UnknownAlg(s.to_owned()))
    }
}

/// A freshly generated private key and what to register at the provider.
#[derive(Clone)]
pub struct GeneratedKey {
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), readable by jsonwebtoken's `from_rsa_pem` /
    /// `from_ec_pem`.
    pub private_pem: String,
    /// Public JWK with `alg`, `use: "sig"` and `kid` (the RFC 7638 thumbprint).
    pub public_jwk: Value,
    pub kid: String,
}

// Hand-written so the private key never lands in logs via `{:?}`.
impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("private_pem", &"<redacted>")
            .field("public_jwk", &self.public_jwk)
            .field("kid", &self.kid)
            .finish()
    }
}

/// Generates a private key for `alg` (RSA 2048 for RS*/PS*, P-256 for ES256, P-384 for ES384).
pub fn generate(alg: JwkAlg) -> Result<GeneratedKey, KeyError> {
    let encode = |e: p256::pkcs8::Error| KeyError::Encode(e.to_string());
    let (private_pem, public_jwk) = match alg.key_kind() {
        KeyKind::Rsa => {
            let key =
                rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(KeyError::RsaGenerate)?;
            let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
                .map_err(|e| KeyError::Encode(e.to_string()))?;
            (pem.to_string(), rsa_jwk(&key, alg)?)
        }
        KeyKind::P256 => {
            let key = p256::SecretKey::random(&mut OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(encode)?;
            (pem.to_string(), p256_jwk(&key.public_key(), alg)?)
        }
        KeyKind::P384 => {
            let key = p384::SecretKey::random(&mut OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(encode)?;
            (pem.to_string(), p384_jwk(&key.public_key(), alg)?)
        }
    };
    let kid = public_jwk
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(GeneratedKey {
        private_pem,
        public_jwk,
        kid,
    })
}

/// The public JWK of a private key PEM: PKCS#8 or PKCS#1 for RSA, PKCS#8 or SEC1 for EC.
pub fn public_jwk_from_pem(pem: &str, alg: JwkAlg) -> Result<Value, KeyError> {
    if alg.is_rsa() {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|pkcs8_err| {
                rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|pkcs1_err| format!("PKCS#8: {pkcs8_err}; PKCS#1: {pkcs1_err}"))
            })
            .map_err(|detail| KeyError::BadPem {
                alg,
                expected: "an RSA private key (PKCS#8 or PKCS#1 PEM)",
                detail,
            })?;
        rsa_jwk(&key, alg)
    } else if alg.key_kind() == KeyKind::P256 {
        let key = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|pkcs8_err| {
                p256::SecretKey::from_sec1_pem(pem)
                    .map_err(|sec1_err| format!("PKCS#8: {pkcs8_err}; SEC1: {sec1_err}"))
            })
            .map_err(|detail| KeyError::BadPem {
                alg,
                expected: "a P-256 EC private key (PKCS#8 or SEC1 PEM)",
                detail,
            })?;
        p256_jwk(&key.public_key(), alg)
    } else {
        let key = p384::SecretKey::from_pkcs8_pem(pem)
            .or_else(|pkcs8_err| {
                p384::SecretKey::from_sec1_pem(pem)
                    .map_err(|sec1_err| format!("PKCS#8: {pkcs8_err}; SEC1: {sec1_err}"))
            })
            .map_err(|detail| KeyError::BadPem {
                alg,
                expected: "a P-384 EC private key (PKCS#8 or SEC1 PEM)",
                detail,
            })?;
        p384_jwk(&key.public_key(), alg)
    }
}

/// The jsonwebtoken signing key of a private key PEM for `alg`, from every PEM form that
/// [`public_jwk_from_pem`] reads (jsonwebtoken itself reads PKCS#8 only for EC keys).
pub fn encoding_key(pem: &str, alg: JwkAlg) -> Result<jsonwebtoken::EncodingKey, KeyError> {
    use p256::pkcs8::EncodePrivateKey;
    let bad = |detail: String| KeyError::BadPem {
        alg,
        expected: match alg.key_kind() {
            KeyKind::Rsa => "an RSA private key (PKCS#8 or PKCS#1 PEM)",
            KeyKind::P256 => "a P-256 EC private key (PKCS#8 or SEC1 PEM)",
            KeyKind::P384 => "a P-384 EC private key (PKCS#8 or SEC1 PEM)",
        },
        detail,
    };
    let der = match alg.key_kind() {
        KeyKind::Rsa => {
            return jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| bad(e.to_string()))
        }
        KeyKind::P256 => p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .map_err(|e| bad(e.to_string()))?
            .to_pkcs8_der(),
        KeyKind::P384 => p384::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p384::SecretKey::from_sec1_pem(pem))
            .map_err(|e| bad(e.to_string()))?
            .to_pkcs8_der(),
    }
    .map_err(|e| KeyError::Encode(e.to_string()))?;
    Ok(jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()))
}

/// The kind of a private key PEM (RSA, P-256 or P-384), or `None` when it is none of them.
pub fn key_kind_of_pem(pem: &str) -> Option<KeyKind> {
    [KeyKind::Rsa, KeyKind::P256, KeyKind::P384]
        .into_iter()
        .find(|kind| public_jwk_from_pem(pem, kind.default_alg()).is_ok())
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order, without
/// whitespace, base64url without padding.
pub fn thumbprint(jwk: &Value) -> Result<String, KeyError> {
    let kty = str_member(jwk, "kty")?;
    let required: &[&'static str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        other => return Err(KeyError::JwkUnsupportedKty(other.to_owned())),
    };
    // Built by hand rather than through serde_json::Map: if any crate in the build enables
    // serde_json's `preserve_order`, a Map would no longer sort its keys.
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let value = str_member(jwk, name)?;
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// A JWKS holding one key: what gets registered at the provider.
pub fn public_jwks(jwk: Value) -> Value {
    json!({ "keys": [jwk] })
}

fn str_member<'a>(jwk: &'a Value, name: &'static str) -> Result<&'a str, KeyError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(KeyError::JwkMissingMember(name))
}

fn rsa_jwk(key: &rsa::RsaPrivateKey, alg: JwkAlg) -> Result<Value, KeyError> {
    let bits = key.size() * 8;
    if bits < RSA_BITS {
        return Err(KeyError::RsaTooSmall { bits });
    }
    with_kid(json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        "alg": alg.as_str(),
        "use": "sig",
    }))
}

fn p256_jwk(key: &p256::PublicKey, alg: JwkAlg) -> Result<Value, KeyError> {
    let point = key.to_encoded_point(false);
    ec_jwk(
        "P-256",
        point.x().map(|x| &x[..]),
        point.y().map(|y| &y[..]),
        alg,
    )
}

fn p384_jwk(key: &p384::PublicKey, alg: JwkAlg) -> Result<Value, KeyError> {
    use p384::elliptic_curve::sec1::ToEncodedPoint as _;
    let point = key.to_encoded_point(false);
    ec_jwk(
        "P-384",
        point.x().map(|x| &x[..]),
        point.y().map(|y| &y[..]),
        alg,
    )
}

fn ec_jwk(crv: &str, x: Option<&[u8]>, y: Option<&[u8]>, alg: JwkAlg) -> Result<Value, KeyError> {
    let (Some(x), Some(y)) = (x, y) else {
        // Only the identity point lacks coordinates, and a public key is never the identity.
        return Err(KeyError::Encode("EC public key has no coordinates".into()));
    };
    with_kid(json!({
        "kty": "EC",
        "crv": crv,
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
        "alg": alg.as_str(),
        "use": "sig",
    }))
}

/// Adds `kid` = RFC 7638 thumbprint to a JWK object built by this module.
fn with_kid(mut jwk: Value) -> Result<Value, KeyError> {
    let kid = thumbprint(&jwk)?;
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), Value::String(kid));
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, DecodingKey, Header, Validation};

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_rejects_incomplete_jwk() {
        assert!(matches!(
            thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "a"})),
            Err(KeyError::JwkMissingMember("y"))
        ));
        assert!(matches!(
            thumbprint(&json!({"kty": "weird"})),
            Err(KeyError::JwkUnsupportedKty(_))
        ));
    }

    #[test]
    fn alg_parses_and_prints() {
        for alg in JwkAlg::ALL {
            assert_eq!(alg.to_string().parse::<JwkAlg>().unwrap(), alg);
        }
        assert!("HS256".parse::<JwkAlg>().is_err());
    }

    fn round_trip(alg: JwkAlg) {
        let key = generate(alg).unwrap();
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(key.public_jwk["kid"], key.kid);
        assert_eq!(key.public_jwk["alg"], alg.as_str());
        assert_eq!(key.public_jwk["use"], "sig");
        assert_eq!(thumbprint(&key.public_jwk).unwrap(), key.kid);
        // Reading the PEM back yields the same public key.
        assert_eq!(
            public_jwk_from_pem(&key.private_pem, alg).unwrap(),
            key.public_jwk
        );

        let enc = encoding_key(&key.private_pem, alg).unwrap();
        let mut header = Header::new(alg.jsonwebtoken_alg());
        header.kid = Some(key.kid.clone());
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let token = encode(&header, &json!({"sub": "x", "exp": exp}), &enc).unwrap();

        let printed = public_jwks(key.public_jwk.clone()).to_string();
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&printed).unwrap();
        let jwk = set.find(&key.kid).unwrap();
        let dec = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(alg.jsonwebtoken_alg());
        validation.validate_aud = false;
        let data = decode::<Value>(&token, &dec, &validation).unwrap();
        assert_eq!(data.claims["sub"], "x");
    }

    #[test]
    fn every_algorithm_round_trips_through_its_public_jwk() {
        for alg in JwkAlg::ALL {
            round_trip(alg);
        }
    }

    #[test]
    fn the_kind_of_a_pem_is_recognised() {
        for alg in [JwkAlg::RS512, JwkAlg::ES256, JwkAlg::ES384] {
            let key = generate(alg).unwrap();
            assert_eq!(
                key_kind_of_pem(&key.private_pem),
                Some(alg.key_kind()),
                "{alg}"
            );
        }
        assert_eq!(key_kind_of_pem("garbage"), None);
        let p384 = generate(JwkAlg::ES384).unwrap();
        assert_eq!(p384.public_jwk["crv"], "P-384");
        let err = public_jwk_from_pem(&p384.private_pem, JwkAlg::ES256).unwrap_err();
        assert!(err.to_string().contains("P-256"), "{err}");
    }

    #[test]
    fn pem_of_wrong_type_is_a_clear_error() {
        let ec = generate(JwkAlg::ES256).unwrap();
        let err = public_jwk_from_pem(&ec.private_pem, JwkAlg::RS256).unwrap_err();
        assert!(err.to_string().contains("RSA private key"), "{err}");
        assert!(public_jwk_from_pem("garbage", JwkAlg::ES256).is_err());
    }

    #[test]
    fn reads_sec1_and_pkcs1_pems() {
        let ec = p256::SecretKey::random(&mut OsRng);
        let sec1 = ec.to_sec1_pem(LineEnding::LF).unwrap();
        let jwk = public_jwk_from_pem(&sec1, JwkAlg::ES256).unwrap();
        assert_eq!(jwk["crv"], "P-256");
        assert!(encoding_key(&sec1, JwkAlg::ES256).is_ok());
        let ec384 = p384::SecretKey::random(&mut OsRng);
        let sec1 = ec384.to_sec1_pem(LineEnding::LF).unwrap();
        assert_eq!(
            public_jwk_from_pem(&sec1, JwkAlg::ES384).unwrap()["crv"],
            "P-384"
        );
        assert!(encoding_key(&sec1, JwkAlg::ES384).is_ok());

        let gen = generate(JwkAlg::RS256).unwrap();
        let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(&gen.private_pem).unwrap();
        let pkcs1 =
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&rsa_key, LineEnding::LF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let jwk = public_jwk_from_pem(&pkcs1, JwkAlg::PS256).unwrap();
        assert_eq!(jwk["n"], gen.public_jwk["n"]);
        assert_eq!(jwk["alg"], "PS256");
    }
}
