//! The provider's shared state: configuration, registered clients and the in-memory grant store
//! (pending logins, authorization codes, access and refresh tokens, seen assertion `jti`s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;

use super::controls::{Controls, Misbehaviour};
use super::http::json_response;
use super::users::DevUser;
use super::DevClient;

pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";
pub(crate) const AUTHORIZE_PATH: &str = "/authorize";
pub(crate) const LOGIN_PATH: &str = "/authorize/login";
pub(crate) const TOKEN_PATH: &str = "/token";
pub(crate) const USERINFO_PATH: &str = "/userinfo";
pub(crate) const END_SESSION_PATH: &str = "/logout";

/// How long the login page may stay open before its transaction is forgotten.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Authorization codes live 60 s (RFC 6749 recommends at most 10 minutes).
pub(crate) const CODE_TTL: Duration = Duration::from_secs(60);
pub(crate) const REFRESH_TTL: Duration = Duration::from_secs(12 * 3600);

pub(crate) struct RegisteredClient {
    pub client: DevClient,
    /// Parsed from `DevClientAuth::PrivateKeyJwt` at start, so a bad JWKS fails `start`.
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
}

pub(crate) struct Provider {
    pub issuer: String,
    pub base_url: String,
    pub clients: HashMap<String, RegisteredClient>,
    pub id_token_lifetime: Duration,
    pub access_token_lifetime: Duration,
    pub controls: Arc<Controls>,
    store: Mutex<Store>,
}

/// What a completed login established; carried from code to refresh token.
#[derive(Clone)]
pub(crate) struct Authn {
    pub user: &'static DevUser,
    pub client_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: u64,
    pub sid: String,
}

/// An authorize request waiting on the login page.
pub(crate) struct PendingLogin {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub expires: Instant,
}

pub(crate) struct CodeGrant {
    pub authn: Authn,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires: Instant,
}

pub(crate) struct AccessGrant {
    pub user: &'static DevUser,
    pub expires: Instant,
}

pub(crate) struct RefreshGrant {
    pub authn: Authn,
    pub expires: Instant,
}

#[derive(Default)]
pub(crate) struct Store {
    pub pending: HashMap<String, PendingLogin>,
    pub codes: HashMap<String, CodeGrant>,
    pub access: HashMap<String, AccessGrant>,
    pub refresh: HashMap<String, RefreshGrant>,
    /// Client assertion `jti`s with their `exp`, to refuse replays until they expire anyway.
    pub assertion_jtis: HashMap<String, u64>,
}

impl Store {
    /// Drops everything expired, so a long demo run does not grow without bound.
    fn purge(&mut self) {
        let now = Instant::now();
        let now_s = now_secs();
        self.pending.retain(|_, p| p.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.access.retain(|_, a| a.expires > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.assertion_jtis.retain(|_, exp| *exp >= now_s);
    }
}

impl Provider {
    pub fn new(
        issuer: String,
        base_url: String,
        clients: HashMap<String, RegisteredClient>,
        id_token_lifetime: Duration,
        access_token_lifetime: Duration,
        controls: Arc<Controls>,
    ) -> Provider {
        Provider {
            issuer,
            base_url,
            clients,
            id_token_lifetime,
            access_token_lifetime,
            controls,
            store: Mutex::new(Store::default()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The store, with expired entries already dropped.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        let mut s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        s.purge();
        s
    }

    /// Applies the test delay, then refuses with 503 while [`Misbehaviour::Unavailable`] is set.
    /// Every handler calls this first (after recording what it must record).
    pub async fn gate(&self) -> Result<(), Response> {
        let delay = self.controls.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.controls.misbehaviour() == Some(Misbehaviour::Unavailable) {
            return Err(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "temporarily_unavailable"}),
            ));
        }
        Ok(())
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
