//! The proxy: pingora's `ProxyHttp` hooks in request order, each a few lines that call the
//! module owning the step.
//!
//! `request_filter`: `target` (head size, canonical path, endpoint or route) → `endpoints`
//! (the gateway's own answers) → `access` (session or bearer token, refresh, rules) → login or
//! denial (`endpoints::route_denied`) → assertion. `upstream_peer` and
//! `upstream_request_filter`: `upstream` (the connection, and the head with spoofable headers
//! stripped and identity headers added). `response_filter`: the session's `Set-Cookie`.
//! `logging`: metrics and the access line. The authenticated path makes no provider call and
//! takes no lock.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::access::{Access, Admitted, Ask, Denial, Identity};
use crate::config::{AuthMode, RouteConfig};
use crate::connections;
use crate::cors;
use crate::endpoints;
use crate::forwarded;
use crate::metrics::{InFlight, Metrics};
use crate::request::peer_ip;
use crate::respond::{self, Reply};
use crate::session::RequestCookies;
use crate::state::GatewayState;
use crate::target::{self, RouteTarget, Target};
use crate::upstream::{self, Outgoing, Timing};

/// The pingora proxy application.
pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Metrics,
    /// Outlives configuration swaps, so a refresh in flight is still shared.
    access: Access,
    header_timeouts: prometheus::IntCounter,
}

impl Gateway {
    /// A proxy over shared, swappable state.
    pub fn new(state: Arc<ArcSwap<GatewayState>>, metrics: Metrics) -> Gateway {
        Gateway {
            state,
            access: Access::new(metrics.clone()),
            header_timeouts: metrics
                .connections_dropped
                .with_label_values(&["request_header_timeout"]),
            metrics,
        }
    }
}

/// Per-request state carried between hooks.
pub struct RequestCtx {
    started: Instant,
    state: Option<Arc<GatewayState>>,
    /// The route, its canonical URI and what the upstream receives; kept for every attempt
    /// (pingora retries with a fresh copy of the client's request header).
    target: Option<RouteTarget>,
    /// Whose claims go upstream as identity headers.
    identity: Option<Identity>,
    /// `X-Auth-Assertion` for routes with `assertion = true`.
    assertion: Option<Arc<str>>,
    set_cookies: Vec<String>,
    /// For the access line: the user, when known.
    sub: Option<String>,
    /// Label for metrics when no route matched (gateway endpoint, 404, 400).
    label: &'static str,
    upstream: Timing,
    /// Counts the request in `requests_in_flight` until the context is dropped.
    _in_flight: InFlight,
}

impl RequestCtx {
    fn route(&self) -> Option<&RouteConfig> {
        self.target.as_ref().map(|t| &*t.route)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            state: None,
            target: None,
            identity: None,
            assertion: None,
            set_cookies: Vec::new(),
            sub: None,
            label: "none",
            upstream: Timing::default(),
            _in_flight: self.metrics.in_flight(),
        }
    }

    /// Decides whether the gateway answers itself (`Ok(true)`) or the request goes upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let state = self.state.load_full();
        ctx.state = Some(state.clone());
        connections::keep_alive(session, &state.config.server);
        let reply = match target::read(&state, session.req_header()) {
            Ok(Target::Endpoint(endpoint)) => {
                ctx.label = "gateway";
                endpoints::handle(endpoint, &state, &self.access, session).await
            }
            Ok(Target::Route(target)) => match self.admit(&state, session, target, ctx).await {
                None => return Ok(false),
                Some(reply) => reply,
            },
            Err(refusal) => {
                ctx.label = refusal.label;
                refusal.reply
            }
        };
        reply.send(session).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(state), Some(route)) = (&ctx.state, ctx.route()) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no route selected",
            ));
        };
        let peer = upstream::peer(state, route)?;
        ctx.upstream.start();
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(state), Some(target)) = (&ctx.state, &ctx.target) else {
            return Ok(());
        };
        let out = Outgoing {
            peer: peer_ip(session),
            client_host: session.req_header().headers.get(http::header::HOST),
            canonical_uri: &target.canonical_uri,
            uri: target.upstream_uri.as_ref(),
            identity: ctx.identity.as_ref(),
            assertion: ctx.assertion.as_deref(),
        };
        upstream::request(state, &target.route, &out, upstream)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream.head_arrived();
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(state) = &ctx.state {
            forwarded::drop_gateway_set_cookies(&state.config.session, resp)?;
            if ctx.route().is_some_and(|r| r.cors) {
                cors::response_headers(&state.config.server, session.req_header(), resp)?;
            }
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
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let error_code = respond::proxy_failure_status(e);
        respond::send_proxy_failure(session, error_code).await;
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.route().map(|r| r.name.as_str()).unwrap_or(ctx.label);
        let elapsed = ctx.started.elapsed();
        let upstream = ctx.upstream.elapsed();
        match ctx
            .state
            .as_ref()
            .and_then(|s| s.request_metrics(ctx.route(), ctx.label))
        {
            Some(m) => m.request_done(status, elapsed, upstream),
            None => self.metrics.request_done(route, status, elapsed, upstream),
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

    /// Marks the connection as reused, for `request_header_timeout` (a unit box allocates
    /// nothing).
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(()))
    }

    fn request_header_timeout(&self, reused: bool) -> Option<Duration> {
        Some(connections::header_deadline(
            &self.state.load().config.server,
            reused,
        ))
    }

    fn request_header_timed_out(&self, _reused: bool) {
        self.header_timeouts.inc();
    }

    /// Pingora's error lines print this: method and path, never the query (codes, states).
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}

impl Gateway {
    /// Whether a request for a route may go upstream (`None`) and with whose identity; else
    /// the login, 401 or 403 it gets.
    async fn admit(
        &self,
        state: &GatewayState,
        session: &Session,
        target: RouteTarget,
        ctx: &mut RequestCtx,
    ) -> Option<Reply> {
        let route = target.route.clone();
        let canonical_uri = target.canonical_uri.clone();
        ctx.target = Some(target);
        if route.cors && cors::is_preflight(session.req_header()) {
            return Some(cors::preflight(&state.config.server, session.req_header()));
        }
        if route.auth == AuthMode::Public {
            return None;
        }
        let req = session.req_header();
        let cookies = RequestCookies::of(&req.headers, &state.config.session);
        let ask = Ask::for_route(&req.headers, &cookies, &route);
        let admitted = match self.access.decide(state, &ask).await {
            Ok(admitted) => admitted,
            Err(denial) => {
                if let Denial::Forbidden { sub, .. } | Denial::StepUp { sub, .. } = &denial {
                    ctx.sub = sub.clone();
                }
                let metrics = &self.metrics;
                let reply =
                    endpoints::route_denied(state, metrics, &route, denial, &ask, &canonical_uri);
                return Some(match route.cors {
                    true => cors::with_cors(&state.config.server, &req.headers, reply),
                    false => reply,
                });
            }
        };
        let Admitted {
            identity,
            set_cookies,
            ..
        } = admitted;
        ctx.sub = identity.subject().map(str::to_owned);
        ctx.set_cookies = set_cookies;
        if route.assertion {
            let signer = state.assertions.as_ref();
            match crate::assertion::for_route(signer, &route, identity.claims()).await {
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
