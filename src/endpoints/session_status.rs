//! `/oauth2/session`: what a single-page app needs to warn before its session ends: whether
//! there is one, whose, when it ends (at the latest, and when idle), its `acr` and `auth_time`,
//! whether the gateway holds a refresh token and whether one is due; never a token. Pages on
//! `server.cors_origins` may read it (and preflight it). Asking is not activity and
//! refreshes nothing, so an app that polls does not keep an idle session alive.

use pingora::proxy::Session;
use serde_json::{json, Value};

use crate::access::{denied, Access, Ask, Denial, Identity, OnLogin};
use crate::respond::{self, Reply};
use crate::session::RequestCookies;
use crate::state::GatewayState;

use super::login_url;

pub(super) async fn session_status(
    state: &GatewayState,
    access: &Access,
    session: &Session,
) -> Reply {
    let cfg = &state.config.session;
    let req = session.req_header();
    let cookies = RequestCookies::of(&req.headers, cfg);
    let ask = Ask {
        headers: &req.headers,
        cookies: &cookies,
        route: None,
        browser: false,
        extend: false,
    };
    let now = crate::clock::now();
    let signed_out = || respond::json(200, json!({ "authenticated": false }).to_string());
    match access.decide(state, &ask).await {
        Ok(admitted) => match &admitted.identity {
            // `extend: false` leaves expiry to the caller (logout ends expired sessions too).
            Identity::Session(user) if user.expired_at(cfg, now).is_none() => {
                let lifetime = user.created.saturating_add(cfg.max_lifetime.as_secs());
                let claim = |name: &str| user.claims.get(name).cloned().unwrap_or(Value::Null);
                let body = json!({
                    "authenticated": true,
                    "sub": user.subject(),
                    "provider": user.provider,
                    "expires_at": user.expires.min(lifetime),
                    "idle_expires_at": user.last_seen.saturating_add(cfg.idle_timeout.as_secs()),
                    "acr": claim("acr"),
                    "auth_time": claim("auth_time"),
                    "refresh_token": user.refresh_token.is_some(),
                    // The next proxied request refreshes first (and may fail if the provider
                    // is down or has revoked the grant); asking here does not.
                    "refresh_due": crate::refresh::is_due(user, now),
                });
                respond::json(200, body.to_string())
            }
            _ => signed_out(),
        },
        Err(Denial::LoginRequired { clear }) => signed_out().with_cookies(clear),
        // The store or provider cannot say: 503, not "signed out" (an app would start a login).
        Err(denial) => denied(
            denial,
            false,
            OnLogin::Api {
                login_url: &login_url(state, "/"),
            },
        ),
    }
}
