//! Test-only switches and records of the development provider: key rotation, deliberate
//! misbehaviour, delays, and what clients sent. Shared with the handlers through an `Arc`; plain
//! std locks and atomics are enough because this never sits on the gateway's hot path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use super::tokens::SigningKey;

/// Ways the provider can be told to break the protocol, to test the relying party's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Misbehaviour {
    /// ID token `iss` is not the issuer.
    WrongIssuer,
    /// ID token `aud` is another client.
    WrongAudience,
    /// `aud` = [client_id, "other"] without `azp`.
    ExtraAudienceNoAzp,
    /// `exp` in the past.
    Expired,
    /// `iat` 10 minutes ahead.
    IssuedInFuture,
    /// `nonce` differs from the one sent.
    WrongNonce,
    /// Signed by a key that is not in the JWKS, with a kid not in the JWKS.
    UnknownKey,
    /// One signature byte flipped.
    BadSignature,
    /// Unsigned token with `alg: none`.
    AlgNone,
    /// `at_hash` does not match the access token.
    AtHashMismatch,
    /// Token endpoint answers 400 invalid_grant with a `<script>` in error_description.
    TokenError,
    /// Token endpoint answers 500.
    TokenServerError,
    /// UserInfo `sub` differs from the ID token's.
    UserinfoSubMismatch,
    /// Discovery document names another issuer.
    DiscoveryIssuerMismatch,
    /// Every endpoint answers 503.
    Unavailable,
    /// ID tokens carry no `sid` (as some providers' do not).
    NoSid,
    /// ID tokens carry a claim `deep` of arrays nested [`NESTED_CLAIM_DEPTH`] deep (a hostile
    /// provider probing the relying party's JSON parser for stack exhaustion).
    DeeplyNestedIdTokenClaim,
    /// UserInfo answers with a claim `deep` of arrays nested [`NESTED_CLAIM_DEPTH`] deep.
    DeeplyNestedUserinfoClaim,
}

/// How deep the `deep` claim of [`Misbehaviour::DeeplyNestedIdTokenClaim`] and
/// [`Misbehaviour::DeeplyNestedUserinfoClaim`] nests. The claim is written as JSON text, never
/// built as a `serde_json::Value`: serialising or dropping a value this deep would exhaust the
/// provider's own stack.
pub const NESTED_CLAIM_DEPTH: usize = 10_000;

/// How a token request authenticated its client (as seen by the provider).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAuthMethod {
    SecretBasic,
    SecretPost,
    PrivateKeyJwt,
    /// No client credentials at all.
    None,
    /// More than one method in one request (refused).
    Several,
}

impl ClientAuthMethod {
    /// The discovery-document name (`client_secret_basic`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::SecretBasic => "client_secret_basic",
            ClientAuthMethod::SecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
            ClientAuthMethod::None => "none",
            ClientAuthMethod::Several => "several",
        }
    }
}

/// One request to the token endpoint, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequestRecord {
    pub grant_type: Option<String>,
    pub auth_method: ClientAuthMethod,
    /// Names of the form fields, in the order received.
    pub form_fields: Vec<String>,
    pub authorization_header: bool,
}

/// The signing keys: the current one (served in the JWKS, signs new tokens) and retired ones
/// (still accepted for `id_token_hint` at logout, which may carry a pre-rotation token).
pub(crate) struct KeyRing {
    pub current: Arc<SigningKey>,
    pub retired: Vec<Arc<SigningKey>>,
}

/// Test controls and records; see the module doc. All methods take `&self`.
pub struct Controls {
    keys: RwLock<KeyRing>,
    /// Made on first use of [`Misbehaviour::UnknownKey`], never published.
    unknown_key: OnceLock<Arc<SigningKey>>,
    misbehaviour: Mutex<Option<Misbehaviour>>,
    delay: Mutex<Duration>,
    expires_in_millis: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    userinfo_calls: AtomicUsize,
    userinfo_extra: Mutex<serde_json::Map<String, serde_json::Value>>,
    token_requests: Mutex<Vec<TokenRequestRecord>>,
    end_session_calls: Mutex<Vec<HashMap<String, String>>>,
    /// (sub, sid) of every completed login, oldest first.
    logins: Mutex<Vec<(String, String)>>,
}

/// A poisoned lock only means a handler panicked mid-update of test bookkeeping; the data is
/// still usable, and refusing service would hide the original panic behind a second one.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Controls {
    pub(crate) fn new(key: SigningKey) -> Controls {
        Controls {
            keys: RwLock::new(KeyRing {
                current: Arc::new(key),
                retired: Vec::new(),
            }),
            unknown_key: OnceLock::new(),
            misbehaviour: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            expires_in_millis: AtomicBool::new(false),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            userinfo_calls: AtomicUsize::new(0),
            userinfo_extra: Mutex::new(serde_json::Map::new()),
            token_requests: Mutex::new(Vec::new()),
            end_session_calls: Mutex::new(Vec::new()),
            logins: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the signing key with a new RS256 key (new kid); the JWKS then serves only the
    /// new key. Generates an RSA key synchronously (~0.1–1 s).
    pub fn rotate_signing_key(&self) {
        self.replace_signing_key(SigningKey::generate());
    }

    /// Like [`Controls::rotate_signing_key`], to a published 1024-bit RSA key: ID tokens and
    /// access tokens are then signed with a key the gateway must not trust.
    pub fn rotate_to_weak_signing_key(&self) {
        self.replace_signing_key(SigningKey::generate_weak());
    }

    fn replace_signing_key(&self, key: Result<SigningKey, jwk::KeyError>) {
        let new_key = match key {
            Ok(k) => Arc::new(k),
            Err(e) => {
                tracing::error!(error = %e, "dev provider: signing key rotation failed");
                return;
            }
        };
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut keys.current, new_key);
        keys.retired.push(old);
    }

    /// The kid of the current signing key.
    pub fn current_kid(&self) -> String {
        self.current_key().kid.clone()
    }

    /// Turns a misbehaviour on (or off with `None`). For [`Misbehaviour::UnknownKey`] the
    /// unpublished key is made here, on the caller's thread, so that the token endpoint does not
    /// spend an RSA key generation (seconds on a loaded machine) inside the gateway's timeout.
    pub fn set_misbehaviour(&self, m: Option<Misbehaviour>) {
        if m == Some(Misbehaviour::UnknownKey) && self.unknown_key.get().is_none() {
            if let Ok(key) = SigningKey::generate() {
                let _ = self.unknown_key.set(Arc::new(key));
            }
        }
        *lock(&self.misbehaviour) = m;
    }

    pub fn misbehaviour(&self) -> Option<Misbehaviour> {
        *lock(&self.misbehaviour)
    }

    /// Every endpoint waits `d` before answering (zero to turn off).
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = d;
    }

    /// Report `expires_in` in milliseconds, as Signicat does.
    pub fn set_expires_in_millis(&self, on: bool) {
        self.expires_in_millis.store(on, Ordering::Relaxed);
    }

    /// Claims that UserInfo answers with over the user's own (a profile that changed since the
    /// login, or a provider whose UserInfo disagrees with its ID token). Empty to turn off.
    pub fn set_userinfo_extra(&self, claims: serde_json::Map<String, serde_json::Value>) {
        *lock(&self.userinfo_extra) = claims;
    }

    /// Requests that reached the JWKS endpoint (including those answered 503).
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// Requests that reached the discovery endpoint (including those answered 503).
    pub fn discovery_fetches(&self) -> usize {
        self.discovery_fetches.load(Ordering::Relaxed)
    }

    /// Requests that reached the UserInfo endpoint (including those answered 503 or 401).
    pub fn userinfo_calls(&self) -> usize {
        self.userinfo_calls.load(Ordering::Relaxed)
    }

    /// Every token endpoint request so far, in order.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        lock(&self.token_requests).clone()
    }

    /// The parameters of every end-session request so far, in order.
    pub fn end_session_calls(&self) -> Vec<HashMap<String, String>> {
        lock(&self.end_session_calls).clone()
    }

    /// Clears misbehaviour and delay, and forgets all counters and records (keys stay).
    pub fn reset(&self) {
        self.set_misbehaviour(None);
        self.set_delay(Duration::ZERO);
        self.set_expires_in_millis(false);
        self.set_userinfo_extra(serde_json::Map::new());
        self.jwks_fetches.store(0, Ordering::Relaxed);
        self.discovery_fetches.store(0, Ordering::Relaxed);
        self.userinfo_calls.store(0, Ordering::Relaxed);
        lock(&self.token_requests).clear();
        lock(&self.end_session_calls).clear();
    }

    // ---- used by the handlers ----

    pub(crate) fn current_key(&self) -> Arc<SigningKey> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .current,
        )
    }

    /// Current and retired keys, newest first.
    pub(crate) fn all_keys(&self) -> Vec<Arc<SigningKey>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(Arc::clone(&keys.current))
            .chain(keys.retired.iter().rev().cloned())
            .collect()
    }

    /// The unpublished key for [`Misbehaviour::UnknownKey`], generated off the async threads
    /// on first use.
    pub(crate) async fn unknown_key(&self) -> Option<Arc<SigningKey>> {
        if let Some(k) = self.unknown_key.get() {
            return Some(Arc::clone(k));
        }
        let generated = tokio::task::spawn_blocking(SigningKey::generate)
            .await
            .ok()?
            .ok()?;
        Some(Arc::clone(
            self.unknown_key.get_or_init(|| Arc::new(generated)),
        ))
    }

    pub(crate) fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    pub(crate) fn expires_in_millis(&self) -> bool {
        self.expires_in_millis.load(Ordering::Relaxed)
    }

    pub(crate) fn userinfo_extra(&self) -> serde_json::Map<String, serde_json::Value> {
        lock(&self.userinfo_extra).clone()
    }

    pub(crate) fn count_jwks_fetch(&self) {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_discovery_fetch(&self) {
        self.discovery_fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_userinfo_call(&self) {
        self.userinfo_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_token_request(&self, r: TokenRequestRecord) {
        lock(&self.token_requests).push(r);
    }

    pub(crate) fn record_end_session(&self, params: HashMap<String, String>) {
        lock(&self.end_session_calls).push(params);
    }

    pub(crate) fn record_login(&self, sub: &str, sid: &str) {
        lock(&self.logins).push((sub.to_owned(), sid.to_owned()));
    }

    /// The provider session ids (`sid` claims) of `sub`'s logins, oldest first: what a
    /// back-channel logout token names.
    pub fn sids_of(&self, sub: &str) -> Vec<String> {
        lock(&self.logins)
            .iter()
            .filter(|(s, _)| s == sub)
            .map(|(_, sid)| sid.clone())
            .collect()
    }
}
