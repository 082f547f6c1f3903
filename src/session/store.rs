//! Where sessions live: in the cookie itself, or in Redis with a sealed id in the cookie. The
//! proxy and the endpoints load, save and remove sessions through [`SessionStore`] and never
//! ask which store it is, except for back-channel logout (which deletes Redis sessions, and
//! records a revocation for cookie sessions).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::cache::OpenedSessions;
use super::codec::Codec;
use super::cookies::{delete_cookie, open, set_cookie, write_session, RequestCookies, TooLarge};
use super::redis_store::{version, Index, RedisStore, StoreUnavailable, Update};
use super::revocation::Revocations;
use super::{Miss, Session};
use crate::config::SessionConfig;

/// The configured session store.
#[derive(Clone)]
pub enum SessionStore {
    Cookie(Arc<CookieStore>),
    Redis(Arc<RedisStore>),
}

/// Sessions in the cookie itself.
pub struct CookieStore {
    /// The sessions opened recently (see `cache`).
    pub opened: OpenedSessions,
    /// What back-channel logouts revoked (see `revocation`).
    pub revocations: Arc<Revocations>,
    /// Provider name → its registration at the issuer (issuer and client id), which names
    /// its revocations: a logout token is addressed to one (`iss`, `aud`).
    pub registrations: Vec<(String, String)>,
}

impl CookieStore {
    /// The name revocations of `provider` are recorded under.
    pub fn registration(&self, provider: &str) -> Option<&str> {
        self.registrations
            .iter()
            .find(|(name, _)| name == provider)
            .map(|(_, issuer)| issuer.as_str())
    }
}

/// Where a loaded session came from: what saving or removing it again needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handle {
    Cookie,
    /// The Redis session id (43 base64url characters of 32 random bytes) and the version of
    /// the stored session that was loaded (saves compare and set against it).
    Redis {
        id: String,
        version: String,
    },
}

/// A session and where it lives. The session is shared with the cache of opened cookies: a
/// request that changes it makes its own copy (`Arc::make_mut`).
#[derive(Debug)]
pub struct Loaded {
    pub session: Arc<Session>,
    pub handle: Handle,
}

/// Why no session could be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// No usable session: the user logs in.
    #[error(transparent)]
    Miss(#[from] Miss),
    /// The store cannot say: fail closed with 503, keep the cookie.
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
}

/// Why a session could not be saved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
    /// The session was removed (logout, revocation) while this request used it.
    #[error("the session was revoked meanwhile")]
    Gone,
}

/// A fresh session id: 32 random bytes, base64url.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn is_id(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How long Redis keeps a session written at `now`: its idle time, never past `expires`.
fn ttl(cfg: &SessionConfig, session: &Session, now: u64) -> Duration {
    let left = session.expires.saturating_sub(now);
    Duration::from_secs(left.min(cfg.idle_timeout.as_secs()).max(1))
}

impl SessionStore {
    /// Why requests that need a session cannot be answered now, if they cannot (for
    /// `/readyz`): the session store (Redis) does not answer, or a shared revocation list was
    /// never read.
    pub fn not_ready(&self) -> Option<&'static str> {
        match self {
            SessionStore::Redis(r) if r.is_down() => {
                Some("the session store (Redis) does not answer")
            }
            SessionStore::Redis(_) => None,
            // Once read, the list is this instance's own: cookie sessions keep flowing while
            // Redis is away for a short while (only back-channel logouts wait for it).
            SessionStore::Cookie(c) => (!c.revocations.is_current())
                .then_some("the shared revocation list (Redis) was not read yet, or not for 30 s"),
        }
    }

    /// The Redis store this store uses (for sessions, or for a shared revocation list).
    pub fn redis_in_use(&self) -> Option<&Arc<RedisStore>> {
        match self {
            SessionStore::Redis(r) => Some(r),
            SessionStore::Cookie(c) => c.revocations.redis(),
        }
    }

    /// The revocations of the cookie store.
    pub fn revocations(&self) -> Option<&Arc<Revocations>> {
        match self {
            SessionStore::Cookie(c) => Some(&c.revocations),
            SessionStore::Redis(_) => None,
        }
    }

    /// The Redis store, when configured.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match self {
            SessionStore::Redis(r) => Some(r),
            SessionStore::Cookie(_) => None,
        }
    }

    /// Loads the request's session. The cookie's chunk count and seal are checked before any
    /// Redis round trip, so a forged cookie costs the store nothing.
    pub async fn load(
        &self,
        cfg: &SessionConfig,
        codec: &Codec,
        cookies: &RequestCookies<'_>,
    ) -> Result<Loaded, LoadError> {
        let redis = match self {
            SessionStore::Cookie(store) => {
                let sealed = cookies.sealed()?;
                let session = match store.opened.get(&sealed) {
                    Some(s) => s,
                    None => {
                        let s = Arc::new(open(cfg, codec, &sealed)?);
                        store.opened.insert(&sealed, s.clone());
                        s
                    }
                };
                if let Some(registration) = store.registration(&session.provider) {
                    if store.revocations.revoked(registration, &session)? {
                        return Err(Miss::Revoked.into());
                    }
                }
                return Ok(Loaded {
                    session,
                    handle: Handle::Cookie,
                });
            }
            SessionStore::Redis(r) => r,
        };
        if cookies.chunk_overflow {
            return Err(Miss::TooManyChunks.into());
        }
        let Some(value) = cookies.bare else {
            // Chunks are a cookie-store session (the store was switched): not one of ours.
            return Err(if cookies.chunks.is_empty() {
                Miss::Absent
            } else {
                Miss::Malformed
            }
            .into());
        };
        let id = codec
            .open(&cfg.cookie_name, value)
            .map_err(Miss::Unsealable)?;
        let id = String::from_utf8(id).map_err(|_| Miss::Malformed)?;
        if !is_id(&id) {
            return Err(Miss::Malformed.into());
        }
        fetch(redis, codec, id).await
    }

    /// Stores the session of a new login; `Set-Cookie` values for the response.
    /// `indexes` are the user's `sid` and `sub` at the provider (for back-channel logout).
    pub async fn create(
        &self,
        cfg: &SessionConfig,
        codec: &Codec,
        session: &Session,
        indexes: &[(Index, &str)],
        previous: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, SaveError> {
        let redis = match self {
            SessionStore::Cookie(_) => {
                return Ok(write_session(cfg, codec, session, previous, now)?);
            }
            SessionStore::Redis(r) => r,
        };
        // A login replaces the browser's previous session rather than leaving it to expire.
        if let Some(old) = previous
            .bare
            .and_then(|v| codec.open(&cfg.cookie_name, v).ok())
            .and_then(|id| String::from_utf8(id).ok())
            .filter(|id| is_id(id))
        {
            let _ = redis.delete(&old).await;
        }
        let id = new_id();
        let json = serde_json::to_vec(session).unwrap_or_default();
        let blob = codec.seal(&redis.blob_name(&id), &json);
        redis
            .create(
                &id,
                &blob,
                ttl(cfg, session, now),
                &session.provider,
                indexes,
                cfg.max_lifetime,
            )
            .await?;
        let mut set = vec![set_cookie(
            cfg,
            cfg.cookie_name.clone(),
            codec.seal(&cfg.cookie_name, id.as_bytes()),
            session.expires.saturating_sub(now),
        )];
        // Leftovers of a cookie-store session.
        for (n, _) in &previous.chunks {
            set.push(delete_cookie(cfg, format!("{}_{n}", cfg.cookie_name)));
        }
        Ok(set)
    }

    /// Saves a session again after activity or a refresh; `Set-Cookie` values for the response
    /// (none with Redis: the id stays).
    pub async fn save(
        &self,
        cfg: &SessionConfig,
        codec: &Codec,
        handle: &Handle,
        session: &Session,
        previous: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, SaveError> {
        match (self, handle) {
            (SessionStore::Redis(redis), Handle::Redis { id, version }) => {
                let json = serde_json::to_vec(session).unwrap_or_default();
                let blob = codec.seal(&redis.blob_name(id), &json);
                match redis
                    .update(id, version, &blob, ttl(cfg, session, now))
                    .await?
                {
                    // Changed: a newer version (a refresh elsewhere) is stored and stays.
                    Update::Written | Update::Changed => Ok(Vec::new()),
                    Update::Gone => Err(SaveError::Gone),
                }
            }
            _ => Ok(write_session(cfg, codec, session, previous, now)?),
        }
    }

    /// Removes a session from the store (logout). The cookies are cleared by the caller.
    pub async fn remove(&self, handle: &Handle) -> Result<(), StoreUnavailable> {
        match (self, handle) {
            (SessionStore::Redis(redis), Handle::Redis { id, .. }) => redis.delete(id).await,
            _ => Ok(()),
        }
    }

    /// The stored session as it is now (another instance may have refreshed it).
    pub async fn reload(&self, codec: &Codec, handle: &Handle) -> Result<Loaded, LoadError> {
        match (self, handle) {
            (SessionStore::Redis(redis), Handle::Redis { id, .. }) => {
                fetch(redis, codec, id.clone()).await
            }
            _ => Err(Miss::Absent.into()),
        }
    }
}

async fn fetch(redis: &RedisStore, codec: &Codec, id: String) -> Result<Loaded, LoadError> {
    let Some(blob) = redis.get(&id).await? else {
        return Err(Miss::Revoked.into());
    };
    let plain = codec
        .open(&redis.blob_name(&id), &blob)
        .map_err(Miss::Unsealable)?;
    let session = serde_json::from_slice(&plain).map_err(|_| Miss::Malformed)?;
    Ok(Loaded {
        session: Arc::new(session),
        handle: Handle::Redis {
            id,
            version: version(&blob),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_random_bytes_in_base64url() {
        let a = new_id();
        assert!(is_id(&a), "{a}");
        assert_ne!(a, new_id());
        assert!(!is_id("short"));
        assert!(!is_id(&format!("{}=", &a[..42])));
    }
}
