//! The gateway's cookies in a request, and the `Set-Cookie` values it answers with.

use std::borrow::Cow;

use cookie::{Cookie, SameSite as CookieSameSite};

use super::codec::Codec;
use super::{Miss, Session};
use crate::config::{SameSite, SessionConfig};

/// Largest value of one session chunk: with name and attributes a cookie stays under 4096 bytes.
pub const CHUNK_BYTES: usize = 3800;

/// The gateway's cookies found in one request's `Cookie` headers (borrowed, not decoded).
#[derive(Debug, Default)]
pub struct RequestCookies<'a> {
    /// The bare `{name}` cookie.
    pub bare: Option<&'a str>,
    /// `{name}_N` chunks as (N, value), in the order sent.
    pub chunks: Vec<(usize, &'a str)>,
    /// `{name}_login_{id}` cookies as (full name, value).
    pub login: Vec<(&'a str, &'a str)>,
    /// Whether too many chunk cookies were sent (the list above stops growing).
    pub chunk_overflow: bool,
}

impl<'a> RequestCookies<'a> {
    /// The gateway's cookies in a request's headers.
    pub fn of(headers: &'a http::HeaderMap, cfg: &SessionConfig) -> Self {
        RequestCookies::parse(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
            &cfg.cookie_name,
            cfg.max_chunks,
        )
    }

    /// Picks the gateway's cookies out of `Cookie` header values.
    pub fn parse(
        headers: impl Iterator<Item = &'a [u8]>,
        cookie_name: &str,
        max_chunks: usize,
    ) -> Self {
        let mut out = RequestCookies::default();
        for header in headers {
            let Ok(text) = std::str::from_utf8(header) else {
                continue;
            };
            for c in Cookie::split_parse(text).flatten() {
                let (Some(name), Some(value)) = (c.name_raw(), c.value_raw()) else {
                    continue;
                };
                let Some(rest) = name.strip_prefix(cookie_name) else {
                    continue;
                };
                if rest.is_empty() {
                    out.bare = Some(value);
                } else if let Some(suffix) = rest.strip_prefix('_') {
                    if let Some(id) = suffix.strip_prefix("login_") {
                        if !id.is_empty() {
                            out.login.push((name, value));
                        }
                    } else if !suffix.is_empty()
                        && suffix.len() <= 3
                        && suffix.bytes().all(|b| b.is_ascii_digit())
                    {
                        if out.chunks.len() >= max_chunks {
                            out.chunk_overflow = true;
                        } else if let Ok(n) = suffix.parse() {
                            out.chunks.push((n, value));
                        }
                    }
                }
            }
        }
        out
    }

    /// Opens the session. Chunk count is checked before any decryption work.
    pub fn session(&self, cfg: &SessionConfig, codec: &Codec) -> Result<Session, Miss> {
        open(cfg, codec, &self.sealed()?)
    }

    /// The sealed session as one text: the bare cookie, or the chunks joined in order. Chunk
    /// count and order are checked here, before any decryption work.
    pub fn sealed(&self) -> Result<Cow<'a, str>, Miss> {
        if self.chunk_overflow {
            return Err(Miss::TooManyChunks);
        }
        match (self.bare, self.chunks.is_empty()) {
            (Some(value), _) => Ok(Cow::Borrowed(value)),
            (None, false) => {
                let mut chunks = self.chunks.clone();
                chunks.sort_unstable_by_key(|(n, _)| *n);
                if chunks.iter().enumerate().any(|(i, (n, _))| i != *n) {
                    return Err(Miss::BadChunks);
                }
                let mut joined = String::with_capacity(chunks.len() * CHUNK_BYTES);
                for (_, v) in &chunks {
                    joined.push_str(v);
                }
                Ok(Cow::Owned(joined))
            }
            (None, true) => Err(Miss::Absent),
        }
    }
}

/// Opens a sealed session text (see [`RequestCookies::sealed`]).
pub fn open(cfg: &SessionConfig, codec: &Codec, sealed: &str) -> Result<Session, Miss> {
    let plain = codec
        .open(&cfg.cookie_name, sealed)
        .map_err(Miss::Unsealable)?;
    serde_json::from_slice(&plain).map_err(|_| Miss::Malformed)
}

/// The session did not fit in the allowed number of cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session needs {chunks} cookies of at most {CHUNK_BYTES} bytes ({bytes} bytes sealed) but session.max_chunks is {max}")]
pub struct TooLarge {
    pub bytes: usize,
    pub chunks: usize,
    pub max: usize,
}

/// `Set-Cookie` values that store `session`, and delete the session cookies of the request
/// that the new set does not overwrite.
pub fn write_session(
    cfg: &SessionConfig,
    codec: &Codec,
    session: &Session,
    previous: &RequestCookies<'_>,
    now: u64,
) -> Result<Vec<String>, TooLarge> {
    let json = serde_json::to_vec(session).unwrap_or_default();
    let sealed = codec.seal(&cfg.cookie_name, &json);
    let max_age = session.expires.saturating_sub(now);
    let mut out = Vec::new();
    if sealed.len() <= CHUNK_BYTES {
        out.push(set_cookie(cfg, cfg.cookie_name.clone(), sealed, max_age));
        for (n, _) in &previous.chunks {
            out.push(delete_cookie(cfg, format!("{}_{n}", cfg.cookie_name)));
        }
        return Ok(out);
    }
    let count = sealed.len().div_ceil(CHUNK_BYTES);
    if count > cfg.max_chunks {
        return Err(TooLarge {
            bytes: sealed.len(),
            chunks: count,
            max: cfg.max_chunks,
        });
    }
    // base64url is ASCII, so byte offsets are char boundaries.
    for (i, start) in (0..sealed.len()).step_by(CHUNK_BYTES).enumerate() {
        let end = (start + CHUNK_BYTES).min(sealed.len());
        out.push(set_cookie(
            cfg,
            format!("{}_{i}", cfg.cookie_name),
            sealed[start..end].to_owned(),
            max_age,
        ));
    }
    if previous.bare.is_some() {
        out.push(delete_cookie(cfg, cfg.cookie_name.clone()));
    }
    for (n, _) in &previous.chunks {
        if *n >= count {
            out.push(delete_cookie(cfg, format!("{}_{n}", cfg.cookie_name)));
        }
    }
    Ok(out)
}

/// `Set-Cookie` values that remove every session cookie the request carried.
pub fn clear_session(cfg: &SessionConfig, previous: &RequestCookies<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if previous.bare.is_some() {
        out.push(delete_cookie(cfg, cfg.cookie_name.clone()));
    }
    for (n, _) in &previous.chunks {
        out.push(delete_cookie(cfg, format!("{}_{n}", cfg.cookie_name)));
    }
    out
}

/// A `Set-Cookie` value with the gateway's attributes: Path=/, HttpOnly, SameSite, Secure.
pub fn set_cookie(cfg: &SessionConfig, name: String, value: String, max_age_secs: u64) -> String {
    let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX / 2);
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(cfg.secure)
        .same_site(match cfg.same_site {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::None => CookieSameSite::None,
        })
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
        .to_string()
}

/// A `Set-Cookie` value that deletes `name`.
pub fn delete_cookie(cfg: &SessionConfig, name: String) -> String {
    set_cookie(cfg, name, String::new(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SessionStoreKind};
    use std::time::Duration;

    fn cfg() -> SessionConfig {
        SessionConfig {
            cookie_name: "oidc_session".into(),
            keys: Secret::new(vec![[7; 32]]),
            secure: true,
            same_site: SameSite::Lax,
            idle_timeout: Duration::from_secs(1800),
            max_lifetime: Duration::from_secs(8 * 3600),
            store: SessionStoreKind::Cookie,
            revocation: crate::config::RevocationKind::Memory,
            max_revocations: 100,
            max_login_states: 5,
            max_chunks: 4,
        }
    }

    fn session(claim_bytes: usize) -> Session {
        let mut claims = crate::claims::Claims::new();
        claims.insert("sub".into(), "alice".into());
        // Random-looking text so that nothing compresses it away.
        let filler: String = (0..claim_bytes)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        claims.insert("filler".into(), filler.into());
        Session {
            provider: "dev".into(),
            claims,
            created: 100,
            last_seen: 100,
            expires: 100 + 8 * 3600,
            tokens_expire: None,
            refresh_token: None,
            id_token_hint: None,
            sid: None,
            id_token_expires: None,
        }
    }

    /// Turns Set-Cookie values into a Cookie header, as a browser would.
    fn cookie_header(set: &[String]) -> String {
        set.iter()
            .filter_map(|s| Cookie::parse(s.as_str()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn read(header: &str) -> Result<Session, Miss> {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let cookies = RequestCookies::parse(
            std::iter::once(header.as_bytes()),
            &cfg.cookie_name,
            cfg.max_chunks,
        );
        open(&cfg, &codec, &cookies.sealed()?)
    }

    #[test]
    fn a_small_session_is_one_bare_cookie_with_safe_attributes() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let set =
            write_session(&cfg, &codec, &session(10), &RequestCookies::default(), 100).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set[0].starts_with("oidc_session="));
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=28800",
        ] {
            assert!(set[0].contains(attr), "{attr} missing in {}", set[0]);
        }
        assert_eq!(read(&cookie_header(&set)).unwrap(), session(10));
    }

    #[test]
    fn a_large_session_is_split_into_numbered_chunks_under_4k() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let set = write_session(
            &cfg,
            &codec,
            &session(8000),
            &RequestCookies::default(),
            100,
        )
        .unwrap();
        assert_eq!(set.len(), 3);
        for (i, s) in set.iter().enumerate() {
            assert!(s.starts_with(&format!("oidc_session_{i}=")));
            assert!(s.len() < 4096);
        }
        assert_eq!(read(&cookie_header(&set)).unwrap(), session(8000));
    }

    #[test]
    fn too_large_a_session_is_refused_not_truncated() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let err = write_session(
            &cfg,
            &codec,
            &session(20000),
            &RequestCookies::default(),
            100,
        )
        .unwrap_err();
        assert!(err.chunks > 4);
    }

    #[test]
    fn missing_reordered_or_mixed_chunks_are_no_session() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let a = write_session(
            &cfg,
            &codec,
            &session(8000),
            &RequestCookies::default(),
            100,
        )
        .unwrap();
        let b = write_session(
            &cfg,
            &codec,
            &session(8001),
            &RequestCookies::default(),
            100,
        )
        .unwrap();
        assert_eq!(
            read(&cookie_header(&a[..2])),
            Err(Miss::Unsealable(super::super::codec::OpenError::Tag))
        );
        assert_eq!(read(&cookie_header(&a[1..])), Err(Miss::BadChunks));
        let mixed = [a[0].clone(), b[1].clone(), a[2].clone()];
        assert!(read(&cookie_header(&mixed)).is_err());
    }

    #[test]
    fn more_chunks_than_allowed_is_refused_before_decryption() {
        let header = (0..6)
            .map(|i| format!("oidc_session_{i}=x"))
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(read(&header), Err(Miss::TooManyChunks));
    }

    #[test]
    fn foreign_cookies_and_login_cookies_are_told_apart() {
        let header = "a=1; oidc_session_login_abc=v; oidc_sessionx=2; oidc_session_7x=3";
        let c = RequestCookies::parse(std::iter::once(header.as_bytes()), "oidc_session", 4);
        assert!(c.bare.is_none() && c.chunks.is_empty());
        assert_eq!(c.login, vec![("oidc_session_login_abc", "v")]);
        assert_eq!(read(header), Err(Miss::Absent));
    }

    #[test]
    fn shrinking_a_session_deletes_leftover_chunks() {
        let cfg = cfg();
        let codec = Codec::new(cfg.keys.expose());
        let big = write_session(
            &cfg,
            &codec,
            &session(8000),
            &RequestCookies::default(),
            100,
        )
        .unwrap();
        let header = cookie_header(&big);
        let prev = RequestCookies::parse(std::iter::once(header.as_bytes()), "oidc_session", 4);
        let small = write_session(&cfg, &codec, &session(10), &prev, 100).unwrap();
        assert_eq!(small.len(), 4);
        assert!(small[1..].iter().all(|s| s.contains("Max-Age=0")));
    }
}
