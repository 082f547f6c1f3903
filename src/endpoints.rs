//! The gateway's own endpoints, served before routing: the login callback, sign-in, logout,
//! UserInfo, forward-auth and back-channel logout; and `start_login`, which the proxy also uses.

use std::sync::Arc;

use pingora::proxy::Session;

use crate::audit;
use crate::backchannel::{self, BackchannelError};
use crate::claims::retain_for;
use crate::config::{AuthMode, RouteConfig};
use crate::error::LoginError;
use crate::identity;
use crate::metrics::{AuthEvent, Metrics};
use crate::oidc::flow::random_token;
use crate::request::{cookie_headers, is_browser, query_param, safe_return_path};
use crate::respond::{self, Reply};
use crate::routing::normalize_path;
use crate::session::cookies::{clear_session, delete_cookie};
use crate::session::login_state::{self, LoginState};
use crate::session::redis_store::Index;
use crate::session::{
    now, now_ms, LoadError, Loaded, RequestCookies, SaveError, Session as UserSession,
};
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
    metrics: &Metrics,
    session: &mut Session,
) -> Reply {
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
        Endpoint::Logout => logout(state, metrics, session).await,
        Endpoint::Userinfo => userinfo(state, session).await,
        Endpoint::Auth => forward_auth(state, metrics, session).await,
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
    let provider = provider_for_path(state, &rd);
    let cookies = RequestCookies::parse(
        cookie_headers(&req.headers),
        &state.config.session.cookie_name,
        state.config.session.max_chunks,
    );
    start_login(state, metrics, provider, rd, &cookies, true)
}

/// The provider of the route that would serve `path` (the first provider if none does).
fn provider_for_path(state: &GatewayState, path: &str) -> usize {
    let path_only = path.split(['?', '#']).next().unwrap_or("/");
    normalize_path(path_only)
        .ok()
        .and_then(|p| state.routes.match_route(None, &p).map(|r| r.provider))
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

async fn logout(state: &GatewayState, metrics: &Metrics, session: &Session) -> Reply {
    let cfg = &state.config.session;
    let req = session.req_header();
    let rd = safe_return_path(query_param(req.uri.query(), "rd").as_deref());
    let cookies = RequestCookies::parse(
        cookie_headers(&req.headers),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    let loaded = match state.store.load(cfg, &state.codec, &cookies).await {
        Ok(l) => Some(l),
        Err(LoadError::Miss(_)) => None,
        // The session cannot be ended server-side now: say so rather than pretend, and keep
        // the cookie so that logging out again works once the store is back.
        Err(LoadError::Unavailable(_)) => return respond::store_unavailable(true),
    };
    if let Some(l) = &loaded {
        if state.store.remove(&l.handle).await.is_err() {
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
    let Some(Loaded { session: user, .. }) = loaded else {
        return respond::redirect(&return_url).with_cookies(set);
    };
    audit::logout(metrics, &user.provider, user.subject());
    let end_session = state.provider_index(&user.provider).and_then(|i| {
        state.providers[i].end_session_url(user.id_token_hint.as_deref(), &return_url)
    });
    respond::redirect(end_session.as_deref().unwrap_or(&return_url)).with_cookies(set)
}

async fn userinfo(state: &GatewayState, session: &Session) -> Reply {
    let cfg = &state.config.session;
    let req = session.req_header();
    let cookies = RequestCookies::parse(
        cookie_headers(&req.headers),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    match state.store.load(cfg, &state.codec, &cookies).await {
        Ok(l) if l.session.expired_at(cfg, now()).is_none() => respond::json(
            200,
            serde_json::Value::Object(l.session.claims.clone()).to_string(),
        ),
        Err(LoadError::Unavailable(_)) => respond::store_unavailable(false),
        _ => respond::login_required_api(&login_url(state, "/"), None),
    }
}

/// Forward-auth (nginx `auth_request`, Traefik `forwardAuth`): 202 with identity headers (and
/// `X-Auth-Assertion` on assertion routes), 401 without a session or valid bearer token, 403
/// when the rules of the route named by `X-Original-URI` / `X-Forwarded-Uri` fail. A bearer
/// token counts only on routes with `bearer = true`, as at the proxy.
async fn forward_auth(state: &GatewayState, metrics: &Metrics, session: &Session) -> Reply {
    let cfg = &state.config.session;
    let req = session.req_header();
    let original = req
        .headers
        .get("x-original-uri")
        .or_else(|| req.headers.get("x-forwarded-uri"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/");
    let host = req
        .headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok());
    let path = normalize_path(original.split('?').next().unwrap_or("/"))
        .unwrap_or_else(|_| "/".to_owned());
    let route: Option<&Arc<RouteConfig>> = state.routes.match_route(host, &path);
    let provider = route.map(|r| r.provider).unwrap_or(0);
    let token = route
        .filter(|r| r.bearer)
        .and_then(|_| crate::bearer::bearer_token(&req.headers));
    let (claims, browser) = if let Some(token) = token {
        let verified = state.bearer[provider]
            .verify(
                &state.providers[provider],
                state.kept_paths(provider),
                token,
            )
            .await;
        match verified {
            Ok(identity) => (identity.claims.clone(), false),
            Err(e) => {
                tracing::debug!(reason = %e, "forward-auth: bearer token refused");
                return respond::bearer_refused(&e);
            }
        }
    } else {
        let cookies = RequestCookies::parse(
            cookie_headers(&req.headers),
            &cfg.cookie_name,
            cfg.max_chunks,
        );
        match state.store.load(cfg, &state.codec, &cookies).await {
            Ok(Loaded { session: u, .. })
                if u.expired_at(cfg, now()).is_none()
                    && u.provider == state.providers[provider].name() =>
            {
                (u.claims.clone(), is_browser(&req.headers))
            }
            Err(LoadError::Unavailable(_)) => return respond::store_unavailable(false),
            _ => {
                return respond::login_required_api(
                    &login_url(state, &safe_return_path(Some(original))),
                    None,
                )
            }
        }
    };
    let Some(route) = route else {
        return respond::auth_ok(Vec::new());
    };
    if route.auth == AuthMode::Required {
        if let Some(unmet) = crate::authz::first_unmet(&route.require, &claims) {
            let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
            audit::forbidden(
                metrics,
                state.providers[provider].name(),
                &route.name,
                sub,
                unmet.path.text(),
            );
            return respond::forbidden(browser);
        }
    }
    let mut headers: Vec<(String, Vec<u8>)> = identity::headers(&route.headers, &claims)
        .into_iter()
        .map(|(rule, value)| (rule.display.clone(), value))
        .collect();
    if route.assertion {
        match crate::assertion::for_route(state.assertions.as_ref(), route, &claims).await {
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
    respond::auth_ok(headers)
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
        let issuer = backchannel::claimed_issuer(&token).ok_or(BackchannelError::Refused(
            "logout_token is not a JWT with an iss",
        ))?;
        let index = state
            .providers
            .iter()
            .position(|p| p.cfg.issuer == issuer)
            .ok_or(BackchannelError::Refused(
                "logout_token is from an unknown issuer",
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
