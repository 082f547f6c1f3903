//! `/oauth2/userinfo`: the signed-in user's claims as JSON, for the application's front end.

use pingora::proxy::Session;

use crate::access::{denied, Access, Ask, OnLogin};
use crate::respond::{self, Reply};
use crate::session::RequestCookies;
use crate::state::GatewayState;

use super::login_url;

pub(super) async fn userinfo(state: &GatewayState, access: &Access, session: &Session) -> Reply {
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
