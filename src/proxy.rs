//! The proxy: pingora's `ProxyHttp` hooks, each delegating to the module that owns the step.
//!
//! Request path, top to bottom: `request_filter` (header limit → gateway endpoints → path
//! normalisation → route → session → login or 401 → rules) → `upstream_peer` (the route's
//! upstream) → `upstream_request_filter` (strip spoofable headers and gateway cookies, add
//! identity headers) → `response_filter` (refreshed session cookie) → `logging` (metrics and
//! access line). The authenticated path makes no provider call and takes no lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::access::{denied, Access, Admitted, Ask, Denial, Identity, OnLogin};
use crate::config::{AuthMode, RouteConfig};
use crate::endpoints::{self, login_url};
use crate::forwarded::{self, Seen};
use crate::identity;
use crate::metrics::{InFlight, Metrics};
use crate::paths::canonicalize;
use crate::respond::{self, Reply};
use crate::routing::{host_name, upstream_path};
use crate::session::RequestCookies;
use crate::state::GatewayState;

/// The pingora proxy application.
pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Metrics,
    /// Outlives configuration swaps, so a refresh in flight is still shared.
    access: Access,
}

impl Gateway {
    /// A proxy over shared, swappable state.
    pub fn new(state: Arc<ArcSwap<GatewayState>>, metrics: Metrics) -> Gateway {
        Gateway {
            state,
            access: Access::new(metrics.clone()),
            metrics,
        }
    }
}

/// Per-request state carried between hooks.
pub struct RequestCtx {
    started: Instant,
    state: Option<Arc<GatewayState>>,
    route: Option<Arc<RouteConfig>>,
    /// The canonical path and query the upstream receives, set on every attempt (pingora
    /// retries with a fresh copy of the client's request header).
    upstream_uri: Option<http::Uri>,
    /// The canonical path and query before `strip_prefix`, for `X-Forwarded-Uri`.
    canonical_uri: String,
    /// Whose claims go upstream as identity headers.
    identity: Option<Identity>,
    /// `X-Auth-Assertion` for routes with `assertion = true`.
    assertion: Option<Arc<str>>,
    set_cookies: Vec<String>,
    /// For the access line: the user, when known.
    sub: Option<String>,
    /// Label for metrics when no route matched (gateway endpoint, 404, 400).
    label: &'static str,
    /// When the upstream was chosen, and how long until its response head arrived.
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
    /// Counts the request in `requests_in_flight` until the context is dropped.
    _in_flight: InFlight,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            state: None,
            route: None,
            upstream_uri: None,
            canonical_uri: String::new(),
            identity: None,
            assertion: None,
            set_cookies: Vec::new(),
            sub: None,
            label: "none",
            upstream_started: None,
            upstream_time: None,
            _in_flight: self.metrics.in_flight(),
        }
    }

    /// Decides whether the gateway answers itself (`Ok(true)`) or the request goes upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let state = self.state.load_full();
        ctx.state = Some(state.clone());
        let reply = match self.route_request(&state, session, ctx).await {
            Some(reply) => reply,
            None => return Ok(false),
        };
        reply.send(session).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(state), Some(route)) = (&ctx.state, &ctx.route) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no route selected",
            ));
        };
        let upstream = &route.upstream;
        let addr = state.upstream_addr(route).ok_or_else(|| {
            Error::explain(ErrorType::ConnectNoRoute, "upstream address not resolved")
        })?;
        let mut peer = HttpPeer::new(addr, upstream.tls, upstream.sni.clone());
        let server = &state.config.server;
        peer.options.connection_timeout = Some(server.upstream_connect_timeout);
        peer.options.total_connection_timeout = Some(server.upstream_connect_timeout);
        peer.options.read_timeout = Some(server.upstream_read_timeout);
        // A configured CA file replaces the system roots for this upstream.
        let (ca, trust) = state.upstream_ca(route);
        peer.options.ca = ca;
        peer.group_key = trust;
        ctx.upstream_started.get_or_insert_with(Instant::now);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(state), Some(route)) = (&ctx.state, &ctx.route) else {
            return Ok(());
        };
        forwarded::strip_identity_headers(state, upstream);
        forwarded::strip_gateway_cookies(state, upstream)?;
        let seen = Seen {
            peer: peer_ip(session),
            host: session.req_header().headers.get(http::header::HOST),
            uri: &ctx.canonical_uri,
        };
        forwarded::set_forwarding_headers(state, &seen, upstream)?;
        if let Some(uri) = &ctx.upstream_uri {
            upstream.set_uri(uri.clone());
        }
        if let Some(who) = &ctx.identity {
            for (rule, value) in identity::headers(&route.headers, who.claims()) {
                upstream.insert_header(rule.display.clone(), value.as_slice())?;
            }
        }
        if let Some(assertion) = &ctx.assertion {
            upstream.insert_header(crate::assertion::HEADER, assertion.as_ref())?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Informational heads (100 Continue) come first; keep the time of the first head.
        if ctx.upstream_time.is_none() {
            ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(state) = &ctx.state {
            forwarded::drop_gateway_set_cookies(state, resp)?;
        }
        if !ctx.set_cookies.is_empty() {
            forwarded::keep_private(resp)?;
            for c in ctx.set_cookies.drain(..) {
                resp.append_header("set-cookie", c)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            // An upstream that does not answer in time is a gateway timeout, not a bad gateway.
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // The connection is not reused after a failure (`can_reuse_downstream: false` below):
        // say so with `Connection: close`, or a client sends its next request into a socket
        // that is about to close.
        session.set_keepalive(None);
        if code == 502 || code == 504 {
            let mut reply = respond::upstream_failed();
            reply.status = code;
            if let Err(err) = reply.send(session).await {
                tracing::debug!(error = %err, "could not send the 502 page");
            }
        } else if code > 0 {
            let _ = session.respond_error(code).await;
        }
        let _ = ctx;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx
            .route
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or(ctx.label);
        let elapsed = ctx.started.elapsed();
        let status_text = status_label(status);
        self.metrics
            .requests
            .with_label_values(&[route, status_text])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        // A failed upstream still took this long (up to its timeout): count it too.
        let upstream = ctx
            .upstream_time
            .or_else(|| ctx.upstream_started.map(|t| t.elapsed()));
        if let Some(up) = upstream {
            self.metrics
                .upstream_duration
                .with_label_values(&[route])
                .observe(up.as_secs_f64());
        }
        let req = session.req_header();
        tracing::info!(
            target: "access",
            method = %req.method,
            path = req.uri.path(),
            route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_ms = upstream.map(|u| u.as_secs_f64() * 1000.0),
            sub = ctx.sub.as_deref().unwrap_or("-"),
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }

    /// Pingora's error lines print this: method and path, never the query (codes, states).
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}

impl Gateway {
    /// Everything before the upstream: `Some(reply)` when the gateway answers itself.
    async fn route_request(
        &self,
        state: &Arc<GatewayState>,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Option<Reply> {
        let req = session.req_header();
        if header_bytes(req) > state.config.server.max_request_header_bytes {
            ctx.label = "gateway";
            return Some(respond::headers_too_large());
        }
        let path = match canonicalize(req.uri.path(), state.routes.fold_case()) {
            Ok(p) => p,
            Err(e) => {
                ctx.label = "gateway";
                tracing::info!(error = %e, "refused request path");
                return Some(respond::bad_request(&e.to_string()));
            }
        };
        // An absolute-form target (`GET http://other.host/x`) names a host besides `Host`
        // (pingora keeps it off `uri` but sends it upstream verbatim); a reverse proxy has no
        // use for it, and the two could be read differently.
        if req.raw_path().first() != Some(&b'/') {
            ctx.label = "gateway";
            tracing::info!("refused an absolute-form request target");
            return Some(respond::bad_request(
                "absolute-form request targets are not accepted",
            ));
        }
        // Endpoints by their exact canonical path: `/oauth2/auth;x` is not forward-auth (a
        // front proxy that keeps `= /oauth2/auth` internal would pass it on).
        if let Some(endpoint) = endpoints::match_endpoint(state, &path.forwarded) {
            ctx.label = "gateway";
            return Some(endpoints::handle(endpoint, state, &self.access, session).await);
        }
        // The gateway's own prefix, as oauth2-proxy reserves it: a path under it that is no
        // endpoint goes nowhere (a front proxy that sends `/oauth2/` here must not reach an
        // application with it).
        if path.matched == "/oauth2" || path.matched.starts_with("/oauth2/") {
            ctx.label = "gateway";
            return Some(respond::not_found());
        }
        let Ok(host) = request_host(req).map_or(Ok(None), host_name) else {
            ctx.label = "gateway";
            return Some(respond::bad_request("the Host header is not a host name"));
        };
        if host.is_none() && state.routes.has_host_routes() {
            ctx.label = "gateway";
            return Some(respond::bad_request("the request names no host"));
        }
        let Some(route) = state.routes.match_route(host, &path.matched).cloned() else {
            ctx.label = "unmatched";
            return Some(respond::not_found());
        };
        ctx.canonical_uri = with_query(&path.forwarded, req.uri.query());
        let forwarded_path = upstream_path(&route, &path);
        // Unless the client sent exactly this, the upstream gets it (pingora would otherwise
        // send the client's raw target bytes).
        if !is_target(req.raw_path(), forwarded_path, req.uri.query()) {
            match with_query(forwarded_path, req.uri.query()).parse() {
                Ok(uri) => ctx.upstream_uri = Some(uri),
                Err(_) => return Some(respond::bad_request("the path is not a valid URI")),
            }
        }
        ctx.route = Some(route.clone());
        if route.auth == AuthMode::Public {
            return None;
        }
        let cookies = RequestCookies::of(&req.headers, &state.config.session);
        let ask = Ask::for_route(&req.headers, &cookies, &route);
        let browser = ask.browser;
        match self.access.decide(state, &ask).await {
            Ok(admitted) => self.admit(state, &route, admitted, ctx).await,
            Err(denial) => {
                if let Denial::Forbidden { sub, .. } = &denial {
                    ctx.sub = sub.clone();
                }
                let return_to = with_query(&path.forwarded, req.uri.query());
                let login = login_url(state, &return_to);
                let start = || {
                    endpoints::start_login(
                        state,
                        &self.metrics,
                        route.provider,
                        return_to.clone(),
                        &cookies,
                        true,
                    )
                };
                let on_login = OnLogin::Redirect {
                    start: &start,
                    login_url: &login,
                    cors: cors_origin(state, &req.headers),
                };
                Some(denied(denial, browser, on_login))
            }
        }
    }

    /// The last step for an identified request (session or bearer token) that met the route's
    /// rules: the identity assertion; `None` lets the request go upstream with these claims.
    async fn admit(
        &self,
        state: &GatewayState,
        route: &RouteConfig,
        admitted: Admitted,
        ctx: &mut RequestCtx,
    ) -> Option<Reply> {
        let Admitted {
            identity,
            set_cookies,
            ..
        } = admitted;
        ctx.sub = identity.subject().map(str::to_owned);
        ctx.set_cookies = set_cookies;
        if route.assertion {
            match crate::assertion::for_route(state.assertions.as_ref(), route, identity.claims())
                .await
            {
                Ok(a) => ctx.assertion = a,
                Err(e) => {
                    tracing::error!(route = %route.name, error = %e, "identity assertion not signed");
                    return Some(respond::internal_error());
                }
            }
        }
        ctx.identity = Some(identity);
        None
    }
}

/// Whether the raw request target is exactly `path` plus `?query` (no allocation).
fn is_target(raw: &[u8], path: &str, query: Option<&str>) -> bool {
    let Some(rest) = raw.strip_prefix(path.as_bytes()) else {
        return false;
    };
    match query {
        None => rest.is_empty(),
        Some(q) => rest.first() == Some(&b'?') && &rest[1..] == q.as_bytes(),
    }
}

/// `path?query`, or `path` without a query.
fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The request's `Origin` when it may read a 401 (the gateway's own origin or a configured
/// CORS origin).
fn cors_origin<'a>(state: &GatewayState, headers: &'a http::HeaderMap) -> Option<&'a str> {
    let origin = headers.get("origin").and_then(|o| o.to_str().ok())?;
    let server = &state.config.server;
    (origin == server.public_origin || server.cors_origins.iter().any(|c| c == origin))
        .then_some(origin)
}

/// The peer's IP address (none for Unix sockets).
pub fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Size of the request head as the client sent it (names, values, separators).
fn header_bytes(req: &RequestHeader) -> usize {
    let uri = req
        .uri
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    req.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + uri
}

/// The request's host: `Host` (HTTP/1.1) or the URI authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
}

/// Status code as a metric label without allocating; rare codes fold into classes.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        431 => "431",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
