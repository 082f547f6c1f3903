//! Entry points for the fuzz targets in `fuzz/` (see fuzz/README.md), compiled only with
//! `--cfg fuzzing`, as `cargo fuzz` builds. They reach the parsers of private modules that see
//! outside input; each is a re-export or a one-call wrapper, with no logic of its own, so the
//! targets exercise exactly the code the gateway runs.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};

use crate::claims::Claims;
use crate::oidc::{Provider, ProviderJwks};

pub use crate::backchannel::{claimed_issuer, logout_token, BackchannelError, LogoutRequest};
pub use crate::forwarded::{
    drop_gateway_set_cookies, is_forwarding, is_gateway_cookie, keep_private,
    set_forwarding_headers, strip_gateway_cookies, strip_identity_headers, trusted,
    IdentityHeaders, Seen,
};
pub use crate::jws::{allowed_algs, JwsError};
pub use crate::request::{query_param, safe_return_path};

/// The callback's check for repeated `state`, `code` or `iss` parameters.
pub fn repeated_param(query: Option<&str>, names: &[&'static str]) -> Option<&'static str> {
    crate::endpoints::login::repeated_param(query, names)
}

/// A JWKS converted as `KeyRing` converts it, then `token` checked against it as `KeyRing`
/// checks a token (key by `kid`, or every key of the algorithm's family).
pub fn jws_check(
    jwks: Arc<ProviderJwks>,
    kid: Option<&str>,
    token: &str,
    validation: &Validation,
) -> Result<Claims, JwsError> {
    crate::jws::check(&crate::jws::decode_keys(jwks), kid, token, validation)
}

/// The [`Validation`] of a bearer access token from `provider` signed with `alg`.
pub fn bearer_validation(provider: &Provider, alg: Algorithm) -> Result<Validation, JwsError> {
    crate::bearer::validation(provider, alg)
}

/// The [`Validation`] of a back-channel logout token from `provider` signed with `alg`.
pub fn logout_validation(provider: &Provider, alg: Algorithm) -> Validation {
    crate::backchannel::validation(provider, alg)
}

/// The logout-token rules beyond signature, issuer and audience.
pub fn logout_claims(
    claims: &Claims,
    skew: u64,
    now: u64,
) -> Result<LogoutRequest, BackchannelError> {
    crate::backchannel::check_claims(claims, skew, now)
}
