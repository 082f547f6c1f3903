//! Server-side sessions on Redis (`session.store = "redis"`): the cookie holds only a sealed,
//! random session id; the session itself is stored sealed with the same keys under
//! `{prefix}s:{id}`, with a TTL of its remaining idle time (never past its maximum lifetime).
//!
//! Two sets index the sessions for back-channel logout: `{prefix}sid:{provider}:{hash}` (the
//! provider's session id) and `{prefix}sub:{provider}:{hash}` (the user); names hold SHA-256
//! hashes, so no identifier of a user is a key name. A revocation deletes the sessions and the
//! set in one Lua script, atomically.
//!
//! Connections: each worker thread has its own redis-rs `ConnectionManager` (one multiplexed,
//! pipelined connection that reconnects by itself), created on first use on that thread's
//! runtime. Together they are the pool: no lock and no cross-thread hop on the request path.
//! Every command is bounded by `redis_timeout`; a failure is an error the caller turns into a
//! 503, and the first failure of an episode (and the recovery) is logged once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use sha2::{Digest, Sha256};

use crate::config::RedisConfig;
use crate::metrics::Metrics;

/// Redis could not answer (down, slow, refused the command). The text is for logs; it never
/// holds the URL or a key name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis {op}: {reason}")]
pub struct StoreUnavailable {
    pub op: &'static str,
    pub reason: String,
}

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("session.redis_url: {0}")]
    Url(String),
    #[error("session.redis_ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
}

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

/// Index of sessions for back-channel logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// The provider's session id (`sid` claim).
    Sid,
    /// The user (`sub` claim).
    Sub,
}

/// A Redis session store.
pub struct RedisStore {
    client: redis::Client,
    cfg: RedisConfig,
    /// Tells this store's thread-local connections apart from an earlier store's (reload).
    generation: u64,
    /// Dropped with the store, so its thread-local connections can be pruned.
    alive: Arc<()>,
    down: AtomicBool,
    metrics: Metrics,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's connection to each live store.
    static CONNECTIONS: RefCell<Vec<(u64, Weak<()>, ConnectionManager)>> =
        const { RefCell::new(Vec::new()) };
}

/// Deletes every session listed in a set, then the set: `KEYS[1]` the set, `ARGV[1]` the
/// session key prefix. Returns how many sessions existed.
const REVOKE: &str = r#"
local ids = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, id in ipairs(ids) do
  n = n + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
return n
"#;

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
        let url = cfg.url.expose().as_str();
        let client = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| RedisSetupError::Ca {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(url),
        }
        .map_err(|e| RedisSetupError::Url(describe(&e)))?;
        metrics.session_store_up.set(1);
        Ok(RedisStore {
            client,
            cfg: cfg.clone(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            down: AtomicBool::new(false),
            metrics,
        })
    }

    /// The configuration this store was built from (a reload keeps a store whose settings
    /// did not change, with its connections).
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// This thread's connection, created on first use.
    fn connection(&self) -> Result<ConnectionManager, StoreUnavailable> {
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            if let Some((_, _, c)) = conns.iter().find(|(g, _, _)| *g == self.generation) {
                return Ok(c.clone());
            }
            conns.retain(|(_, alive, _)| alive.strong_count() > 0);
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.cfg.timeout))
                .set_response_timeout(Some(self.cfg.timeout))
                // One quick retry; beyond that the request fails and the next one tries again.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(200));
            let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(|e| StoreUnavailable {
                    op: "connect",
                    reason: describe(&e),
                })?;
            conns.push((
                self.generation,
                Arc::downgrade(&self.alive),
                manager.clone(),
            ));
            Ok(manager)
        })
    }

    /// Runs one command (or pipeline) with the store's timeout, counting and logging failures.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreUnavailable>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    {
        let outcome = match self.connection() {
            Ok(mut conn) => match tokio::time::timeout(self.cfg.timeout, f(&mut conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err(format!("no answer within {:?}", self.cfg.timeout)),
            },
            Err(e) => Err(e.reason),
        };
        match outcome {
            Ok(v) => {
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
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

    fn session_key(&self, id: &str) -> String {
        format!("{}s:{id}", self.cfg.key_prefix)
    }

    fn index_key(&self, index: Index, provider: &str, value: &str) -> String {
        let kind = match index {
            Index::Sid => "sid",
            Index::Sub => "sub",
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
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(sealed)
            .arg("PX")
            .arg(millis(ttl))
            .ignore();
        for (index, value) in indexes {
            let set = self.index_key(*index, provider, value);
            // Every member expires within max_lifetime of its login, so the set may too.
            pipe.cmd("SADD").arg(&set).arg(id).ignore();
            pipe.cmd("PEXPIRE")
                .arg(&set)
                .arg(millis(index_ttl))
                .ignore();
        }
        self.run("create", async |c| pipe.query_async::<()>(c).await)
            .await
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
        let prefix = self.session_key("");
        self.run("revoke", async |c| {
            Script::new(REVOKE)
                .key(&set)
                .arg(&prefix)
                .invoke_async::<u64>(c)
                .await
        })
        .await
    }

    /// Records a logout token's `jti`; `false` when it was seen before (a replay).
    pub async fn first_use(
        &self,
        provider: &str,
        jti: &str,
        keep: Duration,
    ) -> Result<bool, StoreUnavailable> {
        let key = self.jti_key(provider, jti);
        self.run("jti", async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis(keep))
                .query_async::<Option<String>>(c)
                .await
                .map(|r| r.is_some())
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

/// A Redis error without the URL or credentials it might quote.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_connection_dropped() {
        "connection dropped".to_owned()
    } else {
        format!("{:?}: {}", e.kind(), e.detail().unwrap_or("error"))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
