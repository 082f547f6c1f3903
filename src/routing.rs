//! The route table: request host + canonical path → route. Pure, no I/O.
//!
//! Routes are matched against [`CanonicalPath::matched`] (parameters set aside, case folded
//! when `server.case_insensitive_paths` is on) and the upstream receives
//! [`CanonicalPath::forwarded`], so the route the gateway checked is the resource the upstream
//! serves, however the upstream's framework reads the path (see `paths`).

use std::sync::Arc;

use crate::config::RouteConfig;
use crate::paths::{canonicalize, covers, segment_count, CanonicalPath};

/// The routes, ready for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Arc<RouteConfig>>,
    /// Per route: its prefix as matched (lower case when matching ignores case).
    prefixes: Vec<String>,
    fold_case: bool,
}

impl RouteTable {
    /// Builds the table from validated routes; `fold_case` makes matching ignore ASCII case.
    pub fn new(routes: Vec<Arc<RouteConfig>>, fold_case: bool) -> Self {
        // A prefix is matched in the same form as request paths (`/@admin` is `/%40admin`).
        let prefixes = routes
            .iter()
            .map(|r| match canonicalize(&r.path, fold_case) {
                Ok(c) if c.matched != "/" => c.matched.trim_end_matches('/').to_owned(),
                Ok(c) => c.matched,
                // `check` refuses such a route path; never match it.
                Err(_) => "\u{0}".to_owned(),
            })
            .collect();
        RouteTable {
            routes,
            prefixes,
            fold_case,
        }
    }

    /// Whether matching ignores ASCII case (paths are canonicalised accordingly).
    pub fn fold_case(&self) -> bool {
        self.fold_case
    }

    /// The route for a host name (from [`host_name`]; any case) and a canonical path's
    /// `matched` form: the longest covering prefix wins; at equal length a route naming the host beats
    /// one for any host.
    pub fn match_route(&self, host: Option<&str>, path: &str) -> Option<&Arc<RouteConfig>> {
        let mut best: Option<(&Arc<RouteConfig>, (usize, bool))> = None;
        for (route, prefix) in self.routes.iter().zip(&self.prefixes) {
            let host_ok = match (&route.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            if !host_ok || !covers(prefix, path) {
                continue;
            }
            let rank = (route.path.len(), route.host.is_some());
            if best.as_ref().is_none_or(|(_, r)| rank > *r) {
                best = Some((route, rank));
            }
        }
        best.map(|(r, _)| r)
    }

    /// Whether some route names a `host`: then a request without one cannot be routed safely
    /// (the upstream's default virtual host may be any of them).
    pub fn has_host_routes(&self) -> bool {
        self.routes.iter().any(|r| r.host.is_some())
    }
}

/// A `Host` (or `X-Forwarded-Host`) that is not one host name with an optional numeric port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host is not a host name with an optional port")]
pub struct BadHost;

/// The host name of a `Host` value, without port or trailing dot: `Example.org:8080` →
/// `Example.org`, `[::1]:80` → `[::1]`, `admin.example.org.` → `admin.example.org`; an empty
/// value is no host. Anything else (`host:x`, `a:1:2`, `a b`, `user@host`) is refused, since
/// servers disagree on which part of it is the host (nginx takes what comes before the first
/// `:`, a lenient parser the whole value).
pub fn host_name(raw: &str) -> Result<Option<&str>, BadHost> {
    if raw.is_empty() {
        return Ok(None);
    }
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']').ok_or(BadHost)?;
        let inside = &raw[1..end];
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(BadHost);
        }
        let rest = &raw[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(BadHost),
        };
        (&raw[..=end], port)
    } else {
        let (name, port) = match raw.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(BadHost);
        }
        (name, port)
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadHost);
        }
    }
    Ok(Some(name))
}

/// The path the upstream receives: the canonical path with its parameters, minus the route
/// prefix's segments when the route strips it.
pub fn upstream_path<'a>(route: &RouteConfig, path: &'a CanonicalPath) -> &'a str {
    if route.strip_prefix {
        path.forwarded_without(segment_count(&route.path))
    } else {
        &path.forwarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_ignored_when_matching_hosts() {
        for (raw, name) in [
            ("Apps.Example.org:8080", Some("Apps.Example.org")),
            ("[::1]:80", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("plain", Some("plain")),
            ("127.0.0.1:8080", Some("127.0.0.1")),
            ("admin.example.org.:443", Some("admin.example.org")),
            ("admin.example.org.", Some("admin.example.org")),
            ("", None),
        ] {
            assert_eq!(host_name(raw), Ok(name), "{raw}");
        }
    }

    #[test]
    fn hosts_that_servers_read_differently_are_refused() {
        for raw in [
            "admin.example.org:x",
            "admin.example.org:80:80",
            ":80",
            "admin.example.org:",
            "a b",
            "user@admin.example.org",
            "admin.example.org/x",
            "[::1",
            "[::1]x",
            "[]",
            ".",
            "admin.example.org:123456",
        ] {
            assert_eq!(host_name(raw), Err(BadHost), "{raw}");
        }
    }
}
