//! Small HTTP building blocks shared by the provider's handlers: request parameter parsing,
//! JSON / HTML / redirect responses and the OAuth error response. Every HTML page escapes what
//! it shows, because request parameters end up on it.

use std::collections::HashMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Form or query parameters in received order. Empty values count as absent (RFC 6749 §3.1).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(bytes: &[u8]) -> Params {
        Params(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// RFC 6749 §3.1/§3.2: a parameter must not be sent more than once.
    pub fn duplicated(&self) -> Option<&str> {
        self.0.iter().enumerate().find_map(|(i, (k, _))| {
            self.0[..i]
                .iter()
                .any(|(earlier, _)| earlier == k)
                .then_some(k.as_str())
        })
    }

    pub fn is_duplicated(&self, name: &str) -> bool {
        self.0.iter().filter(|(k, _)| k == name).count() > 1
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        self.0.iter().cloned().collect()
    }
}

/// JSON with `Cache-Control: no-store`: token and userinfo answers must not be cached.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// [`json_response`] for a body that is already JSON text.
pub(crate) fn raw_json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page; `body_html` must already be escaped by the caller.
pub(crate) fn html_page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         form{{margin:.5rem 0}} button{{padding:.4rem .8rem}} .who{{color:#555;font-size:.9em}}\
         pre{{background:#f4f4f4;padding:.5rem;overflow:auto}} td{{vertical-align:top;padding:0 .5rem}}</style>\
         </head><body><h1>{title}</h1>\n{body_html}\n</body></html>\n",
        title = esc(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// An error page with an escaped message; used where redirecting would be unsafe.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html_page(status, title, &format!("<p>{}</p>", esc(message)))
}

pub(crate) fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

pub(crate) fn esc_attr(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

/// 302 to `base` with `params` appended to its query (keeping any query it already has).
pub(crate) fn redirect_with(base: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(base) else {
        // Only registered URIs get here; a registration that is not a URL is our bug.
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bad redirect URI",
            &format!("the registered redirect URI {base:?} is not an absolute URL"),
        );
    };
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An OAuth 2.0 error response (RFC 6749 §5.2) from the token or userinfo endpoint.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate` value, for 401s.
    pub challenge: Option<&'static str>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }

    pub fn with_challenge(mut self, c: &'static str) -> Self {
        self.challenge = Some(c);
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = json_response(
            self.status,
            &json!({ "error": self.error, "error_description": self.description }),
        );
        if let Some(c) = self.challenge {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_treat_empty_as_absent_and_spot_duplicates() {
        let p = Params::parse(b"a=1&b=&c=x+y%21&a=2");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y!"));
        assert_eq!(p.duplicated(), Some("a"));
        assert!(p.is_duplicated("a"));
        assert!(!p.is_duplicated("c"));
        assert_eq!(p.names(), ["a", "b", "c", "a"]);
    }

    #[test]
    fn redirect_keeps_existing_query_and_encodes() {
        let r = redirect_with("https://rp/cb?x=1", &[("state", "a b&c")]);
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://rp/cb?x=1&state=a+b%26c"
        );
    }
}
