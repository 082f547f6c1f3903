//! Reload without downtime: SIGHUP re-reads the config file given to `run` and, when it is valid,
//! swaps the gateway state (routes, headers, rules, providers, cookie keys, upstream CAs, the
//! listener certificate) for new requests. Requests already in flight keep the state they
//! started with (each holds its own `Arc`), so nothing is cut off.
//!
//! An invalid config is refused with one log line naming every problem; the running state stays.
//! New or changed providers fetch discovery and keys before the swap; one that cannot be reached
//! is retried in the background exactly as at start-up. Also here: the supervisor that keeps every
//! provider of the current state loaded, following reloads.
//!
//! This module must not touch the request path: it only builds a state and stores it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Problems};
use crate::metrics::Metrics;
use crate::oidc::{LoadError, Provider};
use crate::session::redis_store::RedisStore;
use crate::session::revocation::Revocations;
use crate::state::{GatewayState, StateError};
use crate::tls::{ListenerCert, TlsError};

/// How often the session store (Redis) is asked whether it answers, without traffic (and,
/// with Sentinel, which master the sentinels name).
const STORE_PROBE: Duration = Duration::from_secs(1);

/// Why a reload was refused (the running state stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{} problem(s) in the new config: {}", .0.0.len(), one_line(.0))]
    Invalid(Problems),
    #[error("{what} cannot change while running; restart the gateway to change it")]
    NeedsRestart { what: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("provider {provider}: {source}")]
    Provider { provider: String, source: LoadError },
    #[error("listener certificate: {0}")]
    Tls(#[from] TlsError),
}

fn one_line(problems: &Problems) -> String {
    problems
        .0
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything a reload swaps, shared with the proxy, the admin listener and the supervisor.
#[derive(Clone)]
pub struct Reloader {
    pub config_path: Option<PathBuf>,
    pub state: Arc<ArcSwap<GatewayState>>,
    pub metrics: Metrics,
    /// The proxy listener's certificate, when it terminates TLS.
    pub listener_cert: Option<Arc<ListenerCert>>,
    /// Bumped after every swap, so the supervisor looks at the new providers.
    pub generation: watch::Sender<u64>,
}

/// Makes SIGHUP harmless from now on: until a handler is registered, its default action would end
/// the process. Called before the server starts, so an early `systemctl reload` cannot kill it.
pub fn claim_sighup() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Tokio keeps a signal's handler installed for the life of the process once registered.
    rt.block_on(async { signal(SignalKind::hangup()).map(drop) })
}

impl Reloader {
    /// Reads the config file and swaps the state, or explains why not.
    pub async fn reload(&self, path: &Path) -> Result<(), ReloadError> {
        let config = Config::load(path).map_err(ReloadError::Invalid)?;
        let old = self.state.load_full();
        restart_only_changes(&old.config, &config)?;
        for w in &config.warnings {
            tracing::warn!("config: {w}");
        }
        let new = GatewayState::reusing(config, &self.metrics, &old.providers, Some(&old.store))?;
        let fresh: Vec<&Arc<Provider>> = new
            .providers
            .iter()
            .map(|p| &p.oidc)
            .filter(|p| !old.providers.iter().any(|o| Arc::ptr_eq(&o.oidc, p)))
            .collect();
        for provider in fresh {
            // Like start-up: a wrong issuer refuses the config, an unreachable provider does not
            // (the supervisor retries it; until then its logins get 503).
            let wait = provider.cfg.timeout + Duration::from_secs(1);
            match tokio::time::timeout(wait, provider.load()).await {
                Ok(Ok(())) => {
                    tracing::info!(provider = provider.name(), "reload: provider loaded")
                }
                Ok(Err(e)) if e.is_fatal() => {
                    return Err(ReloadError::Provider {
                        provider: provider.name().to_owned(),
                        source: e,
                    })
                }
                Ok(Err(e)) => {
                    tracing::warn!(provider = provider.name(), error = %e, "reload: provider not reachable; retrying in the background")
                }
                Err(_) => tracing::warn!(
                    provider = provider.name(),
                    "reload: provider did not answer; retrying in the background"
                ),
            }
            if let Some(before) = old
                .providers
                .iter()
                .find(|o| o.oidc.name() == provider.name())
            {
                provider.adopt_documents(&before.oidc).await;
            }
        }
        // The last fallible step, so a refused reload never leaves a new certificate behind.
        if let (Some(cert), Some(files)) = (&self.listener_cert, &new.config.server.tls) {
            cert.reload(files)?;
            cert.publish_expiry(&self.metrics);
        }
        for p in &new.providers {
            self.metrics
                .provider_ready
                .with_label_values(&[p.oidc.name()])
                .set(i64::from(p.oidc.is_ready()));
        }
        let routes = new.config.routes.len();
        let providers = new.providers.len();
        self.state.store(Arc::new(new));
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(
            config = %path.display(),
            routes,
            providers,
            "configuration reloaded"
        );
        Ok(())
    }
}

/// Settings bound to sockets or threads that exist since start-up.
fn restart_only_changes(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let mut what = Vec::new();
    if old.server.listen != new.server.listen {
        what.push("server.listen");
    }
    if old.server.tls.is_some() != new.server.tls.is_some() {
        what.push("TLS on the listener (server.tls_cert_file / tls_key_file)");
    }
    if old.admin.listen != new.admin.listen {
        what.push("admin.listen");
    }
    if what.is_empty() {
        if old.server.threads != new.server.threads {
            tracing::warn!("reload: server.threads changes only at the next restart");
        }
        if old.server.keepalive_timeout != new.server.keepalive_timeout && new.server.tls.is_some()
        {
            tracing::warn!("reload: server.keepalive_timeout applies to HTTP/2 connections only after the next restart");
        }
        Ok(())
    } else {
        Err(ReloadError::NeedsRestart {
            what: what.join(", "),
        })
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        match &self.config_path {
            Some(p) => tracing::info!(config = %p.display(), "SIGHUP reloads the configuration"),
            None => tracing::info!("no config file (demo): SIGHUP is ignored"),
        }
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let Some(path) = &self.config_path else { continue };
                    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
                    match self.reload(path).await {
                        Ok(()) => self.metrics.config_reloads.with_label_values(&["success"]).inc(),
                        Err(e) => {
                            self.metrics.config_reloads.with_label_values(&["failure"]).inc();
                            tracing::error!(error = %e, "reload refused; the running configuration stays");
                        }
                    }
                    // A refused reload may have loaded providers it never put to use.
                    self.state.load().settle_metrics(&self.metrics);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Keeps every provider of the current state loaded (retry with backoff, periodic refresh) and
/// follows reloads: providers taken over keep their task, new ones get one, removed ones stop.
pub struct ProviderSupervisor {
    pub state: Arc<ArcSwap<GatewayState>>,
    pub generation: watch::Receiver<u64>,
}

#[async_trait]
impl BackgroundService for ProviderSupervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generation = self.generation.clone();
        let mut running: Vec<(Arc<Provider>, JoinHandle<()>)> = Vec::new();
        // The Redis store's probe and the shared revocation list's follower, of the current
        // state (a reload that keeps them keeps their task).
        let mut store_task: Option<(Arc<RedisStore>, JoinHandle<()>)> = None;
        let mut list_task: Option<(Arc<Revocations>, JoinHandle<()>)> = None;
        loop {
            let state = self.state.load_full();
            let redis = state.store.redis_in_use();
            if store_task
                .as_ref()
                .map(|(s, _)| s)
                .zip(redis)
                .is_none_or(|(old, new)| !Arc::ptr_eq(old, new))
            {
                if let Some((_, task)) = store_task.take() {
                    task.abort();
                }
                store_task = redis.map(|r| {
                    let weak = Arc::downgrade(r);
                    (
                        r.clone(),
                        tokio::spawn(RedisStore::probe(weak, STORE_PROBE)),
                    )
                });
            }
            let list = state.store.revocations().filter(|l| l.redis().is_some());
            if list_task
                .as_ref()
                .map(|(l, _)| l)
                .zip(list)
                .is_none_or(|(old, new)| !Arc::ptr_eq(old, new))
            {
                if let Some((_, task)) = list_task.take() {
                    task.abort();
                }
                list_task = list.map(|l| {
                    let weak = Arc::downgrade(l);
                    let watch = shutdown.clone();
                    (
                        l.clone(),
                        tokio::spawn(Revocations::follow(weak, move || *watch.borrow())),
                    )
                });
            }
            running.retain(|(p, task)| {
                let kept = state.providers.iter().any(|q| Arc::ptr_eq(p, &q.oidc));
                if !kept {
                    task.abort();
                }
                kept
            });
            for provider in state.providers.iter().map(|p| &p.oidc) {
                if running.iter().any(|(p, _)| Arc::ptr_eq(p, provider)) {
                    continue;
                }
                let watch = shutdown.clone();
                let p = provider.clone();
                let task = tokio::spawn(async move { p.keep_loaded(|| *watch.borrow()).await });
                running.push((provider.clone(), task));
            }
            drop(state);
            tokio::select! {
                changed = generation.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let tasks = running.into_iter().map(|(_, t)| t);
        let tasks = tasks.chain(store_task.map(|(_, t)| t));
        for task in tasks.chain(list_task.map(|(_, t)| t)) {
            task.abort();
        }
    }
}
