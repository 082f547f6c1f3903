//! The provider's signing keys, cached with moka. Concurrent loads coalesce into one fetch; an
//! ID token with an unknown `kid` (key rotation) triggers at most one refetch per
//! `jwks_min_refetch_interval`, never one per request. A refetch swaps the new keys in only
//! when it succeeds: a token with a made-up `kid` while the provider is down must not throw
//! away the good keys (that would fail `/readyz` and every check until the provider is back).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::http::{CallError, Endpoint, ProviderHttp};
use super::ProviderJwks;
use crate::metrics::Metrics;

/// Why keys could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("{0}")]
    Unavailable(String),
    #[error("JWKS is invalid: {0}")]
    Invalid(String),
}

/// One provider's key cache.
pub struct JwksCache {
    cache: Cache<(), Arc<ProviderJwks>>,
    started: Instant,
    /// Milliseconds since `started` of the last unknown-kid refetch (0: never).
    last_refetch_ms: AtomicU64,
    min_refetch: Duration,
    /// Held while one unknown-kid refetch runs, so that callers arriving meanwhile use its
    /// result instead of starting another (never taken on the authenticated path).
    refetching: tokio::sync::Mutex<()>,
    provider: String,
    metrics: Metrics,
}

impl JwksCache {
    /// An empty cache; keys live for `ttl`, unknown kids refetch at most every `min_refetch`.
    pub fn new(
        provider: &str,
        ttl: Duration,
        min_refetch: Duration,
        metrics: Metrics,
    ) -> JwksCache {
        JwksCache {
            cache: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            started: Instant::now(),
            last_refetch_ms: AtomicU64::new(0),
            min_refetch,
            refetching: tokio::sync::Mutex::new(()),
            provider: provider.to_owned(),
            metrics,
        }
    }

    /// The cached keys, loading them if needed (one fetch however many callers wait).
    pub async fn get(
        &self,
        http: &ProviderHttp,
        uri: &str,
    ) -> Result<Arc<ProviderJwks>, JwksError> {
        self.cache
            .try_get_with((), self.fetch(http, uri))
            .await
            .map_err(|e| (*e).clone())
    }

    /// Fetches fresh keys and replaces the cached ones only on success (periodic refresh).
    pub async fn reload(&self, http: &ProviderHttp, uri: &str) -> Result<(), JwksError> {
        let keys = self.fetch(http, uri).await?;
        self.cache.insert((), keys).await;
        Ok(())
    }

    /// The cached keys, if any (no fetch).
    pub async fn current(&self) -> Option<Arc<ProviderJwks>> {
        self.cache.get(&()).await
    }

    /// Puts keys fetched elsewhere in (a reload's successor takes its predecessor's over).
    pub async fn put(&self, keys: Arc<ProviderJwks>) {
        self.cache.insert((), keys).await;
    }

    /// Whether keys are cached now.
    pub fn is_loaded(&self) -> bool {
        self.cache.contains_key(&())
    }

    /// After an unknown `kid`: refetch unless one happened less than `min_refetch` ago, and
    /// swap the keys in only on success. Returns the fresh keys (or, for a caller that waited
    /// on a refetch that just ran, the keys it left), `None` when rate-limited, or the error
    /// of a failed refetch (the previous keys stay cached).
    pub async fn refetch(
        &self,
        http: &ProviderHttp,
        uri: &str,
    ) -> Option<Result<Arc<ProviderJwks>, JwksError>> {
        let waited_from = self.elapsed_ms();
        let _one_at_a_time = self.refetching.lock().await;
        let now = self.elapsed_ms();
        let last = self.last_refetch_ms.load(Ordering::Acquire);
        let min = u64::try_from(self.min_refetch.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < min {
            // A refetch finished while this caller waited: its keys are worth a look.
            if last >= waited_from {
                return self.cache.get(&()).await.map(Ok);
            }
            return None;
        }
        self.last_refetch_ms.store(now, Ordering::Release);
        match self.fetch(http, uri).await {
            Ok(keys) => {
                self.cache.insert((), keys.clone()).await;
                Some(Ok(keys))
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "JWKS refetch for an unknown kid failed; keeping the previous keys");
                Some(Err(e))
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn fetch(&self, http: &ProviderHttp, uri: &str) -> Result<Arc<ProviderJwks>, JwksError> {
        let result = match http.get(Endpoint::Jwks, uri, None).await {
            Ok(body) => serde_json::from_slice::<ProviderJwks>(&body)
                .map_err(|e| JwksError::Invalid(e.to_string()))
                .and_then(|set| {
                    if set.keys().is_empty() {
                        Err(JwksError::Invalid("no usable keys".into()))
                    } else {
                        Ok(Arc::new(set))
                    }
                }),
            Err(e @ CallError::Unreachable { .. }) => Err(JwksError::Unavailable(e.to_string())),
            Err(e @ CallError::Status { .. }) => Err(JwksError::Unavailable(e.to_string())),
            Err(e @ CallError::TooLarge { .. }) => Err(JwksError::Invalid(e.to_string())),
        };
        let label = if result.is_ok() { "success" } else { "error" };
        self.metrics
            .jwks_refresh
            .with_label_values(&[self.provider.as_str(), label])
            .inc();
        result
    }
}
