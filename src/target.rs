//! What a request asks for, read once from its head: one of the gateway's own endpoints, or a
//! route with the canonical path the rules were checked against and the URI its upstream
//! receives; or a refusal when the head is too large or its path or host cannot be read one
//! way only.

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::RouteConfig;
use crate::endpoints::{self, Endpoint};
use crate::paths::canonicalize;
use crate::respond::{self, Reply};
use crate::routing::{host_name, upstream_path};
use crate::state::GatewayState;

/// Where a request goes.
pub enum Target {
    Endpoint(Endpoint),
    Route(RouteTarget),
}

/// A request for a route.
pub struct RouteTarget {
    pub route: Arc<RouteConfig>,
    /// The canonical path and query before `strip_prefix`: where a login returns to, and
    /// `X-Forwarded-Uri`.
    pub canonical_uri: String,
    /// What the upstream receives, unless the client sent exactly that (pingora otherwise sends
    /// the client's raw target bytes).
    pub upstream_uri: Option<http::Uri>,
}

/// A request the gateway answers itself without looking further.
pub struct Refusal {
    pub reply: Reply,
    /// The metric label (`route`): `gateway` for bad requests, `unmatched` for no route.
    pub label: &'static str,
}

impl Refusal {
    fn gateway(reply: Reply) -> Refusal {
        Refusal {
            reply,
            label: "gateway",
        }
    }
}

/// Reads the target of a request head.
pub fn read(state: &GatewayState, req: &RequestHeader) -> Result<Target, Refusal> {
    if header_bytes(req) > state.config.server.max_request_header_bytes {
        return Err(Refusal::gateway(respond::headers_too_large()));
    }
    let path = canonicalize(req.uri.path(), state.routes.fold_case()).map_err(|e| {
        tracing::info!(error = %e, "refused request path");
        Refusal::gateway(respond::bad_request(&e.to_string()))
    })?;
    // An absolute-form target (`GET http://other.host/x`) names a host besides `Host`
    // (pingora keeps it off `uri` but sends it upstream verbatim); a reverse proxy has no
    // use for it, and the two could be read differently.
    if req.raw_path().first() != Some(&b'/') {
        tracing::info!("refused an absolute-form request target");
        return Err(Refusal::gateway(respond::bad_request(
            "absolute-form request targets are not accepted",
        )));
    }
    // Endpoints by their exact canonical path: `/oauth2/auth;x` is not forward-auth (a
    // front proxy that keeps `= /oauth2/auth` internal would pass it on).
    if let Some(endpoint) = endpoints::match_endpoint(state, &path.forwarded) {
        return Ok(Target::Endpoint(endpoint));
    }
    // The gateway's own prefix, as oauth2-proxy reserves it: a path under it that is no
    // endpoint goes nowhere (a front proxy that sends `/oauth2/` here must not reach an
    // application with it).
    if path.matched == "/oauth2" || path.matched.starts_with("/oauth2/") {
        return Err(Refusal::gateway(respond::not_found()));
    }
    let Ok(host) = request_host(req).map_or(Ok(None), host_name) else {
        return Err(Refusal::gateway(respond::bad_request(
            "the Host header is not a host name",
        )));
    };
    if host.is_none() && state.routes.has_host_routes() {
        return Err(Refusal::gateway(respond::bad_request(
            "the request names no host",
        )));
    }
    let Some(route) = state.routes.match_route(host, &path.matched).cloned() else {
        return Err(Refusal {
            reply: respond::not_found(),
            label: "unmatched",
        });
    };
    let query = req.uri.query();
    let forwarded_path = upstream_path(&route, &path);
    let upstream_uri = if is_target(req.raw_path(), forwarded_path, query) {
        None
    } else {
        match with_query(forwarded_path, query).parse() {
            Ok(uri) => Some(uri),
            Err(_) => {
                return Err(Refusal::gateway(respond::bad_request(
                    "the path is not a valid URI",
                )))
            }
        }
    };
    Ok(Target::Route(RouteTarget {
        canonical_uri: with_query(&path.forwarded, query),
        route,
        upstream_uri,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_target_is_compared_with_path_and_query_exactly() {
        assert!(is_target(b"/a/b", "/a/b", None));
        assert!(is_target(b"/a/b?x=1", "/a/b", Some("x=1")));
        assert!(!is_target(b"/a/b?", "/a/b", None));
        assert!(!is_target(b"/a/%62", "/a/b", None));
        assert!(!is_target(b"/a/b?x=2", "/a/b", Some("x=1")));
        assert!(!is_target(b"/a", "/a/b", None));
    }
}
