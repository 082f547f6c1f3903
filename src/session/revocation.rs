//! Back-channel logout for cookie sessions: a cookie cannot be deleted from the browser by the
//! provider, so the gateway remembers what a logout token revoked and refuses the cookies that
//! belong to it.
//!
//! An entry is a revoked provider session (`iss` + `sid`: every cookie of that provider session
//! is refused) or a revoked user (`iss` + `sub`, for logout tokens without `sid`: every cookie of
//! that user created at or before the revocation is refused, a later login is not); `iss` with
//! the client id it was addressed to (`aud`), so two registrations at one issuer stay apart
//! ("registration" below). Entries are
//! kept for `max_lifetime` (no session created before the revocation outlives that) and are
//! named by SHA-256 hashes, so the list holds no identifier of a user.
//!
//! The list is bounded (`session.max_revocations`). When it overflows, the entry that has to go
//! raises a floor instead: every cookie session created at or before that entry's revocation is
//! refused. That fails closed (those users log in again) rather than letting a revoked session
//! back in.
//!
//! With `revocation = "redis"` every entry is also appended to one Redis stream
//! (`{prefix}revocations`, trimmed to `max_lifetime`), which every instance reads from the
//! start when it starts and then follows about once a second; the request path only reads this
//! instance's copy. Until the first complete read an instance cannot tell, and answers 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::redis_store::{RedisStore, StoreUnavailable};
use super::Session;
use crate::metrics::Metrics;

/// How long an instance waits between two reads of the shared stream.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Stream entries read per command.
const PAGE: usize = 1000;

/// A logout token's `jti` is remembered this long: twice as long as a token is accepted
/// (`backchannel::MAX_AGE`, checked by a test there).
pub const JTI_KEEP: Duration = Duration::from_secs(20 * 60);

/// What one entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sid,
    Sub,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Sid => "sid",
            Kind::Sub => "sub",
        }
    }
}

type Key = [u8; 16];

/// The name of an entry: a hash of the kind, the registration and the value.
fn key(registration: &str, kind: Kind, value: &str) -> Key {
    let mut h = Sha256::new();
    h.update(kind.tag().as_bytes());
    h.update([0]);
    h.update(registration.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    let digest = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

/// The revocations of one gateway (kept across reloads while their settings stay).
pub struct Revocations {
    /// Entry → Unix seconds of the revocation.
    entries: Cache<Key, u64>,
    /// Cookie sessions created at or before this (Unix seconds) are refused: the list overflowed.
    floor: Arc<AtomicU64>,
    /// Nothing was ever revoked: the request path returns at once.
    empty: AtomicBool,
    jtis: Cache<[u8; 32], ()>,
    shared: Option<Shared>,
    keep: Duration,
    capacity: usize,
    metrics: Metrics,
}

/// The Redis copy and how far this instance has read it.
struct Shared {
    redis: Arc<RedisStore>,
    synced: AtomicBool,
    last_id: std::sync::Mutex<String>,
}

/// Why a logout could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("logout_token was already used (jti)")]
    Replayed,
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
}

impl Revocations {
    /// A list keeping entries for `keep` (the session `max_lifetime`), at most `capacity`, and
    /// shared through `redis` when given.
    pub fn new(
        keep: Duration,
        capacity: usize,
        redis: Option<Arc<RedisStore>>,
        metrics: Metrics,
    ) -> Revocations {
        let floor = Arc::new(AtomicU64::new(0));
        let raised = floor.clone();
        let entries = Cache::builder()
            .max_capacity(capacity as u64)
            // A little longer than any session it concerns can last.
            .time_to_live(keep + Duration::from_secs(60))
            .eviction_listener(move |_key, revoked_at: u64, cause| {
                if cause == RemovalCause::Size {
                    raised.fetch_max(revoked_at, Ordering::Relaxed);
                    tracing::warn!(
                        revoked_at,
                        "revocations: session.max_revocations reached; every cookie session created before this revocation is refused"
                    );
                }
            })
            .build();
        Revocations {
            entries,
            floor,
            empty: AtomicBool::new(true),
            jtis: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(JTI_KEEP)
                .build(),
            shared: redis.map(|redis| Shared {
                redis,
                synced: AtomicBool::new(false),
                last_id: std::sync::Mutex::new("0-0".to_owned()),
            }),
            keep,
            capacity,
            metrics,
        }
    }

    /// Whether this list was built for these settings (a reload keeps it, with its entries).
    pub fn fits(&self, keep: Duration, capacity: usize, redis: Option<&Arc<RedisStore>>) -> bool {
        self.keep == keep
            && self.capacity == capacity
            && match (&self.shared, redis) {
                (None, None) => true,
                (Some(s), Some(r)) => Arc::ptr_eq(&s.redis, r),
                _ => false,
            }
    }

    /// Whether the list is complete: in memory, or the shared list was read once.
    pub fn is_synced(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| s.synced.load(Ordering::Acquire))
    }

    /// The Redis store the list is shared through, if any.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.shared.as_ref().map(|s| &s.redis)
    }

    /// Whether `session` (of the provider registration `registration`) was revoked. Fails while a shared list
    /// has not been read yet.
    pub fn revoked(&self, registration: &str, session: &Session) -> Result<bool, StoreUnavailable> {
        if let Some(shared) = &self.shared {
            if !shared.synced.load(Ordering::Acquire) {
                return Err(StoreUnavailable {
                    op: "revocations",
                    reason: "the shared revocation list has not been read yet".to_owned(),
                });
            }
        }
        if self.empty.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if session.created <= self.floor.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if let Some(sid) = &session.sid {
            if self
                .entries
                .contains_key(&key(registration, Kind::Sid, sid))
            {
                return Ok(true);
            }
        }
        Ok(self
            .entries
            .get(&key(registration, Kind::Sub, session.subject()))
            .is_some_and(|at| session.created <= at))
    }

    /// Records a validated logout: provider session `sid` when given, else user `sub`. A
    /// replayed `jti` is refused. With a shared list the entry is in Redis before this returns.
    pub async fn revoke(
        &self,
        registration: &str,
        kind: Kind,
        value: &str,
        jti: &str,
        now: u64,
    ) -> Result<(), RevokeError> {
        let entry = key(registration, kind, value);
        match &self.shared {
            Some(shared) => {
                let jti_name = format!("{registration}\0{jti}");
                if !shared
                    .redis
                    .first_use("revocations", &jti_name, JTI_KEEP)
                    .await?
                {
                    return Err(RevokeError::Replayed);
                }
                if let Err(e) = shared
                    .redis
                    .add_revocation(&encode(kind, &entry, now), self.keep)
                    .await
                {
                    // Not recorded: the provider's retry must not count as a replay (and does
                    // not, even if this fails too: the jti stays "begun").
                    let _ = shared.redis.forget_jti("revocations", &jti_name).await;
                    return Err(e.into());
                }
                let _ = shared
                    .redis
                    .mark_used("revocations", &jti_name, JTI_KEEP)
                    .await;
            }
            None => {
                let seen: [u8; 32] =
                    Sha256::digest(format!("{registration}\0{jti}").as_bytes()).into();
                if !self.jtis.entry(seen).or_insert(()).is_fresh() {
                    return Err(RevokeError::Replayed);
                }
            }
        }
        self.insert(entry, now);
        Ok(())
    }

    fn insert(&self, entry: Key, revoked_at: u64) {
        self.insert_quietly(entry, revoked_at);
        self.metrics.revocations.set(self.len() as i64);
    }

    /// `insert` without updating the metric (a page of the shared list at once).
    fn insert_quietly(&self, entry: Key, revoked_at: u64) {
        let at = self
            .entries
            .get(&entry)
            .map_or(revoked_at, |old| old.max(revoked_at));
        self.entries.insert(entry, at);
        self.empty.store(false, Ordering::Relaxed);
    }

    /// Takes over what `old` (a list with other settings, replaced by a reload) holds, so a
    /// reload never lets a revoked session back in.
    pub fn inherit(&self, old: &Revocations) {
        for (entry, at) in old.entries.iter() {
            self.insert_quietly(*entry, at);
        }
        self.floor
            .fetch_max(old.floor.load(Ordering::Relaxed), Ordering::Relaxed);
        if !old.empty.load(Ordering::Relaxed) {
            self.empty.store(false, Ordering::Relaxed);
        }
        for (jti, ()) in old.jtis.iter() {
            self.jtis.insert(*jti, ());
        }
        if let (Some(new), Some(old)) = (&self.shared, &old.shared) {
            if Arc::ptr_eq(&new.redis, &old.redis) {
                let last = old.last_id.lock().map(|l| l.clone()).unwrap_or_default();
                if let Ok(mut l) = new.last_id.lock() {
                    *l = last;
                }
                new.synced
                    .store(old.synced.load(Ordering::Acquire), Ordering::Release);
            }
        }
        self.metrics.revocations.set(self.len() as i64);
    }

    /// Entries held now.
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads what other instances appended since the last read; `true` when caught up.
    pub async fn sync_once(&self) -> Result<bool, StoreUnavailable> {
        let Some(shared) = &self.shared else {
            return Ok(true);
        };
        let after = shared
            .last_id
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let page = shared.redis.revocations_after(&after, PAGE).await?;
        let caught_up = page.len() < PAGE;
        let mut last = after;
        let read = page.len();
        for (id, text) in page {
            if let Some((entry, at)) = decode(&text) {
                self.insert_quietly(entry, at);
            } else {
                tracing::warn!("revocations: an entry of the shared list is malformed; skipped");
            }
            last = id;
        }
        if let Ok(mut l) = shared.last_id.lock() {
            *l = last;
        }
        if read > 0 {
            self.metrics.revocations.set(self.len() as i64);
        }
        if caught_up && !shared.synced.swap(true, Ordering::Release) {
            tracing::info!(
                entries = self.len(),
                "revocations: shared list read; cookie sessions are checked against it"
            );
        }
        Ok(caught_up)
    }

    /// Follows the shared list until the list is dropped (a reload replaced it) or `stop`.
    pub async fn follow(list: Weak<Revocations>, mut stop: impl FnMut() -> bool) {
        loop {
            let Some(this) = list.upgrade() else { return };
            if stop() {
                return;
            }
            // Failures are counted and logged by the store; the next round tries again.
            let caught_up = this.sync_once().await.unwrap_or(true);
            drop(this);
            if caught_up {
                tokio::time::sleep(SYNC_INTERVAL).await;
            }
        }
    }
}

/// A stream entry: kind, the entry's hash and the revocation time.
fn encode(kind: Kind, entry: &Key, at: u64) -> String {
    let hex: String = entry.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{hex}:{at}", kind.tag())
}

fn decode(text: &str) -> Option<(Key, u64)> {
    let mut parts = text.split(':');
    let (_kind, hex, at) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || hex.len() != 32 {
        return None;
    }
    let mut entry = [0u8; 16];
    for (i, b) in entry.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some((entry, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    fn session(sub: &str, sid: Option<&str>, created: u64) -> Session {
        let mut claims = Claims::new();
        claims.insert("sub".into(), sub.into());
        Session {
            provider: "cis2".into(),
            claims,
            created,
            last_seen: created,
            expires: created + 3600,
            tokens_expire: None,
            refresh_token: None,
            id_token_hint: None,
            sid: sid.map(str::to_owned),
        }
    }

    fn list(capacity: usize) -> Revocations {
        Revocations::new(Duration::from_secs(3600), capacity, None, Metrics::new())
    }

    fn revoke(list: &Revocations, kind: Kind, value: &str, jti: &str, now: u64) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(list.revoke("https://op", kind, value, jti, now))
            .unwrap();
    }

    #[test]
    fn a_revoked_provider_session_refuses_its_cookies_only() {
        let l = list(100);
        let alice = session("alice", Some("s1"), 1000);
        assert!(!l.revoked("https://op", &alice).unwrap());
        revoke(&l, Kind::Sid, "s1", "j1", 1500);
        assert!(l.revoked("https://op", &alice).unwrap());
        assert!(!l
            .revoked("https://op", &session("alice", Some("s2"), 1000))
            .unwrap());
        assert!(
            !l.revoked("https://other", &alice).unwrap(),
            "another issuer's s1"
        );
    }

    #[test]
    fn a_revoked_user_may_log_in_again_afterwards() {
        let l = list(100);
        revoke(&l, Kind::Sub, "alice", "j1", 1500);
        assert!(l
            .revoked("https://op", &session("alice", None, 1000))
            .unwrap());
        assert!(l
            .revoked("https://op", &session("alice", Some("s9"), 1500))
            .unwrap());
        assert!(!l
            .revoked("https://op", &session("alice", None, 1501))
            .unwrap());
        assert!(!l
            .revoked("https://op", &session("bob", None, 1000))
            .unwrap());
    }

    #[test]
    fn a_replayed_logout_token_is_refused() {
        let l = list(100);
        revoke(&l, Kind::Sid, "s1", "j1", 1500);
        let again = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(l.revoke("https://op", Kind::Sid, "s2", "j1", 1501));
        assert!(matches!(again, Err(RevokeError::Replayed)), "{again:?}");
    }

    #[test]
    fn an_overflowing_list_refuses_every_older_session() {
        let l = list(10);
        for i in 0..200u64 {
            revoke(&l, Kind::Sid, &format!("s{i}"), &format!("j{i}"), 1000 + i);
        }
        assert!(l.len() <= 10, "{} entries", l.len());
        // Whatever was dropped, no revoked session gets back in.
        for i in 0..200u64 {
            let s = session("u", Some(&format!("s{i}")), 900);
            assert!(l.revoked("https://op", &s).unwrap(), "s{i}");
        }
        // Sessions created after the revocations are not affected.
        assert!(!l
            .revoked("https://op", &session("u", Some("new"), 2000))
            .unwrap());
    }

    #[test]
    fn a_list_replaced_by_a_reload_hands_its_entries_over() {
        let old = list(100);
        revoke(&old, Kind::Sid, "s1", "j1", 1500);
        let new = Revocations::new(Duration::from_secs(60), 50, None, Metrics::new());
        new.inherit(&old);
        assert!(new
            .revoked("https://op", &session("alice", Some("s1"), 1000))
            .unwrap());
        let replay = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(new.revoke("https://op", Kind::Sid, "s1", "j1", 1600));
        assert!(matches!(replay, Err(RevokeError::Replayed)));
    }

    #[test]
    fn stream_entries_round_trip() {
        let k = key("https://op", Kind::Sid, "s1");
        let text = encode(Kind::Sid, &k, 1234);
        assert_eq!(decode(&text), Some((k, 1234)));
        assert_eq!(decode("sid:zz:1"), None);
        assert_eq!(decode(&format!("{text}:x")), None);
    }
}
