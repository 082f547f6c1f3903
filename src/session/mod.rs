//! Sessions: what a request needs to know about its user, and how it travels in cookies.
//!
//! A session holds the claims that headers and rules use, its expiry times and what refresh and
//! logout need. It is sealed as one value and split into `{name}_0..N` chunks only when it does
//! not fit in one cookie. Anything wrong with the cookies is "no session", never an error page.

pub mod cache;
pub mod codec;
pub mod cookies;
pub mod login_state;
pub mod redis_conn;
pub mod redis_store;
pub mod revocation;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::config::SessionConfig;
pub use codec::Codec;
pub use cookies::RequestCookies;
pub use store::{Handle, LoadError, Loaded, SaveError, SessionStore};

/// One signed-in user's session.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// Name of the provider that authenticated the user.
    #[serde(rename = "p")]
    pub provider: String,
    /// The claims kept for headers and rules (see `claims::retain_for`).
    #[serde(rename = "c")]
    pub claims: Claims,
    /// Unix seconds when the user logged in.
    #[serde(rename = "i")]
    pub created: u64,
    /// Unix seconds of the last activity that was written back to the cookie.
    #[serde(rename = "l")]
    pub last_seen: u64,
    /// Unix seconds after which the session is over whatever happens (max_lifetime).
    #[serde(rename = "x")]
    pub expires: u64,
    /// Unix seconds when the provider's tokens expire (refresh is due).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tokens_expire: Option<u64>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The raw ID token, kept only when the provider has an end_session_endpoint.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub id_token_hint: Option<String>,
    /// The provider's session id (`sid`), which back-channel logout names.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Unix seconds when the last ID token expires: until then a refresh that cannot reach the
    /// provider leaves the session working (it is tried again later).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub id_token_expires: Option<u64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens never reach logs, not even at trace level.
        f.debug_struct("Session")
            .field("provider", &self.provider)
            .field("sub", &self.subject())
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The subject (`sub`) of the user.
    pub fn subject(&self) -> &str {
        self.claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
    }

    /// Whether the session is over at `now`: absolute lifetime or idle timeout passed. The
    /// lifetime is the one in force now as well as the one at login: a reload that shortens
    /// `max_lifetime` shortens every session (and cookie revocations are kept only that long).
    pub fn expired_at(&self, cfg: &SessionConfig, now: u64) -> Option<Miss> {
        let lifetime_now = self.created.saturating_add(cfg.max_lifetime.as_secs());
        if now >= self.expires || now >= lifetime_now {
            Some(Miss::Expired)
        } else if now >= self.last_seen.saturating_add(cfg.idle_timeout.as_secs()) {
            Some(Miss::Idle)
        } else {
            None
        }
    }

    /// Whether activity at `now` should be written back (at most about once a minute, so a busy
    /// user does not cost a cookie re-seal on every request).
    pub fn needs_touch(&self, cfg: &SessionConfig, now: u64) -> bool {
        let step = (cfg.idle_timeout.as_secs() / 10).clamp(1, 60);
        now >= self.last_seen.saturating_add(step)
    }
}

/// Why a request has no usable session. Logged at debug, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    #[error("no session cookie")]
    Absent,
    #[error("more session chunks than allowed")]
    TooManyChunks,
    #[error("session chunks are not contiguous")]
    BadChunks,
    #[error("session cookie does not open: {0}")]
    Unsealable(codec::OpenError),
    #[error("session cookie content is malformed")]
    Malformed,
    #[error("session reached its maximum lifetime")]
    Expired,
    #[error("session idle for too long")]
    Idle,
    #[error("session belongs to another provider")]
    OtherProvider,
    #[error("session is not in the store (logged out, revoked or expired)")]
    Revoked,
}
