//! The gateway's own endpoints, served before routing: the login callback, sign-in, logout,
//! UserInfo, forward-auth and back-channel logout; and `start_login`, which the proxy also uses.

use std::sync::Arc;

use pingora::proxy::Session;

use crate::access::{denied, Access, Admitted, Ask, Denial, OnLogin};
use crate::audit;
use crate::backchannel::{self, BackchannelError};
use crate::claims::retain_for;
use crate::config::AuthMode;
use crate::error::LoginError;
use crate::forwarded;
use crate::identity;
use crate::metrics::{AuthEvent, Metrics};
use crate::oidc::flow::random_token;
use crate::paths::canonicalize;
use crate::request::{cookie_headers, query_param, safe_return_path};
use crate::respond::{self, Reply};
use crate::routing::host_name;
use crate::session::cookies::{clear_session, delete_cookie};
use crate::session::login_state::{self, LoginState};
use crate::session::redis_store::Index;
use crate::session::{now, now_ms, RequestCookies, SaveError, Session as UserSession};
use crate::state::GatewayState;

/// A gateway endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Callback,
    SignIn,
    Logout,
    Userinfo,
    Auth,
    BackchannelLogout,
    /// `/oauth2/jwks.json`: the keys that sign identity assertions.
    Jwks,
}

/// The endpoint at `path`, if any.
pub fn match_endpoint(state: &GatewayState, path: &str) -> Option<Endpoint> {
    if path == state.config.server.callback_path {
        return Some(Endpoint::Callback);
    }
    Some(match path {
        "/oauth2/sign_in" => Endpoint::SignIn,
        "/oauth2/logout" => Endpoint::Logout,
        "/oauth2/userinfo" => Endpoint::Userinfo,
        "/oauth2/auth" => Endpoint::Auth,
        "/oauth2/backchannel_logout" => Endpoint::BackchannelLogout,
        "/oauth2/jwks.json" => Endpoint::Jwks,
        _ => return None,
    })
}

/// Answers a gateway endpoint.
pub async fn handle(
    endpoint: Endpoint,
    state: &Arc<GatewayState>,
    access: &Access,
    session: &mut Session,
) -> Reply {
    let metrics = &access.metrics;
    let method = session.req_header().method.clone();
    let allowed = match endpoint {
        Endpoint::Logout => {
            method == http::Method::GET
                || method == http::Method::POST
                || method == http::Method::HEAD
        }
        Endpoint::BackchannelLogout => method == http::Method::POST,
        _ => method == http::Method::GET || method == http::Method::HEAD,
    };
    if !allowed {
        return respond::json(405, r#"{"error":"method_not_allowed"}"#.into());
    }
    match endpoint {
        Endpoint::Callback => callback(state, metrics, session).await,
        Endpoint::SignIn => sign_in(state, metrics, session),
        Endpoint::Logout => logout(state, access, session).await,
        Endpoint::Userinfo => userinfo(state, access, session).await,
        Endpoint::Auth => forward_auth(state, access, session).await,
        Endpoint::BackchannelLogout => backchannel_logout(state, metrics, session).await,
        Endpoint::Jwks => respond::jwks(
            state
                .assertions
                .as_ref()
                .map(|a| a.jwks().to_owned())
                .unwrap_or_else(|| r#"{"keys":[]}"#.to_owned()),
        ),
    }
}

/// The sign-in URL that returns to `return_to` (for 401 bodies and retry links).
pub fn login_url(state: &GatewayState, return_to: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    format!(
        "{}/oauth2/sign_in?rd={rd}",
        state.config.server.public_origin
    )
}

/// Starts a login at provider `provider`: a login-state cookie and a 302 to the provider, or
/// 503 when the provider has not loaded.
pub fn start_login(
    state: &GatewayState,
    metrics: &Metrics,
    provider: usize,
    return_to: String,
    cookies: &RequestCookies<'_>,
    browser: bool,
) -> Reply {
    let p = &state.providers[provider];
    let Some(discovered) = p.discovered() else {
        tracing::warn!(
            provider = p.name(),
            "login refused: provider not loaded yet"
        );
        return respond::provider_unavailable(browser);
    };
    let login = LoginState {
        state: random_token(),
        nonce: random_token(),
        pkce_verifier: random_token(),
        return_to,
        provider: p.name().to_owned(),
        created_ms: now_ms(),
    };
    let location = p.authorization_url(
        &discovered,
        &state.config.server.redirect_uri,
        &login.state,
        &login.nonce,
        &login.pkce_verifier,
    );
    let set = login_state::start(
        &state.config.session,
        &state.codec,
        &login,
        cookies,
        login.created_ms,
    );
    metrics.auth_event(p.name(), AuthEvent::LoginStarted);
    respond::redirect(&location).with_cookies(set)
}

fn sign_in(state: &GatewayState, metrics: &Metrics, session: &Session) -> Reply {
    let req = session.req_header();
    let rd = safe_return_path(query_param(req.uri.query(), "rd").as_deref());
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| host_name(h).ok().flatten());
    let provider = provider_for_path(state, host, &rd);
    let cookies = RequestCookies::of(&req.headers, &state.config.session);
    start_login(state, metrics, provider, rd, &cookies, true)
}

/// The provider of the route that would serve `path` (the first provider if none does),
/// matched exactly as the proxy matches it.
fn provider_for_path(state: &GatewayState, host: Option<&str>, path: &str) -> usize {
    let path_only = path.split(['?', '#']).next().unwrap_or("/");
    canonicalize(path_only, state.routes.fold_case())
        .ok()
        .and_then(|p| {
            state
                .routes
                .match_route(host, &p.matched)
                .map(|r| r.provider)
        })
        .unwrap_or(0)
}

async fn callback(state: &Arc<GatewayState>, metrics: &Metrics, session: &mut Session) -> Reply {
    let cfg = &state.config.session;
    // Owned copies: the provider calls below must not hold the request borrowed.
    let req = session.req_header();
    let query = req.uri.query().map(str::to_owned);
    let cookie_text: Vec<Vec<u8>> = cookie_headers(&req.headers).map(<[u8]>::to_vec).collect();
    let cookies = RequestCookies::parse(
        cookie_text.iter().map(Vec::as_slice),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    let param = |name| query_param(query.as_deref(), name);
    let state_param = param("state");
    let retry = login_url(state, "/");
    // One value each: with two, the gateway and a provider (or a log reader) could each read
    // another one.
    if let Some(name) = repeated_param(query.as_deref(), &["state", "code", "iss"]) {
        tracing::info!(parameter = name, "callback refused: parameter repeated");
        return fail(metrics, "unknown", &LoginError::BadCallback, &retry);
    }

    let found = match &state_param {
        Some(s) => {
            login_state::find(cfg, &state.codec, &cookies, s, now_ms()).map_err(LoginError::from)
        }
        None => Err(LoginError::BadCallback),
    };
    // The login cookie is single-use: delete it whatever happens next.
    let mut set = Vec::new();
    if let Some(s) = &state_param {
        let name = login_state::cookie_name(cfg, s);
        if cookies.login.iter().any(|(n, _)| *n == name) {
            set.push(delete_cookie(cfg, name));
        }
    }
    let login = match found {
        Ok(l) => l,
        Err(e) => return fail(metrics, "unknown", &e, &retry).with_cookies(set),
    };
    let retry = login_url(state, &login.return_to);
    let Some(index) = state.provider_index(&login.provider) else {
        return fail(metrics, &login.provider, &LoginError::BadCallback, &retry).with_cookies(set);
    };
    let provider = &state.providers[index];
    // RFC 9207: an `iss` in the authorization response must name this login's provider, which
    // defeats mix-up attacks when several providers are configured.
    if param("iss").is_some_and(|iss| iss != provider.cfg.issuer) {
        return fail(
            metrics,
            provider.name(),
            &LoginError::IssuerMismatch,
            &retry,
        )
        .with_cookies(set);
    }
    if let Some(error) = param("error") {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return fail(
            metrics,
            provider.name(),
            &LoginError::ProviderError(code),
            &retry,
        )
        .with_cookies(set);
    }
    let Some(code) = param("code") else {
        return fail(metrics, provider.name(), &LoginError::BadCallback, &retry).with_cookies(set);
    };
    let result = match provider
        .complete_login(
            &code,
            &login.pkce_verifier,
            &login.nonce,
            &state.config.server.redirect_uri,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(metrics, provider.name(), &e, &retry).with_cookies(set),
    };
    let now = crate::session::now();
    let keep_hint = provider
        .discovered()
        .is_some_and(|d| d.end_session_endpoint.is_some());
    let user = UserSession {
        provider: provider.name().to_owned(),
        claims: retain_for(&result.claims, state.kept_paths(index)),
        created: now,
        last_seen: now,
        expires: now.saturating_add(cfg.max_lifetime.as_secs()),
        tokens_expire: crate::refresh::tokens_expire(&result.tokens, Some(&result.claims), now),
        refresh_token: result.tokens.refresh_token,
        id_token_hint: keep_hint.then_some(result.id_token),
    };
    let mut user = user;
    // Back-channel logout finds sessions by the provider's `sid` and by `sub`.
    let sid = result
        .claims
        .get("sid")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let sub = user.subject().to_owned();
    let mut indexes = vec![(Index::Sub, sub.as_str())];
    if let Some(sid) = &sid {
        indexes.push((Index::Sid, sid.as_str()));
    }
    let store = &state.store;
    let mut written = store
        .create(cfg, &state.codec, &user, &indexes, &cookies, now)
        .await;
    if matches!(written, Err(SaveError::TooLarge(_))) && user.id_token_hint.is_some() {
        // NHS ID tokens are large: rather than refuse the login, drop the logout hint (logout
        // then identifies the client by client_id alone, as RP-Initiated Logout allows).
        tracing::info!(
            provider = provider.name(),
            "ID token too large to keep for logout; RP-initiated logout will send client_id only"
        );
        user.id_token_hint = None;
        written = store
            .create(cfg, &state.codec, &user, &indexes, &cookies, now)
            .await;
    }
    match written {
        Ok(cookies) => {
            metrics.session_written(provider.name(), &cookies);
            set.extend(cookies)
        }
        Err(SaveError::TooLarge(too_large)) => {
            let e = LoginError::SessionTooLarge(too_large);
            tracing::error!(provider = provider.name(), sub = user.subject(), error = %e, "login succeeded at the provider but the session does not fit in cookies; keep fewer claims (route headers and rules) or raise session.max_chunks");
            return fail(metrics, provider.name(), &e, &retry).with_cookies(set);
        }
        Err(e) => {
            // The user did log in at the provider; a retry works once the store is back.
            tracing::warn!(provider = provider.name(), error = %e, "login could not be stored");
            metrics.auth_event(provider.name(), AuthEvent::LoginFailed);
            return respond::store_unavailable(true).with_cookies(set);
        }
    }
    audit::login_succeeded(metrics, provider.name(), user.subject());
    let location = format!("{}{}", state.config.server.public_origin, login.return_to);
    respond::redirect(&location).with_cookies(set)
}

fn fail(metrics: &Metrics, provider: &str, e: &LoginError, retry: &str) -> Reply {
    audit::login_failed(metrics, provider, e.reason(), e);
    respond::login_failed(e, retry)
}

/// The first of `names` that appears more than once in `query`.
fn repeated_param(query: Option<&str>, names: &[&'static str]) -> Option<&'static str> {
    let query = query?;
    names.iter().copied().find(|name| {
        url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == name)
            .count()
            > 1
    })
}

async fn logout(state: &GatewayState, access: &Access, session: &Session) -> Reply {
    let metrics = &access.metrics;
    let cfg = &state.config.session;
    let req = session.req_header();
    let rd = safe_return_path(query_param(req.uri.query(), "rd").as_deref());
    // A cross-site GET is a link or an image on another site: logging out on it would let any
    // page end the user's session. Ask instead; the button posts from this origin.
    let cross_site = req
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site && req.method != http::Method::POST {
        tracing::info!("cross-site logout link: asking for confirmation");
        let rd_param: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        return respond::logout_confirmation(&format!("/oauth2/logout?rd={rd_param}"));
    }
    let cookies = RequestCookies::of(&req.headers, cfg);
    let ask = Ask {
        headers: &req.headers,
        cookies: &cookies,
        route: None,
        browser: true,
        extend: false,
    };
    let admitted = match access.decide(state, &ask).await {
        Ok(a) => Some(a),
        Err(Denial::LoginRequired { .. }) => None,
        // The session cannot be ended server-side now: say so rather than pretend, and keep
        // the cookie so that logging out again works once the store is back.
        Err(other) => return denied(other, true, OnLogin::Api { login_url: "/" }),
    };
    if let Some(Admitted {
        handle: Some(handle),
        ..
    }) = &admitted
    {
        if state.store.remove(handle).await.is_err() {
            return respond::store_unavailable(true);
        }
    }
    let mut set = clear_session(cfg, &cookies);
    set.extend(
        cookies
            .login
            .iter()
            .map(|(n, _)| delete_cookie(cfg, (*n).to_owned())),
    );
    let return_url = format!("{}{}", state.config.server.public_origin, rd);
    let Some(Admitted {
        identity: crate::access::Identity::Session(user),
        ..
    }) = admitted
    else {
        return respond::redirect(&return_url).with_cookies(set);
    };
    audit::logout(metrics, &user.provider, user.subject());
    let end_session = state.provider_index(&user.provider).and_then(|i| {
        state.providers[i].end_session_url(user.id_token_hint.as_deref(), &return_url)
    });
    respond::redirect(end_session.as_deref().unwrap_or(&return_url)).with_cookies(set)
}

async fn userinfo(state: &GatewayState, access: &Access, session: &Session) -> Reply {
    let cfg = &state.config.session;
    let req = session.req_header();
    let cookies = RequestCookies::of(&req.headers, cfg);
    let ask = Ask {
        headers: &req.headers,
        cookies: &cookies,
        route: None,
        browser: false,
        extend: true,
    };
    match access.decide(state, &ask).await {
        Ok(admitted) => respond::json(
            200,
            serde_json::Value::Object(admitted.identity.claims().clone()).to_string(),
        )
        .with_cookies(admitted.set_cookies),
        Err(denial) => denied(
            denial,
            false,
            OnLogin::Api {
                login_url: &login_url(state, "/"),
            },
        ),
    }
}

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
async fn forward_auth(state: &GatewayState, access: &Access, session: &Session) -> Reply {
    let req = session.req_header();
    if !forwarded::trusted(state, crate::proxy::peer_ip(session)) {
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

/// `POST /oauth2/backchannel_logout`: the provider asks to end sessions (see `backchannel`).
async fn backchannel_logout(
    state: &GatewayState,
    metrics: &Metrics,
    session: &mut Session,
) -> Reply {
    let Some(redis) = state.store.redis() else {
        return respond::backchannel_unsupported();
    };
    let body = match read_body(session, backchannel::MAX_BODY).await {
        Ok(b) => b,
        Err(reason) => {
            tracing::info!(reason, "back-channel logout refused");
            return respond::backchannel_refused(reason);
        }
    };
    let outcome = async {
        let token = backchannel::logout_token(&body)?;
        let (issuer, audiences) = backchannel::claimed_issuer(&token).ok_or(
            BackchannelError::Refused("logout_token is not a JWT with an iss"),
        )?;
        let index = state
            .providers
            .iter()
            .position(|p| p.cfg.issuer == issuer && audiences.contains(&p.cfg.client_id))
            .ok_or(BackchannelError::Refused(
                "logout_token is from an unknown issuer, or its aud names no client of that issuer",
            ))?;
        let provider = &state.providers[index];
        let request =
            backchannel::validate(&state.logout_keys[index], provider, &token, now()).await?;
        let revoked = backchannel::revoke(redis, provider.name(), &request).await?;
        Ok::<_, BackchannelError>((provider.name().to_owned(), request, revoked))
    }
    .await;
    match outcome {
        Ok((provider, request, revoked)) => {
            metrics
                .backchannel_logouts
                .with_label_values(&[provider.as_str(), "revoked"])
                .inc();
            metrics.auth_event(&provider, AuthEvent::Logout);
            tracing::info!(
                target: "audit",
                event = "backchannel_logout",
                provider = %provider,
                sub = request.sub.as_deref().unwrap_or("-"),
                by = if request.sid.is_some() { "sid" } else { "sub" },
                sessions = revoked,
                "back-channel logout: sessions revoked"
            );
            respond::backchannel_done()
        }
        Err(BackchannelError::Refused(reason)) => {
            metrics
                .backchannel_logouts
                .with_label_values(&["unknown", "refused"])
                .inc();
            tracing::warn!(reason, "back-channel logout refused");
            respond::backchannel_refused(reason)
        }
        Err(BackchannelError::Unavailable(reason)) => {
            metrics
                .backchannel_logouts
                .with_label_values(&["unknown", "unavailable"])
                .inc();
            tracing::warn!(reason = %reason, "back-channel logout could not be carried out now");
            respond::store_unavailable(false)
        }
    }
}

/// The request body, at most `limit` bytes.
async fn read_body(session: &mut Session, limit: usize) -> Result<Vec<u8>, &'static str> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err("request body too large");
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err("request body could not be read"),
        }
    }
}
