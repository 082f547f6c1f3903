//! Client connections on the proxy listener: how many may be open at once, and how long one
//! may take to send a request header. A client that opens connections and never finishes a
//! header (slowloris) holds each until `server.request_header_timeout`, and no more than
//! `server.max_connections` of them at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::state::GatewayState;

/// Wraps the proxy application: a connection beyond `server.max_connections` is closed as soon
/// as it is accepted (before anything is read from it), and counted.
pub struct ConnectionLimit<A> {
    inner: Arc<A>,
    state: Arc<ArcSwap<GatewayState>>,
    open: AtomicUsize,
    metrics: Metrics,
}

impl<A> ConnectionLimit<A> {
    pub fn new(inner: A, state: Arc<ArcSwap<GatewayState>>, metrics: Metrics) -> Self {
        ConnectionLimit {
            inner: Arc::new(inner),
            state,
            open: AtomicUsize::new(0),
            metrics,
        }
    }

    /// A place for one more connection, or `None` at the limit (read from the configuration in
    /// force, so a reload changes it for new connections).
    fn admit(&self) -> Option<Slot<'_, A>> {
        let limit = self.state.load().config.server.max_connections;
        if self.open.fetch_add(1, Ordering::Relaxed) >= limit {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.metrics
                .connections_dropped
                .with_label_values(&["max_connections"])
                .inc();
            return None;
        }
        self.metrics.connections_open.inc();
        Some(Slot(self))
    }
}

/// One open connection; gives its place back when dropped, however the connection ends.
struct Slot<'a, A>(&'a ConnectionLimit<A>);

impl<A> Drop for Slot<'_, A> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.connections_open.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionLimit<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = self.admit() else {
            // Dropping the stream closes it: nothing was read, nothing is answered.
            tracing::debug!("max_connections reached; connection closed");
            return None;
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// How long reading one request header may take: on a new connection
/// `request_header_timeout`; on a keep-alive connection the idle wait comes first, so
/// `keepalive_timeout` plus `request_header_timeout`.
pub fn header_deadline(server: &ServerConfig, reused: bool) -> Duration {
    if reused {
        server.keepalive_timeout + server.request_header_timeout
    } else {
        server.request_header_timeout
    }
}

/// The keep-alive wait of this connection after its answer, unless it is not kept alive
/// (`Connection: close`, HTTP/1.0, shutting down, or a gateway answer that closes it).
pub fn keep_alive(session: &mut Session, server: &ServerConfig) {
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(server.keepalive_timeout.as_secs()));
    }
}
