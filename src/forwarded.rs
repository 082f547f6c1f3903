//! What the upstream is told about the request besides the request itself: identity headers
//! the client may never send, the gateway's cookies it may never see, and the forwarding
//! headers (`X-Forwarded-*`, `Forwarded`, `X-Original-URL`, client-IP headers) that frameworks
//! route by or build URLs from, believed only from `server.trusted_proxies`.
//!
//! Header names are compared case-insensitively with `_` read as `-`: WSGI, CGI and PHP turn
//! both `X-Forwarded-Host` and `X_Forwarded_Host` into `HTTP_X_FORWARDED_HOST`.

use std::net::IpAddr;

use http::HeaderName;

use pingora::http::RequestHeader;
use pingora::{ErrorType::InvalidHTTPHeader, OrErr, Result};

use crate::config::{RouteConfig, ServerConfig, SessionConfig};
use crate::request::cookie_headers;

/// Forwarding headers replaced (or removed) unless the peer is a trusted proxy. IIS URL
/// Rewrite reads `X-Original-URL`/`X-Rewrite-URL`, Symfony `X-Forwarded-Prefix`, Spring and
/// Rails `X-Forwarded-Ssl`/`-Scheme`/`Front-End-Https`, and the client-IP headers feed
/// allow-lists and audit logs.
const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-original-uri",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-http-host-override",
    "x-forwarded-server",
    "x-original-forwarded-for",
    "client-ip",
    "proxy-client-ip",
    "wl-proxy-client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-forwarded-protocol",
    "x-url-scheme",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "front-end-https",
];

/// Header name equality, case-insensitive, with `_` and `-` the same (no allocation).
pub fn same_header(a: &[u8], b: &[u8]) -> bool {
    let norm = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| norm(*x) == norm(*y))
}

/// Whether a header is one that only a trusted proxy may set.
pub fn is_forwarding(name: &str) -> bool {
    FORWARDING
        .iter()
        .any(|f| same_header(name.as_bytes(), f.as_bytes()))
}

/// Whether the peer is in `server.trusted_proxies`.
pub fn trusted(server: &ServerConfig, peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| server.trusted_proxies.iter().any(|n| n.contains(&ip)))
}

/// The identity header names no client may send: every name a route's header rules set, and
/// all of `X-Auth-*`.
pub struct IdentityHeaders {
    /// Lower case, `_` read as `-`.
    names: Vec<String>,
}

impl IdentityHeaders {
    /// The names the routes' header rules set.
    pub fn of(routes: &[std::sync::Arc<RouteConfig>]) -> IdentityHeaders {
        let mut names: Vec<String> = Vec::new();
        for rule in routes.iter().flat_map(|r| &r.headers) {
            let name = normalize_header_name(rule.name.as_str());
            if !names.contains(&name) {
                names.push(name);
            }
        }
        IdentityHeaders { names }
    }

    /// Whether a client-sent header must be removed before forwarding.
    pub fn must_strip(&self, name: &str) -> bool {
        let name = name.as_bytes();
        (name.len() >= 7 && same_header(&name[..7], b"x-auth-"))
            || self.names.iter().any(|s| same_header(name, s.as_bytes()))
    }
}

/// Lower case, `_` as `-`: how proxies and CGI-style apps may read a header name.
fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// Removes every identity header a client sent (configured names and `X-Auth-*`, with `_`
/// read as `-`).
pub fn strip_identity_headers(names: &IdentityHeaders, upstream: &mut RequestHeader) {
    let doomed: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|name| names.must_strip(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        upstream.remove_header(&name);
    }
}

/// Removes the gateway's own cookies from `Cookie`, keeping the application's.
///
/// One pass over the bytes: on an authenticated request `Cookie` carries the multi-kilobyte
/// session, and splitting and UTF-8 checking it twice (once to find ours, once to rebuild)
/// showed in profiles. Names are trimmed before comparing, as cookie parsers do.
pub fn strip_gateway_cookies(session: &SessionConfig, upstream: &mut RequestHeader) -> Result<()> {
    let prefix = session.cookie_name.as_bytes();
    let mut found = false;
    let mut kept: Vec<u8> = Vec::new();
    for header in cookie_headers(&upstream.headers) {
        for part in cookie_parts(header) {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            let name = memchr::memchr(b'=', part).map_or(part, |i| &part[..i]);
            if is_gateway_cookie(prefix, trim_cookie_name(name)) {
                found = true;
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(part);
        }
    }
    if !found {
        return Ok(());
    }
    upstream.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        upstream.insert_header(http::header::COOKIE, kept)?;
    }
    Ok(())
}

/// The `;`-separated parts of a `Cookie` value, found with memchr: the multi-kilobyte session
/// value is skipped with SIMD, not byte by byte (a byte loop here was the gateway's largest own
/// cost on the authenticated route: `benches/load.sh --perf`).
fn cookie_parts(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b';', value)
        .map(Some)
        .chain([None])
        .map(move |end| {
            let end = end.unwrap_or(value.len());
            let part = &value[start..end];
            start = end + 1;
            part
        })
}

/// A cookie name trimmed as the cookie crate trims the names `RequestCookies` reads: Unicode
/// whitespace, not only ASCII. A name the gateway reads as its own must be one it strips from
/// requests and refuses in the upstream's `Set-Cookie` (`\u{a0}oidc_session` is its session).
fn trim_cookie_name(name: &[u8]) -> &[u8] {
    std::str::from_utf8(name).map_or(name.trim_ascii(), |n| n.trim().as_bytes())
}

/// Whether a cookie name is the gateway's: `{cookie_name}` or `{cookie_name}_...`.
pub fn is_gateway_cookie(prefix: &[u8], name: &[u8]) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'_'))
}

/// Removes `Set-Cookie` headers of the upstream that would set one of the gateway's cookies:
/// an application must not be able to plant or overwrite a session.
pub fn drop_gateway_set_cookies(
    session: &SessionConfig,
    resp: &mut pingora::http::ResponseHeader,
) -> Result<()> {
    let prefix = session.cookie_name.as_bytes();
    let theirs = |v: &http::HeaderValue| {
        let bytes = v.as_bytes();
        let end = bytes.iter().position(|&b| b == b'=' || b == b';');
        is_gateway_cookie(
            prefix,
            trim_cookie_name(&bytes[..end.unwrap_or(bytes.len())]),
        )
    };
    let values = resp.headers.get_all(http::header::SET_COOKIE);
    if !values.iter().any(theirs) {
        return Ok(());
    }
    let kept: Vec<http::HeaderValue> = values.iter().filter(|v| !theirs(v)).cloned().collect();
    tracing::warn!("upstream tried to set the gateway's session cookie; dropped");
    resp.remove_header(&http::header::SET_COOKIE);
    for v in kept {
        resp.append_header(http::header::SET_COOKIE, v)?;
    }
    Ok(())
}

/// A response that carries the gateway's `Set-Cookie` must not be stored by a shared cache
/// (which would hand one user's session to the next): `Cache-Control: private` unless it
/// already says `private` or `no-store`; `public` and `s-maxage` are dropped.
pub fn keep_private(resp: &mut pingora::http::ResponseHeader) -> Result<()> {
    let mut directives: Vec<String> = Vec::new();
    for v in resp.headers.get_all(http::header::CACHE_CONTROL) {
        let text = String::from_utf8_lossy(v.as_bytes());
        for d in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let name = d.split('=').next().unwrap_or(d).trim().to_ascii_lowercase();
            if name == "private" || name == "no-store" {
                return Ok(());
            }
            if name != "public" && name != "s-maxage" {
                directives.push(d.to_owned());
            }
        }
    }
    directives.insert(0, "private".to_owned());
    resp.insert_header(http::header::CACHE_CONTROL, directives.join(", "))?;
    Ok(())
}

/// What the gateway saw of a request, for the forwarding headers of an untrusted peer.
pub struct Seen<'a> {
    pub peer: Option<IpAddr>,
    pub host: Option<&'a http::HeaderValue>,
    /// The canonical path and query (before `strip_prefix`).
    pub uri: &'a str,
}

/// Forwarding headers: believed only from `server.trusted_proxies` (which get the peer
/// appended to `X-Forwarded-For`); from anyone else every one of them is removed and the
/// gateway's own `X-Forwarded-For`, `-Proto`, `-Host`, `-Uri` and `X-Real-IP` are set.
pub fn set_forwarding_headers(
    server: &ServerConfig,
    seen: &Seen<'_>,
    upstream: &mut RequestHeader,
) -> Result<()> {
    if trusted(server, seen.peer) {
        if let Some(ip) = seen.peer {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("X-Forwarded-For", xff)?;
        }
        return Ok(());
    }
    let doomed: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|name| is_forwarding(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        upstream.remove_header(&name);
    }
    // Parsed names (`insert_header` parses and copies a name on every call).
    static FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    static REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    static PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    static URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
    if let Some(ip) = seen.peer {
        let ip = http::HeaderValue::try_from(ip.to_string())
            .or_err(InvalidHTTPHeader, "peer address")?;
        upstream.insert_header_case(&FOR, "X-Forwarded-For", ip.clone())?;
        upstream.insert_header_case(&REAL_IP, "X-Real-IP", ip)?;
    }
    let proto = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    upstream.insert_header_case(
        &PROTO,
        "X-Forwarded-Proto",
        http::HeaderValue::from_static(proto),
    )?;
    if let Some(host) = seen.host {
        upstream.insert_header_case(&HOST, "X-Forwarded-Host", host.clone())?;
    }
    upstream.insert_header_case(&URI, "X-Forwarded-Uri", seen.uri)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_are_recognised_in_any_spelling() {
        for name in [
            "X-Forwarded-Host",
            "x_forwarded_host",
            "X-Original-URL",
            "x-rewrite-url",
            "X-Forwarded-Prefix",
            "X-Forwarded-Scheme",
            "X-Forwarded-Ssl",
            "Front-End-Https",
            "True-Client-IP",
            "X-Client-IP",
            "CF-Connecting-IP",
            "Forwarded",
            "X_Real_IP",
            "Client-IP",
            "X-Host",
            "X-Original-Forwarded-For",
        ] {
            assert!(is_forwarding(name), "{name}");
        }
        for name in [
            "x-forwarded-foo",
            "x-request-id",
            "accept",
            "x-forwarded-hostx",
        ] {
            assert!(!is_forwarding(name), "{name}");
        }
    }

    #[test]
    fn cookie_parts_are_every_semicolon_separated_piece() {
        fn parts(v: &[u8]) -> Vec<&[u8]> {
            cookie_parts(v).collect()
        }
        assert_eq!(parts(b"a=1; b=2"), [&b"a=1"[..], b" b=2"]);
        assert_eq!(parts(b"a=1;"), [&b"a=1"[..], b""]);
        assert_eq!(parts(b";;a"), [&b""[..], b"", b"a"]);
        assert_eq!(parts(b""), [&b""[..]]);
        assert_eq!(parts(b"x=a;b"), [&b"x=a"[..], b"b"]);
    }

    #[test]
    fn gateway_cookies_are_the_name_and_its_underscore_family() {
        assert!(is_gateway_cookie(b"oidc_session", b"oidc_session"));
        assert!(is_gateway_cookie(b"oidc_session", b"oidc_session_0"));
        assert!(is_gateway_cookie(b"oidc_session", b"oidc_session_login_x"));
        assert!(!is_gateway_cookie(b"oidc_session", b"oidc_sessionx"));
        assert!(!is_gateway_cookie(b"oidc_session", b"app"));
    }

    fn session_config() -> SessionConfig {
        use crate::config::{RevocationKind, SameSite, Secret, SessionStoreKind};
        SessionConfig {
            cookie_name: "oidc_session".into(),
            keys: Secret::new(vec![[7; 32]]),
            secure: true,
            same_site: SameSite::Lax,
            idle_timeout: std::time::Duration::from_secs(1800),
            max_lifetime: std::time::Duration::from_secs(8 * 3600),
            store: SessionStoreKind::Cookie,
            revocation: RevocationKind::Memory,
            max_revocations: 100,
            max_login_states: 5,
            max_chunks: 4,
        }
    }

    /// Found by fuzz/ (forwarded_headers): the gateway read `\u{a0}oidc_session=...` as its
    /// session cookie (the cookie crate trims Unicode whitespace) but forwarded it, since only
    /// ASCII whitespace was trimmed before comparing names.
    #[test]
    fn cookies_the_gateway_reads_as_its_own_never_reach_the_upstream() {
        use crate::session::RequestCookies;
        let cfg = session_config();
        for sent in [
            "\u{a0}oidc_session=x; app=1",
            "oidc_session\u{2003}=x; app=1",
            "app=1;\u{3000}oidc_session_0=x",
            "\toidc_session_login_abc =x;app=1",
        ] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header(
                http::header::COOKIE,
                http::HeaderValue::from_bytes(sent.as_bytes()).unwrap(),
            )
            .unwrap();
            let before = RequestCookies::of(&req.headers, &cfg);
            assert!(before.bare.is_some() || !before.chunks.is_empty() || !before.login.is_empty());
            strip_gateway_cookies(&cfg, &mut req).unwrap();
            assert_eq!(req.headers[http::header::COOKIE], "app=1", "{sent:?}");
        }
    }

    /// Found by fuzz/ (forwarded_headers): `Set-Cookie: \u{a0}oidc_session_0=...` from the
    /// upstream was kept, and the gateway reads that cookie, sent back, as its session chunk.
    #[test]
    fn the_upstream_cannot_set_a_cookie_the_gateway_reads_as_its_own() {
        let cfg = session_config();
        let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
        for v in [
            "\u{a0}oidc_session_0=planted; Path=/",
            "oidc_session\u{2003}=planted",
            "app=1; Path=/",
        ] {
            let v = http::HeaderValue::from_bytes(v.as_bytes()).unwrap();
            resp.append_header(http::header::SET_COOKIE, v).unwrap();
        }
        drop_gateway_set_cookies(&cfg, &mut resp).unwrap();
        let kept: Vec<_> = resp
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .collect();
        assert_eq!(kept, ["app=1; Path=/"]);
    }

    #[test]
    fn underscores_and_case_do_not_hide_identity_headers() {
        assert_eq!(normalize_header_name("X_Auth_Sub"), "x-auth-sub");
        assert_eq!(normalize_header_name("x-AUTH-org"), "x-auth-org");
        let names = IdentityHeaders {
            names: vec!["x-user".to_owned()],
        };
        for sent in ["X-User", "x_user", "X-Auth-Anything", "x_auth_sub"] {
            assert!(names.must_strip(sent), "{sent}");
        }
        for sent in ["x-username", "accept", "x-aut"] {
            assert!(!names.must_strip(sent), "{sent}");
        }
    }

    #[test]
    fn underscores_and_case_do_not_hide_a_header() {
        assert!(same_header(b"X_Auth_Sub", b"x-auth-sub"));
        assert!(!same_header(b"X-Auth-Su", b"x-auth-sub"));
    }
}
