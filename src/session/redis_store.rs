//! Server-side sessions on Redis (`session.store = "redis"`): the cookie holds only a sealed,
//! random session id; the session itself is stored sealed with the same keys under
//! `{prefix}s:{id}`, with a TTL of its remaining idle time (never past its maximum lifetime).
//!
//! Two sets index the sessions for back-channel logout: `{prefix}sid:{provider}:{hash}` (the
//! provider's session id) and `{prefix}sub:{provider}:{hash}` (the user); names hold SHA-256
//! hashes, so no identifier of a user is a key name. A revocation deletes the sessions listed
//! in the set, then takes them out of the set.
//!
//! No script or transaction touches more than one key, so every operation works unchanged on a
//! Redis Cluster (a revocation's multi-key `DEL` is split by slot by redis-rs); see
//! docs/scale-out.md for the key layout.
//!
//! Every command is bounded by `redis_timeout`; a failure is an error the caller turns into a
//! 503, and the first failure of an episode (and the recovery) is logged once. How the store
//! reaches Redis (standalone, Sentinel, Cluster; one connection per worker thread) is in
//! `redis_conn`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::Duration;

use redis::{Script, Value};
use sha2::{Digest, Sha256};

use super::redis_conn::{describe, Conn, Connections};
pub use super::redis_conn::{RedisSetupError, StoreUnavailable};
use crate::config::RedisConfig;
use crate::metrics::Metrics;

/// What [`RedisStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Written,
    /// Another write came first; the stored session is newer than the caller's.
    Changed,
    /// The session was deleted (logout, revocation, expiry).
    Gone,
}

/// The version of a stored value that [`RedisStore::update`] compares against: its SHA-1, as
/// Redis's Lua computes it (an identity check, not a security property).
pub fn version(stored: &str) -> String {
    sha1_smol::Sha1::from(stored.as_bytes())
        .digest()
        .to_string()
}

/// A logout token whose work was begun is "pending" this long; a retry within it is carried out
/// (and a concurrent duplicate too: both do the same, harmless, work).
const PENDING_KEEP: Duration = Duration::from_secs(60);

/// Index of sessions for back-channel logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// The provider's session id (`sid` claim).
    Sid,
    /// The user (`sub` claim).
    Sub,
    /// The user's sessions that have no `sid` (a logout token with `sid` and `sub` ends them).
    NoSid,
}

/// A Redis session store.
pub struct RedisStore {
    conns: Connections,
    cfg: RedisConfig,
    down: AtomicBool,
    metrics: Metrics,
}

/// Replaces a session only if it is still the version the caller loaded (`ARGV[1]`, the
/// SHA-1 of the stored value): 1 written, 0 changed meanwhile (left alone), -1 gone.
const UPDATE: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then
  return -1
end
if redis.sha1hex(current) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Deletes a lock only if it still holds the caller's token.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

impl RedisStore {
    /// A store for `cfg`. Connects lazily: Redis being down at start-up is not an error (the
    /// gateway starts and answers 503 until Redis is reachable).
    pub fn new(cfg: &RedisConfig, metrics: Metrics) -> Result<RedisStore, RedisSetupError> {
        let conns = Connections::new(cfg)?;
        metrics.session_store_up.set(1);
        Ok(RedisStore {
            conns,
            cfg: cfg.clone(),
            down: AtomicBool::new(false),
            metrics,
        })
    }

    /// The configuration this store was built from (a reload keeps a store whose settings
    /// did not change, with its connections).
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Runs one command (or pipeline) with the store's timeout, counting and logging failures.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreUnavailable>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    {
        let outcome = match self.conns.connection().await {
            Ok((epoch, mut conn)) => {
                match tokio::time::timeout(self.cfg.timeout, f(&mut conn)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => {
                        self.conns.forget_master(epoch, &e);
                        Err(describe(&e))
                    }
                    Err(_) => {
                        self.conns.drop_thread_connection();
                        Err(format!("no answer within {:?}", self.cfg.timeout))
                    }
                }
            }
            Err(e) => Err(e.reason),
        };
        match outcome {
            Ok(v) => {
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
                    self.conns.renew_all();
                    self.metrics.session_store_up.set(1);
                    tracing::warn!("session store: Redis answers again");
                }
                Ok(v)
            }
            Err(reason) => {
                self.metrics
                    .session_store_errors
                    .with_label_values(&[op])
                    .inc();
                if !self.down.swap(true, Ordering::Relaxed) {
                    self.metrics.session_store_up.set(0);
                    tracing::error!(op, reason = %reason, "session store: Redis unavailable; requests that need a session get 503 until it answers again (logged once per episode)");
                } else {
                    tracing::debug!(op, reason = %reason, "session store: Redis still unavailable");
                }
                Err(StoreUnavailable { op, reason })
            }
        }
    }

    /// Whether the last command failed (Redis down or unreachable).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it answers (the periodic probe: the store's state is known even
    /// without traffic, for `/readyz` and `session_store_up`).
    pub async fn ping(&self) -> Result<(), StoreUnavailable> {
        self.conns.follow_sentinels().await;
        self.run("ping", async |c| {
            redis::cmd("PING").query_async::<()>(c).await
        })
        .await
    }

    /// Pings every `interval` until the task is aborted.
    pub async fn probe(store: Weak<RedisStore>, interval: Duration) {
        loop {
            let Some(this) = store.upgrade() else { return };
            let _ = this.ping().await;
            drop(this);
            tokio::time::sleep(interval).await;
        }
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}s:{id}", self.cfg.key_prefix)
    }

    fn index_key(&self, index: Index, provider: &str, value: &str) -> String {
        let kind = match index {
            Index::Sid => "sid",
            Index::Sub => "sub",
            Index::NoSid => "nosid",
        };
        format!(
            "{}{kind}:{provider}:{}",
            self.cfg.key_prefix,
            hex(&Sha256::digest(value.as_bytes()))
        )
    }

    /// The name a session blob is sealed under (binds the blob to its id).
    pub fn blob_name(&self, id: &str) -> String {
        self.session_key(id)
    }

    /// The sealed session stored under `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<String>, StoreUnavailable> {
        let key = self.session_key(id);
        self.run("get", async |c| {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(c)
                .await
        })
        .await
    }

    /// Stores a new session and indexes it by `sub` and `sid` for back-channel logout.
    pub async fn create(
        &self,
        id: &str,
        sealed: &str,
        ttl: Duration,
        provider: &str,
        indexes: &[(Index, &str)],
        index_ttl: Duration,
    ) -> Result<(), StoreUnavailable> {
        let key = self.session_key(id);
        // The session first, then its indexes, each index with its expiry in one
        // single-key transaction: nothing here spans two keys, so it runs on a cluster too.
        // An index left without its session (a failure in between) is harmless.
        self.run("create", async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(sealed)
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(c)
                .await
        })
        .await?;
        for (index, value) in indexes {
            let set = self.index_key(*index, provider, value);
            // Every member expires within max_lifetime of its login, so the set may too.
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SADD")
                .arg(&set)
                .arg(id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&set)
                .arg(millis(index_ttl))
                .ignore();
            self.run("create", async |c| pipe.query_async::<()>(c).await)
                .await?;
        }
        Ok(())
    }

    /// Replaces session `id` if it is still at `version` (see [`version`]): a session revoked
    /// meanwhile stays revoked, and one that another request or instance rewrote meanwhile
    /// (a refresh) is not overwritten with older tokens.
    pub async fn update(
        &self,
        id: &str,
        version: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<Update, StoreUnavailable> {
        let key = self.session_key(id);
        let outcome = self
            .run("update", async |c| {
                Script::new(UPDATE)
                    .key(&key)
                    .arg(version)
                    .arg(sealed)
                    .arg(millis(ttl))
                    .invoke_async::<i64>(c)
                    .await
            })
            .await?;
        Ok(match outcome {
            1 => Update::Written,
            0 => Update::Changed,
            _ => Update::Gone,
        })
    }

    /// Deletes one session (local logout).
    pub async fn delete(&self, id: &str) -> Result<(), StoreUnavailable> {
        let key = self.session_key(id);
        self.run("delete", async |c| {
            redis::cmd("DEL").arg(&key).query_async::<()>(c).await
        })
        .await
    }

    /// Deletes every session of `provider` indexed under `value`; returns how many there were.
    pub async fn revoke(
        &self,
        index: Index,
        provider: &str,
        value: &str,
    ) -> Result<u64, StoreUnavailable> {
        let set = self.index_key(index, provider, value);
        // Three steps, none spanning two slots: the members, their sessions, then those members
        // (a login indexed meanwhile stays). Interrupted, the set still names the sessions, and
        // the provider's retry of the logout finishes the work.
        let ids: Vec<String> = self
            .run("revoke", async |c| {
                redis::cmd("SMEMBERS").arg(&set).query_async(c).await
            })
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
        let deleted: u64 = self
            .run("revoke", async |c| {
                redis::cmd("DEL").arg(&keys).query_async(c).await
            })
            .await?;
        self.run("revoke", async |c| {
            redis::cmd("SREM")
                .arg(&set)
                .arg(&ids)
                .query_async::<()>(c)
                .await
        })
        .await?;
        Ok(deleted)
    }

    /// Records a logout token's `jti` as being carried out; `false` when it was carried out
    /// before (a replay). A `jti` whose logout was begun but never finished (Redis went away
    /// in between) counts as new for a minute, so the provider's retry finishes it rather than
    /// being refused as a replay.
    pub async fn first_use(&self, provider: &str, jti: &str) -> Result<bool, StoreUnavailable> {
        let key = self.jti_key(provider, jti);
        self.run("jti", async |c| {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg("pending")
                .arg("NX")
                .arg("PX")
                .arg(millis(PENDING_KEEP))
                .query_async(c)
                .await?;
            if set.is_some() {
                return Ok(true);
            }
            let state: Option<String> = redis::cmd("GET").arg(&key).query_async(c).await?;
            Ok(state.as_deref() == Some("pending"))
        })
        .await
    }

    /// Marks a `jti` from [`first_use`](Self::first_use) as carried out: from now on it is a
    /// replay.
    pub async fn mark_used(
        &self,
        provider: &str,
        jti: &str,
        keep: Duration,
    ) -> Result<(), StoreUnavailable> {
        let key = self.jti_key(provider, jti);
        self.run("jti", async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg("done")
                .arg("PX")
                .arg(millis(keep))
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Forgets a `jti` recorded by [`first_use`](Self::first_use) whose logout could not be
    /// carried out, so that the provider's retry is not refused as a replay.
    pub async fn forget_jti(&self, provider: &str, jti: &str) -> Result<(), StoreUnavailable> {
        let key = self.jti_key(provider, jti);
        self.run("jti", async |c| {
            redis::cmd("DEL").arg(&key).query_async::<()>(c).await
        })
        .await
    }

    /// Appends a revocation to the shared list, trimming entries older than `keep` (no
    /// session they concern can still be alive).
    pub async fn add_revocation(
        &self,
        entry: &str,
        keep: Duration,
    ) -> Result<(), StoreUnavailable> {
        let key = self.revocations_key();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let min_id = now_ms.saturating_sub(millis(keep));
        self.run("revocations", async |c| {
            redis::cmd("XADD")
                .arg(&key)
                .arg("MINID")
                .arg("~")
                .arg(min_id)
                .arg("*")
                .arg("e")
                .arg(entry)
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Up to `count` revocations appended after stream id `after`: (id, entry).
    pub async fn revocations_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreUnavailable> {
        let key = self.revocations_key();
        let start = format!("({after}");
        let reply: redis::streams::StreamRangeReply = self
            .run("revocations", async |c| {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let text = e.get::<String>("e").unwrap_or_default();
                (e.id, text)
            })
            .collect())
    }

    fn revocations_key(&self) -> String {
        format!("{}revocations", self.cfg.key_prefix)
    }

    fn jti_key(&self, provider: &str, jti: &str) -> String {
        format!(
            "{}jti:{provider}:{}",
            self.cfg.key_prefix,
            hex(&Sha256::digest(jti.as_bytes()))
        )
    }

    /// Takes the refresh lock of session `id` for `ttl` with `token`; `false` when another
    /// request (on any instance) holds it.
    pub async fn lock(
        &self,
        id: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreUnavailable> {
        let key = format!("{}lock:{id}", self.cfg.key_prefix);
        self.run("lock", async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<Option<String>>(c)
                .await
                .map(|r| r.is_some())
        })
        .await
    }

    /// Releases the refresh lock if `token` still holds it.
    pub async fn unlock(&self, id: &str, token: &str) -> Result<(), StoreUnavailable> {
        let key = format!("{}lock:{id}", self.cfg.key_prefix);
        self.run("unlock", async |c| {
            Script::new(UNLOCK)
                .key(&key)
                .arg(token)
                .invoke_async::<Value>(c)
                .await
                .map(|_| ())
        })
        .await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
