//! How the gateway authenticates at the token endpoint: client_secret_basic, client_secret_post
//! or private_key_jwt (RFC 7523; neither oauth2 nor openidconnect implements it, see oauth2-rs
//! PR #217), signed with jsonwebtoken.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use serde::Serialize;

use crate::config::{ClientAuth, ProviderConfig};
use jwk::JwkAlg;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Assertions are single-use; a minute is plenty for one token request.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// Client credentials, ready to sign requests.
pub enum Credentials {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: String,
        secret: String,
    },
    Jwt {
        id: String,
        key: EncodingKey,
        /// Used when discovery chose none (see [`Credentials::apply`]).
        alg: JwkAlg,
        kid: String,
    },
}

/// Why credentials could not be prepared or used.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("private key cannot be used: {0}")]
    Key(String),
    #[error("cannot sign the client assertion: {0}")]
    Sign(String),
}

/// What one token request carries to authenticate the client.
pub struct Applied {
    pub form: Vec<(&'static str, String)>,
    pub basic: Option<(String, String)>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl Credentials {
    /// Loads the provider's credentials (parses the private key once, at start-up).
    pub fn new(cfg: &ProviderConfig) -> Result<Credentials, ClientAuthError> {
        let id = cfg.client_id.clone();
        Ok(match &cfg.client_auth {
            ClientAuth::SecretBasic(s) => Credentials::Basic {
                id,
                secret: s.expose().clone(),
            },
            ClientAuth::SecretPost(s) => Credentials::Post {
                id,
                secret: s.expose().clone(),
            },
            ClientAuth::PrivateKeyJwt(k) => {
                // One key signs every algorithm of its kind (RS* and PS* alike).
                let key = jwk::encoding_key(k.pem.expose(), k.alg)
                    .map_err(|e| ClientAuthError::Key(e.to_string()))?;
                Credentials::Jwt {
                    id,
                    key,
                    alg: k.alg,
                    kid: k.kid.clone(),
                }
            }
        })
    }

    /// The form fields and Basic credentials for one request to `token_endpoint`. A client
    /// assertion is signed with `alg` (what discovery chose for this provider, see
    /// `discovery::assertion_alg`), else with the configured or default one.
    pub fn apply(
        &self,
        token_endpoint: &str,
        now: u64,
        alg: Option<JwkAlg>,
    ) -> Result<Applied, ClientAuthError> {
        Ok(match self {
            Credentials::Basic { id, secret } => Applied {
                form: Vec::new(),
                // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
                basic: Some((form_encode(id), form_encode(secret))),
            },
            Credentials::Post { id, secret } => Applied {
                form: vec![("client_id", id.clone()), ("client_secret", secret.clone())],
                basic: None,
            },
            Credentials::Jwt {
                id,
                key,
                alg: default,
                kid,
            } => {
                let alg = alg.filter(|a| a.key_kind() == default.key_kind());
                let mut header = Header::new(alg.unwrap_or(*default).jsonwebtoken_alg());
                header.kid = Some(kid.clone());
                let mut jti = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut jti);
                let claims = AssertionClaims {
                    iss: id,
                    sub: id,
                    aud: token_endpoint,
                    jti: URL_SAFE_NO_PAD.encode(jti),
                    iat: now,
                    exp: now + ASSERTION_LIFETIME_SECS,
                };
                let jwt = jsonwebtoken::encode(&header, &claims, key)
                    .map_err(|e| ClientAuthError::Sign(e.to_string()))?;
                Applied {
                    form: vec![
                        ("client_id", id.clone()),
                        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
                        ("client_assertion", jwt),
                    ],
                    basic: None,
                }
            }
        })
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
