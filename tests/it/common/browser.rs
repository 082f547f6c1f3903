//! A small browser: reqwest without redirects plus a cookie jar the tests can inspect and
//! tamper with.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A browser: no automatic redirects, a cookie jar that honours Set-Cookie deletions.
pub struct Browser {
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    pub accept_html: bool,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> String {
        self.header("location").unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The headers the echo upstream received, lower-case name → values.
    pub fn upstream_headers(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.json()["headers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = pair[0].as_str().unwrap_or_default().to_ascii_lowercase();
            out.entry(name)
                .or_default()
                .push(pair[1].as_str().unwrap_or_default().to_owned());
        }
        out
    }
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_headers()
            .get(&name.to_ascii_lowercase())
            .map(|v| v.join("|"))
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    /// A browser over a client of the test's making (e.g. one that trusts a test CA); redirects
    /// must be off.
    pub fn with_client(client: reqwest::Client) -> Browser {
        Browser {
            client,
            cookies: BTreeMap::new(),
            accept_html: true,
        }
    }

    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            accept_html: true,
        }
    }

    /// An API client (no text/html in Accept).
    pub fn api() -> Browser {
        Browser {
            accept_html: false,
            ..Browser::new()
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.request(Method::GET, url, &[]).await
    }

    /// GET as an API client would (`Accept: application/json`), with this browser's cookies.
    pub async fn get_api(&mut self, url: &str) -> Resp {
        self.request(Method::GET, url, &[("accept", "application/json")])
            .await
    }

    pub async fn request(&mut self, method: Method, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.request(method, url);
        // A browser navigation says so with Sec-Fetch-Mode; its Accept stays */* so that the
        // echo upstream answers JSON the tests can read.
        let accept = if self.accept_html {
            "*/*"
        } else {
            "application/json"
        };
        let mut has_accept = false;
        let mut has_cookie = false;
        let mut has_mode = false;
        for (k, v) in headers {
            has_accept |= k.eq_ignore_ascii_case("accept");
            has_cookie |= k.eq_ignore_ascii_case("cookie");
            has_mode |= k.eq_ignore_ascii_case("sec-fetch-mode");
            req = req.header(
                *k,
                HeaderValue::from_bytes(v.as_bytes()).expect("header value"),
            );
        }
        if !has_accept {
            req = req.header("accept", accept);
        }
        if !has_mode && self.accept_html && !has_accept {
            req = req.header("sec-fetch-mode", "navigate");
        }
        // Cookies go only to the gateway (the provider keeps no cookies of interest here).
        if !has_cookie
            && !self.cookies.is_empty()
            && (url.contains("127.0.0.1") || url.contains("localhost"))
        {
            req = req.header("cookie", self.cookie_header());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let r = Resp {
            status,
            headers,
            body,
        };
        self.absorb(&r);
        r
    }

    /// Applies Set-Cookie like a browser: Max-Age=0 or an empty value deletes.
    pub fn absorb(&mut self, r: &Resp) {
        for sc in r.set_cookies() {
            let Ok(c) = cookie::Cookie::parse(sc.clone()) else {
                continue;
            };
            let deleted = c.max_age().is_some_and(|a| a.is_zero()) || c.value().is_empty();
            if deleted {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    /// From a gateway 302 to the provider, through the provider (as `user`) back to the callback;
    /// returns the callback's response.
    pub async fn through_provider(&mut self, to_provider: &Resp, user: &str) -> Resp {
        assert_eq!(
            to_provider.status,
            StatusCode::FOUND,
            "expected a redirect to the provider: {to_provider:?}"
        );
        let authorize = format!("{}&login_hint={user}", to_provider.location());
        let at_provider = self.get(&authorize).await;
        assert_eq!(
            at_provider.status,
            StatusCode::FOUND,
            "provider did not redirect back: {}",
            at_provider.body
        );
        let callback = at_provider.location();
        self.get(&callback).await
    }

    /// Logs in by visiting `url` as `user`, following the flow back to `url`; returns the final
    /// response from the upstream.
    pub async fn login(&mut self, url: &str, user: &str) -> Resp {
        let first = self.get(url).await;
        let back = self.through_provider(&first, user).await;
        assert_eq!(
            back.status,
            StatusCode::FOUND,
            "callback failed: {} {}",
            back.status,
            back.body
        );
        let target = back.location();
        self.get(&target).await
    }

    /// The value of the session (bare or joined chunks).
    pub fn session_cookie_names(&self) -> Vec<String> {
        self.cookies
            .keys()
            .filter(|k| k.starts_with("oidc_session") && !k.contains("_login_"))
            .cloned()
            .collect()
    }
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
