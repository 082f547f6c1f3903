//! `/oauth2/auth`: forward-auth for a front proxy (nginx `auth_request`, Traefik
//! `forwardAuth`), answering for the original request it names, only to trusted proxies.

use pingora::proxy::Session;

use crate::access::{denied, Access, Ask, OnLogin};
use crate::config::AuthMode;
use crate::forwarded;
use crate::identity;
use crate::paths::canonicalize;
use crate::request::safe_return_path;
use crate::respond::{self, Reply};
use crate::routing::host_name;
use crate::session::RequestCookies;
use crate::state::GatewayState;

use super::login_url;

/// The original request of a forward-auth subrequest: `X-Original-URI` (nginx) or
/// `X-Forwarded-Uri` (Traefik), which must agree when both are sent.
fn original_uri(headers: &http::HeaderMap) -> Result<&str, &'static str> {
    let mut found: Option<&[u8]> = None;
    for name in ["x-original-uri", "x-forwarded-uri"] {
        for value in headers.get_all(name) {
            match found {
                Some(f) if f != value.as_bytes() => {
                    return Err("X-Original-URI and X-Forwarded-Uri disagree")
                }
                _ => found = Some(value.as_bytes()),
            }
        }
    }
    let found = found.ok_or("no X-Original-URI or X-Forwarded-Uri")?;
    std::str::from_utf8(found).map_err(|_| "the original URI is not text")
}

/// The original request's host: `X-Forwarded-Host` (exactly one value, no list), else the
/// subrequest's `Host` (nginx passes `$http_host`).
fn original_host(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
    let mut forwarded = headers.get_all("x-forwarded-host").iter();
    let host = match (forwarded.next(), forwarded.next()) {
        (Some(_), Some(_)) => return Err("more than one X-Forwarded-Host"),
        (Some(h), None) => h,
        (None, _) => match headers.get(http::header::HOST) {
            Some(h) => h,
            None => return Ok(None),
        },
    };
    let host = host.to_str().map_err(|_| "the original host is not text")?;
    if host.is_empty() || host.contains([',', ' ', '/', '@']) {
        return Err("the original host is not one host name");
    }
    Ok(Some(host))
}

/// Forward-auth (nginx `auth_request`, Traefik `forwardAuth`), failing closed: only trusted
/// proxies are answered; the original URI goes through the proxy's path rules and route match;
/// then the same decision as a proxied request (refresh, touch, rules). 202 with identity
/// headers (and `X-Auth-Assertion`, and `Set-Cookie` for a touched session), 401 without a
/// session or valid bearer token, 403 when the rules fail or no route matches.
pub(super) async fn forward_auth(
    state: &GatewayState,
    access: &Access,
    session: &Session,
) -> Reply {
    let req = session.req_header();
    if !forwarded::trusted(&state.config.server, crate::request::peer_ip(session)) {
        tracing::warn!("forward-auth refused: the peer is not in server.trusted_proxies");
        return respond::forward_auth_refused(
            403,
            "forward-auth answers only peers in server.trusted_proxies",
        );
    }
    let original = match original_uri(&req.headers) {
        Ok(o) => o,
        Err(reason) => {
            tracing::info!(reason, "forward-auth refused");
            return respond::forward_auth_refused(400, reason);
        }
    };
    let path = match canonicalize(
        original.split(['?', '#']).next().unwrap_or(""),
        state.routes.fold_case(),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "forward-auth refused the original URI");
            return respond::forward_auth_refused(400, &e.to_string());
        }
    };
    let host = match original_host(&req.headers) {
        Ok(h) => h,
        Err(reason) => {
            tracing::info!(reason, "forward-auth refused");
            return respond::forward_auth_refused(400, reason);
        }
    };
    let host = match host.map_or(Ok(None), host_name) {
        Ok(h) => h,
        Err(_) => {
            tracing::info!("forward-auth refused: the original host is not a host name");
            return respond::forward_auth_refused(400, "the original host is not a host name");
        }
    };
    if host.is_none() && state.routes.has_host_routes() {
        return respond::forward_auth_refused(400, "no X-Forwarded-Host or Host");
    }
    let Some(route) = state.routes.match_route(host, &path.matched) else {
        tracing::info!("forward-auth refused: no route for the original URI");
        return respond::forward_auth_refused(403, "no route for this host and path");
    };
    if route.auth == AuthMode::Public {
        return respond::auth_ok(Vec::new());
    }
    let cookies = RequestCookies::of(&req.headers, &state.config.session);
    let ask = Ask::for_route(&req.headers, &cookies, route);
    let browser = ask.browser;
    let admitted = match access.decide(state, &ask).await {
        Ok(a) => a,
        Err(denial) => {
            let return_to = safe_return_path(Some(original));
            return denied(
                denial,
                browser,
                OnLogin::Api {
                    login_url: &login_url(state, &return_to),
                },
            );
        }
    };
    let claims = admitted.identity.claims();
    let mut headers: Vec<(String, Vec<u8>)> = identity::headers(&route.headers, claims)
        .into_iter()
        .map(|(rule, value)| (rule.display.clone(), value))
        .collect();
    if route.assertion {
        match crate::assertion::for_route(state.assertions.as_ref(), route, claims).await {
            Ok(Some(a)) => {
                headers.push((crate::assertion::HEADER.to_owned(), a.as_bytes().to_vec()))
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(route = %route.name, error = %e, "identity assertion not signed");
                return respond::internal_error();
            }
        }
    }
    respond::auth_ok(headers).with_cookies(admitted.set_cookies)
}
