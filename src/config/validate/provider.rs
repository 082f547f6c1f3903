//! `[providers.NAME]`: one OpenID provider and how the gateway authenticates to it.

use std::time::Duration;

use url::Url;

use super::Validator;
use crate::config::raw::RawProvider;
use crate::config::secrets::expand;
use crate::config::{ClientAuth, ExpiresInUnit, ProviderConfig};

impl Validator<'_> {
    pub(super) fn provider(&mut self, name: &str, p: &RawProvider) -> Option<ProviderConfig> {
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
        let probe_interval = self.duration(
            &k("probe_interval"),
            &p.probe_interval,
            Duration::from_secs(5),
        );
        if !probe_interval.is_zero()
            && !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&probe_interval)
        {
            self.error(
                &k("probe_interval"),
                "must be 0s (off) or between 1s and 1h",
            );
        }
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
            probe_interval,
            allow_insecure_http,
            extra_auth_params,
            audience,
        })
    }
}

const KNOWN_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];
