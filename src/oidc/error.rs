//! Errors of the login flow; `respond` renders each as the page or JSON the contract asks for.

use crate::oidc::client_auth::ClientAuthError;
use crate::oidc::verify::IdTokenError;
use crate::session::cookies::TooLarge;
use crate::session::login_state::LoginStateError;

/// Why a login (or a refresh) did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("provider {0} is not ready (discovery or JWKS not loaded yet)")]
    NotReady(String),
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    State(#[from] LoginStateError),
    #[error("callback without code or state")]
    BadCallback,
    #[error("authorization response names another issuer (RFC 9207 iss)")]
    IssuerMismatch,
    #[error("provider answered with error {0:?}")]
    ProviderError(String),
    #[error("token response is invalid: {0}")]
    TokenResponse(String),
    #[error("{0}")]
    IdToken(#[from] IdTokenError),
    #[error("UserInfo: {0}")]
    UserInfo(String),
    #[error("{0}")]
    SessionTooLarge(#[from] TooLarge),
    #[error("client authentication: {0}")]
    ClientAuth(#[from] ClientAuthError),
    /// The ID token lacks the `acr` or the recent `auth_time` the login asked for.
    #[error("{0}")]
    Assurance(&'static str),
}

/// How the client sees a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// 503 with Retry-After: try again later.
    Unavailable,
    /// 401 with a link to start again.
    Rejected,
    /// 500: the gateway's configuration cannot hold this session.
    Internal,
}

impl LoginError {
    /// The class of answer this error gets.
    pub fn failure(&self) -> LoginFailure {
        match self {
            LoginError::NotReady(_) | LoginError::Unavailable(_) => LoginFailure::Unavailable,
            LoginError::SessionTooLarge(_) | LoginError::ClientAuth(_) => LoginFailure::Internal,
            _ => LoginFailure::Rejected,
        }
    }

    /// A short machine-readable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::NotReady(_) => "provider_not_ready",
            LoginError::Unavailable(_) => "provider_unavailable",
            LoginError::State(_) => "invalid_state",
            LoginError::BadCallback => "bad_callback",
            LoginError::IssuerMismatch => "issuer_mismatch",
            LoginError::ProviderError(_) => "provider_error",
            LoginError::TokenResponse(_) => "invalid_token_response",
            LoginError::IdToken(_) => "invalid_id_token",
            LoginError::UserInfo(_) => "invalid_userinfo",
            LoginError::SessionTooLarge(_) => "session_too_large",
            LoginError::ClientAuth(_) => "client_auth",
            LoginError::Assurance(_) => "insufficient_authentication",
        }
    }
}
