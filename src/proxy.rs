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

use crate::audit;
use crate::authz;
use crate::bearer::{bearer_token, BearerIdentity};
use crate::claims::Claims;
use crate::config::{AuthMode, RouteConfig};
use crate::endpoints::{self, login_url};
use crate::identity;
use crate::metrics::{InFlight, Metrics};
use crate::refresh::{self, RefreshError, Refresher, Stored};
use crate::request::{cookie_headers, is_browser};
use crate::respond::{self, Reply};
use crate::routing::{normalize_path, upstream_path};
use crate::session::cookies::clear_session;
use crate::session::{
    now, Handle, LoadError, Loaded, Miss, RequestCookies, SaveError, Session as UserSession,
};
use crate::state::GatewayState;

/// The pingora proxy application.
pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Metrics,
    /// Outlives configuration swaps, so a refresh in flight is still shared.
    refresher: Refresher,
}

impl Gateway {
    /// A proxy over shared, swappable state.
    pub fn new(state: Arc<ArcSwap<GatewayState>>, metrics: Metrics) -> Gateway {
        Gateway {
            state,
            metrics,
            refresher: Refresher::new(),
        }
    }
}

/// Per-request state carried between hooks.
pub struct RequestCtx {
    started: Instant,
    state: Option<Arc<GatewayState>>,
    route: Option<Arc<RouteConfig>>,
    /// Normalised path plus query, when it differs from what the client sent.
    rewritten_uri: Option<String>,
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
            rewritten_uri: None,
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
        strip_identity_headers(state, upstream);
        strip_gateway_cookies(state, upstream)?;
        set_forwarded_headers(state, session, upstream)?;
        if let Some(uri) = ctx.rewritten_uri.take() {
            let uri = uri.parse().map_err(|_| {
                Error::explain(ErrorType::InvalidHTTPHeader, "normalised path is not a URI")
            })?;
            upstream.set_uri(uri);
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
        for c in ctx.set_cookies.drain(..) {
            resp.append_header("set-cookie", c)?;
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
        let path = match normalize_path(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                ctx.label = "gateway";
                tracing::debug!(error = %e, "refused request path");
                return Some(respond::bad_request(&e.to_string()));
            }
        };
        if let Some(endpoint) = endpoints::match_endpoint(state, &path) {
            ctx.label = "gateway";
            return Some(endpoints::handle(endpoint, state, &self.metrics, session).await);
        }
        let host = request_host(req);
        let Some(route) = state.routes.match_route(host, &path).cloned() else {
            ctx.label = "unmatched";
            return Some(respond::not_found());
        };
        let forwarded_path = upstream_path(&route, &path);
        if forwarded_path != req.uri.path() {
            ctx.rewritten_uri = Some(match req.uri.query() {
                Some(q) => format!("{forwarded_path}?{q}"),
                None => forwarded_path.into_owned(),
            });
        }
        ctx.route = Some(route.clone());
        if route.auth == AuthMode::Public {
            return None;
        }
        // A bearer token on a bearer route decides alone: valid or 401, never a login redirect.
        if let Some(token) = route.bearer.then(|| bearer_token(&req.headers)).flatten() {
            let provider = &state.providers[route.provider];
            let kept = state.kept_paths(route.provider);
            let identity = match state.bearer[route.provider]
                .verify(provider, kept, token)
                .await
            {
                Ok(identity) => identity,
                Err(e) => {
                    tracing::debug!(route = %route.name, reason = %e, "bearer token refused");
                    return Some(respond::bearer_refused(&e));
                }
            };
            // Bearer requests are API requests: a JSON 403, whatever their Accept says.
            if let Some(reply) = forbid(&self.metrics, state, &route, &identity.claims, false) {
                ctx.sub = subject(&identity.claims);
                return Some(reply);
            }
            return self
                .admit(state, &route, Identity::Bearer(identity), ctx)
                .await;
        }
        let cfg = &state.config.session;
        let cookies = RequestCookies::parse(
            cookie_headers(&req.headers),
            &cfg.cookie_name,
            cfg.max_chunks,
        );
        let now = now();
        let provider_name = state.providers[route.provider].name();
        let browser = is_browser(&req.headers);
        let found = match state.store.load(cfg, &state.codec, &cookies).await {
            Ok(l) => match l.session.expired_at(cfg, now) {
                Some(miss) => Err(LoadError::Miss(miss)),
                None if l.session.provider != provider_name => {
                    Err(LoadError::Miss(Miss::OtherProvider))
                }
                None => Ok(l),
            },
            Err(e) => Err(e),
        };
        let Loaded {
            session: mut user,
            handle,
        } = match found {
            Ok(loaded) => loaded,
            // Fail closed: without the store nobody can be identified; the cookie stays.
            Err(LoadError::Unavailable(_)) => return Some(respond::store_unavailable(browser)),
            Err(LoadError::Miss(miss)) => {
                if miss != Miss::Absent {
                    tracing::debug!(reason = %miss, route = %route.name, "no usable session");
                }
                // A stale or broken session cookie is cleared on the way to the login.
                let stale = if miss == Miss::OtherProvider {
                    Vec::new()
                } else {
                    clear_session(cfg, &cookies)
                };
                return Some(self.login_required(state, session, &route, &path, &cookies, stale));
            }
        };
        let mut reseal = user.needs_touch(cfg, now);
        if refresh::is_due(&user, now) {
            let provider = &state.providers[route.provider];
            let kept = state.kept_paths(route.provider);
            let refreshed = match &handle {
                Handle::Redis { .. } => {
                    let stored = Stored {
                        cfg,
                        store: &state.store,
                        codec: &state.codec,
                        handle: &handle,
                    };
                    self.refresher
                        .refresh_stored(stored, provider, kept, &user, &self.metrics, now)
                        .await
                }
                Handle::Cookie => {
                    self.refresher
                        .refresh(provider, kept, &user, &self.metrics, now)
                        .await
                }
            };
            match refreshed {
                Ok(fresh) => {
                    user = Arc::new(fresh);
                    reseal = true;
                }
                // Fail closed: the provider's tokens have expired and it cannot confirm the
                // user now, so this request waits; the cookie stays for when it is back.
                Err(RefreshError::Unavailable) => {
                    return Some(respond::provider_unavailable(browser));
                }
                Err(RefreshError::Store) => return Some(respond::store_unavailable(browser)),
                Err(RefreshError::Rejected(_)) => {
                    let stale = clear_session(cfg, &cookies);
                    return Some(
                        self.login_required(state, session, &route, &path, &cookies, stale),
                    );
                }
            }
        }
        // Rules after a refresh (its claims count) and before re-sealing: a forbidden request
        // does not extend the session.
        if let Some(reply) = forbid(&self.metrics, state, &route, &user.claims, browser) {
            ctx.sub = subject(&user.claims);
            return Some(reply);
        }
        if reseal {
            // A copy: the cache of opened cookies keeps the session as it was sealed.
            let user = Arc::make_mut(&mut user);
            user.last_seen = now;
            match self.save(state, &handle, user, &cookies, now).await {
                Ok(set) => ctx.set_cookies = set,
                Err(SaveError::Unavailable(_)) => {
                    return Some(respond::store_unavailable(browser));
                }
                Err(SaveError::Gone) => {
                    tracing::debug!(route = %route.name, "session revoked during the request");
                    let stale = clear_session(cfg, &cookies);
                    return Some(
                        self.login_required(state, session, &route, &path, &cookies, stale),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "could not re-seal the session"),
            }
        }
        self.admit(state, &route, Identity::Session(user), ctx)
            .await
    }

    /// Saves a touched or refreshed session. A cookie session that no longer fits drops its
    /// logout hint rather than the session, as at login.
    async fn save(
        &self,
        state: &GatewayState,
        handle: &Handle,
        user: &mut UserSession,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, SaveError> {
        let cfg = &state.config.session;
        let mut saved = state
            .store
            .save(cfg, &state.codec, handle, user, cookies, now)
            .await;
        if matches!(saved, Err(SaveError::TooLarge(_))) && user.id_token_hint.is_some() {
            tracing::debug!("session too large with the logout hint; dropping it");
            user.id_token_hint = None;
            saved = state
                .store
                .save(cfg, &state.codec, handle, user, cookies, now)
                .await;
        }
        if let Ok(set) = &saved {
            self.metrics.session_written(&user.provider, set);
        }
        saved
    }

    /// The last step for an identified request (session or bearer token) that met the route's
    /// rules: the identity assertion; `None` lets the request go upstream with these claims.
    async fn admit(
        &self,
        state: &GatewayState,
        route: &RouteConfig,
        identity: Identity,
        ctx: &mut RequestCtx,
    ) -> Option<Reply> {
        let claims = identity.claims();
        ctx.sub = subject(claims);
        if route.assertion {
            match crate::assertion::for_route(state.assertions.as_ref(), route, claims).await {
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

impl Gateway {
    /// No usable session on a route that requires one: a browser is sent to log in, an API
    /// client gets 401 (with CORS for allowed origins). `stale` clears cookies on the way.
    fn login_required(
        &self,
        state: &GatewayState,
        session: &Session,
        route: &RouteConfig,
        path: &str,
        cookies: &RequestCookies<'_>,
        stale: Vec<String>,
    ) -> Reply {
        let req = session.req_header();
        let return_to = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        if is_browser(&req.headers) {
            return endpoints::start_login(
                state,
                &self.metrics,
                route.provider,
                return_to,
                cookies,
                true,
            )
            .with_cookies(stale);
        }
        let origin = req.headers.get("origin").and_then(|o| o.to_str().ok());
        let cors = origin.filter(|o| {
            *o == state.config.server.public_origin
                || state.config.server.cors_origins.iter().any(|c| c == o)
        });
        respond::login_required_api(&login_url(state, &return_to), cors).with_cookies(stale)
    }
}

/// An identified request's user: a session or a bearer token, shared with the cache it came
/// from rather than copied.
enum Identity {
    Session(Arc<UserSession>),
    Bearer(Arc<BearerIdentity>),
}

impl Identity {
    fn claims(&self) -> &Claims {
        match self {
            Identity::Session(s) => &s.claims,
            Identity::Bearer(b) => &b.claims,
        }
    }
}

/// The user, for the access line.
fn subject(claims: &Claims) -> Option<String> {
    claims
        .get("sub")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
}

/// 403 (and the `forbidden` count and audit line) when the route's rules are not met.
fn forbid(
    metrics: &Metrics,
    state: &GatewayState,
    route: &RouteConfig,
    claims: &Claims,
    browser: bool,
) -> Option<Reply> {
    let unmet = authz::first_unmet(&route.require, claims)?;
    let provider = state.providers[route.provider].name();
    let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
    audit::forbidden(metrics, provider, &route.name, sub, unmet.path.text());
    Some(respond::forbidden(browser))
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

/// Removes every identity header a client sent (configured names and `X-Auth-*`, with `_`
/// read as `-`).
fn strip_identity_headers(state: &GatewayState, upstream: &mut RequestHeader) {
    let doomed: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|name| state.must_strip(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        upstream.remove_header(&name);
    }
}

/// Removes the gateway's own cookies from `Cookie`, keeping the application's.
///
/// One pass over the bytes: on an authenticated request `Cookie` carries the multi-kilobyte
/// session, and splitting and UTF-8 checking it twice (once to find ours, once to rebuild)
/// showed in profiles. Names are trimmed before comparing, as cookie parsers do.
fn strip_gateway_cookies(state: &GatewayState, upstream: &mut RequestHeader) -> Result<()> {
    let prefix = state.config.session.cookie_name.as_bytes();
    let mine = |name: &[u8]| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'_'))
    };
    let mut found = false;
    let mut kept: Vec<u8> = Vec::new();
    for header in cookie_headers(&upstream.headers) {
        for part in header.split(|&b| b == b';') {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            let name = part.split(|&b| b == b'=').next().unwrap_or(part);
            if mine(name.trim_ascii()) {
                found = true;
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(part);
        }
    }
    if !found {
        return Ok(());
    }
    upstream.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        upstream.insert_header(http::header::COOKIE, kept)?;
    }
    Ok(())
}

/// `X-Forwarded-*` and `X-Original-URI`: believed only from `server.trusted_proxies`, otherwise
/// replaced by what the gateway saw.
fn set_forwarded_headers(
    state: &GatewayState,
    session: &Session,
    upstream: &mut RequestHeader,
) -> Result<()> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| {
        state
            .config
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    });
    if trusted {
        if let Some(ip) = peer {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("X-Forwarded-For", xff)?;
        }
        return Ok(());
    }
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-uri",
        "x-original-uri",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
    ] {
        upstream.remove_header(name);
    }
    if let Some(ip) = peer {
        upstream.insert_header("X-Forwarded-For", ip.to_string())?;
        upstream.insert_header("X-Real-IP", ip.to_string())?;
    }
    let proto = if state.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    upstream.insert_header("X-Forwarded-Proto", proto)?;
    if let Some(host) = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .cloned()
    {
        upstream.insert_header("X-Forwarded-Host", host)?;
    }
    let uri = session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned());
    if let Some(uri) = uri {
        upstream.insert_header("X-Forwarded-Uri", uri)?;
    }
    Ok(())
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
