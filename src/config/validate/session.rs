//! `[session]`: cookie, keys, lifetimes and the session store.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use url::Url;

use super::{is_loopback_url, Validator};
use crate::config::raw::{RawConfig, RawRedis, RawSession};
use crate::config::secrets::{read_secret_file, Secret};
use crate::config::{
    RedisConfig, RedisMode, RevocationKind, SameSite, ServerConfig, SessionConfig, SessionStoreKind,
};

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
        if max_lifetime.is_zero() || max_lifetime > Duration::from_secs(366 * 24 * 3600) {
            self.error(
                "session.max_lifetime",
                "must be more than zero and at most 366 days",
            );
        }
        let redis_url = self.secret(
            "session.redis_url",
            &s.redis_url,
            "session.redis_url_file",
            &s.redis_url_file,
        );
        let store_kind = self.opt_string("session.store", &s.store);
        let revocation_kind = self.opt_string("session.revocation", &s.revocation);
        let wants_redis = store_kind.as_deref() == Some("redis")
            || (store_kind.as_deref().is_none_or(|k| k == "cookie")
                && revocation_kind.as_deref() == Some("redis"));
        let redis = if wants_redis {
            self.redis(s, redis_url)
        } else {
            for (key, set) in [
                ("session.redis_url", redis_url.is_some()),
                ("session.redis", s.redis.is_some()),
                ("session.redis_key_prefix", s.redis_key_prefix.is_some()),
                ("session.redis_timeout", s.redis_timeout.is_some()),
                ("session.redis_ca_file", s.redis_ca_file.is_some()),
            ] {
                if set {
                    self.warn(
                        key,
                        "is ignored: neither session.store nor session.revocation is \"redis\"",
                    );
                }
            }
            None
        };
        let store = match store_kind.as_deref() {
            None | Some("cookie") => SessionStoreKind::Cookie,
            Some("redis") => match &redis {
                Some(r) => SessionStoreKind::Redis(Box::new(r.clone())),
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
        let revocation = match (revocation_kind.as_deref(), &store) {
            (None, _) => RevocationKind::Memory,
            (Some(_), SessionStoreKind::Redis(_)) => {
                self.error(
                    "session.revocation",
                    "applies to store = \"cookie\" only: with store = \"redis\" a back-channel logout deletes the sessions themselves",
                );
                RevocationKind::Memory
            }
            (Some("memory"), _) => RevocationKind::Memory,
            (Some("redis"), _) => match redis {
                Some(r) => RevocationKind::Redis(Box::new(r)),
                None => RevocationKind::Memory,
            },
            (Some(other), _) => {
                self.error(
                    "session.revocation",
                    format!("{other:?} is not one of memory, redis"),
                );
                RevocationKind::Memory
            }
        };
        let max_revocations = self.count(
            "session.max_revocations",
            s.max_revocations,
            100_000,
            (10, 10_000_000),
        );
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
            revocation,
            max_revocations,
            max_login_states,
            max_chunks,
        })
    }

    /// The Redis deployment: `redis_url` (standalone shorthand) or `[session.redis]`.
    fn redis(&mut self, s: &RawSession, url: Option<Secret<String>>) -> Option<RedisConfig> {
        let insecure_ok = s.allow_insecure_redis.unwrap_or(false);
        let (mode, nodes, username, password) = match (url, &s.redis) {
            (Some(_), Some(_)) => {
                self.error(
                    "session.redis",
                    "set either session.redis_url (a standalone server) or [session.redis], not both",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    "session.redis_url",
                    "is required when sessions or revocations are in Redis (or session.redis_url_file, or a [session.redis] table)",
                );
                return None;
            }
            (Some(url), None) => {
                if !self.redis_url("session.redis_url", url.expose(), true, insecure_ok) {
                    return None;
                }
                (
                    RedisMode::Standalone,
                    vec![url.expose().clone()],
                    None,
                    None,
                )
            }
            (None, Some(r)) => self.redis_table(r, insecure_ok)?,
        };
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
            mode,
            nodes: Secret::new(nodes),
            username,
            password,
            key_prefix,
            timeout,
            ca_file,
        })
    }
    /// `[session.redis]`: mode, nodes and credentials, each problem named by its key.
    fn redis_table(&mut self, r: &RawRedis, insecure_ok: bool) -> Option<RedisReach> {
        let mode_name = self
            .opt_string("session.redis.mode", &r.mode)
            .unwrap_or_else(|| "standalone".to_owned());
        let nodes = self.strings(
            "session.redis.nodes",
            r.nodes.as_deref().unwrap_or_default(),
        );
        let username = self.opt_string("session.redis.username", &r.username);
        let password = self.secret(
            "session.redis.password",
            &r.password,
            "session.redis.password_file",
            &r.password_file,
        );
        let sentinel_username =
            self.opt_string("session.redis.sentinel_username", &r.sentinel_username);
        let sentinel_password = self.secret(
            "session.redis.sentinel_password",
            &r.sentinel_password,
            "session.redis.sentinel_password_file",
            &r.sentinel_password_file,
        );
        let master_name = self.opt_string("session.redis.master_name", &r.master_name);
        if nodes.is_empty() {
            self.error(
                "session.redis.nodes",
                "must list at least one redis:// or rediss:// URL",
            );
            return None;
        }
        let mut ok = true;
        for (i, node) in nodes.iter().enumerate() {
            let key = format!("session.redis.nodes[{i}]");
            ok &= self.redis_url(&key, node, mode_name == "standalone", insecure_ok);
            let parsed = Url::parse(node).ok();
            if mode_name != "standalone" && url_has_credentials(node) {
                // Sentinel and cluster clients take one set of credentials for every node.
                self.error(
                    &key,
                    if mode_name == "sentinel" {
                        "holds credentials: give them as session.redis.sentinel_username / sentinel_password (the sentinels) and username / password (the servers)"
                    } else {
                        "holds credentials: give them as session.redis.username / password (one set for every node)"
                    },
                );
                ok = false;
            } else if (username.is_some() || password.is_some()) && url_has_credentials(node) {
                self.error(
                    &key,
                    "holds credentials as well as session.redis.username/password: give them in one place",
                );
                ok = false;
            }
            if mode_name == "sentinel" {
                if parsed.as_ref().is_some_and(|u| u.port().is_none()) {
                    self.error(
                        &key,
                        "names no port: give the sentinel's port (sentinels usually listen on 26379)",
                    );
                    ok = false;
                }
                if parsed
                    .as_ref()
                    .is_some_and(|u| !matches!(u.path(), "" | "/"))
                {
                    self.error(&key, "names a database: sentinel URLs name a sentinel only");
                    ok = false;
                }
            }
        }
        let schemes: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter_map(|n| n.split_once("://").map(|(scheme, _)| scheme))
            .collect();
        if schemes.len() > 1 {
            self.error(
                "session.redis.nodes",
                "mixes schemes: every node must use rediss:// (TLS) or every node redis://",
            );
            ok = false;
        }
        let sentinel_only = [
            ("session.redis.master_name", master_name.is_some()),
            (
                "session.redis.sentinel_username",
                sentinel_username.is_some(),
            ),
            (
                "session.redis.sentinel_password",
                r.sentinel_password.is_some() || r.sentinel_password_file.is_some(),
            ),
        ];
        let mode = match mode_name.as_str() {
            "standalone" | "cluster" => {
                for (key, set) in sentinel_only {
                    if set {
                        self.error(
                            key,
                            format!("applies to mode = \"sentinel\" only, not {mode_name:?}"),
                        );
                        ok = false;
                    }
                }
                if mode_name == "standalone" {
                    if nodes.len() != 1 {
                        self.error(
                            "session.redis.nodes",
                            "must list exactly one server with mode = \"standalone\" (use mode = \"sentinel\" or \"cluster\" for several)",
                        );
                        ok = false;
                    }
                    RedisMode::Standalone
                } else {
                    for (i, node) in nodes.iter().enumerate() {
                        if Url::parse(node).is_ok_and(|u| !matches!(u.path(), "" | "/" | "/0")) {
                            self.error(
                                &format!("session.redis.nodes[{i}]"),
                                "names a database: a Redis Cluster has only database 0",
                            );
                            ok = false;
                        }
                    }
                    RedisMode::Cluster
                }
            }
            "sentinel" => {
                let Some(master_name) = master_name.filter(|m| !m.is_empty()) else {
                    self.error(
                        "session.redis.master_name",
                        "is required with mode = \"sentinel\": the name the sentinels monitor the master under",
                    );
                    return None;
                };
                RedisMode::Sentinel {
                    master_name,
                    username: sentinel_username,
                    password: sentinel_password,
                }
            }
            other => {
                self.error(
                    "session.redis.mode",
                    format!("{other:?} is not one of standalone, sentinel, cluster"),
                );
                return None;
            }
        };
        ok.then_some((mode, nodes, username, password))
    }

    /// One Redis URL; `false` (with the problem reported under `key`) when it cannot be used.
    /// The URL may hold a password: messages name the problem, never the URL.
    fn redis_url(&mut self, key: &str, url: &str, unix_ok: bool, insecure_ok: bool) -> bool {
        if Url::parse(url).is_ok_and(|u| u.fragment().is_some()) {
            // redis-rs reads `#insecure` as "do not verify the certificate".
            self.error(
                key,
                "has a #fragment: not allowed (certificate checks cannot be turned off)",
            );
            return false;
        }
        match Url::parse(url) {
            // Sessions (and the password in the URL) cross the network in clear text with
            // redis:// to another host.
            Ok(u)
                if u.scheme() == "redis"
                    && u.host_str().is_some()
                    && !is_loopback_host(u.host_str().unwrap_or_default())
                    && !insecure_ok =>
            {
                self.error(
                    key,
                    "uses redis:// (no TLS) to a non-loopback host; use rediss:// or set session.allow_insecure_redis = true",
                );
                false
            }
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => true,
            Ok(u)
                if unix_ok
                    && matches!(u.scheme(), "redis+unix" | "unix")
                    && !u.path().is_empty() =>
            {
                true
            }
            Ok(_) => {
                self.error(
                    key,
                    if unix_ok {
                        "must be redis://[user:password@]host[:port][/db], rediss://... (TLS) or unix:///path"
                    } else {
                        "must be redis://[user:password@]host[:port] or rediss://... (TLS)"
                    },
                );
                false
            }
            Err(e) => {
                self.error(key, format!("is not a URL ({e})"));
                false
            }
        }
    }
}

/// Whether a Redis URL carries a user or password.
fn url_has_credentials(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// How a Redis deployment is reached: mode, node URLs, ACL user and password.
type RedisReach = (
    RedisMode,
    Vec<String>,
    Option<String>,
    Option<Secret<String>>,
);

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
