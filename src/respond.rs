//! The one place that turns outcomes into responses: redirects, 401 (HTML for browsers, JSON for
//! APIs), 403, 404, 400, 431, 502, 503 with Retry-After, and the login-failed page. Every page
//! escapes what it shows; none echoes provider or client text raw.

use std::borrow::Cow;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::assurance::StepUp;
use crate::bearer::BearerError;
use crate::oidc::{LoginError, LoginFailure};

/// Seconds a client should wait before retrying while the provider is down.
pub const RETRY_AFTER_SECS: u32 = 10;

/// A response the gateway answers itself.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
    pub body: Bytes,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type".into(), content_type.as_bytes().to_vec()),
                ("cache-control".into(), b"no-store".to_vec()),
            ],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into().into_bytes()));
        self
    }

    /// Adds `Set-Cookie` headers.
    pub fn with_cookies(mut self, cookies: impl IntoIterator<Item = String>) -> Reply {
        self.headers.extend(
            cookies
                .into_iter()
                .map(|c| ("set-cookie".into(), c.into_bytes())),
        );
        self
    }

    /// Writes the reply to the client.
    pub async fn send(self, session: &mut Session) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        for (name, value) in self.headers {
            resp.append_header(name.into_owned(), value.as_slice())?;
        }
        // A 204 has no body and must not say how long it is (RFC 9110 §8.6).
        if self.status != 204 {
            resp.insert_header("content-length", self.body.len().to_string())?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        let empty = self.body.is_empty() || head_only;
        session.write_response_header(Box::new(resp), empty).await?;
        if !empty {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

/// 204 without a body (a CORS preflight's answer; its headers are added by the caller).
pub fn no_content() -> Reply {
    Reply {
        status: 204,
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

/// 403 for a CORS preflight the gateway will not allow, without any CORS header (so the
/// browser refuses the request it was asking about).
pub fn cors_refused(reason: &str) -> Reply {
    let body = serde_json::json!({"error": "cors_refused", "error_description": reason});
    Reply::new(403, "application/json", body.to_string())
}

/// 302 to `location`.
pub fn redirect(location: &str) -> Reply {
    Reply::new(
        302,
        "text/html; charset=utf-8",
        page(
            "Redirecting",
            &format!(
                "<p><a href=\"{}\">Continue</a></p>",
                html_escape::encode_double_quoted_attribute(location)
            ),
        ),
    )
    .with("location", location)
}

/// 401 for an API request without a session: JSON with `login_url`, CORS for allowed origins.
pub fn login_required_api(login_url: &str, cors_origin: Option<&str>) -> Reply {
    let body = serde_json::json!({"error": "login_required", "login_url": login_url}).to_string();
    let mut r = Reply::new(401, "application/json", body).with(
        "www-authenticate",
        "Bearer realm=\"oidc-gateway\", error=\"login_required\"",
    );
    if let Some(origin) = cors_origin {
        r = r
            .with("access-control-allow-origin", origin)
            .with("access-control-allow-credentials", "true")
            .with("vary", "Origin");
    }
    r
}

/// 401 for a session or token that does not meet the route's authentication requirements
/// (RFC 9470): the same JSON shape as `login_required`, with what a new login must give.
pub fn step_up_api(login_url: &str, step_up: &StepUp, cors_origin: Option<&str>) -> Reply {
    let body = serde_json::json!({
        "error": "insufficient_user_authentication",
        "login_url": login_url,
        "acr_values": step_up.acr_values,
        "max_age": step_up.max_age,
    })
    .to_string();
    // acr values are printable ASCII without quotes or spaces (config validation).
    let mut challenge = String::from(
        "Bearer realm=\"oidc-gateway\", error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\"",
    );
    if let Some(acr) = &step_up.acr_values {
        challenge.push_str(&format!(", acr_values=\"{acr}\""));
    }
    if let Some(max_age) = step_up.max_age {
        challenge.push_str(&format!(", max_age={max_age}"));
    }
    let mut r = Reply::new(401, "application/json", body).with("www-authenticate", challenge);
    if let Some(origin) = cors_origin {
        r = r
            .with("access-control-allow-origin", origin)
            .with("access-control-allow-credentials", "true")
            .with("vary", "Origin");
    }
    r
}

/// 401 for a bearer token that is not accepted (RFC 6750 §3.1 `invalid_token`), or 503 when
/// the provider's keys cannot be loaded to check it. Never a login redirect: a client that sent
/// a token is an API client.
pub fn bearer_refused(err: &BearerError) -> Reply {
    match err {
        BearerError::Unavailable(_) => provider_unavailable(false),
        BearerError::Invalid(why) => {
            let body =
                serde_json::json!({"error": "invalid_token", "error_description": why}).to_string();
            // `why` is one of bearer.rs's fixed texts: no quote or token content can reach here.
            Reply::new(401, "application/json", body).with(
                "www-authenticate",
                format!(
                    "Bearer realm=\"oidc-gateway\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "")
                ),
            )
        }
    }
}

/// 500 for a failure of the gateway itself on the request path (e.g. a signing error).
pub fn internal_error() -> Reply {
    Reply::new(
        500,
        "text/html; charset=utf-8",
        page(
            "Internal error",
            "<p>The gateway could not complete this request. Please tell the operator.</p>",
        ),
    )
}

/// The gateway's public signing keys (`/oauth2/jwks.json`); cacheable for a few minutes.
pub fn jwks(body: String) -> Reply {
    let mut r = Reply::new(200, "application/json", body);
    r.headers.retain(|(n, _)| n != "cache-control");
    r.with("cache-control", "public, max-age=300")
}

/// 403: signed in, but the route's rules are not met.
pub fn forbidden(browser: bool) -> Reply {
    if browser {
        Reply::new(403, "text/html; charset=utf-8", page(
            "Access denied",
            "<p>You are signed in, but your account does not have the role, organisation or activity this application requires.</p>",
        ))
    } else {
        Reply::new(403, "application/json", r#"{"error":"forbidden"}"#)
    }
}

/// 404: no route for this host and path.
pub fn not_found() -> Reply {
    Reply::new(
        404,
        "text/html; charset=utf-8",
        page(
            "Not found",
            "<p>No application is configured at this address.</p>",
        ),
    )
}

/// 400 with a fixed reason.
pub fn bad_request(reason: &str) -> Reply {
    Reply::new(
        400,
        "text/html; charset=utf-8",
        page(
            "Bad request",
            &format!("<p>{}</p>", html_escape::encode_text(reason)),
        ),
    )
}

/// 431: request headers larger than allowed.
pub fn headers_too_large() -> Reply {
    Reply::new(431, "text/html; charset=utf-8", page("Request headers too large", "<p>The request headers are larger than this gateway accepts. Clearing this site's cookies may help.</p>"))
}

/// 502: the upstream application could not be reached.
pub fn upstream_failed() -> Reply {
    Reply::new(502, "text/html; charset=utf-8", page("Application unavailable", "<p>The application behind this gateway is not answering. Please try again shortly.</p>"))
}

/// The status a failed proxy attempt answers with: 502 for an upstream that fails, 504 for one
/// that does not answer in time, 400 for a request pingora could not read, `0` (nothing to
/// send) when the client's connection is gone, 500 otherwise.
pub fn proxy_failure_status(e: &pingora::Error) -> u16 {
    use pingora::{ErrorSource, ErrorType};
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Answers a failed proxy attempt with `status` (see [`proxy_failure_status`]) and closes the
/// connection after it: a client must not send its next request into a socket that is about
/// to close.
pub async fn send_proxy_failure(session: &mut Session, status: u16) {
    session.set_keepalive(None);
    if status == 502 || status == 504 {
        let mut reply = upstream_failed();
        reply.status = status;
        if let Err(err) = reply.send(session).await {
            tracing::debug!(error = %err, "could not send the 502 page");
        }
    } else if status > 0 {
        let _ = session.respond_error(status).await;
    }
}

/// 503: the identity provider cannot be reached now.
pub fn provider_unavailable(browser: bool) -> Reply {
    let r = if browser {
        Reply::new(503, "text/html; charset=utf-8", page(
            "Sign-in temporarily unavailable",
            "<p>The identity provider cannot be reached right now. Please try again in a moment.</p>",
        ))
    } else {
        Reply::new(
            503,
            "application/json",
            r#"{"error":"provider_unavailable"}"#,
        )
    };
    r.with("retry-after", RETRY_AFTER_SECS.to_string())
}

/// 503 when the session store (Redis) does not answer: nobody can be identified, so nothing
/// passes (fail closed); the cookie stays for when the store is back.
pub fn store_unavailable(browser: bool) -> Reply {
    let r = if browser {
        Reply::new(503, "text/html; charset=utf-8", page(
            "Temporarily unavailable",
            "<p>Sessions cannot be checked right now. Please try again in a moment; you will not need to sign in again.</p>",
        ))
    } else {
        Reply::new(
            503,
            "application/json",
            r#"{"error":"session_store_unavailable"}"#,
        )
    };
    r.with("retry-after", RETRY_AFTER_SECS.to_string())
}

/// 200 for an accepted back-channel logout (the spec wants no body; `no-store` always).
pub fn backchannel_done() -> Reply {
    Reply::new(200, "application/json", "{}")
}

/// 400 for a back-channel logout request that is refused, with the OpenID error code.
pub fn backchannel_refused(description: &str) -> Reply {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": description,
    });
    Reply::new(400, "application/json", body.to_string())
}

/// The answer to a failed login: 503 when the provider is down, 500 when the session cannot be
/// stored, else 401 with a link to start again.
pub fn login_failed(err: &LoginError, retry_url: &str) -> Reply {
    match err.failure() {
        LoginFailure::Unavailable => provider_unavailable(true),
        LoginFailure::Internal => Reply::new(
            500,
            "text/html; charset=utf-8",
            page(
                "Sign-in could not be completed",
                &format!(
                "<p>The gateway could not store your session ({}). Please tell the operator.</p>",
                html_escape::encode_text(err.reason())
            ),
            ),
        ),
        LoginFailure::Rejected => {
            let detail = match err {
                LoginError::ProviderError(code) => format!(
                    " The identity provider answered: <code>{}</code>.",
                    html_escape::encode_text(code)
                ),
                _ => String::new(),
            };
            Reply::new(401, "text/html; charset=utf-8", page(
                "Sign-in failed",
                &format!(
                    "<p>Your sign-in could not be completed.{detail}</p><p><a href=\"{}\">Sign in again</a></p>",
                    html_escape::encode_double_quoted_attribute(retry_url)
                ),
            ))
        }
    }
}

/// A JSON document (UserInfo endpoint).
pub fn json(status: u16, body: String) -> Reply {
    Reply::new(status, "application/json", body)
}

/// A forward-auth request that cannot be decided (untrusted peer, no route: 403; an original
/// URI that is missing, ambiguous or refused by the path rules: 400), with the reason.
pub fn forward_auth_refused(status: u16, reason: &str) -> Reply {
    let error = if status == 403 {
        "forbidden"
    } else {
        "invalid_request"
    };
    let body = serde_json::json!({"error": error, "error_description": reason}).to_string();
    Reply::new(status, "application/json", body)
}

/// 200: "log out?" with a button that posts from this origin (a cross-site logout link).
pub fn logout_confirmation(action: &str) -> Reply {
    Reply::new(
        200,
        "text/html; charset=utf-8",
        page(
            "Sign out?",
            &format!(
                "<p>Another site sent you here to sign out.</p><form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
                html_escape::encode_double_quoted_attribute(action)
            ),
        ),
    )
}

/// 202 for forward-auth, with the identity headers.
pub fn auth_ok(headers: Vec<(String, Vec<u8>)>) -> Reply {
    let mut r = Reply::new(202, "text/plain; charset=utf-8", Bytes::new());
    r.headers
        .extend(headers.into_iter().map(|(n, v)| (Cow::Owned(n), v)));
    r
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>\n",
        t = html_escape::encode_text(title)
    )
}
