//! OpenID providers: discovery, keys, and the calls of the authorization code flow.
//!
//! A `Provider` holds its discovered endpoints behind an `ArcSwap` (read without locks on every
//! login) and its keys in a moka cache. Nothing here runs on the authenticated request path.

pub mod client_auth;
pub mod discovery;
mod error;
pub mod flow;
pub mod http;
pub mod jwks;
mod provider_jwk;
pub mod verify;

pub use error::{LoginError, LoginFailure};
pub use provider_jwk::{ProviderJwk, ProviderJwks};

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::config::ProviderConfig;
use crate::metrics::Metrics;
use client_auth::{ClientAuthError, Credentials};
use discovery::{Discovered, DiscoveryError};
use http::{Endpoint, ProviderHttp};
use jwks::{JwksCache, JwksError};

/// One configured OpenID provider and what has been learnt about it.
pub struct Provider {
    pub cfg: Arc<ProviderConfig>,
    http: ProviderHttp,
    discovered: ArcSwapOption<Discovered>,
    jwks: JwksCache,
    credentials: Credentials,
    metrics: Metrics,
}

/// Why loading discovery and keys failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

impl LoadError {
    /// A configuration error that retrying will not fix.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            LoadError::Discovery(DiscoveryError::IssuerMismatch { .. })
        )
    }
}

impl Provider {
    /// Prepares a provider (nothing is fetched yet).
    pub fn new(cfg: Arc<ProviderConfig>, metrics: Metrics) -> Result<Provider, ClientAuthError> {
        // Before this provider's first client assertion or token check fixes jsonwebtoken's.
        crate::ring_rsa::install();
        let http = ProviderHttp::new(
            &cfg.name,
            cfg.timeout,
            cfg.max_response_bytes,
            metrics.clone(),
        );
        let jwks = JwksCache::new(
            &cfg.name,
            cfg.jwks_refresh_interval * 2,
            cfg.jwks_min_refetch_interval,
            metrics.clone(),
        );
        Ok(Provider {
            credentials: Credentials::new(&cfg)?,
            cfg,
            http,
            discovered: ArcSwapOption::empty(),
            jwks,
            metrics,
        })
    }

    /// The provider's name from the config.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The discovered endpoints, once loaded.
    pub fn discovered(&self) -> Option<Arc<Discovered>> {
        self.discovered.load_full()
    }

    /// Whether the last call (or probe) found the provider down: new logins then get 503.
    pub fn is_down(&self) -> bool {
        self.http.is_down()
    }

    /// Asks the JWKS URI whether the provider answers, within [`PROBE_TIMEOUT`] (or the
    /// provider's own timeout if shorter); false when it does not.
    async fn probe(&self) -> bool {
        let Some(d) = self.discovered() else {
            return false;
        };
        let limit = self.cfg.timeout.min(PROBE_TIMEOUT);
        self.http
            .probe(Endpoint::Jwks, d.jwks_uri.as_str(), limit)
            .await
    }

    /// After a reload changed this provider's settings but not where it is (same issuer and
    /// discovery URL), and it could not load its documents itself: takes the predecessor's last
    /// good discovery document and keys, so an outage during a reload costs nothing.
    pub async fn adopt_documents(&self, old: &Provider) {
        // The discovery document was checked against these settings when it was parsed.
        if self.is_ready()
            || self.cfg.issuer != old.cfg.issuer
            || self.cfg.discovery_url != old.cfg.discovery_url
            || self.cfg.id_token_algs != old.cfg.id_token_algs
            || self.cfg.allow_insecure_http != old.cfg.allow_insecure_http
        {
            return;
        }
        let (Some(discovered), Some(keys)) = (old.discovered(), old.jwks.current().await) else {
            return;
        };
        self.discovered.store(Some(discovered));
        self.jwks.put(keys).await;
        if old.is_down() {
            self.http.mark_down();
        }
        self.metrics
            .provider_ready
            .with_label_values(&[self.name()])
            .set(1);
        tracing::info!(
            provider = self.name(),
            "reload: provider not reachable; keeping the discovery document and keys loaded before"
        );
    }

    /// Whether discovery and keys have loaded.
    pub fn is_ready(&self) -> bool {
        self.discovered.load().is_some() && self.jwks.is_loaded()
    }

    /// Fetches discovery and keys once.
    pub async fn load(&self) -> Result<(), LoadError> {
        let d = discovery::discover(&self.http, &self.cfg).await?;
        let uri = d.jwks_uri.to_string();
        self.discovered.store(Some(Arc::new(d)));
        self.jwks.get(&self.http, &uri).await?;
        self.metrics
            .provider_ready
            .with_label_values(&[self.name()])
            .set(1);
        Ok(())
    }

    /// Keeps the provider loaded: retries with backoff until discovery and keys load, then
    /// refreshes both every `jwks_refresh_interval` (keeping the old ones when that fails).
    ///
    /// While the provider is down the refresh is retried with the same backoff instead of an
    /// interval later, and a call that finds it down (a login's token request, say) brings the
    /// next check forward: so `provider_up` and `jwks_refresh_total` follow the provider within
    /// a minute, in both directions, and the alerts on them neither miss an outage nor page for
    /// an hour after one failed call.
    pub async fn keep_loaded(&self, mut stop: impl FnMut() -> bool) {
        let mut backoff = Duration::from_secs(1);
        let mut probe = Probe::new(self.cfg.probe_interval);
        // Loaded at start-up already: the first refresh is due one interval from now.
        let mut fresh = self.is_ready() && !self.is_down();
        loop {
            if stop() {
                return;
            }
            let wait = if std::mem::take(&mut fresh) {
                self.cfg.jwks_refresh_interval
            } else if self.is_ready() {
                if self.refresh().await {
                    backoff = Duration::from_secs(1);
                    self.cfg.jwks_refresh_interval
                } else {
                    next_retry(&mut backoff).min(self.cfg.jwks_refresh_interval)
                }
            } else {
                match self.load().await {
                    Ok(()) => {
                        tracing::info!(
                            provider = self.name(),
                            "provider discovery and JWKS loaded"
                        );
                        backoff = Duration::from_secs(1);
                        self.cfg.jwks_refresh_interval
                    }
                    Err(e) => {
                        tracing::warn!(provider = self.name(), error = %e, retry_in = ?backoff, "provider not loaded; retrying");
                        next_retry(&mut backoff)
                    }
                }
            };
            // Sleep in short steps so that shutdown, and a call that finds the provider down,
            // are noticed promptly; probe the provider every `probe_interval` meanwhile (backing
            // off while it is down), so an outage is noticed even when nobody logs in.
            let down_before = self.http.is_down();
            let started = tokio::time::Instant::now();
            while started.elapsed() < wait {
                if stop() {
                    return;
                }
                if probe.is_due() && self.is_ready() {
                    let was_down = self.http.is_down();
                    let up = self.probe().await;
                    probe.settle(up);
                    if up == was_down {
                        if up {
                            tracing::info!(provider = self.name(), "provider answers again");
                        } else {
                            tracing::warn!(
                                provider = self.name(),
                                "provider probe failed: new logins get 503 until it answers"
                            );
                        }
                    }
                }
                if started.elapsed() >= PROBE_DELAY
                    && (!down_before && self.http.is_down() || self.http.take_suspect())
                {
                    tracing::info!(
                        provider = self.name(),
                        "a call found the provider down; checking it now"
                    );
                    break;
                }
                let left = wait.saturating_sub(started.elapsed());
                tokio::time::sleep(left.min(Duration::from_millis(250))).await;
            }
        }
    }

    /// The cached signing keys, for validating access tokens (loads them if the cache expired).
    pub async fn keys(&self) -> Result<Arc<ProviderJwks>, JwksError> {
        let d = self.discovered().ok_or_else(not_loaded)?;
        self.jwks.get(&self.http, d.jwks_uri.as_str()).await
    }

    /// After a token signed with an unknown `kid`: one refetch at most every
    /// `jwks_min_refetch_interval`; `None` when rate-limited.
    pub async fn refetch_keys(&self) -> Option<Result<Arc<ProviderJwks>, JwksError>> {
        let d = self.discovered()?;
        self.jwks.refetch(&self.http, d.jwks_uri.as_str()).await
    }

    /// Refreshes discovery and keys; true when both succeeded.
    async fn refresh(&self) -> bool {
        let discovered = match discovery::discover(&self.http, &self.cfg).await {
            Ok(d) => {
                self.discovered.store(Some(Arc::new(d)));
                true
            }
            Err(e) => {
                tracing::warn!(provider = self.name(), error = %e, "discovery refresh failed; keeping the previous document");
                false
            }
        };
        let Some(d) = self.discovered() else {
            return false;
        };
        match self.jwks.reload(&self.http, d.jwks_uri.as_str()).await {
            Ok(_) => discovered,
            Err(e) => {
                tracing::warn!(provider = self.name(), error = %e, "JWKS refresh failed; keeping the previous keys");
                false
            }
        }
    }
}

/// How long after a failed call elsewhere the provider is checked (a moment, so that a burst of
/// failing logins makes one check, not one each).
const PROBE_DELAY: Duration = Duration::from_secs(2);

/// The longest a reachability probe waits for an answer: with the default `probe_interval`
/// an outage is noticed within ten seconds, even when the provider hangs instead of refusing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The longest wait between probes while the provider is down.
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// When the next reachability probe is due: every `interval` while the provider answers, and
/// from `interval` doubling up to [`PROBE_BACKOFF_MAX`] while it does not.
struct Probe {
    interval: Duration,
    /// The wait after the next failure.
    backoff: Duration,
    next: tokio::time::Instant,
}

impl Probe {
    fn new(interval: Duration) -> Probe {
        Probe {
            interval,
            backoff: interval,
            next: tokio::time::Instant::now() + interval,
        }
    }

    fn is_due(&self) -> bool {
        !self.interval.is_zero() && tokio::time::Instant::now() >= self.next
    }

    fn settle(&mut self, up: bool) {
        let wait = if up { self.interval } else { self.backoff };
        self.backoff = if up {
            self.interval
        } else {
            (self.backoff * 2).min(PROBE_BACKOFF_MAX.max(self.interval))
        };
        self.next = tokio::time::Instant::now() + wait;
    }
}

/// The wait before the next attempt while the provider fails: 1 s, doubling up to a minute.
fn next_retry(backoff: &mut Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(60));
    wait
}

fn not_loaded() -> JwksError {
    JwksError::Unavailable("provider discovery has not loaded yet".into())
}
