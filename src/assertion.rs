//! Signed identity assertions: on routes with `assertion = true` the upstream receives
//! `X-Auth-Assertion`, a short-lived JWT signed with `server.assertion_key_file`, so that an
//! application able to check a signature need not trust network placement alone (the same idea
//! as Google IAP's `x-goog-iap-jwt-assertion` and Cloudflare Access's `Cf-Access-Jwt-Assertion`).
//!
//! Claims: `iss` = the gateway's public URL, `aud` = the route name, `iat`, `exp` (60 s later),
//! `sub`, and the claims the route forwards as headers (top-level claims of dotted paths, and
//! each JSONPath result under its query text). The public key is served at
//! `/oauth2/jwks.json`. A signed assertion is cached per route and identity for half its
//! lifetime, so a busy user costs one signature every 30 s per route, not one per request.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use moka::future::Cache;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::claims::{ClaimPath, Claims};
use crate::config::{PrivateKey, RouteConfig};

/// The header the upstream reads.
pub const HEADER: &str = "X-Auth-Assertion";
/// Lifetime of one assertion: long enough for clock differences, short enough that a copied
/// header is of little use.
pub const LIFETIME: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: u64 = 10_000;

/// Why the signer could not be built or an assertion not signed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AssertionError {
    #[error("assertion key cannot be used: {0}")]
    Key(String),
    #[error("cannot sign the identity assertion: {0}")]
    Sign(String),
}

/// Signs identity assertions and publishes the public key.
pub struct AssertionSigner {
    key: EncodingKey,
    header: Header,
    issuer: String,
    /// `{"keys":[...]}` as served at `/oauth2/jwks.json`.
    jwks: String,
    cache: Cache<[u8; 32], Arc<str>>,
}

impl AssertionSigner {
    /// Loads the key (once, at start-up) for assertions issued by `issuer`.
    pub fn new(key: &PrivateKey, issuer: &str) -> Result<AssertionSigner, AssertionError> {
        let pem = key.pem.expose();
        let encoding =
            jwk::encoding_key(pem, key.alg).map_err(|e| AssertionError::Key(e.to_string()))?;
        let public = jwk::public_jwk_from_pem(pem, key.alg)
            .map_err(|e| AssertionError::Key(e.to_string()))?;
        let mut header = Header::new(key.alg.jsonwebtoken_alg());
        header.kid = Some(key.kid.clone());
        Ok(AssertionSigner {
            key: encoding,
            header,
            issuer: issuer.to_owned(),
            jwks: jwk::public_jwks(public).to_string(),
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(LIFETIME / 2)
                .build(),
        })
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for this route and identity: from the cache while it has at least half its
    /// lifetime left, else freshly signed.
    pub async fn assertion(
        &self,
        route: &RouteConfig,
        claims: &Claims,
    ) -> Result<Arc<str>, AssertionError> {
        let body = forwarded_claims(route, claims);
        let mut hasher = Sha256::new();
        hasher.update((route.index as u64).to_be_bytes());
        hasher.update(Value::Object(body.clone()).to_string().as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        self.cache
            .try_get_with(digest, async { self.sign(route, body) })
            .await
            .map_err(|e| (*e).clone())
    }

    fn sign(&self, route: &RouteConfig, mut body: Claims) -> Result<Arc<str>, AssertionError> {
        let now = crate::clock::now();
        body.insert("iss".into(), json!(self.issuer));
        body.insert("aud".into(), json!(route.name));
        body.insert("iat".into(), json!(now));
        body.insert("exp".into(), json!(now + LIFETIME.as_secs()));
        jsonwebtoken::encode(&self.header, &Value::Object(body), &self.key)
            .map(Arc::from)
            .map_err(|e| AssertionError::Sign(e.to_string()))
    }
}

/// `sub` plus the claims behind the route's header rules, as the session keeps them.
fn forwarded_claims(route: &RouteConfig, claims: &Claims) -> Claims {
    let mut out = Claims::new();
    if let Some(sub) = claims.get("sub") {
        out.insert("sub".into(), sub.clone());
    }
    for path in route.headers.iter().flat_map(|h| h.paths.iter()) {
        let key = match path {
            ClaimPath::Dotted { segments, .. } => segments.first().map(String::as_str),
            ClaimPath::Query { text, .. } => Some(text.as_str()),
        };
        // Protocol claims of the assertion itself are the gateway's, never the provider's.
        let Some(key) = key.filter(|k| !matches!(*k, "iss" | "aud" | "iat" | "exp" | "nbf")) else {
            continue;
        };
        if let Some(v) = claims.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    out
}

/// The assertion for a route with `assertion = true` (`None` without a signer, which `check`
/// rules out by requiring `server.assertion_key_file`).
pub async fn for_route(
    signer: Option<&AssertionSigner>,
    route: &RouteConfig,
    claims: &Claims,
) -> Result<Option<Arc<str>>, AssertionError> {
    match signer {
        Some(s) => s.assertion(route, claims).await.map(Some),
        None => Ok(None),
    }
}
