//! Reading a request: browser or API, cookies, query parameters, and the post-login return path
//! (which must stay on this gateway's own origin).

use http::HeaderMap;
use percent_encoding::percent_decode_str;
use pingora::proxy::Session;

/// The peer's IP address (none for Unix sockets).
pub fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Whether a request is a browser navigation (contract: `Sec-Fetch-Mode: navigate`, or no
/// `Sec-Fetch-Mode` and an `Accept` that includes `text/html`).
pub fn is_browser(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
        None => headers.get_all(http::header::ACCEPT).iter().any(|v| {
            v.to_str()
                .map(|s| s.to_ascii_lowercase().contains("text/html"))
                .unwrap_or(false)
        }),
    }
}

/// Every `Cookie` header value (HTTP/2 clients send one per cookie).
pub fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
}

/// The first value of a query parameter, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A post-login or post-logout target: kept only when it is a path on this origin, else `/`.
/// Refuses `//host`, `/\host`, absolute URLs, control characters and their encoded variants.
pub fn safe_return_path(rd: Option<&str>) -> String {
    let Some(rd) = rd else { return "/".to_owned() };
    if is_local_path(rd) {
        rd.to_owned()
    } else {
        "/".to_owned()
    }
}

fn is_local_path(rd: &str) -> bool {
    if rd.len() > 2048 || !rd.starts_with('/') {
        return false;
    }
    // Check the text and its decodings (up to twice: `%252F` hides `%2F`), since a browser or
    // an upstream may decode before interpreting.
    let mut text = rd.to_owned();
    for _ in 0..3 {
        let bytes = text.as_bytes();
        if bytes.len() > 1 && (bytes[1] == b'/' || bytes[1] == b'\\') {
            return false;
        }
        if bytes.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f) {
            return false;
        }
        let decoded = percent_decode_str(&text).decode_utf8_lossy().into_owned();
        if decoded == text {
            break;
        }
        text = decoded;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_kept() {
        for rd in ["/", "/app", "/app?x=1&y=2", "/a/b#frag", "/caf%C3%A9"] {
            assert_eq!(safe_return_path(Some(rd)), rd);
        }
    }

    #[test]
    fn anything_off_origin_becomes_root() {
        for rd in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "http:/evil",
            "evil",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil",
            "/\r\nSet-Cookie: x=1",
            "/%0d%0aLocation: https://evil",
            "",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_path(Some(rd)), "/", "{rd:?}");
        }
        assert_eq!(safe_return_path(None), "/");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn browsers_are_told_from_api_clients() {
        assert!(is_browser(&headers(&[(
            "accept",
            "text/html,application/xhtml+xml"
        )])));
        assert!(is_browser(&headers(&[
            ("sec-fetch-mode", "navigate"),
            ("accept", "*/*")
        ])));
        assert!(!is_browser(&headers(&[
            ("sec-fetch-mode", "cors"),
            ("accept", "text/html")
        ])));
        assert!(!is_browser(&headers(&[("accept", "application/json")])));
        assert!(!is_browser(&headers(&[])));
    }
}
