//! Every Prometheus metric of the gateway, on a private registry whose prefix makes each name
//! start with `oidc_gateway_`. Labels are bounded: route names from the config, status codes,
//! provider names, fixed event and endpoint names; never a raw path, user or token.

use std::collections::HashMap;
use std::time::Duration;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics, unprefixed as every exporter names them.
    process: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub auth_events: IntCounterVec,
    pub jwks_refresh: IntCounterVec,
    pub provider_request_duration: HistogramVec,
    pub provider_errors: IntCounterVec,
    pub provider_ready: IntGaugeVec,
    /// 1 while the provider's last call succeeded (or was refused by it), 0 after it could not
    /// be reached, timed out or answered 5xx; every JWKS refresh updates it.
    pub provider_up: IntGaugeVec,
    /// From choosing the upstream to its response head (connect included), by route.
    pub upstream_duration: HistogramVec,
    /// Requests being processed now (a guard in each request's context keeps it right).
    pub requests_in_flight: IntGauge,
    /// Bytes of session cookie values (all chunks) written at login and on renewal.
    pub session_cookie_bytes: HistogramVec,
    /// Configuration reloads, by result (`success` | `failure`).
    pub config_reloads: IntCounterVec,
    /// 0 while the session store (Redis) does not answer; 1 otherwise (always, for cookies).
    pub session_store_up: IntGauge,
    /// Failed session store commands, by operation.
    pub session_store_errors: IntCounterVec,
    pub revocations: IntGauge,
    /// Back-channel logout requests, by provider and result.
    pub backchannel_logouts: IntCounterVec,
    /// When the listener's certificate expires (Unix seconds); present only with TLS.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Open client connections on the proxy listener.
    pub connections_open: IntGauge,
    /// Client connections the gateway ended itself, by reason (`max_connections`: refused at
    /// once; `request_header_timeout`: the header did not arrive in time).
    pub connections_dropped: IntCounterVec,
}

/// The `reason` labels of `connections_dropped_total`.
pub const CONNECTION_DROP_REASONS: [&str; 2] = ["max_connections", "request_header_timeout"];

/// The `endpoint` labels of provider calls (`oidc::http::Endpoint::label`).
pub const PROVIDER_ENDPOINTS: [&str; 4] = ["discovery", "jwks", "token", "userinfo"];

/// Authentication events counted in `auth_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEvent {
    LoginStarted,
    LoginSucceeded,
    LoginFailed,
    Refreshed,
    RefreshFailed,
    Forbidden,
    Logout,
}

impl AuthEvent {
    const ALL: [AuthEvent; 7] = [
        AuthEvent::LoginStarted,
        AuthEvent::LoginSucceeded,
        AuthEvent::LoginFailed,
        AuthEvent::Refreshed,
        AuthEvent::RefreshFailed,
        AuthEvent::Forbidden,
        AuthEvent::Logout,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthEvent::LoginStarted => "login_started",
            AuthEvent::LoginSucceeded => "login_succeeded",
            AuthEvent::LoginFailed => "login_failed",
            AuthEvent::Refreshed => "refreshed",
            AuthEvent::RefreshFailed => "refresh_failed",
            AuthEvent::Forbidden => "forbidden",
            AuthEvent::Logout => "logout",
        }
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = match Registry::new_custom(Some("oidc_gateway".into()), None) {
            Ok(r) => r,
            Err(_) => Registry::new(),
        };
        let requests = static_metric(IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by route and status"),
            &["route", "status"],
        ));
        let request_duration = static_metric(HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time to answer a request, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        ));
        let auth_events = static_metric(IntCounterVec::new(
            Opts::new(
                "auth_events_total",
                "Authentication events, by provider and event",
            ),
            &["provider", "event"],
        ));
        let jwks_refresh = static_metric(IntCounterVec::new(
            Opts::new("jwks_refresh_total", "JWKS fetches, by provider and result"),
            &["provider", "result"],
        ));
        let provider_request_duration = static_metric(HistogramVec::new(
            HistogramOpts::new(
                "provider_request_duration_seconds",
                "Time of calls to the provider, by provider and endpoint",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider", "endpoint"],
        ));
        let provider_errors = static_metric(IntCounterVec::new(
            Opts::new(
                "provider_errors_total",
                "Failed calls to the provider, by provider and endpoint",
            ),
            &["provider", "endpoint"],
        ));
        let provider_ready = static_metric(IntGaugeVec::new(
            Opts::new(
                "provider_ready",
                "1 once the provider's discovery and JWKS have loaded",
            ),
            &["provider"],
        ));
        let provider_up = static_metric(IntGaugeVec::new(
            Opts::new(
                "provider_up",
                "0 after a call to the provider failed (unreachable, timeout, 5xx), else 1",
            ),
            &["provider"],
        ));
        let upstream_duration = static_metric(HistogramVec::new(
            HistogramOpts::new(
                "upstream_duration_seconds",
                "Time from choosing the upstream to its response head, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["route"],
        ));
        let requests_in_flight = static_metric(IntGauge::new(
            "requests_in_flight",
            "Requests being processed by the proxy listener",
        ));
        let session_cookie_bytes = static_metric(HistogramVec::new(
            HistogramOpts::new(
                "session_cookie_bytes",
                "Size of the session cookie values written, all chunks together, by provider",
            )
            // Browsers cap one cookie near 4096 bytes; the buckets show when sessions start to
            // need several chunks.
            .buckets(vec![
                256.0, 512.0, 1024.0, 2048.0, 3072.0, 3800.0, 7600.0, 11400.0, 15200.0, 30400.0,
            ]),
            &["provider"],
        ));
        let config_reloads = static_metric(IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Configuration reloads (SIGHUP), by result",
            ),
            &["result"],
        ));
        let session_store_up = static_metric(IntGauge::new(
            "session_store_up",
            "0 while the session store (Redis) does not answer, else 1",
        ));
        let session_store_errors = static_metric(IntCounterVec::new(
            Opts::new(
                "session_store_errors_total",
                "Failed session store (Redis) commands, by operation",
            ),
            &["op"],
        ));
        let revocations = static_metric(IntGauge::new(
            "session_revocations",
            "Revoked provider sessions and users this instance refuses cookie sessions of (back-channel logout)",
        ));
        let backchannel_logouts = static_metric(IntCounterVec::new(
            Opts::new(
                "backchannel_logout_total",
                "Back-channel logout requests, by provider and result",
            ),
            &["provider", "result"],
        ));
        let tls_certificate_expiry = static_metric(IntGaugeVec::new(
            Opts::new(
                "tls_certificate_expiry_timestamp_seconds",
                "When the listener's TLS certificate expires (notAfter, Unix time)",
            ),
            &["listener"],
        ));
        let connections_open = static_metric(IntGauge::new(
            "connections_open",
            "Open client connections on the proxy listener",
        ));
        let connections_dropped = static_metric(IntCounterVec::new(
            Opts::new(
                "connections_dropped_total",
                "Client connections closed by the gateway without an answer, by reason",
            ),
            &["reason"],
        ));
        for reason in CONNECTION_DROP_REASONS {
            connections_dropped.with_label_values(&[reason]);
        }
        session_store_up.set(1);
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(auth_events.clone()),
            Box::new(jwks_refresh.clone()),
            Box::new(provider_request_duration.clone()),
            Box::new(provider_errors.clone()),
            Box::new(provider_ready.clone()),
            Box::new(provider_up.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(requests_in_flight.clone()),
            Box::new(session_cookie_bytes.clone()),
            Box::new(config_reloads.clone()),
            Box::new(session_store_up.clone()),
            Box::new(session_store_errors.clone()),
            Box::new(revocations.clone()),
            Box::new(backchannel_logouts.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_dropped.clone()),
        ] {
            // Only a duplicate name fails, which a fresh registry cannot have.
            let _ = registry.register(c);
        }
        let process = Registry::new();
        let _ = process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            registry,
            process,
            requests,
            request_duration,
            auth_events,
            jwks_refresh,
            provider_request_duration,
            provider_errors,
            provider_ready,
            provider_up,
            upstream_duration,
            requests_in_flight,
            session_cookie_bytes,
            config_reloads,
            session_store_up,
            session_store_errors,
            revocations,
            backchannel_logouts,
            tls_certificate_expiry,
            connections_open,
            connections_dropped,
        }
    }

    /// Keeps the series of these providers and routes only (besides the gateway's own labels),
    /// and creates each provider's events and JWKS results and each route's durations at zero,
    /// so that rates and ratios (and the alerts on them) exist before the first event, and a
    /// provider or route taken out of the config leaves the dashboard with it.
    pub fn settle(&self, providers: &[&str], routes: &[&str]) {
        let provider_kept = |p: &str| p == "unknown" || providers.contains(&p);
        // `none`: requests that ended before a route was read; like `gateway` and `unmatched`,
        // a label of every configuration (and one a live state keeps its handles for).
        let route_kept =
            |r: &str| r == "gateway" || r == "unmatched" || r == "none" || routes.contains(&r);
        retain(&self.auth_events, "provider", &provider_kept);
        retain(&self.jwks_refresh, "provider", &provider_kept);
        retain(&self.provider_request_duration, "provider", &provider_kept);
        retain(&self.provider_errors, "provider", &provider_kept);
        retain(&self.provider_ready, "provider", &provider_kept);
        retain(&self.provider_up, "provider", &provider_kept);
        retain(&self.session_cookie_bytes, "provider", &provider_kept);
        retain(&self.backchannel_logouts, "provider", &provider_kept);
        retain(&self.requests, "route", &route_kept);
        retain(&self.request_duration, "route", &route_kept);
        retain(&self.upstream_duration, "route", &route_kept);
        for &provider in providers {
            for event in AuthEvent::ALL {
                self.auth_events
                    .with_label_values(&[provider, event.label()]);
            }
            for result in ["success", "error"] {
                self.jwks_refresh.with_label_values(&[provider, result]);
            }
            self.provider_ready.with_label_values(&[provider]);
            for endpoint in PROVIDER_ENDPOINTS {
                self.provider_errors
                    .with_label_values(&[provider, endpoint]);
            }
        }
        for &route in routes {
            self.request_duration.with_label_values(&[route]);
        }
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.requests_in_flight.inc();
        InFlight(self.requests_in_flight.clone())
    }

    /// Records the size of a session written as these `Set-Cookie` values (name=value; attrs).
    pub fn session_written(&self, provider: &str, set_cookies: &[String]) {
        let bytes: usize = set_cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .filter_map(|pair| pair.split_once('='))
            .map(|(_, value)| value.len())
            .sum();
        if bytes > 0 {
            self.session_cookie_bytes
                .with_label_values(&[provider])
                .observe(bytes as f64);
        }
    }

    /// Counts one authentication event.
    pub fn auth_event(&self, provider: &str, event: AuthEvent) {
        self.auth_events
            .with_label_values(&[provider, event.label()])
            .inc();
    }

    /// The request metrics of one `route` label, to keep for the life of a state.
    pub fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics::new(
            route,
            &self.requests,
            &self.request_duration,
            &self.upstream_duration,
        )
    }

    /// Counts a finished request and observes its durations (`for_route` on the hot path).
    pub fn request_done(
        &self,
        route: &str,
        status: u16,
        elapsed: Duration,
        upstream: Option<Duration>,
    ) {
        self.for_route(route)
            .request_done(status, elapsed, upstream);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

/// A metric built from static names and labels: creating it cannot fail.
fn static_metric<T>(metric: prometheus::Result<T>) -> T {
    match metric {
        Ok(m) => m,
        Err(e) => unreachable!("metric definitions are static and valid: {e}"),
    }
}

/// Removes the series of `vec` whose `label` is not `kept`.
fn retain<T: MetricVecBuilder>(vec: &MetricVec<T>, label: &str, kept: &dyn Fn(&str) -> bool) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get(label).is_some_and(|v| !kept(v)) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Keeps `requests_in_flight` counted while alive: dropped with the request's context, whatever
/// path the request took (answered by the gateway, proxied, failed, client gone).
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

mod route;
#[cfg(test)]
mod tests;

#[cfg(test)]
use route::status_label;
pub use route::RouteMetrics;
