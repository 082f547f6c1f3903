//! The provider's signing keys, cached with moka. Concurrent loads coalesce into one fetch; an
//! ID token with an unknown `kid` (key rotation) triggers at most one refetch per
//! `jwks_min_refetch_interval`, never one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use openidconnect::core::CoreJsonWebKeySet;

use super::http::{CallError, Endpoint, ProviderHttp};
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
    cache: Cache<(), Arc<CoreJsonWebKeySet>>,
    started: Instant,
    /// Milliseconds since `started` of the last unknown-kid refetch (0: never).
    last_refetch_ms: AtomicU64,
    min_refetch: Duration,
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
            provider: provider.to_owned(),
            metrics,
        }
    }

    /// The cached keys, loading them if needed (one fetch however many callers wait).
    pub async fn get(
        &self,
        http: &ProviderHttp,
        uri: &str,
    ) -> Result<Arc<CoreJsonWebKeySet>, JwksError> {
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

    /// Whether keys are cached now.
    pub fn is_loaded(&self) -> bool {
        self.cache.contains_key(&())
    }

    /// After an unknown `kid`: refetch unless one happened less than `min_refetch` ago.
    /// Returns the fresh keys, or `None` when rate-limited.
    pub async fn refetch(
        &self,
        http: &ProviderHttp,
        uri: &str,
    ) -> Option<Result<Arc<CoreJsonWebKeySet>, JwksError>> {
        let now = self.elapsed_ms();
        let last = self.last_refetch_ms.load(Ordering::Acquire);
        let min = u64::try_from(self.min_refetch.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < min {
            return None;
        }
        // Only one caller wins the slot; the others wait on the same coalesced load.
        if self
            .last_refetch_ms
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.cache.invalidate(&()).await;
        }
        Some(self.get(http, uri).await)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn fetch(
        &self,
        http: &ProviderHttp,
        uri: &str,
    ) -> Result<Arc<CoreJsonWebKeySet>, JwksError> {
        let result = match http.get(Endpoint::Jwks, uri, None).await {
            Ok(body) => serde_json::from_slice::<CoreJsonWebKeySet>(&body)
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
        };
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .jwks_refresh
            .with_label_values(&[self.provider.as_str(), label])
            .inc();
        result
    }
}
