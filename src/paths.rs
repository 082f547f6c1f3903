//! The canonical form of a request path: what routing matches and what the upstream receives.
//!
//! The gateway's promise ("the upstream only sees what the rules allow") holds only if the path
//! the gateway checks is the path every upstream framework will serve. Upstreams read paths
//! differently: Go, WSGI, Rails, Spring and nginx percent-decode before routing; Tomcat and
//! Jetty drop `;parameters` from each segment first; IIS ignores case. So the gateway computes
//! one canonical path (RFC 3986 §6.2.2) and refuses whatever could still be read two ways:
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other escapes
//!   upper-cased; dot segments (also encoded ones) are removed and repeated `/` merged;
//! - routing uses each segment without its `;parameters` ([`CanonicalPath::matched`]), while
//!   the upstream receives the segments with their parameters ([`CanonicalPath::forwarded`]),
//!   since legacy Java apps carry `;jsessionid` there;
//! - refused: encoded `/`, `\` and `;` (upstreams disagree on whether they separate), raw `\`,
//!   NUL and other control characters (raw or encoded), malformed escapes, and a segment with
//!   parameters whose name is empty, `.` or `..` (`..;`, `.;x`, `/;x/`), which Tomcat resolves
//!   as a dot segment or an empty one after the gateway has matched it as a name.
//!
//! Pure and allocation-light: no escapes, dots, doubled slashes or parameters (the common case)
//! costs one scan and one copy.

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("encoded '/', '\\' or ';' in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("control character in the path")]
    Control,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("a path segment of only parameters, or '.' or '..' with parameters")]
    DotParameters,
    #[error("'..' after an empty segment ('//') is resolved differently by different servers")]
    DotDotAfterEmpty,
    #[error("a path segment ending in '.' or space, or holding ':' or non-ASCII characters, which case-insensitive (Windows) servers rewrite")]
    WindowsName,
}

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Canonical segments with their `;parameters`: what the upstream receives.
    pub forwarded: String,
    /// Canonical segments without parameters, every character other than an unreserved one
    /// percent-encoded (so `@` and `%40` are one name, as for a decoding upstream), in ASCII
    /// lower case when matching ignores case: what routes are matched against.
    pub matched: String,
}

impl CanonicalPath {
    /// `forwarded` without the first `n` segments (a route's prefix), `/` when nothing is left.
    pub fn forwarded_without(&self, n: usize) -> &str {
        if n == 0 {
            return &self.forwarded;
        }
        // Segments (parameters included) never hold a raw `/`: the n-th `/` after the first
        // starts what is left.
        match self
            .forwarded
            .match_indices('/')
            .nth(n)
            .map(|(at, _)| &self.forwarded[at..])
        {
            Some(rest) if rest != "/" => rest,
            _ => "/",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One segment, decoded where RFC 3986 allows: unreserved escapes decoded, others upper-cased.
fn canonical_segment(raw: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' | b';' => return Err(PathError::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(v >> 4)]));
                        out.push(char::from(HEX[usize::from(v & 15)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x20 | 0x7f => return Err(PathError::Control),
            _ => {
                // Whole UTF-8 sequences are copied as they are (the input is a `&str`).
                let len = utf8_len(b);
                let end = (i + len).min(raw.len());
                out.push_str(std::str::from_utf8(&raw[i..end]).map_err(|_| PathError::BadEscape)?);
                i = end;
            }
        }
    }
    Ok(())
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Appends a canonical segment name in matched form: escapes as they are, unreserved
/// characters as they are, everything else (sub-delimiters, `:`, `@`, UTF-8) percent-encoded.
fn push_matched(name: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            out.push_str(&name[i..i + 3]);
            i += 3;
            continue;
        }
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        i += 1;
    }
}

/// Whether a segment name is one Windows servers (IIS) would rewrite before mapping: a
/// trailing `.` or space is dropped, `:` names an alternate data stream (`x::$DATA`), `~` and
/// a digit may be an 8.3 short name (`SECRE~1` for `secret`), and non-ASCII letters are
/// case-folded by Unicode rules the gateway does not reproduce.
fn windows_rewrites(name: &str) -> bool {
    let bytes = name.as_bytes();
    let non_ascii_escape = bytes
        .windows(2)
        .any(|w| w[0] == b'%' && matches!(w[1], b'8'..=b'9' | b'A'..=b'F'));
    name.ends_with('.')
        || name.ends_with("%20")
        || name.contains(':')
        || name.contains("%3A")
        || !name.is_ascii()
        || non_ascii_escape
        || bytes
            .windows(2)
            .any(|w| w[0] == b'~' && w[1].is_ascii_digit())
}

/// Computes the canonical form of `path` (no query). `fold_case`: matching ignores ASCII case,
/// as Windows servers do; segment names those servers would rewrite are then refused too.
pub fn canonicalize(path: &str, fold_case: bool) -> Result<CanonicalPath, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // The common case: only unreserved characters and single slashes, no dot segment. It is
    // canonical as it is, in both forms.
    let plain = bytes.iter().all(|&b| b == b'/' || is_unreserved(b))
        && !path.contains("//")
        && !path.contains("/.")
        && !(fold_case && (path.contains("./") || path.ends_with('.') || path.contains('~')));
    if plain {
        let mut matched = path.to_owned();
        if fold_case {
            matched.make_ascii_lowercase();
        }
        return Ok(CanonicalPath {
            forwarded: path.to_owned(),
            matched,
        });
    }
    // (forwarded segment, matched segment) after dot-segment removal.
    let mut segments: Vec<(String, usize)> = Vec::new();
    let mut trailing_slash = false;
    let mut any_empty = false;
    let raw_segments: Vec<&[u8]> = bytes[1..].split(|&b| b == b'/').collect();
    let last = raw_segments.len() - 1;
    for (i, raw) in raw_segments.iter().enumerate() {
        let (name_raw, params_raw) = match raw.iter().position(|&b| b == b';') {
            Some(p) => (&raw[..p], Some(&raw[p..])),
            None => (*raw, None),
        };
        let mut seg = String::with_capacity(raw.len());
        canonical_segment(name_raw, &mut seg)?;
        let name_len = seg.len();
        if let Some(params) = params_raw {
            if matches!(seg.as_str(), "" | "." | "..") {
                return Err(PathError::DotParameters);
            }
            seg.push(';');
            // Parameters keep their own `;` and `=`; escapes in them are canonical too.
            for (j, p) in params[1..].split(|&b| b == b';').enumerate() {
                if j > 0 {
                    seg.push(';');
                }
                canonical_segment(p, &mut seg)?;
            }
        }
        let is_last = i == last;
        let seen_empty = any_empty;
        any_empty |= raw.is_empty();
        match &seg[..name_len] {
            "" | "." => trailing_slash = is_last,
            // RFC 3986 §5.2.4 pops empty segments like any other (`/a//..` is `/a/`,
            // `/a//b/../..` is `/a/`); servers that merge slashes first pop `a`. Either reading
            // may be the upstream's (or a front proxy's, with forward-auth).
            ".." if seen_empty => return Err(PathError::DotDotAfterEmpty),
            ".." => {
                segments.pop();
                trailing_slash = is_last;
            }
            name if fold_case && windows_rewrites(name) => return Err(PathError::WindowsName),
            _ => {
                segments.push((seg, name_len));
                trailing_slash = false;
            }
        }
    }
    let mut forwarded = String::with_capacity(path.len());
    let mut matched = String::with_capacity(path.len());
    for (seg, name_len) in &segments {
        forwarded.push('/');
        forwarded.push_str(seg);
        matched.push('/');
        push_matched(&seg[..*name_len], &mut matched);
    }
    if trailing_slash || forwarded.is_empty() {
        forwarded.push('/');
        matched.push('/');
    }
    if fold_case {
        matched.make_ascii_lowercase();
    }
    Ok(CanonicalPath { forwarded, matched })
}

/// Whether `prefix` (canonical, no trailing `/` unless it is `/`) covers `path` on whole
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

/// How many segments a route prefix has (`/` has none).
pub fn segment_count(prefix: &str) -> usize {
    prefix.split('/').filter(|s| !s.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(p: &str) -> Result<String, PathError> {
        canonicalize(p, false).map(|c| c.forwarded)
    }

    fn matched(p: &str) -> Result<String, PathError> {
        canonicalize(p, false).map(|c| c.matched)
    }

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
            ("/public/.%2e/admin", "/admin"),
            ("//a///b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
        ];
        for (input, want) in cases {
            assert_eq!(fwd(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(fwd("/%72a/").as_deref(), Ok("/ra/"));
        assert_eq!(fwd("/%7Eu%5fx%2D").as_deref(), Ok("/~u_x-"));
        assert_eq!(fwd("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(fwd("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(fwd("/100%25").as_deref(), Ok("/100%25"));
    }

    #[test]
    fn parameters_are_set_aside_for_matching_and_kept_for_the_upstream() {
        let c = canonicalize("/admin;jsessionid=1/x", false).unwrap();
        assert_eq!(c.matched, "/admin/x");
        assert_eq!(c.forwarded, "/admin;jsessionid=1/x");
        let c = canonicalize("/ra;x/", false).unwrap();
        assert_eq!(c.matched, "/ra/");
        assert_eq!(c.forwarded, "/ra;x/");
        let c = canonicalize("/a;p=%7e1;q/b", false).unwrap();
        assert_eq!(c.forwarded, "/a;p=~1;q/b");
        // A parameter on a segment that `..` removes goes with it.
        assert_eq!(fwd("/a;x/../b").as_deref(), Ok("/b"));
    }

    #[test]
    fn dot_and_empty_segments_with_parameters_are_refused() {
        for p in [
            "/public/..;/ra/",
            "/public/.;x/ra",
            "/public/%2e%2e;/ra",
            "/;x/ra",
            "/a/..;",
            "/.;",
        ] {
            assert_eq!(matched(p), Err(PathError::DotParameters), "{p}");
        }
    }

    #[test]
    fn encoded_separators_controls_and_bad_escapes_are_refused() {
        for p in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/ra%3Bx/", "/a%3b"] {
            assert_eq!(matched(p), Err(PathError::EncodedSeparator), "{p}");
        }
        assert_eq!(matched("/a\\b"), Err(PathError::Backslash));
        for p in ["/a%00", "/a%0d%0a", "/a%7f", "/a%09", "/a b"] {
            assert_eq!(matched(p), Err(PathError::Control), "{p}");
        }
        for p in ["/a%", "/a%2", "/a%zz", "/a%%41"] {
            assert_eq!(matched(p), Err(PathError::BadEscape), "{p}");
        }
        assert_eq!(matched("a"), Err(PathError::NotAbsolute));
        assert_eq!(matched(""), Err(PathError::NotAbsolute));
        assert_eq!(matched("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn matching_may_ignore_case_but_the_upstream_gets_the_case_sent() {
        let c = canonicalize("/RA;JSESSIONID=A/X", true).unwrap();
        assert_eq!(c.matched, "/ra/x");
        assert_eq!(c.forwarded, "/RA;JSESSIONID=A/X");
    }

    #[test]
    fn case_folding_refuses_names_windows_rewrites() {
        for p in [
            "/ra./x",
            "/ra%20/x",
            "/ra::$DATA",
            "/ra%3A%3A$DATA",
            "/caf%C3%A9",
            "/caf\u{e9}",
            "/SECRE~1/x",
            "/secre%7E1",
        ] {
            assert_eq!(
                canonicalize(p, true).map(|c| c.matched),
                Err(PathError::WindowsName),
                "{p}"
            );
            assert!(canonicalize(p, false).is_ok(), "{p}");
        }
    }

    #[test]
    fn dot_dot_after_an_empty_segment_is_refused() {
        for p in [
            "/secret//../x",
            "/a/.//..",
            "//..",
            "/a//%2e%2e/b",
            "/secret//./../x",
            "/secret//b/../../x",
            "/secret//%2e/../x",
            "//x/..",
        ] {
            assert_eq!(matched(p), Err(PathError::DotDotAfterEmpty), "{p}");
        }
        assert_eq!(fwd("/a/b/../../x").as_deref(), Ok("/x"));
    }

    #[test]
    fn matching_encodes_every_character_that_is_not_unreserved() {
        let raw = canonicalize("/@admin/caf\u{e9}", false).unwrap();
        let encoded = canonicalize("/%40admin/caf%c3%a9", false).unwrap();
        assert_eq!(raw.matched, "/%40admin/caf%C3%A9");
        assert_eq!(encoded.matched, raw.matched);
        // The upstream gets what was sent, canonically.
        assert_eq!(raw.forwarded, "/@admin/caf\u{e9}");
        assert_eq!(encoded.forwarded, "/%40admin/caf%C3%A9");
    }

    #[test]
    fn a_canonical_path_is_a_fixed_point() {
        for p in ["/%72a/", "/a/./b/../c;x=%7e/", "//x//y", "/caf%c3%a9/%41"] {
            let once = fwd(p).unwrap();
            assert_eq!(fwd(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn prefixes_are_stripped_by_segments() {
        let c = canonicalize("/app;jsessionid=1/x/y", false).unwrap();
        assert_eq!(c.forwarded_without(segment_count("/app")), "/x/y");
        assert_eq!(c.forwarded_without(segment_count("/")), c.forwarded);
        let c = canonicalize("/app/", false).unwrap();
        assert_eq!(c.forwarded_without(1), "/");
        let c = canonicalize("/app", false).unwrap();
        assert_eq!(c.forwarded_without(1), "/");
    }

    #[test]
    fn prefixes_cover_whole_segments_only() {
        assert!(covers("/public", "/public"));
        assert!(covers("/public", "/public/x"));
        assert!(!covers("/public", "/publicity"));
        assert!(covers("/", "/anything"));
    }
}
