//! Per-login state: a short-lived encrypted cookie named after the login's `state`, holding the
//! nonce, the PKCE verifier and where to go afterwards. One cookie per login lets several tabs
//! log in at once; the oldest are dropped beyond `session.max_login_states`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::Codec;
use super::cookies::{delete_cookie, set_cookie, RequestCookies};
use crate::config::SessionConfig;

/// How long a login may take, from redirect to callback.
pub const LOGIN_STATE_TTL_SECS: u64 = 600;

/// What the callback needs to finish one login.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub pkce_verifier: String,
    /// Local path to return to (already validated).
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "p")]
    pub provider: String,
    /// Unix milliseconds: orders logins started within the same second.
    #[serde(rename = "c")]
    pub created_ms: u64,
    /// The `acr` values the login asked for (the ID token's `acr` must be one of them).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub acr: Vec<String>,
    /// The `max_age` the login asked for (the ID token's `auth_time` must be that recent).
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("provider", &self.provider)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// The cookie name for a login's state: `{cookie_name}_login_{id}`, id derived from `state`.
pub fn cookie_name(cfg: &SessionConfig, state: &str) -> String {
    let digest = Sha256::digest(state.as_bytes());
    format!(
        "{}_login_{}",
        cfg.cookie_name,
        URL_SAFE_NO_PAD.encode(&digest[..12])
    )
}

/// `Set-Cookie` values for a new login: the new state cookie, plus deletions of the oldest
/// existing ones (and of any that do not open) so that at most `max_login_states` remain.
pub fn start(
    cfg: &SessionConfig,
    codec: &Codec,
    login: &LoginState,
    cookies: &RequestCookies<'_>,
    now_ms: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut alive: Vec<(u64, &str)> = Vec::new();
    for (name, value) in &cookies.login {
        match open(codec, name, value) {
            Some(s) if now_ms < s.created_ms.saturating_add(LOGIN_STATE_TTL_SECS * 1000) => {
                alive.push((s.created_ms, name))
            }
            _ => out.push(delete_cookie(cfg, (*name).to_owned())),
        }
    }
    alive.sort_unstable();
    let keep = cfg.max_login_states.saturating_sub(1);
    let excess = alive.len().saturating_sub(keep);
    for (_, name) in alive.iter().take(excess) {
        out.push(delete_cookie(cfg, (*name).to_owned()));
    }
    let name = cookie_name(cfg, &login.state);
    let json = serde_json::to_vec(login).unwrap_or_default();
    let sealed = codec.seal(&name, &json);
    out.push(set_cookie(cfg, name, sealed, LOGIN_STATE_TTL_SECS));
    out
}

/// The login state for `state` from the request's cookies, if present, intact, unexpired and
/// really for this `state`.
pub fn find(
    cfg: &SessionConfig,
    codec: &Codec,
    cookies: &RequestCookies<'_>,
    state: &str,
    now_ms: u64,
) -> Result<LoginState, LoginStateError> {
    let name = cookie_name(cfg, state);
    let (_, value) = cookies
        .login
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or(LoginStateError::Missing)?;
    let login = open(codec, &name, value).ok_or(LoginStateError::Invalid)?;
    if !constant_time_eq(login.state.as_bytes(), state.as_bytes()) {
        return Err(LoginStateError::Invalid);
    }
    if now_ms >= login.created_ms.saturating_add(LOGIN_STATE_TTL_SECS * 1000) {
        return Err(LoginStateError::Expired);
    }
    Ok(login)
}

fn open(codec: &Codec, name: &str, value: &str) -> Option<LoginState> {
    let plain = codec.open(name, value).ok()?;
    serde_json::from_slice(&plain).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why the callback has no usable login state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginStateError {
    #[error("no login in progress for this state (already used, expired or from another browser)")]
    Missing,
    #[error("login state cookie is invalid")]
    Invalid,
    #[error("login took longer than 10 minutes")]
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SameSite, Secret, SessionStoreKind};
    use std::time::Duration;

    fn cfg() -> SessionConfig {
        SessionConfig {
            cookie_name: "gw".into(),
            keys: Secret::new(vec![[3; 32]]),
            secure: false,
            same_site: SameSite::Lax,
            idle_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(600),
            store: SessionStoreKind::Cookie,
            revocation: crate::config::RevocationKind::Memory,
            max_revocations: 100,
            max_login_states: 3,
            max_chunks: 4,
        }
    }

    fn login(state: &str, created_ms: u64) -> LoginState {
        LoginState {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/app".into(),
            provider: "dev".into(),
            created_ms,
            acr: Vec::new(),
            max_age: None,
        }
    }

    fn as_header(set: &[String]) -> String {
        set.iter()
            .filter_map(|s| cookie::Cookie::parse(s.as_str()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn the_callback_finds_its_state_and_only_its_state() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let set = start(
            &cfg,
            &codec,
            &login("abc", 10),
            &RequestCookies::default(),
            10,
        );
        let header = as_header(&set);
        let cookies = RequestCookies::parse(std::iter::once(header.as_bytes()), "gw", 4);
        assert_eq!(
            find(&cfg, &codec, &cookies, "abc", 20).unwrap(),
            login("abc", 10)
        );
        assert_eq!(
            find(&cfg, &codec, &cookies, "abd", 20),
            Err(LoginStateError::Missing)
        );
        assert_eq!(
            find(&cfg, &codec, &cookies, "abc", 10 + 600_000),
            Err(LoginStateError::Expired)
        );
    }

    #[test]
    fn the_oldest_states_are_dropped_beyond_the_limit() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let mut jar: Vec<String> = Vec::new();
        for (i, state) in ["s1", "s2", "s3", "s4"].iter().enumerate() {
            let header = as_header(&jar);
            let cookies = RequestCookies::parse(std::iter::once(header.as_bytes()), "gw", 4);
            let set = start(
                &cfg,
                &codec,
                &login(state, 100 + i as u64),
                &cookies,
                100 + i as u64,
            );
            // Apply Set-Cookie like a browser: deletions remove, others add.
            for s in set {
                let c = cookie::Cookie::parse(s.clone()).unwrap();
                jar.retain(|j| {
                    cookie::Cookie::parse(j.as_str())
                        .map(|k| k.name() != c.name())
                        .unwrap_or(true)
                });
                if !c.value().is_empty() {
                    jar.push(s);
                }
            }
        }
        assert_eq!(jar.len(), 3);
        let header = as_header(&jar);
        let cookies = RequestCookies::parse(std::iter::once(header.as_bytes()), "gw", 4);
        assert!(find(&cfg, &codec, &cookies, "s1", 110).is_err());
        assert!(find(&cfg, &codec, &cookies, "s4", 110).is_ok());
    }
}
