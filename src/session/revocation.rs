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
//! A logout token that names both `sid` and `sub` also revokes that user's sessions that carry
//! no `sid` (cookies sealed before the gateway kept it, or a provider that leaves it out of ID
//! tokens). The revocation time is the token's `iat` (never later than its arrival), so a
//! replayed token changes nothing.
//!
//! The list is bounded (`session.max_revocations`). When it overflows, the oldest revocation
//! goes and raises a floor instead: every cookie session created at or before that revocation is
//! refused. That fails closed (those users log in again) rather than letting a revoked session
//! back in.
//!
//! With `revocation = "redis"` every entry is also appended to one Redis stream
//! (`{prefix}revocations`, trimmed to `max_lifetime`), which every instance reads from the
//! start when it starts and then follows about once a second; the request path only reads this
//! instance's copy. Until the first complete read, and after [`STALE_AFTER`] without a
//! successful read, an instance cannot tell and answers 503.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::redis_store::{RedisStore, StoreUnavailable};
use super::Session;
use crate::clock;
use crate::config::RedisConfig;
use crate::metrics::Metrics;

/// How long an instance waits between two reads of the shared stream.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Stream entries read per command.
const PAGE: usize = 1000;

/// An instance that could not read the shared list for this long refuses cookie sessions (503)
/// until it can again: it might miss revocations the other instances record. (Longer with a
/// long `redis_timeout`: four of them and a sync interval, so one slow read is not enough.)
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// A revocation time further in the future than this (a hostile or broken stream entry) is
/// taken as now plus this.
const MAX_AHEAD: u64 = 60;

/// What one entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every session of a provider session.
    Sid,
    /// Every session of a user created at or before the revocation.
    Sub,
    /// Like `Sub`, for the sessions that carry no `sid` only.
    SubWithoutSid,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Sid => "sid",
            Kind::Sub => "sub",
            Kind::SubWithoutSid => "nosid",
        }
    }

    fn from_tag(tag: &str) -> Option<Kind> {
        [Kind::Sid, Kind::Sub, Kind::SubWithoutSid]
            .into_iter()
            .find(|k| k.tag() == tag)
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
    /// Entry → Unix seconds of the revocation: what the request path reads, without a lock.
    entries: Cache<Key, u64>,
    /// The same entries by revocation time: the oldest goes first when the list is full.
    /// Locked only to add entries (logouts), never on the request path.
    order: Mutex<BTreeSet<(u64, Key)>>,
    /// Cookie sessions created at or before this (Unix seconds) are refused: the list overflowed.
    floor: AtomicU64,
    /// Nothing was ever revoked: the request path returns at once.
    empty: AtomicBool,
    jtis: Cache<[u8; 32], ()>,
    shared: Option<Shared>,
    /// The list that replaced this one at a reload: later additions go there too.
    successor: Mutex<Weak<Revocations>>,
    keep: Duration,
    capacity: usize,
    jti_keep: Duration,
    metrics: Metrics,
}

/// The Redis copy and how far this instance has read it.
struct Shared {
    redis: Arc<RedisStore>,
    synced: AtomicBool,
    /// Unix seconds of the last successful read.
    last_read: AtomicU64,
    /// Seconds without a successful read after which the list counts as unread.
    stale_after: u64,
    last_id: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    /// shared through `redis` when given; a logout token's `jti` is remembered for `jti_keep`.
    pub fn new(
        keep: Duration,
        capacity: usize,
        jti_keep: Duration,
        redis: Option<Arc<RedisStore>>,
        metrics: Metrics,
    ) -> Revocations {
        Revocations {
            // No expiry or capacity of its own: `order` prunes by time and bounds the size, under
            // one lock, so the two never disagree.
            entries: Cache::builder().build(),
            order: Mutex::new(BTreeSet::new()),
            floor: AtomicU64::new(0),
            empty: AtomicBool::new(true),
            jtis: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(jti_keep)
                .build(),
            shared: redis.map(|redis| Shared {
                stale_after: STALE_AFTER
                    .max(redis.config().timeout * 4 + SYNC_INTERVAL)
                    .as_secs(),
                redis,
                synced: AtomicBool::new(false),
                last_read: AtomicU64::new(0),
                last_id: Mutex::new("0-0".to_owned()),
            }),
            successor: Mutex::new(Weak::new()),
            keep,
            capacity,
            jti_keep,
            metrics,
        }
    }

    /// Whether this list was built for these settings (a reload keeps it, with its entries).
    pub fn fits(
        &self,
        keep: Duration,
        capacity: usize,
        jti_keep: Duration,
        redis: Option<&Arc<RedisStore>>,
    ) -> bool {
        self.keep == keep
            && self.capacity == capacity
            && self.jti_keep == jti_keep
            && match (&self.shared, redis) {
                (None, None) => true,
                (Some(s), Some(r)) => Arc::ptr_eq(&s.redis, r),
                _ => false,
            }
    }

    /// Whether the list is complete: in memory, or the shared list was read, and recently.
    pub fn is_current(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| {
            s.synced.load(Ordering::Acquire)
                && clock::now().saturating_sub(s.last_read.load(Ordering::Relaxed)) <= s.stale_after
        })
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
            let read = shared.last_read.load(Ordering::Relaxed);
            if clock::now().saturating_sub(read) > shared.stale_after {
                return Err(StoreUnavailable {
                    op: "revocations",
                    reason: format!(
                        "the shared revocation list could not be read for more than {} s",
                        shared.stale_after
                    ),
                });
            }
        }
        if self.empty.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if session.created <= self.floor.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let before = |kind, value: &str| {
            self.entries
                .get(&key(registration, kind, value))
                .is_some_and(|at| session.created <= at)
        };
        match &session.sid {
            Some(sid) => {
                if self
                    .entries
                    .contains_key(&key(registration, Kind::Sid, sid))
                {
                    return Ok(true);
                }
            }
            None => {
                if before(Kind::SubWithoutSid, session.subject()) {
                    return Ok(true);
                }
            }
        }
        Ok(before(Kind::Sub, session.subject()))
    }

    /// Records a validated logout, revoked at Unix time `at`: provider session `sid` (and the
    /// user's sessions without a `sid`) when given, else user `sub`. A replayed `jti` is
    /// refused. With a shared list the entries are in Redis before this returns.
    pub async fn revoke(
        &self,
        registration: &str,
        sid: Option<&str>,
        sub: Option<&str>,
        jti: &str,
        at: u64,
    ) -> Result<(), RevokeError> {
        let mut entries = Vec::with_capacity(2);
        match (sid, sub) {
            (Some(sid), sub) => {
                entries.push((Kind::Sid, key(registration, Kind::Sid, sid)));
                if let Some(sub) = sub {
                    let k = key(registration, Kind::SubWithoutSid, sub);
                    entries.push((Kind::SubWithoutSid, k));
                }
            }
            (None, Some(sub)) => entries.push((Kind::Sub, key(registration, Kind::Sub, sub))),
            (None, None) => return Ok(()),
        }
        match &self.shared {
            Some(shared) => {
                let jti_name = format!("{registration}\0{jti}");
                if !shared.redis.first_use("revocations", &jti_name).await? {
                    return Err(RevokeError::Replayed);
                }
                for (kind, entry) in &entries {
                    if let Err(e) = shared
                        .redis
                        .add_revocation(&encode(*kind, entry, at), self.keep)
                        .await
                    {
                        // Not recorded: the provider's retry must not count as a replay (and does
                        // not, even if this fails too: the jti stays "begun" for a while).
                        let _ = shared.redis.forget_jti("revocations", &jti_name).await;
                        return Err(e.into());
                    }
                }
                let _ = shared
                    .redis
                    .mark_used("revocations", &jti_name, self.jti_keep)
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
        for (_, entry) in entries {
            self.insert(entry, at);
        }
        Ok(())
    }

    fn insert(&self, entry: Key, revoked_at: u64) {
        self.insert_quietly(entry, revoked_at);
        self.metrics.revocations.set(self.len() as i64);
    }

    /// `insert` without updating the metric (a page of the shared list at once).
    fn insert_quietly(&self, entry: Key, revoked_at: u64) {
        let now = clock::now();
        let at = revoked_at.min(now.saturating_add(MAX_AHEAD));
        {
            let mut order = lock(&self.order);
            let at = match self.entries.get(&entry) {
                Some(old) if old >= at => return,
                Some(old) => {
                    order.remove(&(old, entry));
                    at
                }
                None => at,
            };
            order.insert((at, entry));
            self.entries.insert(entry, at);
            self.empty.store(false, Ordering::Relaxed);
            // Entries no session can outlive any more.
            let horizon = now.saturating_sub(self.keep.as_secs());
            while let Some(&(t, k)) = order.first() {
                if t >= horizon {
                    break;
                }
                order.pop_first();
                self.entries.invalidate(&k);
            }
            // Full: the oldest goes, and every session it could concern with it.
            while order.len() > self.capacity {
                let Some((t, k)) = order.pop_first() else {
                    break;
                };
                // The floor first: at no moment is the revocation neither listed nor covered.
                let raised = self.floor.fetch_max(t, Ordering::Relaxed) < t;
                self.entries.invalidate(&k);
                if raised {
                    tracing::warn!(
                        revoked_at = t,
                        "revocations: session.max_revocations reached; every cookie session created before the oldest revocation kept is refused"
                    );
                }
            }
        }
        let next = lock(&self.successor).upgrade();
        if let Some(next) = next {
            next.insert(entry, at);
        }
    }

    /// Takes over what `old` (a list with other settings, replaced by a reload) holds, and what
    /// is added to it from now on, so a reload never lets a revoked session back in.
    pub fn take_over(self: &Arc<Self>, old: &Revocations) {
        *lock(&old.successor) = Arc::downgrade(self);
        if let (Some(new), Some(old)) = (&self.shared, &old.shared) {
            if same_stream(new.redis.config(), old.redis.config()) {
                *lock(&new.last_id) = lock(&old.last_id).clone();
                new.last_read
                    .store(old.last_read.load(Ordering::Relaxed), Ordering::Relaxed);
                new.synced
                    .store(old.synced.load(Ordering::Acquire), Ordering::Release);
            }
        }
        let snapshot: Vec<(u64, Key)> = lock(&old.order).iter().copied().collect();
        for (at, entry) in snapshot {
            self.insert_quietly(entry, at);
        }
        self.floor
            .fetch_max(old.floor.load(Ordering::Relaxed), Ordering::Relaxed);
        if !old.empty.load(Ordering::Relaxed) {
            self.empty.store(false, Ordering::Relaxed);
        }
        for (jti, ()) in old.jtis.iter() {
            self.jtis.insert(*jti, ());
        }
        self.metrics.revocations.set(self.len() as i64);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        lock(&self.order).len()
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
        let after = lock(&shared.last_id).clone();
        let page = shared.redis.revocations_after(&after, PAGE).await?;
        let now = clock::now();
        shared.last_read.store(now, Ordering::Relaxed);
        // A list that replaced this one at a reload, not yet followed itself, is as current
        // (what this read adds reaches it through `insert`).
        let next = lock(&self.successor).upgrade();
        if let Some(s) = next.as_ref().and_then(|n| n.shared.as_ref()) {
            s.last_read.fetch_max(now, Ordering::Relaxed);
        }
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
        *lock(&shared.last_id) = last;
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
    let (kind, hex, at) = (parts.next()?, parts.next()?, parts.next()?);
    Kind::from_tag(kind)?;
    if parts.next().is_some() || hex.len() != 32 {
        return None;
    }
    let mut entry = [0u8; 16];
    for (i, b) in entry.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some((entry, at.parse().ok()?))
}

/// Whether two Redis configs name the same stream (same deployment and key prefix), whatever
/// their timeouts or credentials.
fn same_stream(a: &RedisConfig, b: &RedisConfig) -> bool {
    a.mode == b.mode && a.nodes == b.nodes && a.key_prefix == b.key_prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    const HOUR: Duration = Duration::from_secs(3600);

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
            id_token_expires: None,
        }
    }

    fn list(capacity: usize) -> Revocations {
        Revocations::new(HOUR * 8, capacity, HOUR, None, Metrics::new())
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Now, as the tests' revocation times (entries older than `keep` are pruned).
    fn t(offset: u64) -> u64 {
        // One base for the whole run: a test that crosses a second boundary (a busy machine)
        // must not see the times it compares move under it.
        static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *BASE.get_or_init(|| clock::now() - 1000) + offset
    }

    fn revoke(l: &Revocations, sid: Option<&str>, sub: Option<&str>, jti: &str, at: u64) {
        block(l.revoke("https://op", sid, sub, jti, at)).unwrap();
    }

    #[test]
    fn a_revoked_provider_session_refuses_its_cookies_only() {
        let l = list(100);
        let alice = session("alice", Some("s1"), t(0));
        assert!(!l.revoked("https://op", &alice).unwrap());
        revoke(&l, Some("s1"), None, "j1", t(500));
        assert!(l.revoked("https://op", &alice).unwrap());
        assert!(!l
            .revoked("https://op", &session("alice", Some("s2"), t(0)))
            .unwrap());
        assert!(
            !l.revoked("https://other", &alice).unwrap(),
            "another registration's s1"
        );
    }

    #[test]
    fn a_sid_logout_also_ends_the_users_sessions_that_carry_no_sid() {
        let l = list(100);
        revoke(&l, Some("s1"), Some("alice"), "j1", t(500));
        // Sealed before the gateway kept sid (or from a provider without sid in ID tokens).
        assert!(l
            .revoked("https://op", &session("alice", None, t(0)))
            .unwrap());
        assert!(!l
            .revoked("https://op", &session("alice", None, t(501)))
            .unwrap());
        // Another provider session of the same user is not this logout's.
        assert!(!l
            .revoked("https://op", &session("alice", Some("s2"), t(0)))
            .unwrap());
    }

    #[test]
    fn a_revoked_user_may_log_in_again_afterwards() {
        let l = list(100);
        revoke(&l, None, Some("alice"), "j1", t(500));
        assert!(l
            .revoked("https://op", &session("alice", None, t(0)))
            .unwrap());
        assert!(l
            .revoked("https://op", &session("alice", Some("s9"), t(500)))
            .unwrap());
        assert!(!l
            .revoked("https://op", &session("alice", None, t(501)))
            .unwrap());
        assert!(!l
            .revoked("https://op", &session("bob", None, t(0)))
            .unwrap());
    }

    #[test]
    fn a_replayed_logout_token_is_refused() {
        let l = list(100);
        revoke(&l, Some("s1"), None, "j1", t(500));
        let again = block(l.revoke("https://op", Some("s2"), None, "j1", t(501)));
        assert!(matches!(again, Err(RevokeError::Replayed)), "{again:?}");
    }

    #[test]
    fn an_overflowing_list_drops_the_oldest_and_refuses_every_session_before_it() {
        let l = list(10);
        for i in 0..200u64 {
            revoke(&l, Some(&format!("s{i}")), None, &format!("j{i}"), t(i));
            // Entries in use are read on every request: that must not change what goes.
            for j in 0..=i {
                let _ = l.revoked("https://op", &session("u", Some(&format!("s{j}")), t(900)));
            }
        }
        assert_eq!(l.len(), 10);
        // No revoked session gets back in, whichever entry went.
        for i in 0..200u64 {
            let s = session("u", Some(&format!("s{i}")), t(i));
            assert!(l.revoked("https://op", &s).unwrap(), "s{i}");
        }
        // The floor is the newest dropped revocation, not the newest one: sessions created
        // after it stay, unless revoked themselves.
        assert_eq!(l.floor.load(Ordering::Relaxed), t(189));
        assert!(!l
            .revoked("https://op", &session("u", Some("other"), t(190)))
            .unwrap());
        assert!(l
            .revoked("https://op", &session("u", Some("s195"), t(190)))
            .unwrap());
    }

    #[test]
    fn a_list_replaced_by_a_reload_hands_over_its_entries_and_later_ones() {
        let old = list(100);
        revoke(&old, Some("s1"), None, "j1", t(500));
        let new = Arc::new(Revocations::new(HOUR, 50, HOUR, None, Metrics::new()));
        new.take_over(&old);
        assert!(new
            .revoked("https://op", &session("alice", Some("s1"), t(0)))
            .unwrap());
        let replay = block(new.revoke("https://op", Some("s1"), None, "j1", t(600)));
        assert!(matches!(replay, Err(RevokeError::Replayed)));
        // A logout still running on the old state after the swap reaches the new list.
        revoke(&old, Some("s2"), None, "j2", t(700));
        assert!(new
            .revoked("https://op", &session("alice", Some("s2"), t(0)))
            .unwrap());
    }

    #[test]
    fn revocation_times_from_the_future_are_clamped() {
        let l = list(100);
        revoke(&l, None, Some("alice"), "j1", u64::MAX);
        let later = session("alice", None, clock::now() + 2 * MAX_AHEAD);
        assert!(!l.revoked("https://op", &later).unwrap());
    }

    #[test]
    fn stream_entries_round_trip() {
        let k = key("https://op", Kind::Sid, "s1");
        let text = encode(Kind::Sid, &k, 1234);
        assert_eq!(decode(&text), Some((k, 1234)));
        assert_eq!(decode("sid:zz:1"), None);
        assert_eq!(decode(&format!("{text}:x")), None);
        assert_eq!(
            decode(&text.replacen("sid", "xyz", 1)),
            None,
            "unknown kind"
        );
    }
}
