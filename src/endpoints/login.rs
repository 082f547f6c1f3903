//! Signing in: `/oauth2/sign_in`, the login the proxy starts for a route, and the callback
//! that turns the provider's answer into a session.

use std::sync::Arc;

use pingora::proxy::Session;

use crate::access::{denied, Ask, Denial, OnLogin};
use crate::assurance::StepUp;
use crate::audit;
use crate::claims::retain_for;
use crate::clock::now_ms;
use crate::config::RouteConfig;
use crate::metrics::{AuthEvent, Metrics};
use crate::oidc::flow::{random_token, AuthExtras};
use crate::oidc::LoginError;
use crate::paths::canonicalize;
use crate::request::{cookie_headers, query_param, safe_return_path};
use crate::respond::{self, Reply};
use crate::routing::host_name;
use crate::session::cookies::delete_cookie;
use crate::session::login_state::{self, LoginState};
use crate::session::redis_store::Index;
use crate::session::{RequestCookies, SaveError, Session as UserSession};
use crate::state::GatewayState;

/// The sign-in URL that returns to `return_to` (for 401 bodies and retry links).
pub fn login_url(state: &GatewayState, return_to: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    format!(
        "{}/oauth2/sign_in?rd={rd}",
        state.config.server.public_origin
    )
}

/// The answer to a request for a protected route that was denied: for a browser that must sign
/// in, a login at the route's provider that returns to `return_to`; otherwise the denial's page
/// or JSON.
pub fn route_denied(
    state: &GatewayState,
    metrics: &Metrics,
    route: &RouteConfig,
    denial: Denial,
    ask: &Ask<'_>,
    return_to: &str,
) -> Reply {
    let provider = &state.providers[route.provider].oidc;
    if matches!(denial, Denial::LoginRequired { .. })
        && (provider.is_down() || !provider.is_ready())
    {
        // Nobody can log in now: an API client is told to retry later rather than to log in.
        return respond::provider_unavailable(ask.browser);
    }
    let login = login_url(state, return_to);
    // A step-up asks for what was missing; any other login for the route asks for what it needs.
    let asked = match &denial {
        Denial::StepUp { step_up, .. } => step_up.clone(),
        _ => StepUp::asked_by(&route.assurance),
    };
    let start = || {
        start_login(
            state,
            metrics,
            route.provider,
            return_to.to_owned(),
            ask.cookies,
            true,
            &asked,
            None,
        )
    };
    let on_login = OnLogin::Redirect {
        start: &start,
        login_url: &login,
        cors: crate::cors::allowed_origin(&state.config.server, ask.headers),
    };
    denied(denial, ask.browser, on_login)
}

/// Starts a login at provider `provider`: a login-state cookie and a 302 to the provider, or
/// 503 when the provider has not loaded. `asked` is what the route needs (`acr_values`,
/// `max_age`); `prompt` goes to the provider as it is (see [`prompt_param`]), and is `login`
/// when the `acr` of an existing session fell short (the provider's session would give the
/// same one again).
#[allow(clippy::too_many_arguments)]
pub fn start_login(
    state: &GatewayState,
    metrics: &Metrics,
    provider: usize,
    return_to: String,
    cookies: &RequestCookies<'_>,
    browser: bool,
    asked: &StepUp,
    prompt: Option<&str>,
) -> Reply {
    let p = &state.providers[provider].oidc;
    // Discovery alone is not enough: without keys no ID token could be checked at the callback.
    let Some(discovered) = p.discovered().filter(|_| p.is_ready()) else {
        tracing::warn!(
            provider = p.name(),
            "login refused: provider not loaded yet"
        );
        return respond::provider_unavailable(browser);
    };
    if p.is_down() {
        // The probe (or a failed call) found the provider unreachable: a redirect there would
        // strand the browser on an error page of its own.
        tracing::debug!(provider = p.name(), "login refused: provider down");
        return respond::provider_unavailable(browser);
    }
    let login = LoginState {
        state: random_token(),
        nonce: random_token(),
        pkce_verifier: random_token(),
        return_to,
        provider: p.name().to_owned(),
        created_ms: now_ms(),
        acr: asked
            .acr_values
            .as_deref()
            .map(|a| a.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
        max_age: asked.max_age,
    };
    let extras = AuthExtras {
        prompt: prompt.or(asked.acr_unmet.then_some("login")),
        acr_values: asked.acr_values.as_deref(),
        max_age: asked.max_age,
    };
    let location = p.authorization_url(
        &discovered,
        &state.config.server.redirect_uri,
        &login.state,
        &login.nonce,
        &login.pkce_verifier,
        &extras,
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

/// The `prompt` a sign-in may pass on (OpenID Connect Core §3.1.2.1): `login` to authenticate
/// again (CIS2: pick another role), `select_account`, `consent`, or several of them. `none`
/// is refused: a silent login that fails would leave the user on an error page.
fn prompt_param(value: &str) -> Option<&str> {
    let known = |v: &str| matches!(v, "login" | "select_account" | "consent");
    (!value.is_empty() && value.len() <= 64 && value.split(' ').all(known)).then_some(value)
}

pub(super) fn sign_in(state: &GatewayState, metrics: &Metrics, session: &Session) -> Reply {
    let req = session.req_header();
    let prompt = query_param(req.uri.query(), "prompt");
    let prompt = match prompt.as_deref().map(prompt_param) {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => {
            tracing::info!("sign-in refused: unknown prompt value");
            return respond::bad_request("prompt must be login, select_account or consent");
        }
    };
    let rd = safe_return_path(query_param(req.uri.query(), "rd").as_deref());
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| host_name(h).ok().flatten());
    let route = route_for_path(state, host, &rd);
    let provider = route.as_ref().map_or(0, |r| r.provider);
    // What the route at `rd` requires: a sign-in link from its 401 then logs in with it.
    let asked = route
        .as_ref()
        .map(|r| StepUp::asked_by(&r.assurance))
        .unwrap_or_else(|| StepUp::asked_by(&Default::default()));
    let cookies = RequestCookies::of(&req.headers, &state.config.session);
    start_login(state, metrics, provider, rd, &cookies, true, &asked, prompt)
}

/// The route that would serve `path` (its provider logs the user in; the first provider when
/// no route does), matched exactly as the proxy matches it.
fn route_for_path(
    state: &GatewayState,
    host: Option<&str>,
    path: &str,
) -> Option<Arc<RouteConfig>> {
    let path_only = path.split(['?', '#']).next().unwrap_or("/");
    canonicalize(path_only, state.routes.fold_case())
        .ok()
        .and_then(|p| state.routes.match_route(host, &p.matched).cloned())
}

pub(super) async fn callback(
    state: &Arc<GatewayState>,
    metrics: &Metrics,
    session: &mut Session,
) -> Reply {
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
    let provider = &state.providers[index].oidc;
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
    let now = crate::clock::now();
    let skew = provider.cfg.clock_skew.as_secs();
    if let Err(why) =
        crate::assurance::check_login(&login.acr, login.max_age, &result.claims, now, skew)
    {
        return fail(
            metrics,
            provider.name(),
            &LoginError::Assurance(why),
            &retry,
        )
        .with_cookies(set);
    }
    let keep_hint = provider
        .discovered()
        .is_some_and(|d| d.end_session_endpoint.is_some());
    let user = UserSession {
        provider: provider.name().to_owned(),
        claims: retain_for(&result.claims, &state.providers[index].kept_paths),
        created: now,
        last_seen: now,
        expires: now.saturating_add(cfg.max_lifetime.as_secs()),
        tokens_expire: crate::refresh::tokens_expire(&result.tokens, Some(&result.claims), now),
        refresh_token: result.tokens.refresh_token,
        id_token_hint: keep_hint.then_some(result.id_token),
        // Back-channel logout finds sessions by the provider's `sid` and by `sub`.
        sid: result
            .claims
            .get("sid")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        id_token_expires: crate::refresh::id_token_exp(&result.claims),
    };
    let mut user = user;
    let sid = user.sid.clone();
    let sub = user.subject().to_owned();
    let mut indexes = vec![(Index::Sub, sub.as_str())];
    match &sid {
        Some(sid) => indexes.push((Index::Sid, sid.as_str())),
        None => indexes.push((Index::NoSid, sub.as_str())),
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
pub(crate) fn repeated_param(query: Option<&str>, names: &[&'static str]) -> Option<&'static str> {
    let query = query?;
    names.iter().copied().find(|name| {
        url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == name)
            .count()
            > 1
    })
}
