//! How a Redis session store reaches Redis: one server, a Sentinel group (the master the
//! sentinels name), or a Cluster (redis-rs's cluster client, which follows the slot map).
//!
//! Each worker thread has its own connection (redis-rs's `ConnectionManager`, one multiplexed,
//! pipelined connection that reconnects by itself; for a cluster, its `ClusterConnection`),
//! created on first use on that thread's runtime. Together they are the pool: no lock and no
//! cross-thread hop on the request path. With Sentinel the master the sentinels named is
//! remembered; an error that says it is gone or demoted (refused, dropped, `READONLY`,
//! `NOREPLICAS`, `MASTERDOWN`) makes the next command ask the sentinels again, and the store's
//! probe asks them every second whether they name another master.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::config::{RedisConfig, RedisMode};

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

/// The connections of one store.
pub struct Connections {
    backend: Backend,
    timeout: Duration,
    /// Tells this store's thread-local connections apart from an earlier store's (reload).
    generation: u64,
    /// Dropped with the store, so its thread-local connections can be pruned.
    alive: Arc<()>,
    /// Bumped when Redis answers again after an outage: every thread then replaces its
    /// connection on its next command. A thread's old one would fail that command first (a
    /// reconnect that failed during the outage is kept and handed out once, and an idle
    /// thread's socket is dead without knowing it), so the store would flap back to down.
    renewals: AtomicU64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's connection to each live store: (store generation, master epoch, renewal,
    /// store alive, connection).
    static CONNECTIONS: RefCell<Vec<ThreadConnection>> =
        const { RefCell::new(Vec::new()) };
}

/// (store generation, master epoch, renewal, store alive, connection).
type ThreadConnection = (u64, u64, u64, Weak<()>, Conn);

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
pub enum Conn {
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

impl Connections {
    /// The connections for `cfg`, made lazily: Redis being down now is not an error.
    pub fn new(cfg: &RedisConfig) -> Result<Connections, RedisSetupError> {
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
        Ok(Connections {
            backend,
            timeout: cfg.timeout,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            renewals: AtomicU64::new(0),
        })
    }

    /// This thread's connection, created on first use, and the epoch of the master it goes
    /// to (Sentinel; 0 otherwise).
    pub async fn connection(&self) -> Result<(u64, Conn), StoreUnavailable> {
        let master = match &self.backend {
            Backend::Sentinel(sentinel) => Some(self.master(sentinel).await?),
            _ => None,
        };
        let epoch = master.as_ref().map_or(0, |m| m.epoch);
        let renewal = self.renewals.load(Ordering::Relaxed);
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            if let Some((_, _, _, _, c)) = conns
                .iter()
                .find(|(g, e, r, _, _)| *g == self.generation && *e == epoch && *r == renewal)
            {
                return Ok((epoch, c.clone()));
            }
            conns.retain(|(g, _, _, alive, _)| alive.strong_count() > 0 && *g != self.generation);
            let manager = |client: redis::Client| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
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
                            .set_connection_timeout(self.timeout)
                            .set_response_timeout(self.timeout),
                    ),
                ),
            };
            conns.push((
                self.generation,
                epoch,
                renewal,
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
    pub async fn follow_sentinels(&self) {
        let Backend::Sentinel(sentinel) = &self.backend else {
            return;
        };
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
        self.timeout.max(LOOKUP_BUDGET)
    }

    /// Drops this thread's connection to this store: after a command timed out, the connection
    /// may be dead without knowing it (a middlebox dropped it silently); the next command
    /// opens a new one. Other threads keep theirs.
    pub fn drop_thread_connection(&self) {
        CONNECTIONS.with(|cell| {
            cell.borrow_mut()
                .retain(|(g, _, _, _, _)| *g != self.generation)
        });
    }

    /// Makes every thread open a new connection on its next command (Redis answers again
    /// after an outage: see the `renewals` field).
    pub fn renew_all(&self) {
        self.renewals.fetch_add(1, Ordering::Relaxed);
    }

    /// After an error that means the master is gone or demoted: ask the sentinels again. A slow
    /// answer alone is not such an error (it would make every thread reconnect).
    pub fn forget_master(&self, epoch: u64, e: &redis::RedisError) {
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
}

/// A Redis error without the URL or credentials it might quote.
pub fn describe(e: &redis::RedisError) -> String {
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
