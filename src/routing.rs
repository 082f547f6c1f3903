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

    /// The route for a host (may carry a port; any case) and a canonical path's `matched`
    /// form: the longest covering prefix wins; at equal length a route naming the host beats
    /// one for any host.
    pub fn match_route(&self, host: Option<&str>, path: &str) -> Option<&Arc<RouteConfig>> {
        let host = host.map(strip_port);
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

    /// Every route, in configuration order.
    pub fn routes(&self) -> &[Arc<RouteConfig>] {
        &self.routes
    }
}

/// `example.org:8080` → `example.org`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    // `admin.example.org.` is the same host to DNS and to vhost servers.
    name.strip_suffix('.').unwrap_or(name)
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
        assert_eq!(strip_port("Apps.Example.org:8080"), "Apps.Example.org");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("plain"), "plain");
        assert_eq!(strip_port("admin.example.org.:443"), "admin.example.org");
        assert_eq!(strip_port("admin.example.org."), "admin.example.org");
    }
}
