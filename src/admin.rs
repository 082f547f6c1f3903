//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process serves) and
//! `/readyz` (every provider's discovery and JWKS have loaded, and the session store answers).

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::state::GatewayState;

/// The admin HTTP app.
pub struct Admin {
    pub state: Arc<ArcSwap<GatewayState>>,
    pub metrics: Metrics,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let state = self.state.load();
                let waiting: Vec<&str> = state
                    .providers
                    .iter()
                    .filter(|p| !p.oidc.is_ready())
                    .map(|p| p.oidc.name())
                    .collect();
                match (waiting.is_empty(), state.store.not_ready()) {
                    (true, None) => (200, "text/plain", b"ready\n".to_vec()),
                    (true, Some(store)) => (503, "text/plain", format!("{store}\n").into_bytes()),
                    (false, store) => (
                        503,
                        "text/plain",
                        format!(
                            "waiting for providers: {}\n{}",
                            waiting.join(", "),
                            store.map(|s| format!("{s}\n")).unwrap_or_default()
                        )
                        .into_bytes(),
                    ),
                }
            }
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_default()
    }
}
