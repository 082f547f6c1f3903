//! Raw TOML → [`Config`]: every problem is collected with its key path and line, then reported
//! together, so an operator fixes a file in one pass.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use url::Url;

use super::raw::{OneOrMany, RawConfig, RawProvider, RawRoute, RawSession};
use super::secrets::{expand, read_secret_file, Secret};
use super::*;
use crate::claims::ClaimPath;
use jwk::JwkAlg;

/// One thing wrong (or worth a warning) in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `providers.cis2.client_id` or `route[0].upstream`.
    pub key: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// A list of one.
    pub fn single(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Parses and validates config text. Relative file paths are resolved against `base_dir`.
pub fn parse_str(text: &str, base_dir: Option<&Path>) -> Result<Config, Problems> {
    let lines = LineIndex::new(text);
    let spans = match toml::de::DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| lines.line_of(s.start));
            return Err(Problems::single(Problem::new(
                "",
                line,
                format!("invalid TOML: {}", e.message()),
            )));
        }
    };
    let mut unknown = Vec::new();
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        Problems::single(Problem::new(
            "",
            e.span().map(|s| lines.line_of(s.start)),
            e.message().to_owned(),
        ))
    })?;
    let raw: RawConfig = match serde_ignored::deserialize(de, |path| unknown.push(path_key(&path)))
    {
        Ok(raw) => raw,
        Err(e) => {
            return Err(Problems::single(Problem::new(
                "",
                e.span().map(|s| lines.line_of(s.start)),
                e.message().to_owned(),
            )))
        }
    };
    let mut v = Validator {
        problems: Vec::new(),
        warnings: Vec::new(),
        spans: spans.into_inner(),
        lines,
        base_dir: base_dir.map(Path::to_path_buf),
    };
    for key in unknown {
        v.error(&key, "unknown key");
    }
    let config = v.config(raw);
    if v.problems.is_empty() {
        if let Some(mut config) = config {
            config.warnings = v.warnings;
            return Ok(config);
        }
    }
    Err(Problems(v.problems))
}

fn path_key(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_key(parent)),
        P::Map { parent, key } => {
            let p = path_key(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_key(parent)
        }
    }
}

/// Byte offset → line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

struct Validator<'a> {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    spans: toml::de::DeTable<'a>,
    lines: LineIndex,
    base_dir: Option<PathBuf>,
}

const DEFAULT_HEADERS: &[(&str, &[&str])] = &[
    ("x-auth-sub", &["sub"]),
    ("x-auth-name", &["name"]),
    ("x-auth-email", &["email"]),
    ("x-auth-role", &["role.code", "role"]),
    ("x-auth-org", &["org.code", "org"]),
    ("x-auth-activities", &["activities"]),
];

impl Validator<'_> {
    /// The line of a dotted key path such as `route[1].headers.X-Auth-Sub`.
    fn line(&self, key: &str) -> Option<usize> {
        let mut table = &self.spans;
        let mut span = None;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let (k, value) = table.get_key_value(name)?;
            span = Some(k.span());
            let mut value = value;
            if let Some(i) = index {
                value = value.get_ref().as_array()?.get(i)?;
                span = Some(value.span());
            }
            match value.get_ref().as_table() {
                Some(t) if parts.peek().is_some() => table = t,
                _ => break,
            }
        }
        span.map(|s| self.lines.line_of(s.start))
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let line = self.line(key);
        self.problems.push(Problem::new(key, line, message));
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let line = self.line(key);
        self.warnings.push(Problem::new(key, line, message));
    }

    /// `${ENV}` expansion of one string value.
    fn string(&mut self, key: &str, value: &str) -> Option<String> {
        match expand(value) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    fn opt_string(&mut self, key: &str, value: &Option<String>) -> Option<String> {
        value.as_ref().and_then(|v| self.string(key, v))
    }

    fn strings(&mut self, key: &str, values: &[String]) -> Vec<String> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.string(&format!("{key}[{i}]"), v))
            .collect()
    }

    fn path(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// A secret given inline or through its `*_file` twin (never both).
    fn secret(
        &mut self,
        key: &str,
        inline: &Option<String>,
        file_key: &str,
        file: &Option<String>,
    ) -> Option<Secret<String>> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(key, format!("set either {key} or {file_key}, not both"));
                None
            }
            (Some(v), None) => {
                let s = self.string(key, v)?;
                if s.is_empty() {
                    self.error(key, "is empty");
                    return None;
                }
                Some(Secret::new(s))
            }
            (None, Some(f)) => {
                let f = self.string(file_key, f)?;
                let path = self.path(&f);
                match read_secret_file(&path.to_string_lossy()) {
                    Ok(s) if s.is_empty() => {
                        self.error(file_key, format!("{} is empty", path.display()));
                        None
                    }
                    Ok(s) => Some(Secret::new(s)),
                    Err(e) => {
                        self.error(file_key, e);
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn duration(&mut self, key: &str, value: &Option<String>, default: Duration) -> Duration {
        let Some(raw) = value else { return default };
        let Some(s) = self.string(key, raw) else {
            return default;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    key,
                    format!("{s:?} is not a duration like \"90s\", \"30m\" or \"8h\" ({e})"),
                );
                default
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        let s = self.string(key, value)?;
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    format!("{s:?} is not an address like \"0.0.0.0:8080\""),
                );
                None
            }
        }
    }

    fn count(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: usize,
        range: (usize, usize),
    ) -> usize {
        let Some(n) = value else { return default };
        match usize::try_from(n) {
            Ok(n) if n >= range.0 && n <= range.1 => n,
            _ => {
                self.error(
                    key,
                    format!("must be between {} and {}, not {n}", range.0, range.1),
                );
                default
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(&raw);
        let admin = AdminConfig {
            listen: raw
                .admin
                .listen
                .as_ref()
                .and_then(|l| self.socket_addr("admin.listen", l)),
        };
        let session = self.session(&raw, server.as_ref());
        let names: Vec<String> = raw.providers.keys().cloned().collect();
        let providers: Vec<Option<ProviderConfig>> = raw
            .providers
            .iter()
            .map(|(name, p)| self.provider(name, p))
            .collect();
        if raw.providers.is_empty() {
            self.error(
                "providers",
                "at least one provider is needed ([providers.NAME])",
            );
        }
        if raw.route.is_empty() {
            self.error("route", "at least one route is needed ([[route]])");
        }
        let routes: Vec<Option<RouteConfig>> = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r, &names))
            .collect();
        let fold_case = server.as_ref().is_some_and(|s| s.case_insensitive_paths);
        self.check_route_overlap(&routes, fold_case);
        self.check_route_needs(&raw);
        let server = server?;
        let session = session?;
        let providers = providers
            .into_iter()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(Arc::new)
            .collect();
        let routes = routes
            .into_iter()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(Arc::new)
            .collect();
        Some(Config {
            server,
            admin,
            session,
            providers,
            routes,
            warnings: Vec::new(),
        })
    }

    fn server(&mut self, raw: &RawConfig) -> Option<ServerConfig> {
        let s = &raw.server;
        let listen = match &s.listen {
            Some(l) => self.socket_addr("server.listen", l),
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
        };
        let public_url = match self.opt_string("server.public_url", &s.public_url) {
            Some(u) => match Url::parse(&u) {
                Ok(url)
                    if (url.scheme() == "https" || url.scheme() == "http")
                        && url.host_str().is_some()
                        && (url.path() == "/" || url.path().is_empty())
                        && url.query().is_none()
                        && url.username().is_empty() =>
                {
                    Some(url)
                }
                Ok(_) => {
                    self.error(
                        "server.public_url",
                        format!("{u:?} must be an http(s) origin such as \"https://apps.example.org\", without path, query or user"),
                    );
                    None
                }
                Err(e) => {
                    self.error("server.public_url", format!("{u:?} is not a URL: {e}"));
                    None
                }
            },
            None => {
                self.error(
                    "server.public_url",
                    "is required (the gateway's external origin)",
                );
                None
            }
        };
        let callback_path = self
            .opt_string("server.callback_path", &s.callback_path)
            .unwrap_or_else(|| "/oauth2/callback".to_owned());
        let canonical = crate::paths::canonicalize(&callback_path, false)
            .is_ok_and(|c| c.forwarded == callback_path && !callback_path.contains(';'));
        if !callback_path.starts_with('/') || callback_path.contains(['?', '#']) || !canonical {
            self.error(
                "server.callback_path",
                "must be a plain path starting with / (no query, dot segments, escapes or ';')",
            );
        }
        let tls = match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(c), Some(k)) => {
                let c = self.string("server.tls_cert_file", c);
                let k = self.string("server.tls_key_file", k);
                match (c, k) {
                    (Some(c), Some(k)) => {
                        let (c, k) = (self.path(&c), self.path(&k));
                        for (key, p) in [("server.tls_cert_file", &c), ("server.tls_key_file", &k)]
                        {
                            if let Err(e) = std::fs::metadata(p) {
                                self.error(key, format!("cannot read {}: {e}", p.display()));
                            }
                        }
                        Some(TlsFiles {
                            cert_file: c.to_string_lossy().into_owned(),
                            key_file: k.to_string_lossy().into_owned(),
                        })
                    }
                    _ => None,
                }
            }
            (None, None) => None,
            _ => {
                self.error(
                    "server.tls_cert_file",
                    "tls_cert_file and tls_key_file go together",
                );
                None
            }
        };
        let mut trusted_proxies = Vec::new();
        for (i, p) in s.trusted_proxies.iter().flatten().enumerate() {
            let key = format!("server.trusted_proxies[{i}]");
            let Some(p) = self.string(&key, p) else {
                continue;
            };
            match p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => self.error(&key, format!("{p:?} is not a CIDR such as \"10.0.0.0/8\"")),
            }
        }
        let mut cors_origins = Vec::new();
        for (i, o) in s.cors_origins.iter().flatten().enumerate() {
            let key = format!("server.cors_origins[{i}]");
            let Some(o) = self.string(&key, o) else {
                continue;
            };
            match Url::parse(&o) {
                Ok(u) if u.host_str().is_some() && matches!(u.scheme(), "http" | "https") => {
                    cors_origins.push(u.origin().ascii_serialization())
                }
                _ => self.error(
                    &key,
                    format!("{o:?} is not an origin such as \"https://app.example.org\""),
                ),
            }
        }
        let max_request_header_bytes = self.count(
            "server.max_request_header_bytes",
            s.max_request_header_bytes,
            32 * 1024,
            (1024, 1024 * 1024),
        );
        let threads = self.count("server.threads", s.threads, default_threads(), (1, 256));
        let upstream_connect_timeout = self.duration(
            "server.upstream_connect_timeout",
            &s.upstream_connect_timeout,
            Duration::from_secs(5),
        );
        let upstream_read_timeout = self.duration(
            "server.upstream_read_timeout",
            &s.upstream_read_timeout,
            Duration::from_secs(60),
        );
        let assertion_key = self.assertion_key(s);
        let drain_timeout = self.duration(
            "server.drain_timeout",
            &s.drain_timeout,
            Duration::from_secs(10),
        );
        if drain_timeout > Duration::from_secs(3600) {
            self.error("server.drain_timeout", "must be at most 1h");
        }
        let upstream_ca = s
            .upstream_ca_file
            .as_ref()
            .and_then(|f| self.ca_file("server.upstream_ca_file", f));
        let public_url = public_url?;
        let public_origin = public_url.origin().ascii_serialization();
        Some(ServerConfig {
            listen: listen?,
            public_https: public_url.scheme() == "https",
            redirect_uri: format!("{public_origin}{callback_path}"),
            public_origin,
            callback_path,
            tls,
            trusted_proxies,
            cors_origins,
            max_request_header_bytes,
            threads,
            upstream_connect_timeout,
            upstream_read_timeout,
            assertion_key,
            upstream_ca,
            drain_timeout,
            case_insensitive_paths: s.case_insensitive_paths.unwrap_or(false),
        })
    }

    /// A PEM file of CA certificates, every one of which must parse.
    fn ca_file(&mut self, key: &str, value: &str) -> Option<CaCerts> {
        let file = self.string(key, value)?;
        match crate::tls::read_certificates(&self.path(&file)) {
            Ok(certs) => Some(Arc::new(certs.into_iter().map(|c| c.to_vec()).collect())),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    fn session(&mut self, raw: &RawConfig, server: Option<&ServerConfig>) -> Option<SessionConfig> {
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
            match crate::session::codec::decode_key(text) {
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

    /// An http(s) URL; plain http only on loopback unless `allow_insecure`.
    fn url(&mut self, key: &str, value: &str, allow_insecure: bool, hint: &str) -> Option<Url> {
        let s = self.string(key, value)?;
        match Url::parse(&s) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {
                if allow_insecure || is_loopback_url(&u) {
                    Some(u)
                } else {
                    self.error(
                        key,
                        format!("{s:?} uses http:// on a non-loopback host; use https:// or set {hint}allow_insecure_http = true"),
                    );
                    None
                }
            }
            Ok(_) => {
                self.error(key, format!("{s:?} is not an http(s) URL"));
                None
            }
            Err(e) => {
                self.error(key, format!("{s:?} is not a URL: {e}"));
                None
            }
        }
    }

    fn provider(&mut self, name: &str, p: &RawProvider) -> Option<ProviderConfig> {
        let k = |field: &str| format!("providers.{name}.{field}");
        let allow_insecure_http = p.allow_insecure_http.unwrap_or(false);
        let hint = format!("providers.{name}.");
        let issuer = match &p.issuer {
            Some(i) => self
                .url(&k("issuer"), i, allow_insecure_http, &hint)
                .map(|_| {
                    // Keep the issuer exactly as written: ID tokens must name it byte for byte.
                    expand(i).unwrap_or_default()
                }),
            None => {
                self.error(&k("issuer"), "is required");
                None
            }
        };
        let discovery_url = match (&p.discovery_url, &issuer) {
            (Some(d), _) => self.url(&k("discovery_url"), d, allow_insecure_http, &hint),
            (None, Some(i)) => Url::parse(&format!(
                "{}/.well-known/openid-configuration",
                i.trim_end_matches('/')
            ))
            .ok(),
            (None, None) => None,
        };
        let client_id = match self.opt_string(&k("client_id"), &p.client_id) {
            Some(c) if !c.is_empty() => Some(c),
            _ => {
                self.error(&k("client_id"), "is required");
                None
            }
        };
        let secret = self.secret(
            &k("client_secret"),
            &p.client_secret,
            &k("client_secret_file"),
            &p.client_secret_file,
        );
        let method = self
            .opt_string(&k("client_auth"), &p.client_auth)
            .unwrap_or_else(|| "client_secret_basic".to_owned());
        let client_auth = match method.as_str() {
            "client_secret_basic" | "client_secret_post" => {
                if p.private_key_file.is_some() {
                    self.error(
                        &k("private_key_file"),
                        format!(
                            "is only used with client_auth = \"private_key_jwt\", not {method:?}"
                        ),
                    );
                }
                match secret {
                    Some(s) if method == "client_secret_basic" => Some(ClientAuth::SecretBasic(s)),
                    Some(s) => Some(ClientAuth::SecretPost(s)),
                    None => {
                        if p.client_secret.is_none() && p.client_secret_file.is_none() {
                            self.error(
                                &k("client_secret"),
                                format!("is required with client_auth = {method:?} (or client_secret_file)"),
                            );
                        }
                        None
                    }
                }
            }
            "private_key_jwt" => self.private_key(name, p),
            other => {
                self.error(
                    &k("client_auth"),
                    format!("{other:?} is not one of client_secret_basic, client_secret_post, private_key_jwt"),
                );
                None
            }
        };
        let scopes = match &p.scopes {
            Some(s) => self.strings(&k("scopes"), s),
            None => vec!["openid".into(), "profile".into(), "email".into()],
        };
        if !scopes.iter().any(|s| s == "openid") {
            self.error(&k("scopes"), "must include \"openid\"");
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            self.error(&k("scopes"), "scopes are single words without spaces");
        }
        let expires_in_unit = match self
            .opt_string(&k("expires_in_unit"), &p.expires_in_unit)
            .as_deref()
        {
            None | Some("s") => ExpiresInUnit::Seconds,
            Some("ms") => ExpiresInUnit::Milliseconds,
            Some(other) => {
                self.error(
                    &k("expires_in_unit"),
                    format!("{other:?} is not one of s, ms"),
                );
                ExpiresInUnit::Seconds
            }
        };
        let timeout = self.duration(&k("timeout"), &p.timeout, Duration::from_secs(10));
        if timeout.is_zero() {
            self.error(&k("timeout"), "must be more than zero");
        }
        let clock_skew = self.duration(&k("clock_skew"), &p.clock_skew, Duration::from_secs(60));
        if clock_skew > Duration::from_secs(600) {
            self.error(&k("clock_skew"), "must be at most 10m");
        }
        let id_token_algs = p.id_token_algs.as_ref().map(|a| {
            let algs = self.strings(&k("id_token_algs"), a);
            for alg in &algs {
                if alg.eq_ignore_ascii_case("none") {
                    self.error(&k("id_token_algs"), "\"none\" is never accepted");
                } else if !KNOWN_ALGS.contains(&alg.as_str()) {
                    self.error(
                        &k("id_token_algs"),
                        format!("{alg:?} is not a JWS algorithm ({})", KNOWN_ALGS.join(", ")),
                    );
                } else if alg.starts_with("HS")
                    && !matches!(
                        method.as_str(),
                        "client_secret_basic" | "client_secret_post"
                    )
                {
                    self.error(&k("id_token_algs"), format!("{alg} needs a client secret"));
                }
            }
            if algs.is_empty() {
                self.error(&k("id_token_algs"), "must not be empty");
            }
            algs
        });
        let trusted_audiences = p
            .trusted_audiences
            .as_ref()
            .map(|a| self.strings(&k("trusted_audiences"), a))
            .unwrap_or_default();
        let jwks_min_refetch_interval = self.duration(
            &k("jwks_min_refetch_interval"),
            &p.jwks_min_refetch_interval,
            Duration::from_secs(30),
        );
        let jwks_refresh_interval = self.duration(
            &k("jwks_refresh_interval"),
            &p.jwks_refresh_interval,
            Duration::from_secs(3600),
        );
        let mut extra_auth_params = Vec::new();
        for (key, value) in p.extra_auth_params.iter().flatten() {
            const RESERVED: &[&str] = &[
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "nonce",
                "code_challenge",
                "code_challenge_method",
            ];
            if RESERVED.contains(&key.as_str()) {
                self.error(
                    &k(&format!("extra_auth_params.{key}")),
                    "is set by the gateway itself",
                );
            } else if let Some(v) = self.string(&k(&format!("extra_auth_params.{key}")), value) {
                extra_auth_params.push((key.clone(), v));
            }
        }
        let audience = self.opt_string(&k("audience"), &p.audience);
        let max_response_bytes = self.count(
            &k("max_response_bytes"),
            p.max_response_bytes,
            1024 * 1024,
            (4096, 64 * 1024 * 1024),
        );
        match (&audience, &client_id) {
            (Some(a), _) if a.is_empty() => self.error(&k("audience"), "must not be empty"),
            (Some(a), Some(c)) if a == c => self.warn(
                &k("audience"),
                "equals client_id: ID tokens issued to the gateway would then pass as access tokens; use the API's own audience",
            ),
            _ => {}
        }
        Some(ProviderConfig {
            max_response_bytes,
            name: name.to_owned(),
            issuer: issuer?,
            discovery_url: discovery_url?,
            client_id: client_id?,
            client_auth: client_auth?,
            scopes,
            userinfo: p.userinfo.unwrap_or(false),
            expires_in_unit,
            timeout,
            clock_skew,
            id_token_algs,
            trusted_audiences,
            jwks_min_refetch_interval,
            jwks_refresh_interval,
            allow_insecure_http,
            extra_auth_params,
            audience,
        })
    }

    fn private_key(&mut self, name: &str, p: &RawProvider) -> Option<ClientAuth> {
        let key = format!("providers.{name}.private_key_file");
        if p.client_secret.is_some() || p.client_secret_file.is_some() {
            self.error(
                &format!("providers.{name}.client_secret"),
                "is not used with client_auth = \"private_key_jwt\"",
            );
        }
        let Some(file) = &p.private_key_file else {
            self.error(&key, "is required with client_auth = \"private_key_jwt\" (make one with `oidc-gateway keygen --jwk --out FILE`)");
            return None;
        };
        let file = self.string(&key, file)?;
        let path = self.path(&file);
        let pem = match std::fs::read_to_string(&path) {
            Ok(p) => p,
            Err(e) => {
                self.error(&key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let alg_key = format!("providers.{name}.private_key_alg");
        let alg = match self.opt_string(&alg_key, &p.private_key_alg) {
            Some(a) => match a.parse::<JwkAlg>() {
                Ok(alg) => Some(alg),
                Err(_) => {
                    self.error(&alg_key, format!("{a:?} is not one of RS256, ES256, PS256"));
                    return None;
                }
            },
            None => None,
        };
        let alg = alg.unwrap_or(if pem.contains("EC PRIVATE KEY") || looks_like_ec(&pem) {
            JwkAlg::ES256
        } else {
            JwkAlg::RS256
        });
        match jwk::public_jwk_from_pem(&pem, alg) {
            Ok(jwk) => {
                let kid = jwk
                    .get("kid")
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_owned();
                Some(ClientAuth::PrivateKeyJwt(PrivateKey {
                    pem: Secret::new(pem),
                    alg,
                    kid,
                }))
            }
            Err(e) => {
                self.error(
                    &key,
                    format!("{} is not a usable {alg} private key: {e}", path.display()),
                );
                None
            }
        }
    }

    fn route(&mut self, i: usize, r: &RawRoute, providers: &[String]) -> Option<RouteConfig> {
        let k = |field: &str| format!("route[{i}].{field}");
        let host = self
            .opt_string(&k("host"), &r.host)
            .map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                self.error(
                    &k("host"),
                    format!("{h:?} is not a host name (no scheme, port or path)"),
                );
            }
        }
        let path = match self.opt_string(&k("path"), &r.path) {
            Some(p) if p.starts_with('/') && !p.contains(['?', '#', '%', '\\', ';']) => {
                match crate::paths::canonicalize(&p, false) {
                    Ok(n) if n.forwarded == "/" => n.forwarded,
                    Ok(n) => n.forwarded.trim_end_matches('/').to_owned(),
                    Err(_) => {
                        self.error(&k("path"), format!("{p:?} is not a plain path"));
                        "/".to_owned()
                    }
                }
            }
            Some(p) => {
                self.error(
                    &k("path"),
                    format!(
                        "{p:?} must be a path starting with / (no query, %-escapes, ';' or backslashes)"
                    ),
                );
                "/".to_owned()
            }
            None => "/".to_owned(),
        };
        let allow_insecure = r.allow_insecure_http.unwrap_or(false);
        let upstream = match &r.upstream {
            Some(u) => self
                .url(&k("upstream"), u, allow_insecure, &format!("route[{i}]."))
                .and_then(|url| self.upstream(&k("upstream"), url))
                .map(|mut up| {
                    if let Some(f) = &r.ca_file {
                        if up.tls {
                            up.ca = self.ca_file(&k("ca_file"), f);
                        } else {
                            self.error(&k("ca_file"), "is only for https:// upstreams");
                        }
                    }
                    up
                }),
            None => {
                self.error(&k("upstream"), "is required");
                None
            }
        };
        let provider = match self.opt_string(&k("provider"), &r.provider) {
            Some(name) => match providers.iter().position(|p| *p == name) {
                Some(idx) => Some(idx),
                None => {
                    self.error(
                        &k("provider"),
                        format!("{name:?} is not a configured provider"),
                    );
                    None
                }
            },
            None if providers.len() == 1 => Some(0),
            None if providers.is_empty() => None,
            None => {
                self.error(
                    &k("provider"),
                    "is required when several providers are configured",
                );
                None
            }
        };
        let auth = match self.opt_string(&k("auth"), &r.auth).as_deref() {
            None | Some("required") => AuthMode::Required,
            Some("public") => AuthMode::Public,
            Some(other) => {
                self.error(
                    &k("auth"),
                    format!("{other:?} is not one of required, public"),
                );
                AuthMode::Required
            }
        };
        let mut headers = Vec::new();
        match &r.headers {
            Some(map) => {
                for (name, paths) in map {
                    let key = k(&format!("headers.{name}"));
                    if let Some(rule) = self.header_rule(&key, name, paths) {
                        headers.push(rule);
                    }
                }
            }
            None => {
                for (name, paths) in DEFAULT_HEADERS {
                    headers.push(HeaderRule {
                        name: HeaderName::from_static(name),
                        display: display_name(name),
                        paths: paths
                            .iter()
                            .filter_map(|p| ClaimPath::parse(p).ok())
                            .collect(),
                    });
                }
            }
        }
        let mut require = Vec::new();
        for (path, values) in r.require.iter().flatten() {
            let key = k(&format!("require.{path}"));
            let values = values.to_vec();
            if values.is_empty() {
                self.error(&key, "needs at least one value");
            }
            match ClaimPath::parse(path) {
                Ok(path) => require.push(Requirement { path, values }),
                Err(e) => self.error(&key, e.to_string()),
            }
        }
        let bearer = r.bearer.unwrap_or(false);
        let assertion = r.assertion.unwrap_or(false);
        for (field, on) in [("bearer", bearer), ("assertion", assertion)] {
            if auth == AuthMode::Public && on {
                self.error(&k(field), "has no effect on a route with auth = \"public\"");
            }
        }
        if auth == AuthMode::Public && !require.is_empty() {
            self.error(
                &k("require"),
                "has no effect on a route with auth = \"public\"",
            );
        }
        let name = r.name.clone().unwrap_or_else(|| match &host {
            Some(h) => format!("{h}{path}"),
            None => path.clone(),
        });
        Some(RouteConfig {
            index: i,
            name,
            host,
            path,
            upstream: upstream?,
            provider: provider?,
            auth,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            headers,
            require,
            bearer,
            assertion,
        })
    }

    /// `server.assertion_key_file` (+ `assertion_key_alg`): the key that signs identity
    /// assertions. Configured rather than generated at start-up so that every instance behind a
    /// load balancer signs with a key the upstream already trusts.
    fn assertion_key(&mut self, s: &super::raw::RawServer) -> Option<PrivateKey> {
        let key = "server.assertion_key_file";
        let alg_key = "server.assertion_key_alg";
        let Some(file) = &s.assertion_key_file else {
            if s.assertion_key_alg.is_some() {
                self.error(alg_key, "is only used with server.assertion_key_file");
            }
            return None;
        };
        let file = self.string(key, file)?;
        let path = self.path(&file);
        let pem = match std::fs::read_to_string(&path) {
            Ok(p) => p,
            Err(e) => {
                self.error(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let alg = match self.opt_string(alg_key, &s.assertion_key_alg) {
            Some(a) => match a.parse::<JwkAlg>() {
                Ok(alg) => alg,
                Err(_) => {
                    self.error(alg_key, format!("{a:?} is not one of RS256, ES256, PS256"));
                    return None;
                }
            },
            None if pem.contains("EC PRIVATE KEY") || looks_like_ec(&pem) => JwkAlg::ES256,
            None => JwkAlg::RS256,
        };
        match jwk::public_jwk_from_pem(&pem, alg) {
            Ok(jwk) => Some(PrivateKey {
                kid: jwk
                    .get("kid")
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                pem: Secret::new(pem),
                alg,
            }),
            Err(e) => {
                self.error(
                    key,
                    format!("{} is not a usable {alg} private key: {e}", path.display()),
                );
                None
            }
        }
    }

    /// Route options that need something configured elsewhere: `bearer` needs the provider's
    /// `audience`, `assertion` needs `server.assertion_key_file`.
    fn check_route_needs(&mut self, raw: &RawConfig) {
        let mut assertion_route = None;
        for (i, r) in raw.route.iter().enumerate() {
            if r.assertion == Some(true) && assertion_route.is_none() {
                assertion_route = Some(i);
            }
            if r.bearer != Some(true) {
                continue;
            }
            let name = match &r.provider {
                Some(p) => expand(p).unwrap_or_default(),
                None if raw.providers.len() == 1 => {
                    raw.providers.keys().next().cloned().unwrap_or_default()
                }
                None => continue,
            };
            if let Some(p) = raw.providers.get(&name) {
                if p.audience.is_none() {
                    self.error(
                        &format!("route[{i}].bearer"),
                        format!("needs providers.{name}.audience (the `aud` access tokens for this API carry)"),
                    );
                }
            }
        }
        if let (Some(i), None) = (assertion_route, &raw.server.assertion_key_file) {
            self.error(
                "server.assertion_key_file",
                format!("is required because route[{i}] sets assertion = true (make a key with `oidc-gateway keygen --jwk --alg ES256 --out FILE`)"),
            );
        }
    }

    fn upstream(&mut self, key: &str, url: Url) -> Option<Upstream> {
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            self.error(
                key,
                format!("\"{url}\" must be scheme://host[:port] without path, query or user"),
            );
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        let tls = url.scheme() == "https";
        let address = match url.host()? {
            url::Host::Ipv6(ip) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        Some(Upstream {
            address,
            tls,
            sni: host.trim_matches(['[', ']']).to_owned(),
            url: url.as_str().trim_end_matches('/').to_owned(),
            ca: None,
        })
    }

    fn header_rule(&mut self, key: &str, name: &str, paths: &OneOrMany) -> Option<HeaderRule> {
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                self.error(key, format!("{name:?} is not a valid header name"));
                return None;
            }
        };
        const RESERVED: &[&str] = &[
            "host",
            "cookie",
            "authorization",
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
        ];
        if RESERVED.contains(&header.as_str()) {
            self.error(key, format!("{name} cannot carry identity"));
            return None;
        }
        let list = paths.to_vec();
        if list.is_empty() {
            self.error(key, "needs at least one claim path");
            return None;
        }
        let mut parsed = Vec::new();
        for p in list {
            match ClaimPath::parse(&p) {
                Ok(cp) => parsed.push(cp),
                Err(e) => self.error(key, format!("{p:?}: {e}")),
            }
        }
        Some(HeaderRule {
            name: header,
            display: name.to_owned(),
            paths: parsed,
        })
    }

    /// Two routes on the same host and path (in any case, when matching ignores case) would
    /// leave the choice between them to the order of the file.
    fn check_route_overlap(&mut self, routes: &[Option<RouteConfig>], fold_case: bool) {
        let mut seen: BTreeMap<(Option<String>, String), usize> = BTreeMap::new();
        for (i, r) in routes.iter().enumerate() {
            let Some(r) = r else { continue };
            let path = match crate::paths::canonicalize(&r.path, fold_case) {
                Ok(c) => c.matched,
                Err(e) => {
                    self.error(&format!("route[{i}].path"), format!("{:?}: {e}", r.path));
                    continue;
                }
            };
            if let Some(first) = seen.insert((r.host.clone(), path), i) {
                let how = if fold_case {
                    "the same host and path (server.case_insensitive_paths ignores case)"
                } else {
                    "the same host and path"
                };
                self.error(
                    &format!("route[{i}].path"),
                    format!("route[{first}] already has {how}"),
                );
            }
        }
    }
}

/// `x-auth-sub` → `X-Auth-Sub`: how the default headers are spelled on the wire.
fn display_name(lower: &str) -> String {
    lower
        .split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

const KNOWN_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

fn looks_like_ec(pem: &str) -> bool {
    use p256::pkcs8::DecodePrivateKey;
    p256::SecretKey::from_pkcs8_pem(pem).is_ok()
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn is_loopback_url(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")
        }
        None => false,
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

#[cfg(test)]
mod tests;
