//! The route table: request host + normalised path → route. Pure, no I/O.
//!
//! Paths are normalised once (dot segments removed, repeated slashes merged) and the same
//! normalised path is what the upstream receives, so the route the gateway checked is the
//! resource the upstream serves.

use std::sync::Arc;

use crate::config::RouteConfig;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("encoded '/' or '\\' in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("the path does not start with '/'")]
    NotAbsolute,
}

/// Normalises a request path (without query): refuses `%2F`, `%5C` and `\`, decodes `%2E`, merges
/// repeated `/`, removes `.` and `..` segments (never above the root). Keeps a trailing `/`.
pub fn normalize_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    let needs_work = path.contains("/.") || path.contains("//") || path.contains('%');
    if !needs_work {
        return Ok(path.to_owned());
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(PathError::EncodedSeparator);
    }
    let decoded;
    let path = if lower.contains("%2e") {
        decoded = path.replace("%2e", ".").replace("%2E", ".");
        decoded.as_str()
    } else {
        path
    };
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "" => trailing_slash = i == last,
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `prefix` (normalised, no trailing `/` unless it is `/`) covers `path` on whole
/// segments: `/public` covers `/public` and `/public/x`, not `/publicity`.
pub fn covers(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The routes, ready for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Arc<RouteConfig>>,
}

impl RouteTable {
    /// Builds the table from validated routes.
    pub fn new(routes: Vec<Arc<RouteConfig>>) -> Self {
        RouteTable { routes }
    }

    /// The route for a host (may carry a port; any case) and a normalised path: the longest
    /// covering prefix wins; at equal length a route naming the host beats one for any host.
    pub fn match_route(&self, host: Option<&str>, path: &str) -> Option<&Arc<RouteConfig>> {
        let host = host.map(strip_port);
        let mut best: Option<(&Arc<RouteConfig>, (usize, bool))> = None;
        for route in &self.routes {
            let host_ok = match (&route.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            if !host_ok || !covers(&route.path, path) {
                continue;
            }
            let rank = (route.path.len(), route.host.is_some());
            if best.as_ref().is_none_or(|(_, r)| rank > *r) {
                best = Some((route, rank));
            }
        }
        best.map(|(r, _)| r)
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
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The path the upstream receives: the normalised path, minus the route prefix when the route
/// strips it.
pub fn upstream_path<'a>(route: &RouteConfig, path: &'a str) -> std::borrow::Cow<'a, str> {
    if route.strip_prefix && route.path != "/" {
        let rest = &path[route.path.len().min(path.len())..];
        if rest.is_empty() {
            return "/".into();
        }
        return rest.into();
    }
    path.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_repeated_slashes_are_removed() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("//a///b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a%20b", "/a%20b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn encoded_separators_and_backslashes_are_refused() {
        for p in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/a\\b"] {
            assert!(normalize_path(p).is_err(), "{p}");
        }
        assert_eq!(normalize_path("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn prefixes_cover_whole_segments_only() {
        assert!(covers("/public", "/public"));
        assert!(covers("/public", "/public/x"));
        assert!(!covers("/public", "/publicity"));
        assert!(covers("/", "/anything"));
    }

    #[test]
    fn ports_are_ignored_when_matching_hosts() {
        assert_eq!(strip_port("Apps.Example.org:8080"), "Apps.Example.org");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("plain"), "plain");
    }
}
