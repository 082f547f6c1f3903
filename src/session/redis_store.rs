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
//! Connections: each worker thread has its own connection (redis-rs's `ConnectionManager`, one
//! multiplexed, pipelined connection that reconnects by itself; for a cluster, its
//! `ClusterConnection`, which follows the slot map and its changes), created on first use on
//! that thread's runtime. Together they are the pool: no lock and no cross-thread hop on the
//! request path. With Sentinel the master the sentinels named is remembered; an error that
//! says it is gone or demoted (refused, dropped, `READONLY`, `NOREPLICAS`, `MASTERDOWN`) makes the next command
//! ask the sentinels again. Every command is bounded by `redis_timeout`; a failure is an error
//! the caller turns into a 503, and the first failure of an episode (and the recovery) is
//! logged once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};
use sha2::{Digest, Sha256};

use crate::config::{RedisConfig, RedisMode};
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
    #[error("Redis node {index}: {reason}")]
    Url { index: usize, reason: String },
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
    backend: Backend,
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
    /// This thread's connection to each live store: (store generation, master epoch, store
    /// alive, connection).
    static CONNECTIONS: RefCell<Vec<ThreadConnection>> =
        const { RefCell::new(Vec::new()) };
}

/// (store generation, master epoch, store alive, connection).
type ThreadConnection = (u64, u64, Weak<()>, Conn);

/// How the store reaches Redis.
enum Backend {
    Standalone(redis::Client),
    Sentinel(Sentinel),
    Cluster(ClusterClient),
}

/// The sentinels, and the master they named last.
struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master the sentinels named last.
    master: ArcSwapOption<Master>,
    epochs: AtomicU64,
    /// When asking the sentinels last failed (Unix ms): until [`LOOKUP_BACKOFF`] has passed,
    /// requests fail at once instead of queueing for another attempt.
    failed_at: AtomicU64,
}

/// A master the sentinels named. Its epoch changes only when they name another address, so
/// the threads' connections to an old master are replaced, and only then.
struct Master {
    epoch: u64,
    client: redis::Client,
    /// An error said it is gone or demoted: the next command asks the sentinels again.
    stale: AtomicBool,
}

/// After a failed lookup, how long requests fail at once rather than ask the sentinels again.
const LOOKUP_BACKOFF: Duration = Duration::from_millis(500);

/// The least time a lookup at the sentinels gets: redis-rs asks them in turn with its own
/// timeouts (1 s to connect, 500 ms to answer), so a dead first sentinel must not use it all.
const LOOKUP_BUDGET: Duration = Duration::from_secs(3);

/// One thread's connection.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
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
        let root_cert = match &cfg.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| RedisSetupError::Ca {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let certs = || redis::TlsCertificates {
            client_tls: None,
            root_cert: root_cert.clone(),
        };
        let nodes = cfg.nodes.expose();
        let url_error = |index: usize| {
            move |e: redis::RedisError| RedisSetupError::Url {
                index,
                reason: describe(&e),
            }
        };
        let backend = match &cfg.mode {
            RedisMode::Standalone => {
                let url = nodes.first().map(String::as_str).unwrap_or_default();
                let mut info = url.into_connection_info().map_err(url_error(0))?;
                info = with_credentials(info, cfg);
                let client = match root_cert {
                    Some(_) => redis::Client::build_with_tls(info, certs()),
                    None => redis::Client::open(info),
                }
                .map_err(url_error(0))?;
                Backend::Standalone(client)
            }
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new(
                    nodes
                        .iter()
                        .enumerate()
                        .map(|(i, n)| n.as_str().into_connection_info().map_err(url_error(i)))
                        .collect::<Result<Vec<_>, _>>()?,
                )
                .connection_timeout(cfg.timeout)
                .response_timeout(cfg.timeout)
                .retries(1)
                .min_retry_wait(20)
                .max_retry_wait(200);
                if let Some(user) = &cfg.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &cfg.password {
                    builder = builder.password(password.expose());
                }
                if root_cert.is_some() {
                    builder = builder.certs(certs());
                }
                Backend::Cluster(builder.build().map_err(url_error(0))?)
            }
            RedisMode::Sentinel {
                master_name,
                username,
                password,
            } => {
                let mut addrs = Vec::with_capacity(nodes.len());
                let mut tls = false;
                for (i, node) in nodes.iter().enumerate() {
                    let info = node.as_str().into_connection_info().map_err(url_error(i))?;
                    tls |= matches!(info.addr(), ConnectionAddr::TcpTls { .. });
                    addrs.push(info.addr().clone());
                }
                let mut builder =
                    SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
                        .map_err(url_error(0))?;
                if tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                    if root_cert.is_some() {
                        builder = builder
                            .set_client_to_redis_certificates(certs())
                            .set_client_to_sentinel_certificates(certs());
                    }
                }
                if let Some(user) = &cfg.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(pw) = &cfg.password {
                    builder = builder.set_client_to_redis_password(pw.expose());
                }
                if let Some(user) = username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(pw) = password {
                    builder = builder.set_client_to_sentinel_password(pw.expose());
                }
                Backend::Sentinel(Sentinel {
                    client: tokio::sync::Mutex::new(builder.build().map_err(url_error(0))?),
                    master: ArcSwapOption::empty(),
                    epochs: AtomicU64::new(0),
                    failed_at: AtomicU64::new(0),
                })
            }
        };
        metrics.session_store_up.set(1);
        Ok(RedisStore {
            backend,
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

    /// This thread's connection, created on first use, and the epoch of the master it goes
    /// to (Sentinel; 0 otherwise).
    async fn connection(&self) -> Result<(u64, Conn), StoreUnavailable> {
        let master = match &self.backend {
            Backend::Sentinel(sentinel) => Some(self.master(sentinel).await?),
            _ => None,
        };
        let epoch = master.as_ref().map_or(0, |m| m.epoch);
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            if let Some((_, _, _, c)) = conns
                .iter()
                .find(|(g, e, _, _)| *g == self.generation && *e == epoch)
            {
                return Ok((epoch, c.clone()));
            }
            conns.retain(|(g, _, alive, _)| alive.strong_count() > 0 && *g != self.generation);
            let manager = |client: redis::Client| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.cfg.timeout))
                    .set_response_timeout(Some(self.cfg.timeout))
                    // One quick retry; beyond that the request fails and the next one tries again.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(client, config)
                    .map(Conn::Single)
                    .map_err(|e| StoreUnavailable {
                        op: "connect",
                        reason: describe(&e),
                    })
            };
            let conn = match (&self.backend, master) {
                (Backend::Standalone(client), _) => manager(client.clone())?,
                (Backend::Sentinel(_), Some(m)) => manager(m.client.clone())?,
                (Backend::Sentinel(_), None) => unreachable_master()?,
                (Backend::Cluster(client), _) => Conn::Cluster(
                    client.get_pending_async_connection_with_config(
                        ClusterConfig::new()
                            .set_connection_timeout(self.cfg.timeout)
                            .set_response_timeout(self.cfg.timeout),
                    ),
                ),
            };
            conns.push((
                self.generation,
                epoch,
                Arc::downgrade(&self.alive),
                conn.clone(),
            ));
            Ok((epoch, conn))
        })
    }

    /// The master the sentinels named, asking them when none is known or it went stale. Bounded
    /// (waiting for another request's lookup, then one's own, each at most the lookup budget),
    /// and at once after a lookup failed less than [`LOOKUP_BACKOFF`] ago.
    async fn master(&self, sentinel: &Sentinel) -> Result<Arc<Master>, StoreUnavailable> {
        let usable = |m: &Option<Arc<Master>>| {
            m.as_ref()
                .filter(|m| !m.stale.load(Ordering::Relaxed))
                .cloned()
        };
        if let Some(m) = usable(&sentinel.master.load_full()) {
            return Ok(m);
        }
        let failed_recently = || {
            crate::clock::now_ms().saturating_sub(sentinel.failed_at.load(Ordering::Relaxed))
                < millis(LOOKUP_BACKOFF)
        };
        let unavailable = |reason: String| StoreUnavailable {
            op: "sentinel",
            reason,
        };
        if failed_recently() {
            return Err(unavailable(
                "the sentinels named no master just now".to_owned(),
            ));
        }
        // One request asks; the others wait for its answer.
        let Ok(mut client) =
            tokio::time::timeout(self.lookup_budget(), sentinel.client.lock()).await
        else {
            return Err(unavailable("the sentinels are being asked".to_owned()));
        };
        let current = sentinel.master.load_full();
        if let Some(m) = usable(&current) {
            return Ok(m);
        }
        if failed_recently() {
            return Err(unavailable(
                "the sentinels named no master just now".to_owned(),
            ));
        }
        let found =
            match tokio::time::timeout(self.lookup_budget(), client.async_get_client()).await {
                Ok(Ok(found)) => found,
                outcome => {
                    sentinel
                        .failed_at
                        .store(crate::clock::now_ms(), Ordering::Relaxed);
                    return Err(unavailable(match outcome {
                        Ok(Err(e)) => describe(&e),
                        _ => "the sentinels named no master in time".to_owned(),
                    }));
                }
            };
        Ok(self.adopt(sentinel, current, found))
    }

    /// Makes `found` the master: the same address keeps its epoch (and the connections to it).
    fn adopt(
        &self,
        sentinel: &Sentinel,
        current: Option<Arc<Master>>,
        found: redis::Client,
    ) -> Arc<Master> {
        if let Some(m) = current {
            if m.client.get_connection_info().addr() == found.get_connection_info().addr() {
                m.stale.store(false, Ordering::Relaxed);
                return m;
            }
        }
        let epoch = sentinel.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        let master = Arc::new(Master {
            epoch,
            client: found,
            stale: AtomicBool::new(false),
        });
        sentinel.master.store(Some(master.clone()));
        if epoch == 1 {
            tracing::info!(epoch, "session store: the sentinels named the Redis master");
        } else {
            tracing::warn!(
                epoch,
                "session store: the sentinels name another Redis master (failover); switching to it"
            );
        }
        master
    }

    /// Asks the sentinels which master they name now, and switches to it when it is another
    /// one: after a failover the old master may accept writes until the sentinels reconfigure
    /// it, and those would be lost.
    async fn follow_sentinels(&self, sentinel: &Sentinel) {
        if sentinel.master.load().is_none() {
            return; // None known: the next command asks.
        }
        let Ok(mut client) = sentinel.client.try_lock() else {
            return; // A request is asking right now.
        };
        let found = tokio::time::timeout(self.lookup_budget(), client.async_get_client()).await;
        let Ok(Ok(found)) = found else {
            return; // Sentinels or master unreachable: commands fail and say so.
        };
        // What is current now (a request may have adopted a master meanwhile): the same address
        // stays as it is (and is no longer stale), another one is switched to.
        let current = sentinel.master.load_full();
        self.adopt(sentinel, current, found);
    }

    /// How long one lookup at the sentinels may take.
    fn lookup_budget(&self) -> Duration {
        self.cfg.timeout.max(LOOKUP_BUDGET)
    }

    /// Drops this thread's connection to this store: after a command timed out, the connection
    /// may be dead without knowing it (a middlebox dropped it silently); the next command
    /// opens a new one. Other threads keep theirs.
    fn drop_thread_connection(&self) {
        CONNECTIONS.with(|cell| {
            cell.borrow_mut()
                .retain(|(g, _, _, _)| *g != self.generation)
        });
    }

    /// After an error that means the master is gone or demoted: ask the sentinels again. A slow
    /// answer alone is not such an error (it would make every thread reconnect).
    fn forget_master(&self, epoch: u64, e: &redis::RedisError) {
        let Backend::Sentinel(sentinel) = &self.backend else {
            return;
        };
        // READONLY: demoted to a replica; NOREPLICAS: a master cut off from its replicas
        // (with min-replicas-to-write, the old master after a failover).
        let gone = e.is_connection_refusal()
            || e.is_connection_dropped()
            || matches!(e.code(), Some("READONLY" | "NOREPLICAS" | "MASTERDOWN"));
        if gone {
            if let Some(m) = sentinel.master.load_full() {
                if m.epoch == epoch {
                    m.stale.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Runs one command (or pipeline) with the store's timeout, counting and logging failures.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreUnavailable>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    {
        let outcome = match self.connection().await {
            Ok((epoch, mut conn)) => {
                match tokio::time::timeout(self.cfg.timeout, f(&mut conn)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => {
                        self.forget_master(epoch, &e);
                        Err(describe(&e))
                    }
                    Err(_) => {
                        self.drop_thread_connection();
                        Err(format!("no answer within {:?}", self.cfg.timeout))
                    }
                }
            }
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

    /// Whether the last command failed (Redis down or unreachable).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it answers (the periodic probe: the store's state is known even
    /// without traffic, for `/readyz` and `session_store_up`).
    pub async fn ping(&self) -> Result<(), StoreUnavailable> {
        if let Backend::Sentinel(sentinel) = &self.backend {
            self.follow_sentinels(sentinel).await;
        }
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

/// Adds `username`/`password` from the config to a standalone server's connection info.
fn with_credentials(mut info: redis::ConnectionInfo, cfg: &RedisConfig) -> redis::ConnectionInfo {
    let mut redis = info.redis_settings().clone();
    if let Some(user) = &cfg.username {
        redis = redis.set_username(user);
    }
    if let Some(pw) = &cfg.password {
        redis = redis.set_password(pw.expose());
    }
    info = info.set_redis_settings(redis);
    info
}

fn unreachable_master() -> Result<Conn, StoreUnavailable> {
    Err(StoreUnavailable {
        op: "sentinel",
        reason: "no master known".to_owned(),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
