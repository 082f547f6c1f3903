//! `[session]`: cookie, keys, lifetimes and the session store.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use url::Url;

use super::{is_loopback_url, Validator};
use crate::config::raw::{RawConfig, RawSession};
use crate::config::secrets::{read_secret_file, Secret};
use crate::config::{RedisConfig, SameSite, ServerConfig, SessionConfig, SessionStoreKind};

impl Validator<'_> {
    pub(super) fn session(
        &mut self,
        raw: &RawConfig,
        server: Option<&ServerConfig>,
    ) -> Option<SessionConfig> {
        let s = &raw.session;
        let cookie_name = self
            .opt_string("session.cookie_name", &s.cookie_name)
            .unwrap_or_else(|| "oidc_session".to_owned());
        if cookie_name.is_empty()
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.error(
                "session.cookie_name",
                "may hold only letters, digits, '_' and '-'",
            );
        }
        let key_texts: Vec<String> = match (&s.keys, &s.keys_file) {
            (Some(_), Some(_)) => {
                self.error(
                    "session.keys",
                    "set either session.keys or session.keys_file, not both",
                );
                Vec::new()
            }
            (Some(k), None) => self.strings("session.keys", k),
            (None, Some(f)) => match self.string("session.keys_file", f) {
                Some(f) => match read_secret_file(&self.path(&f).to_string_lossy()) {
                    Ok(t) => t
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    Err(e) => {
                        self.error("session.keys_file", e);
                        Vec::new()
                    }
                },
                None => Vec::new(),
            },
            (None, None) => {
                self.error(
                    "session.keys",
                    "is required: one or more base64 32-byte keys (make one with `oidc-gateway keygen`)",
                );
                Vec::new()
            }
        };
        let mut keys = Vec::new();
        for (i, text) in key_texts.iter().enumerate() {
            match decode_key(text) {
                Some(k) => keys.push(k),
                None => self.error(
                    &format!("session.keys[{i}]"),
                    "is not a base64 32-byte key (make one with `oidc-gateway keygen`)",
                ),
            }
        }
        if keys.is_empty() && s.keys.as_ref().is_some_and(|k| k.is_empty()) {
            self.error("session.keys", "needs at least one key");
        }
        let secure = s.secure.unwrap_or(true);
        if let Some(server) = server {
            if !server.public_https && secure && !is_loopback_origin(&server.public_origin) {
                self.warn(
                    "session.secure",
                    "secure = true with an http:// public_url: browsers will not send the cookie back except on loopback",
                );
            }
            if server.public_https && !secure {
                self.warn(
                    "session.secure",
                    "secure = false with an https:// public_url",
                );
            }
        }
        let same_site = match self
            .opt_string("session.same_site", &s.same_site)
            .as_deref()
        {
            None | Some("lax") | Some("Lax") => SameSite::Lax,
            Some("strict") | Some("Strict") => SameSite::Strict,
            Some("none") | Some("None") => SameSite::None,
            Some(other) => {
                self.error(
                    "session.same_site",
                    format!("{other:?} is not one of lax, strict, none"),
                );
                SameSite::Lax
            }
        };
        let idle_timeout = self.duration(
            "session.idle_timeout",
            &s.idle_timeout,
            Duration::from_secs(30 * 60),
        );
        let max_lifetime = self.duration(
            "session.max_lifetime",
            &s.max_lifetime,
            Duration::from_secs(8 * 3600),
        );
        if idle_timeout.is_zero() {
            self.error("session.idle_timeout", "must be more than zero");
        }
        if max_lifetime.is_zero() {
            self.error("session.max_lifetime", "must be more than zero");
        }
        let redis_url = self.secret(
            "session.redis_url",
            &s.redis_url,
            "session.redis_url_file",
            &s.redis_url_file,
        );
        let store = match self.opt_string("session.store", &s.store).as_deref() {
            None | Some("cookie") => {
                for (key, set) in [
                    ("session.redis_url", redis_url.is_some()),
                    ("session.redis_key_prefix", s.redis_key_prefix.is_some()),
                    ("session.redis_timeout", s.redis_timeout.is_some()),
                    ("session.redis_ca_file", s.redis_ca_file.is_some()),
                ] {
                    if set {
                        self.warn(key, "is ignored: session.store is \"cookie\"");
                    }
                }
                SessionStoreKind::Cookie
            }
            Some("redis") => match self.redis(s, redis_url) {
                Some(r) => SessionStoreKind::Redis(r),
                None => SessionStoreKind::Cookie,
            },
            Some(other) => {
                self.error(
                    "session.store",
                    format!("{other:?} is not one of cookie, redis"),
                );
                SessionStoreKind::Cookie
            }
        };
        let max_login_states =
            self.count("session.max_login_states", s.max_login_states, 5, (1, 20));
        let max_chunks = self.count("session.max_chunks", s.max_chunks, 4, (1, 8));
        Some(SessionConfig {
            cookie_name,
            keys: Secret::new(keys),
            secure,
            same_site,
            idle_timeout,
            max_lifetime,
            store,
            max_login_states,
            max_chunks,
        })
    }

    /// `[session]` keys of the Redis store (`store = "redis"`).
    fn redis(&mut self, s: &RawSession, url: Option<Secret<String>>) -> Option<RedisConfig> {
        let Some(url) = url else {
            self.error(
                "session.redis_url",
                "is required with store = \"redis\" (or session.redis_url_file)",
            );
            return None;
        };
        // The URL may hold a password: messages name the problem, never the URL.
        match Url::parse(url.expose()) {
            // Sessions (and the password in the URL) cross the network in clear text with
            // redis:// to another host.
            Ok(u)
                if u.scheme() == "redis"
                    && u.host_str().is_some()
                    && !is_loopback_host(u.host_str().unwrap_or_default())
                    && !s.allow_insecure_redis.unwrap_or(false) =>
            {
                self.error(
                    "session.redis_url",
                    "uses redis:// (no TLS) to a non-loopback host; use rediss:// or set session.allow_insecure_redis = true",
                );
                return None;
            }
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
            Ok(u) if matches!(u.scheme(), "redis+unix" | "unix") && !u.path().is_empty() => {}
            Ok(_) => {
                self.error(
                    "session.redis_url",
                    "must be redis://[user:password@]host[:port][/db], rediss://... (TLS) or unix:///path",
                );
                return None;
            }
            Err(e) => {
                self.error("session.redis_url", format!("is not a URL ({e})"));
                return None;
            }
        }
        let key_prefix = self
            .opt_string("session.redis_key_prefix", &s.redis_key_prefix)
            .unwrap_or_else(|| "oidc-gateway:".to_owned());
        if key_prefix.len() > 64
            || key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            self.error(
                "session.redis_key_prefix",
                "must be at most 64 characters without spaces or control characters",
            );
        }
        let timeout = self.duration(
            "session.redis_timeout",
            &s.redis_timeout,
            Duration::from_millis(500),
        );
        if timeout.is_zero() || timeout > Duration::from_secs(30) {
            self.error("session.redis_timeout", "must be between 1ms and 30s");
        }
        let ca_file = self
            .opt_string("session.redis_ca_file", &s.redis_ca_file)
            .map(|f| self.path(&f));
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                self.error(
                    "session.redis_ca_file",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }
        Some(RedisConfig {
            url,
            key_prefix,
            timeout,
            ca_file,
        })
    }
}

/// A host name or address (IPv6 in brackets) on loopback. `redis://` URLs are not "special"
/// to the url crate, so their IP hosts arrive as text.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost") || bare.ends_with(".localhost"),
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    Url::parse(origin)
        .map(|u| is_loopback_url(&u))
        .unwrap_or(false)
}

/// Decodes a base64 (standard or url-safe, padded or not) 32-byte key.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;

    #[test]
    fn keys_decode_in_any_base64_flavour() {
        let k = [0xfbu8; 32];
        assert_eq!(decode_key(&STANDARD.encode(k)), Some(k));
        assert_eq!(decode_key(&URL_SAFE_NO_PAD.encode(k)), Some(k));
        assert_eq!(decode_key(&STANDARD.encode([1u8; 16])), None);
        assert_eq!(decode_key("not base64"), None);
    }
}
