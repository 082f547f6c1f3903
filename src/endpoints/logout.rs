//! Signing out: `/oauth2/logout` (RP-initiated, with the provider's end-session redirect) and
//! `/oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0).

use pingora::proxy::Session;

use crate::access::{denied, Access, Admitted, Ask, Denial, OnLogin};
use crate::audit;
use crate::backchannel::{self, BackchannelError};
use crate::clock::now;
use crate::metrics::{AuthEvent, Metrics};
use crate::request::{query_param, safe_return_path};
use crate::respond::{self, Reply};
use crate::session::cookies::{clear_session, delete_cookie};
use crate::session::{RequestCookies, SessionStore};
use crate::state::GatewayState;

use super::read_body;

pub(super) async fn logout(state: &GatewayState, access: &Access, session: &Session) -> Reply {
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
        // Cookie sessions end with their cookies, whatever the revocation list can say now.
        Err(_) if matches!(state.store, SessionStore::Cookie(_)) => None,
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
        state.providers[i]
            .oidc
            .end_session_url(user.id_token_hint.as_deref(), &return_url)
    });
    respond::redirect(end_session.as_deref().unwrap_or(&return_url)).with_cookies(set)
}

/// `POST /oauth2/backchannel_logout`: the provider asks to end sessions (see `backchannel`).
pub(super) async fn backchannel_logout(
    state: &GatewayState,
    metrics: &Metrics,
    session: &mut Session,
) -> Reply {
    // A logout token is a few kilobytes: the header's time limit is plenty for it too.
    let deadline = state.config.server.request_header_timeout;
    let body = match read_body(session, backchannel::MAX_BODY, deadline).await {
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
            .position(|p| p.oidc.cfg.issuer == issuer && audiences.contains(&p.oidc.cfg.client_id))
            .ok_or(BackchannelError::Refused(
                "logout_token is from an unknown issuer, or its aud names no client of that issuer",
            ))?;
        let provider = &state.providers[index].oidc;
        let request =
            backchannel::validate(&state.providers[index].logout_keys, provider, &token, now())
                .await?;
        let revoked = match &state.store {
            SessionStore::Redis(redis) => Some(
                backchannel::revoke(redis, provider.name(), &request, provider.cfg.clock_skew)
                    .await?,
            ),
            SessionStore::Cookie(cookies) => {
                let registration =
                    crate::state::registration(&provider.cfg.issuer, &provider.cfg.client_id);
                backchannel::revoke_cookies(&cookies.revocations, &registration, &request).await?;
                None
            }
        };
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
                sessions = revoked.map_or_else(|| "cookies refused".to_owned(), |n| n.to_string()),
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
