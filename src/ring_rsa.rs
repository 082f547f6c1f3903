//! RSA signature checks with ring, for both JOSE stacks the gateway uses: openidconnect's ID
//! tokens (through [`crate::oidc::ProviderJwk`]) and jsonwebtoken's bearer and logout tokens
//! (through the [`CryptoProvider`] that [`install`] sets). Both crates verify RSA with the `rsa`
//! crate, whose `num-bigint-dig` arithmetic was a quarter of a login's CPU (BENCHMARKS.md);
//! ring, already here for rustls, does the same check several times faster. Keys are held to
//! 2048–8192 bits and PSS salts to the hash length (RFC 7518 §3.5), as ring's parameters say.
//! Signing and every non-RSA algorithm stay with jsonwebtoken's RustCrypto provider.

use std::sync::OnceLock;

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self as sig, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature::{self, RsaParameters, RsaPublicKeyComponents};

/// The RSA signature schemes of JWA (RFC 7518 §3.3 and §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl RsaScheme {
    fn parameters(self) -> &'static RsaParameters {
        match self {
            RsaScheme::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaScheme::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            RsaScheme::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            RsaScheme::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            RsaScheme::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            RsaScheme::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    fn from_jsonwebtoken(alg: Algorithm) -> Option<RsaScheme> {
        Some(match alg {
            Algorithm::RS256 => RsaScheme::Rs256,
            Algorithm::RS384 => RsaScheme::Rs384,
            Algorithm::RS512 => RsaScheme::Rs512,
            Algorithm::PS256 => RsaScheme::Ps256,
            Algorithm::PS384 => RsaScheme::Ps384,
            Algorithm::PS512 => RsaScheme::Ps512,
            _ => return None,
        })
    }
}

/// Whether `signature` is `scheme`'s signature of `message` under the public key (`n`, `e`),
/// both big-endian. Leading zero bytes are allowed (some providers pad `n`; ring would refuse).
pub fn verify(scheme: RsaScheme, n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let key = RsaPublicKeyComponents {
        n: strip_leading_zeros(n),
        e: strip_leading_zeros(e),
    };
    key.verify(scheme.parameters(), message, signature).is_ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Makes jsonwebtoken verify RSA with ring in this process. Idempotent; called first thing by
/// the CLI and again before each use (key conversion, providers). Were jsonwebtoken's default
/// already fixed by then, tokens would still be checked, by RustCrypto (and a warning says so).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let mut first = false;
    let provider = PROVIDER.get_or_init(|| {
        first = true;
        CryptoProvider {
            signer_factory: RUST_CRYPTO.signer_factory,
            verifier_factory: new_verifier,
            key_utils: RUST_CRYPTO.key_utils.clone(),
        }
    });
    if first && CryptoProvider::install_default(provider).is_err() {
        // Still checked, by RustCrypto, which also takes RSA keys under 2048 bits.
        tracing::warn!("jsonwebtoken's crypto provider was set before the gateway's: RSA tokens are checked without ring");
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let rust_crypto = RUST_CRYPTO.verifier_factory;
    let Some(scheme) = RsaScheme::from_jsonwebtoken(*alg) else {
        return rust_crypto(alg, key);
    };
    if key.family() != AlgorithmFamily::Rsa {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    match key.kind() {
        // Keys from a JWKS. A PEM or DER key (never the gateway's own use) keeps RustCrypto.
        DecodingKeyKind::RsaModulusExponent { n, e } => Ok(Box::new(RingRsaVerifier {
            alg: *alg,
            scheme,
            n: n.clone(),
            e: e.clone(),
        })),
        DecodingKeyKind::SecretOrDer(_) => rust_crypto(alg, key),
    }
}

struct RingRsaVerifier {
    alg: Algorithm,
    scheme: RsaScheme,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Verifier<Vec<u8>> for RingRsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), sig::Error> {
        if verify(self.scheme, &self.n, &self.e, msg, signature) {
            Ok(())
        } else {
            Err(sig::Error::new())
        }
    }
}

impl JwtVerifier for RingRsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, EncodingKey};

    use super::*;

    const ALL: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    fn key() -> (EncodingKey, DecodingKey) {
        let generated = jwk::generate(jwk::JwkAlg::RS256).expect("RSA key");
        let jwk = &generated.public_jwk;
        let public = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let private = EncodingKey::from_rsa_pem(generated.private_pem.as_bytes()).unwrap();
        (private, public)
    }

    fn signature(private: &EncodingKey, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        let b64 = jsonwebtoken::crypto::sign(message, private, alg).unwrap();
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b64).unwrap()
    }

    fn ring_says(alg: Algorithm, public: &DecodingKey, message: &[u8], sig: &[u8]) -> bool {
        new_verifier(&alg, public)
            .unwrap()
            .verify(message, &sig.to_vec())
            .is_ok()
    }

    fn rust_crypto_says(alg: Algorithm, public: &DecodingKey, message: &[u8], sig: &[u8]) -> bool {
        (RUST_CRYPTO.verifier_factory)(&alg, public)
            .unwrap()
            .verify(message, &sig.to_vec())
            .is_ok()
    }

    #[test]
    fn ring_agrees_with_rust_crypto_on_every_rsa_algorithm() {
        let (private, public) = key();
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
        for alg in ALL {
            let good = signature(&private, alg, message);
            assert!(ring_says(alg, &public, message, &good), "{alg:?} good");
            assert!(
                rust_crypto_says(alg, &public, message, &good),
                "{alg:?} good"
            );
            let mut flipped = good.clone();
            flipped[17] ^= 1;
            let tampered = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ";
            for (msg, sig) in [(&message[..], &flipped[..]), (&tampered[..], &good[..])] {
                assert!(!ring_says(alg, &public, msg, sig), "{alg:?} bad");
                assert!(!rust_crypto_says(alg, &public, msg, sig), "{alg:?} bad");
            }
            assert!(
                !ring_says(alg, &public, message, &good[1..]),
                "{alg:?} short"
            );
        }
    }

    #[test]
    fn a_signature_of_one_algorithm_does_not_pass_as_another() {
        let (private, public) = key();
        let message = b"header.payload";
        let rs256 = signature(&private, Algorithm::RS256, message);
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            assert!(!ring_says(alg, &public, message, &rs256), "{alg:?}");
        }
    }

    #[test]
    fn a_modulus_with_a_leading_zero_byte_is_the_same_key() {
        let (private, public) = key();
        let DecodingKeyKind::RsaModulusExponent { n, e } = public.kind() else {
            panic!("components")
        };
        let padded: Vec<u8> = std::iter::once(0).chain(n.iter().copied()).collect();
        let message = b"header.payload";
        let sig = signature(&private, Algorithm::RS256, message);
        assert!(verify(RsaScheme::Rs256, &padded, e, message, &sig));
        assert!(verify(RsaScheme::Rs256, n, e, message, &sig));
    }

    /// A key of `bits` bits made with the `rsa` crate, which signs whatever ring will not.
    fn small_key(bits: usize) -> (rsa::RsaPrivateKey, DecodingKey) {
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let public =
            DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        (key, public)
    }

    // That the gateway's process really checks with ring (jsonwebtoken's default is set once
    // per process, so a unit test here cannot tell) is shown end to end: tests/it/id_token.rs
    // and tests/it/bearer.rs refuse tokens signed with a published 1024-bit key.
    #[test]
    fn keys_under_2048_bits_are_refused() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let (key, public) = small_key(1024);
        let private = EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes());
        let message = b"header.payload";
        let sig = signature(&private, Algorithm::RS256, message);
        assert!(rust_crypto_says(Algorithm::RS256, &public, message, &sig));
        assert!(!ring_says(Algorithm::RS256, &public, message, &sig));
    }
}
