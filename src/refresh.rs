//! Refreshing a session whose provider tokens have expired, with one refresh token grant per
//! session however many of its requests arrive at once.
//!
//! A session is due when it holds a refresh token and its tokens (the access token's
//! `expires_in`, or the ID token's `exp` if sooner) have expired. The refresh validates what the
//! provider returns like a login does, re-evaluates the claim paths once ([`retain_for`]) and
//! yields the session to seal into the response. Concurrent requests carrying the same old
//! cookie share one refresh through a moka cache keyed by a hash of the refresh token; the
//! outcome is held for [`HOLD`] so that requests still carrying the old cookie (the provider may
//! have rotated the refresh token) reuse it instead of presenting a spent token.
//!
//! This module decides nothing about responses: the proxy maps [`RefreshError`] to a login
//! redirect, a 401 or a 503 through `respond`.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit;
use crate::claims::{retain_for, ClaimPath, Claims};
use crate::config::SessionConfig;
use crate::metrics::Metrics;
use crate::oidc::flow::Tokens;
use crate::oidc::LoginFailure;
use crate::oidc::Provider;
use crate::session::{Codec, Handle, LoadError, RequestCookies, SaveError, Session, SessionStore};

/// How long a refresh outcome is reused for requests that still carry the old cookie.
pub const HOLD: Duration = Duration::from_secs(30);

/// The shortest token lifetime the gateway believes. A provider (or a wrong `expires_in_unit`)
/// announcing a few milliseconds would otherwise make every request of a user a refresh.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 5;

/// Why a session could not be refreshed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// The provider could not be asked (down, timed out, 5xx): the session stays, this request
    /// gets 503.
    #[error("provider unavailable during refresh")]
    Unavailable,
    /// The provider refused, or what it returned is invalid: the session is over.
    #[error("refresh rejected ({0})")]
    Rejected(&'static str),
    /// The session store (Redis) did not answer: 503, the session stays.
    #[error("session store unavailable during refresh")]
    Store,
}

/// A server-side session being refreshed: where it is stored.
pub struct Stored<'a> {
    pub cfg: &'a SessionConfig,
    pub store: &'a SessionStore,
    pub codec: &'a Codec,
    pub handle: &'a Handle,
}

/// How long one instance may hold a session's refresh lock (a crashed holder frees it then).
const LOCK_TTL: Duration = Duration::from_secs(30);

/// How often an instance waiting on another's refresh looks at the stored session.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// A settled refresh, as shared between concurrent requests.
#[derive(Clone)]
enum Settled {
    Refreshed(Arc<Session>),
    Rejected(&'static str),
}

/// Single-flight refreshes with a short memory of their outcomes.
#[derive(Clone)]
pub struct Refresher {
    /// Key: SHA-256 of provider name and refresh token (no token is kept as a key).
    outcomes: Cache<[u8; 32], Settled>,
}

impl Default for Refresher {
    fn default() -> Self {
        Refresher::new()
    }
}

impl Refresher {
    /// An empty refresher.
    pub fn new() -> Refresher {
        Refresher {
            outcomes: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(HOLD)
                .build(),
        }
    }

    /// Refreshes `session` at `provider`, or joins the refresh already running for the same
    /// refresh token. The returned session still has to be sealed into the response.
    pub async fn refresh(
        &self,
        provider: &Provider,
        kept_paths: &[ClaimPath],
        session: &Session,
        metrics: &Metrics,
        now: u64,
    ) -> Result<Session, RefreshError> {
        let Some(refresh_token) = session.refresh_token.as_deref() else {
            return Err(RefreshError::Rejected("no_refresh_token"));
        };
        let key = cache_key(provider.name(), refresh_token);
        // Unavailability is an `Err`, which moka hands to every waiter but does not keep: the
        // next request tries again. Success and rejection are kept for HOLD.
        let settled = self
            .outcomes
            .try_get_with(key, async {
                match provider
                    .refresh_tokens(refresh_token, &session.claims)
                    .await
                {
                    Ok(r) => {
                        let fresh = renewed(provider, kept_paths, session, r, now);
                        audit::refreshed(metrics, provider.name(), session.subject());
                        Ok(Settled::Refreshed(Arc::new(fresh)))
                    }
                    Err(e) => {
                        audit::refresh_failed(
                            metrics,
                            provider.name(),
                            session.subject(),
                            e.reason(),
                            &e,
                        );
                        match e.failure() {
                            LoginFailure::Unavailable => Err(RefreshError::Unavailable),
                            _ => Ok(Settled::Rejected(e.reason())),
                        }
                    }
                }
            })
            .await
            .map_err(|e| (*e).clone())?;
        match settled {
            Settled::Refreshed(fresh) => {
                let mut fresh = (*fresh).clone();
                fresh.last_seen = now;
                Ok(fresh)
            }
            Settled::Rejected(reason) => Err(RefreshError::Rejected(reason)),
        }
    }
}

impl Refresher {
    /// Refreshes a server-side session with one refresh token grant across every gateway
    /// instance: the instance that takes the session's lock in Redis refreshes and stores the
    /// result; the others wait for the stored session to become fresh and use it. Presenting
    /// a rotated refresh token twice would make the provider revoke the whole grant.
    pub async fn refresh_stored(
        &self,
        stored: Stored<'_>,
        provider: &Provider,
        kept_paths: &[ClaimPath],
        session: &Session,
        metrics: &Metrics,
        now: u64,
    ) -> Result<Session, RefreshError> {
        let (Some(redis), Handle::Redis { id, .. }) = (stored.store.redis(), stored.handle) else {
            return self
                .refresh(provider, kept_paths, session, metrics, now)
                .await;
        };
        let token = crate::oidc::flow::random_token();
        let deadline = tokio::time::Instant::now() + provider.cfg.timeout + Duration::from_secs(2);
        loop {
            if redis
                .lock(id, &token, LOCK_TTL)
                .await
                .map_err(|_| RefreshError::Store)?
            {
                let outcome = self
                    .refresh_locked(&stored, provider, kept_paths, metrics, now)
                    .await;
                // Best effort: the lock expires by itself if Redis went away meanwhile.
                let _ = redis.unlock(id, &token).await;
                return outcome;
            }
            tokio::time::sleep(LOCK_POLL).await;
            match stored.store.reload(stored.codec, stored.handle).await {
                Ok(current) if !is_due(&current.session, now) => {
                    return Ok(Arc::unwrap_or_clone(current.session))
                }
                Ok(_) => {}
                Err(LoadError::Miss(_)) => return Err(RefreshError::Rejected("session_revoked")),
                Err(LoadError::Unavailable(_)) => return Err(RefreshError::Store),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RefreshError::Unavailable);
            }
        }
    }

    /// The refresh itself, under the lock: the stored session may have been refreshed by
    /// another instance just before the lock was taken.
    async fn refresh_locked(
        &self,
        stored: &Stored<'_>,
        provider: &Provider,
        kept_paths: &[ClaimPath],
        metrics: &Metrics,
        now: u64,
    ) -> Result<Session, RefreshError> {
        let current = match stored.store.reload(stored.codec, stored.handle).await {
            Ok(s) => s,
            Err(LoadError::Miss(_)) => return Err(RefreshError::Rejected("session_revoked")),
            Err(LoadError::Unavailable(_)) => return Err(RefreshError::Store),
        };
        if !is_due(&current.session, now) {
            return Ok(Arc::unwrap_or_clone(current.session));
        }
        match self
            .refresh(provider, kept_paths, &current.session, metrics, now)
            .await
        {
            Ok(fresh) => {
                store_refreshed(stored, &current.handle, &fresh, now).await?;
                Ok(fresh)
            }
            Err(RefreshError::Rejected(reason)) => {
                let _ = stored.store.remove(stored.handle).await;
                Err(RefreshError::Rejected(reason))
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes a refreshed server-side session before the lock is released, so that the instances
/// waiting on it find it fresh.
async fn store_refreshed(
    stored: &Stored<'_>,
    handle: &Handle,
    fresh: &Session,
    now: u64,
) -> Result<(), RefreshError> {
    let mut fresh = fresh.clone();
    fresh.last_seen = now;
    let none = RequestCookies::default();
    match stored
        .store
        .save(stored.cfg, stored.codec, handle, &fresh, &none, now)
        .await
    {
        Ok(_) => Ok(()),
        Err(SaveError::Gone) => Err(RefreshError::Rejected("session_revoked")),
        Err(SaveError::Unavailable(_)) => Err(RefreshError::Store),
        // A Redis session has no size limit; nothing else can fail.
        Err(SaveError::TooLarge(_)) => Err(RefreshError::Store),
    }
}

/// Whether `session` should be refreshed before it is used at `now`: it holds a refresh token
/// and its tokens have expired. Without a refresh token a session simply lasts until its idle
/// timeout or maximum lifetime.
pub fn is_due(session: &Session, now: u64) -> bool {
    session.refresh_token.is_some() && session.tokens_expire.is_some_and(|t| now >= t)
}

/// The `exp` of an ID token's claims.
pub fn id_token_exp(claims: &Claims) -> Option<u64> {
    claims.get("exp").and_then(Value::as_u64)
}

/// Whether the session's last ID token is still valid at `now`: then a refresh the provider
/// cannot answer (an outage) does not stop the session; the next request tries again.
pub fn rides_out_outage(session: &Session, now: u64) -> bool {
    session.id_token_expires.is_some_and(|exp| now < exp)
}

/// When the tokens of a login or refresh expire: the access token's `expires_in` or the ID
/// token's `exp`, whichever is sooner, but never sooner than [`MIN_TOKEN_LIFETIME_SECS`].
pub fn tokens_expire(tokens: &Tokens, id_token_claims: Option<&Claims>, now: u64) -> Option<u64> {
    let access = tokens.expires_in.map(|s| now.saturating_add(s));
    let id = id_token_claims
        .and_then(|c| c.get("exp"))
        .and_then(Value::as_u64);
    let soonest = match (access, id) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    };
    soonest.map(|t| t.max(now.saturating_add(MIN_TOKEN_LIFETIME_SECS)))
}

/// The session after a successful refresh: same user, provider, creation and lifetime; new
/// claims (evaluated once here), token expiry, refresh token and logout hint.
fn renewed(
    provider: &Provider,
    kept_paths: &[ClaimPath],
    old: &Session,
    r: crate::oidc::flow::Refreshed,
    now: u64,
) -> Session {
    let id_claims = r.id_token.as_ref().map(|_| &r.claims);
    let tokens_expire = tokens_expire(&r.tokens, id_claims, now);
    let mut claims = retain_for(&r.claims, kept_paths);
    if r.id_token.is_none() {
        // Without a new ID token the claims start from the session's kept ones, which hold
        // JSONPath results rather than the claims they were computed from; keep each result
        // that the (UserInfo-merged) claims cannot recompute.
        for path in kept_paths {
            if let ClaimPath::Query { text, .. } = path {
                if !claims.contains_key(text) {
                    if let Some(v) = old.claims.get(text) {
                        claims.insert(text.clone(), v.clone());
                    }
                }
            }
        }
    }
    let keep_hint = old.id_token_hint.is_some()
        || provider
            .discovered()
            .is_some_and(|d| d.end_session_endpoint.is_some());
    Session {
        provider: old.provider.clone(),
        claims,
        created: old.created,
        last_seen: now,
        expires: old.expires,
        tokens_expire,
        // Providers that do not rotate refresh tokens return none: the old one stays valid.
        refresh_token: r.tokens.refresh_token.or_else(|| old.refresh_token.clone()),
        id_token_hint: match r.id_token {
            Some(t) if keep_hint => Some(t),
            _ => old.id_token_hint.clone(),
        },
        // A refreshed ID token belongs to the same provider session.
        sid: old.sid.clone(),
        id_token_expires: match id_claims {
            Some(c) => id_token_exp(c),
            None => old.id_token_expires,
        },
    }
}

fn cache_key(provider: &str, refresh_token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(provider.as_bytes());
    h.update([0]);
    h.update(refresh_token.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(expires_in: Option<u64>) -> Tokens {
        Tokens {
            access_token: "a".into(),
            id_token: None,
            refresh_token: Some("r".into()),
            expires_in,
        }
    }

    fn session(refresh: Option<&str>, tokens_expire: Option<u64>) -> Session {
        Session {
            provider: "p".into(),
            claims: Claims::new(),
            created: 0,
            last_seen: 0,
            expires: 1000,
            tokens_expire,
            refresh_token: refresh.map(str::to_owned),
            id_token_hint: None,
            sid: None,
            id_token_expires: None,
        }
    }

    #[test]
    fn due_only_with_a_refresh_token_and_expired_tokens() {
        assert!(is_due(&session(Some("r"), Some(100)), 100));
        assert!(!is_due(&session(Some("r"), Some(100)), 99));
        assert!(!is_due(&session(None, Some(100)), 200));
        assert!(!is_due(&session(Some("r"), None), 200));
    }

    #[test]
    fn the_sooner_of_access_token_and_id_token_expiry_counts() {
        let id = json!({"exp": 1030}).as_object().cloned().unwrap();
        assert_eq!(
            tokens_expire(&tokens(Some(60)), Some(&id), 1000),
            Some(1030)
        );
        assert_eq!(
            tokens_expire(&tokens(Some(10)), Some(&id), 1000),
            Some(1010)
        );
        assert_eq!(tokens_expire(&tokens(Some(10)), None, 1000), Some(1010));
        assert_eq!(tokens_expire(&tokens(None), Some(&id), 1000), Some(1030));
        assert_eq!(tokens_expire(&tokens(None), None, 1000), None);
    }

    #[test]
    fn a_tiny_lifetime_is_raised_to_the_floor() {
        // e.g. seconds read as milliseconds: 3600 ms → 3 s.
        assert_eq!(
            tokens_expire(&tokens(Some(0)), None, 1000),
            Some(1000 + MIN_TOKEN_LIFETIME_SECS)
        );
    }

    #[test]
    fn keys_differ_by_provider_and_token() {
        assert_ne!(cache_key("a", "t"), cache_key("b", "t"));
        assert_ne!(cache_key("a", "t"), cache_key("a", "u"));
        assert_eq!(cache_key("a", "t"), cache_key("a", "t"));
    }
}
