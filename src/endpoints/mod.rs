//! The gateway's own endpoints, served before routing: the login callback, sign-in, logout,
//! UserInfo, the session status, forward-auth and back-channel logout; and `start_login`, which the proxy also uses.

mod forward_auth;
pub(crate) mod login;
mod logout;
mod session_status;
mod userinfo;

pub use login::{login_url, route_denied};

use std::sync::Arc;

use pingora::proxy::Session;

use crate::access::Access;
use crate::respond::{self, Reply};
use crate::state::GatewayState;

/// A gateway endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Callback,
    SignIn,
    Logout,
    Userinfo,
    /// `/oauth2/session`: the session's times and assurance, for single-page apps.
    SessionStatus,
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
        "/oauth2/session" => Endpoint::SessionStatus,
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
    // `/oauth2/session` is for single-page apps on server.cors_origins too, as a route with
    // `cors = true` is.
    if endpoint == Endpoint::SessionStatus && crate::cors::is_preflight(session.req_header()) {
        return crate::cors::preflight(&state.config.server, session.req_header());
    }
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
        Endpoint::Callback => login::callback(state, metrics, session).await,
        Endpoint::SignIn => login::sign_in(state, metrics, session),
        Endpoint::Logout => logout::logout(state, access, session).await,
        Endpoint::Userinfo => userinfo::userinfo(state, access, session).await,
        Endpoint::SessionStatus => {
            let reply = session_status::session_status(state, access, session).await;
            crate::cors::with_cors(&state.config.server, &session.req_header().headers, reply)
        }
        Endpoint::Auth => forward_auth::forward_auth(state, access, session).await,
        Endpoint::BackchannelLogout => logout::backchannel_logout(state, metrics, session).await,
        Endpoint::Jwks => respond::jwks(
            state
                .assertions
                .as_ref()
                .map(|a| a.jwks().to_owned())
                .unwrap_or_else(|| r#"{"keys":[]}"#.to_owned()),
        ),
    }
}

/// The request body, at most `limit` bytes, whole within `deadline` (pingora bounds each read
/// only, so a body trickled a byte at a time would hold the connection for days).
async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, &'static str> {
    tokio::time::timeout(deadline, read_body_whole(session, limit))
        .await
        .unwrap_or(Err("request body not received in time"))
}

async fn read_body_whole(session: &mut Session, limit: usize) -> Result<Vec<u8>, &'static str> {
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
