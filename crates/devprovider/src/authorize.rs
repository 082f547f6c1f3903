//! The authorization endpoint and the login page behind it. Checks the request the way a strict
//! provider does (exact redirect URI, PKCE S256 required, `openid` scope, `state` present),
//! never redirects to an unregistered URI, and issues single-use codes.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::http::{error_page, esc, esc_attr, html_page, redirect_with, Params};
use super::state::{
    now_secs, Authn, CodeGrant, PendingLogin, Provider, CODE_TTL, LOGIN_PATH, LOGIN_TTL,
};
use super::tokens::random_token;
use super::users::{self, DevUser};

/// A validated authorize request.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    nonce: Option<String>,
    code_challenge: String,
}

pub(crate) async fn authorize_get(
    State(p): State<Arc<Provider>>,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&p, Params::parse(query.unwrap_or_default().as_bytes())).await
}

/// OIDC Core §3.1.2.1: the authorization endpoint must also accept form POSTs.
pub(crate) async fn authorize_post(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    authorize(&p, Params::parse(&body)).await
}

async fn authorize(p: &Provider, params: Params) -> Response {
    if let Err(r) = p.gate().await {
        return r;
    }
    let req = match validate(p, &params) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(user) = params.get("login_hint").and_then(users::user) {
        return issue_code(p, req, user);
    }
    if params
        .get("prompt")
        .is_some_and(|v| v.split(' ').any(|x| x == "none"))
    {
        return redirect_error(
            &req.redirect_uri,
            Some(&req.state),
            "login_required",
            "no login_hint for a known user",
        );
    }
    login_page(p, req)
}

/// Why an authorize request is refused, and how the browser is told.
enum Refusal {
    /// Shown by the provider itself: the redirect URI is not (yet) trusted.
    Page {
        title: &'static str,
        message: String,
    },
    /// Sent back to the registered redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn page(title: &'static str, message: impl Into<String>) -> Self {
        Refusal::Page {
            title,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        match self {
            Refusal::Page { title, message } => {
                error_page(StatusCode::BAD_REQUEST, title, &message)
            }
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => redirect_error(&redirect_uri, state.as_deref(), error, &description),
        }
    }
}

/// Checks the request: an error page while the redirect URI is not trusted yet, an error
/// redirect afterwards.
fn validate(p: &Provider, params: &Params) -> Result<AuthRequest, Refusal> {
    // Until client and redirect URI are known good, errors are shown here, never redirected:
    // redirecting to an unchecked URI would make this an open redirector.
    if params.is_duplicated("client_id") || params.is_duplicated("redirect_uri") {
        return Err(Refusal::page(
            "Invalid request",
            "client_id and redirect_uri must each be sent once",
        ));
    }
    let Some(client_id) = params.get("client_id") else {
        return Err(Refusal::page("Invalid request", "client_id is missing"));
    };
    let Some(client) = p.clients.get(client_id) else {
        return Err(Refusal::page(
            "Unknown client",
            format!("client_id {client_id:?} is not registered at this provider"),
        ));
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err(Refusal::page("Invalid request", "redirect_uri is missing"));
    };
    if !client
        .client
        .redirect_uris
        .iter()
        .any(|u| u == redirect_uri)
    {
        return Err(Refusal::page(
            "Invalid redirect URI",
            format!("redirect_uri {redirect_uri:?} is not registered for client {client_id:?}"),
        ));
    }

    let state = params.get("state");
    let fail = |error: &'static str, description: &str| {
        Err(Refusal::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            state: state.map(str::to_owned),
            error,
            description: description.to_owned(),
        })
    };
    if let Some(name) = params.duplicated() {
        return fail(
            "invalid_request",
            &format!("parameter {name} sent more than once"),
        );
    }
    let Some(state) = state else {
        return fail("invalid_request", "state is required");
    };
    if params.get("request").is_some() || params.get("request_uri").is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is missing"),
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            )
        }
    }
    let scope = params.get("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "scope must contain openid");
    }
    let Some(code_challenge) = params.get("code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    // A S256 challenge is base64url of 32 bytes: 43 characters without padding.
    let well_formed = code_challenge.len() == 43
        && code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return fail(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 value",
        );
    }
    Ok(AuthRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.to_owned(),
        state: state.to_owned(),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
    })
}

fn redirect_error(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    redirect_with(redirect_uri, &params)
}

/// Issues a single-use code and sends the browser back to the client.
fn issue_code(p: &Provider, req: AuthRequest, user: &'static DevUser) -> Response {
    let code = random_token();
    let sid = random_token();
    p.controls.record_login(user.sub(), &sid);
    let grant = CodeGrant {
        authn: Authn {
            user,
            client_id: req.client_id,
            scope: req.scope,
            nonce: req.nonce,
            auth_time: now_secs(),
            sid,
        },
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge,
        expires: Instant::now() + CODE_TTL,
    };
    p.store().codes.insert(code.clone(), grant);
    redirect_with(&req.redirect_uri, &[("code", &code), ("state", &req.state)])
}

fn login_page(p: &Provider, req: AuthRequest) -> Response {
    let txn = random_token();
    let mut body = format!(
        "<p>Client <code>{}</code> asks you to sign in (scope <code>{}</code>).<br>\
         You will be sent back to <code>{}</code>.</p>\n<p>Choose a test user:</p>\n",
        esc(&req.client_id),
        esc(&req.scope),
        esc(&req.redirect_uri),
    );
    for u in users::users() {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"txn\" value=\"{txn}\">\
             <input type=\"hidden\" name=\"user\" value=\"{id}\">\
             <button type=\"submit\">Sign in as {name}</button> \
             <span class=\"who\">{id_text}: {desc}</span></form>\n",
            action = esc_attr(LOGIN_PATH),
            txn = esc_attr(&txn),
            id = esc_attr(u.id),
            name = esc(u.name()),
            id_text = esc(u.id),
            desc = esc(u.description),
        ));
    }
    p.store().pending.insert(
        txn,
        PendingLogin {
            client_id: req.client_id,
            redirect_uri: req.redirect_uri,
            scope: req.scope,
            state: req.state,
            nonce: req.nonce,
            code_challenge: req.code_challenge,
            expires: Instant::now() + LOGIN_TTL,
        },
    );
    html_page(
        StatusCode::OK,
        "Development OpenID provider: sign in",
        &body,
    )
}

/// POST from the login page: the chosen user confirms, a code is issued.
pub(crate) async fn login_confirm(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    if let Err(r) = p.gate().await {
        return r;
    }
    let params = Params::parse(&body);
    let Some(user) = params.get("user").and_then(users::user) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown user",
            "choose one of the listed users",
        );
    };
    // Removing it makes the login transaction single-use, like the code it turns into.
    let pending = params.get("txn").and_then(|t| p.store().pending.remove(t));
    let Some(pending) = pending else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Login expired",
            "this login page has expired or was already used; start again from the application",
        );
    };
    let req = AuthRequest {
        client_id: pending.client_id,
        redirect_uri: pending.redirect_uri,
        scope: pending.scope,
        state: pending.state,
        nonce: pending.nonce,
        code_challenge: pending.code_challenge,
    };
    issue_code(&p, req, user)
}
