//! Forwarding and identity headers (`forwarded`): which client headers reach the upstream,
//! the gateway's own `X-Forwarded-*`, `X-Real-IP` (believed only from `trusted_proxies`), the
//! gateway's cookies kept from the upstream, and the upstream's `Set-Cookie` and
//! `Cache-Control` filtered on the way back.
//!
//! Input, by lines: the peer address (empty: a Unix socket); then request headers as
//! `Name: value`; lines starting with `< ` are response headers.
//!
//! Invariants: from an untrusted peer no forwarding header reaches the upstream except the
//! gateway's own, with the gateway's values; from a trusted one `X-Forwarded-For` ends with the
//! peer; no client-sent identity header (`X-Auth-*`, configured names, any case, `_` for
//! `-`) survives; after stripping, the gateway's own cookie reader finds no session, chunk or
//! login cookie in what the upstream gets, and stripping again changes nothing; no upstream
//! `Set-Cookie` that a cookie parser reads as the gateway's survives; a response with
//! `Set-Cookie` is made `private` (or stays `no-store`) without `public` or `s-maxage`.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use oidc_gateway::fuzzing::{
    drop_gateway_set_cookies, is_forwarding, is_gateway_cookie, keep_private,
    set_forwarding_headers, strip_gateway_cookies, strip_identity_headers, trusted,
    IdentityHeaders, Seen,
};
use oidc_gateway::session::RequestCookies;
use oidc_gateway_fuzz::FIXTURE;
use pingora_http::{RequestHeader, ResponseHeader};

const OURS: &[&str] = &[
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
];

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let server = &f.config.server;
    let session = &f.config.session;
    let mut lines = data.split(|&b| b == b'\n');
    let peer: Option<IpAddr> = std::str::from_utf8(lines.next().unwrap_or_default())
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let Ok(mut req) = RequestHeader::build("GET", b"/app", None) else {
        return;
    };
    let Ok(mut resp) = ResponseHeader::build(200, None) else {
        return;
    };
    for line in lines {
        let (target, line) = match line.strip_prefix(b"< ") {
            Some(l) => (false, l),
            None => (true, line),
        };
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if target {
            let _ = req.append_header(name, value);
        } else {
            let _ = resp.append_header(name, value);
        }
    }
    let host = req.headers.get(http::header::HOST).cloned();

    let ids = IdentityHeaders::of(&f.config.routes);
    strip_identity_headers(&ids, &mut req);
    for name in req.headers.keys() {
        assert!(
            !ids.must_strip(name.as_str()),
            "identity header {name} survived"
        );
        assert!(
            !name.as_str().replace('_', "-").starts_with("x-auth-"),
            "identity header {name} survived"
        );
    }

    if strip_gateway_cookies(session, &mut req).is_ok() {
        let jar = RequestCookies::of(&req.headers, session);
        assert!(
            jar.bare.is_none()
                && jar.chunks.is_empty()
                && jar.login.is_empty()
                && !jar.chunk_overflow,
            "the gateway's cookies reach the upstream: {:?}",
            req.headers
                .get_all(http::header::COOKIE)
                .iter()
                .collect::<Vec<_>>()
        );
        let before: Vec<_> = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .cloned()
            .collect();
        strip_gateway_cookies(session, &mut req).expect("stripping again");
        let after: Vec<_> = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .cloned()
            .collect();
        assert_eq!(
            before, after,
            "stripping the gateway's cookies is not idempotent"
        );
    }

    let seen = Seen {
        peer,
        host: host.as_ref(),
        uri: "/app?x=1",
    };
    let is_trusted = trusted(server, peer);
    let xff_before = req.headers.get("x-forwarded-for").cloned();
    if set_forwarding_headers(server, &seen, &mut req).is_ok() {
        if is_trusted {
            let ip = peer.expect("trusted means a peer").to_string();
            let xff = req.headers.get("x-forwarded-for").expect("X-Forwarded-For");
            assert!(
                xff.as_bytes().ends_with(ip.as_bytes()),
                "X-Forwarded-For {xff:?} does not end with the peer {ip}"
            );
            let _ = xff_before;
        } else {
            for (name, value) in req.headers.iter() {
                if !is_forwarding(name.as_str()) {
                    continue;
                }
                assert!(
                    OURS.contains(&name.as_str()),
                    "forwarding header {name} from an untrusted peer reached the upstream"
                );
                assert_eq!(
                    req.headers.get_all(name).iter().count(),
                    1,
                    "{name} sent twice"
                );
                let want: Option<String> = match name.as_str() {
                    "x-forwarded-for" | "x-real-ip" => peer.map(|p| p.to_string()),
                    "x-forwarded-proto" => Some(
                        if server.tls.is_some() {
                            "https"
                        } else {
                            "http"
                        }
                        .into(),
                    ),
                    "x-forwarded-uri" => Some(seen.uri.into()),
                    _ => None,
                };
                if let Some(want) = want {
                    assert_eq!(
                        value.as_bytes(),
                        want.as_bytes(),
                        "{name} holds a client value"
                    );
                }
                if name == "x-forwarded-host" {
                    assert_eq!(Some(value), seen.host, "X-Forwarded-Host is not the Host");
                }
            }
        }
    }

    // The way back.
    let had_set_cookie = resp.headers.contains_key(http::header::SET_COOKIE);
    if drop_gateway_set_cookies(session, &mut resp).is_ok() {
        for v in resp.headers.get_all(http::header::SET_COOKIE) {
            if let Ok(text) = std::str::from_utf8(v.as_bytes()) {
                if let Ok(c) = cookie::Cookie::parse(text) {
                    assert!(
                        !is_gateway_cookie(session.cookie_name.as_bytes(), c.name().as_bytes()),
                        "the upstream sets the gateway's cookie {:?}",
                        c.name()
                    );
                }
            }
        }
    }
    let directives = |resp: &ResponseHeader| -> Vec<String> {
        resp.headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .to_ascii_lowercase()
                    .split(',')
                    .map(|d| d.split('=').next().unwrap_or(d).trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let private = |d: &[String]| d.iter().any(|d| d == "private" || d == "no-store");
    let already = private(&directives(&resp));
    if had_set_cookie && keep_private(&mut resp).is_ok() {
        let after = directives(&resp);
        assert!(
            private(&after),
            "a response with Set-Cookie is cacheable: {after:?}"
        );
        if !already {
            assert!(
                !after.iter().any(|d| d == "public" || d == "s-maxage"),
                "Cache-Control {after:?} keeps public or s-maxage"
            );
        }
    }
});
