//! `[[route]]`: what is proxied where, which identity headers it gets, and checks across routes.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use url::Url;

use super::Validator;
use crate::claims::ClaimPath;
use crate::config::raw::{OneOrMany, RawConfig, RawRoute};
use crate::config::secrets::expand;
use crate::config::{Assurance, AuthMode, HeaderRule, Requirement, RouteConfig, Upstream};

const DEFAULT_HEADERS: &[(&str, &[&str])] = &[
    ("x-auth-sub", &["sub"]),
    ("x-auth-name", &["name"]),
    ("x-auth-email", &["email"]),
    ("x-auth-role", &["role.code", "role"]),
    ("x-auth-org", &["org.code", "org"]),
    ("x-auth-activities", &["activities"]),
];

impl Validator<'_> {
    pub(super) fn route(
        &mut self,
        i: usize,
        r: &RawRoute,
        providers: &[String],
    ) -> Option<RouteConfig> {
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
                        spelling: display_name(name).into(),
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
        let mut assurance = Assurance::default();
        for (j, acr) in r.require_acr.iter().flatten().enumerate() {
            let key = k(&format!("require_acr[{j}]"));
            match self.string(&key, acr) {
                // Sent as one space-separated `acr_values` and in WWW-Authenticate's quotes.
                Some(a)
                    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b'"') =>
                {
                    assurance.acr.push(a)
                }
                Some(a) => self.error(
                    &key,
                    format!("{a:?} is not an acr value (printable ASCII, no spaces or quotes)"),
                ),
                None => {}
            }
        }
        if r.require_acr.as_ref().is_some_and(Vec::is_empty) {
            self.error(&k("require_acr"), "needs at least one value");
        }
        if r.max_auth_age.is_some() {
            let age = self.duration(&k("max_auth_age"), &r.max_auth_age, Duration::ZERO);
            if age.as_secs() == 0 {
                self.error(&k("max_auth_age"), "must be at least one second");
            }
            assurance.max_age = Some(age.as_secs());
        }
        if auth == AuthMode::Public && assurance.is_required() {
            let field = if assurance.acr.is_empty() {
                "max_auth_age"
            } else {
                "require_acr"
            };
            self.error(&k(field), "has no effect on a route with auth = \"public\"");
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
            cors: r.cors.unwrap_or(false),
            assurance,
        })
    }

    /// Route options that need something configured elsewhere: `bearer` needs the provider's
    /// `audience`, `assertion` needs `server.assertion_key_file`, `cors` needs
    /// `server.cors_origins`.
    pub(super) fn check_route_needs(&mut self, raw: &RawConfig) {
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
        let origins = raw.server.cors_origins.as_deref().unwrap_or_default();
        if let Some(i) = raw.route.iter().position(|r| r.cors == Some(true)) {
            if origins.is_empty() {
                self.error(
                    &format!("route[{i}].cors"),
                    "needs server.cors_origins (the origins whose pages may call this route)",
                );
            }
            // A page served over plain http can be rewritten by anyone on its network, and on
            // a CORS route it would act with the user's session.
            for (j, o) in origins.iter().enumerate() {
                let o = &o.to_ascii_lowercase();
                let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|l| o == l || o.strip_prefix(l).is_some_and(|rest| rest.starts_with(':')));
                if o.starts_with("http://") && !loopback {
                    self.error(
                        &format!("server.cors_origins[{j}]"),
                        format!("{o:?} is not https, and route[{i}] sets cors = true (its pages would call the route with the user's session)"),
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
            spelling: bytes::Bytes::copy_from_slice(name.as_bytes()),
            paths: parsed,
        })
    }

    /// Two routes on the same host and path (in any case, when matching ignores case) would
    /// leave the choice between them to the order of the file.
    pub(super) fn check_route_overlap(&mut self, routes: &[Option<RouteConfig>], fold_case: bool) {
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
