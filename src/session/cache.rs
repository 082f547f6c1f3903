//! Opened cookie sessions, kept briefly so that a user's next requests with the same cookie cost
//! a hash and a comparison instead of base64, AES-GCM and JSON (7.6 µs for a CIS2-sized session
//! with its logout hint, most of the authenticated route's extra cost over a public one).
//!
//! An entry is found by a keyed hash of the sealed cookie text and used only if the whole text
//! is equal, so a hit is exactly a cookie that opened before under the same keys (a reload
//! builds a new cache with the new keys). Expiry and idleness are checked on every request
//! against the cached session's own times, as for a freshly opened one. Only the cookie store
//! uses this: a server-side (Redis) session is looked up on every request so that a revocation
//! counts at once.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::Session;

/// Memory the entries may take, estimated; beyond it the least used are dropped. A CIS2
/// session with its logout hint (3.5 KB sealed) costs about 14 KB cached: the sealed text, the
/// opened claims and the hint (`benches/load.sh`, 10,000 sessions: 1,024 entries took 14 MB).
/// So 8 MiB keeps about 600 such sessions, or a few thousand small ones, and the gateway's RSS
/// over 10,000 distinct sessions stays under 48 MB (BENCHMARKS.md).
const CAPACITY_BYTES: u64 = 8 << 20;

/// The estimated memory of an entry: four times its sealed text (measured above).
fn weight(sealed: &str) -> u32 {
    u32::try_from(sealed.len().saturating_mul(4)).unwrap_or(u32::MAX)
}

/// An entry not used for this long is dropped (an idle browser's session is opened again).
const IDLE: Duration = Duration::from_secs(60);

/// The cache of one gateway state (its cookie keys).
pub struct OpenedSessions {
    entries: Cache<u64, Arc<Entry>>,
    hasher: ahash::RandomState,
}

struct Entry {
    sealed: Box<str>,
    session: Arc<Session>,
}

impl Default for OpenedSessions {
    fn default() -> Self {
        OpenedSessions::new()
    }
}

impl OpenedSessions {
    pub fn new() -> OpenedSessions {
        OpenedSessions {
            entries: Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|_, entry: &Arc<Entry>| weight(&entry.sealed))
                .time_to_idle(IDLE)
                .build(),
            // Random keys per process: nobody can aim cookies at one bucket.
            hasher: ahash::RandomState::new(),
        }
    }

    /// The session that `sealed` opened to before, if it is cached.
    pub fn get(&self, sealed: &str) -> Option<Arc<Session>> {
        let hit = self.entries.get(&self.hasher.hash_one(sealed))?;
        (*hit.sealed == *sealed).then(|| hit.session.clone())
    }

    /// Remembers what `sealed` opened to.
    pub fn insert(&self, sealed: &str, session: Arc<Session>) {
        self.entries.insert(
            self.hasher.hash_one(sealed),
            Arc::new(Entry {
                sealed: sealed.into(),
                session,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sub: &str) -> Arc<Session> {
        let mut claims = crate::claims::Claims::new();
        claims.insert("sub".into(), sub.into());
        Arc::new(Session {
            provider: "p".into(),
            claims,
            created: 0,
            last_seen: 0,
            expires: 10,
            tokens_expire: None,
            refresh_token: None,
            id_token_hint: None,
            sid: None,
            id_token_expires: None,
        })
    }

    #[test]
    fn the_cache_holds_about_its_byte_budget_of_cis2_sized_sessions() {
        let cache = OpenedSessions::new();
        let sealed = |i: usize| format!("v1.{i:06}{}", "a".repeat(3500));
        for i in 0..3000 {
            cache.insert(&sealed(i), session("alice"));
        }
        cache.entries.run_pending_tasks();
        assert!(cache.entries.weighted_size() <= CAPACITY_BYTES);
        let kept = cache.entries.entry_count();
        assert!((500..=700).contains(&kept), "{kept} entries kept");
    }

    #[test]
    fn only_the_same_sealed_text_finds_a_session() {
        let cache = OpenedSessions::new();
        cache.insert("v1.aaaa", session("alice"));
        assert_eq!(cache.get("v1.aaaa").unwrap().subject(), "alice");
        assert!(cache.get("v1.aaab").is_none());
        assert!(cache.get("v1.aaa").is_none());
        assert!(OpenedSessions::new().get("v1.aaaa").is_none());
    }
}
