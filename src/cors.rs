//! CORS on routes with `cors = true`: the gateway answers their preflights itself (a preflight
//! carries no cookies, so sent on it would only meet a login) and owns the `Access-Control-*`
//! headers of their responses, so that what a page on another origin may read is decided in one
//! place, by `server.cors_origins`. Credentials are allowed (the session is a cookie), which is
//! why an origin is echoed only when it is listed, never `*`.

use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::ServerConfig;
use crate::respond::{self, Reply};

/// Methods a listed origin may use on a CORS route.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// How long a browser may cache a preflight answer.
const MAX_AGE_SECS: &str = "600";
/// A longer `Access-Control-Request-Headers` is not echoed (browsers send a short list).
const MAX_REQUEST_HEADERS: usize = 1024;

/// The request's `Origin` when it may read answers: the gateway's own origin or one of
/// `server.cors_origins`, compared exactly (origins are already in serialized form).
pub fn allowed_origin<'a>(server: &ServerConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    let origin = headers.get(http::header::ORIGIN)?.to_str().ok()?;
    (origin == server.public_origin || server.cors_origins.iter().any(|c| c == origin))
        .then_some(origin)
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == http::Method::OPTIONS
        && req.headers.contains_key(http::header::ORIGIN)
        && req
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight on a CORS route: 204 with the CORS headers for a listed origin
/// and a method it may use; else 403 without any.
pub fn preflight(server: &ServerConfig, req: &RequestHeader) -> Reply {
    let Some(origin) = allowed_origin(server, &req.headers) else {
        tracing::info!("CORS preflight from an origin not in server.cors_origins");
        return respond::cors_refused("origin is not allowed");
    };
    let method = req
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    if !METHODS.split(", ").any(|m| m == method) {
        tracing::info!("CORS preflight for a method CORS routes do not allow");
        return respond::cors_refused("method is not allowed");
    }
    let mut reply = respond::no_content()
        .with("access-control-allow-origin", origin)
        .with("access-control-allow-credentials", "true")
        .with("access-control-allow-methods", METHODS)
        .with("access-control-max-age", MAX_AGE_SECS)
        .with(
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
    if let Some(asked) = requested_headers(&req.headers) {
        reply = reply.with("access-control-allow-headers", asked);
    }
    reply
}

/// `Access-Control-Request-Headers` when it is a plain list of header names.
fn requested_headers(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)?
        .to_str()
        .ok()?;
    let plain = value.len() <= MAX_REQUEST_HEADERS
        && value
            .split(',')
            .map(str::trim)
            .all(|name| http::HeaderName::from_bytes(name.as_bytes()).is_ok());
    plain.then_some(value)
}

/// The gateway's own answer on a CORS route or endpoint (a 401, 403, 503, the session status):
/// readable by a listed origin, like the upstream's answers.
pub fn with_cors(server: &ServerConfig, headers: &HeaderMap, reply: Reply) -> Reply {
    let set = |name: &str| reply.headers.iter().any(|(n, _)| n == name);
    if set("access-control-allow-origin") {
        return reply;
    }
    match allowed_origin(server, headers) {
        Some(origin) => reply
            .with("access-control-allow-origin", origin)
            .with("access-control-allow-credentials", "true")
            .with("vary", "Origin"),
        None => reply.with("vary", "Origin"),
    }
}

/// Sets the CORS headers of a CORS route's response. The upstream's `Access-Control-*` go,
/// except `Access-Control-Expose-Headers` for a listed origin (which response headers its
/// page may read is the application's business); a listed origin gets its own
/// `Access-Control-Allow-Origin` with credentials.
pub fn response_headers(
    server: &ServerConfig,
    req: &RequestHeader,
    resp: &mut ResponseHeader,
) -> pingora::Result<()> {
    let origin = allowed_origin(server, &req.headers);
    let dropped = |name: &http::HeaderName| {
        name.as_str().starts_with("access-control-")
            && (origin.is_none() || name != http::header::ACCESS_CONTROL_EXPOSE_HEADERS)
    };
    if resp.headers.keys().any(dropped) {
        let names: Vec<http::HeaderName> = resp
            .headers
            .keys()
            .filter(|n| dropped(n))
            .cloned()
            .collect();
        for name in names {
            resp.remove_header(&name);
        }
    }
    if let Some(origin) = origin {
        resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
    }
    // Whatever the origin: a cache must not give one origin's answer to another.
    resp.append_header(http::header::VARY, "Origin")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn config(server_extra: &str, route_extra: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"
{server_extra}

[session]
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]

[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_secret = "secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
{route_extra}
"#
        )
    }

    #[test]
    fn a_cors_route_needs_cors_origins() {
        let problems = parse_str(&config("", "cors = true"), None).unwrap_err().0;
        let p = problems.iter().find(|p| p.key == "route[0].cors").unwrap();
        assert!(p.message.contains("server.cors_origins"), "{p}");
        let ok = config(
            r#"cors_origins = ["https://app.example.org"]"#,
            "cors = true",
        );
        assert!(parse_str(&ok, None).unwrap().routes[0].cors);
        assert!(!parse_str(&config("", ""), None).unwrap().routes[0].cors);
    }

    #[test]
    fn a_cors_route_refuses_plain_http_origins_except_loopback() {
        let origins = r#"cors_origins = ["https://app.example.org", "HTTP://intranet.example.org", "http://127.0.0.1:3000"]"#;
        let problems = parse_str(&config(origins, "cors = true"), None)
            .unwrap_err()
            .0;
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["server.cors_origins[1]"]);
        // Without a CORS route such an origin may only read 401 answers, as before.
        assert!(parse_str(&config(origins, ""), None).is_ok());
    }
}
