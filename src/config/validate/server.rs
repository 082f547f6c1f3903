//! `[server]`: listener, public origin, TLS, proxies and upstream defaults.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::Validator;
use crate::config::raw::RawConfig;
use crate::config::{CaCerts, ServerConfig, TlsFiles};

impl Validator<'_> {
    pub(super) fn server(&mut self, raw: &RawConfig) -> Option<ServerConfig> {
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
        let request_header_timeout = self.duration(
            "server.request_header_timeout",
            &s.request_header_timeout,
            Duration::from_secs(10),
        );
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&request_header_timeout) {
            self.error(
                "server.request_header_timeout",
                "must be between 1s and 10m",
            );
        }
        let keepalive_timeout = self.duration(
            "server.keepalive_timeout",
            &s.keepalive_timeout,
            Duration::from_secs(75),
        );
        // Pingora keeps the keep-alive time in whole seconds (0 would mean "forever").
        if keepalive_timeout.subsec_nanos() != 0
            || !(1..=3600).contains(&keepalive_timeout.as_secs())
        {
            self.error(
                "server.keepalive_timeout",
                "must be whole seconds between 1s and 1h",
            );
        }
        let max_connections = self.count(
            "server.max_connections",
            s.max_connections,
            20_000,
            (1, 1_000_000),
        );
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
            request_header_timeout,
            keepalive_timeout,
            max_connections,
        })
    }

    /// A PEM file of CA certificates, every one of which must parse.
    pub(super) fn ca_file(&mut self, key: &str, value: &str) -> Option<CaCerts> {
        let file = self.string(key, value)?;
        match crate::certs::read_certificates(&self.path(&file)) {
            Ok(certs) => Some(Arc::new(certs.into_iter().map(|c| c.to_vec()).collect())),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
