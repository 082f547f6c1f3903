//! The serde mirror of the TOML file, exactly as an operator writes it.
//!
//! Nothing here is validated or interpreted: strings stay strings so that `validate` can report
//! every problem with its key path. Unknown keys are collected by the loader (serde_ignored), so
//! one run of `check` lists all of them instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub callback_path: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub cors_origins: Option<Vec<String>>,
    pub max_request_header_bytes: Option<i64>,
    pub threads: Option<i64>,
    pub upstream_connect_timeout: Option<String>,
    pub upstream_read_timeout: Option<String>,
    pub assertion_key_file: Option<String>,
    pub assertion_key_alg: Option<String>,
    pub upstream_ca_file: Option<String>,
    pub drain_timeout: Option<String>,
    pub case_insensitive_paths: Option<bool>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

/// `[session]`
#[derive(Debug, Default, Deserialize)]
pub struct RawSession {
    pub cookie_name: Option<String>,
    pub keys: Option<Vec<String>>,
    pub keys_file: Option<String>,
    pub secure: Option<bool>,
    pub same_site: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_lifetime: Option<String>,
    pub store: Option<String>,
    pub redis_url: Option<String>,
    pub redis_url_file: Option<String>,
    pub redis_key_prefix: Option<String>,
    pub redis_timeout: Option<String>,
    pub redis_ca_file: Option<String>,
    pub allow_insecure_redis: Option<bool>,
    pub max_login_states: Option<i64>,
    pub max_chunks: Option<i64>,
}

/// `[providers.NAME]`
#[derive(Debug, Default, Deserialize)]
pub struct RawProvider {
    pub issuer: Option<String>,
    pub discovery_url: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub private_key_file: Option<String>,
    pub private_key_alg: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub userinfo: Option<bool>,
    pub expires_in_unit: Option<String>,
    pub timeout: Option<String>,
    pub clock_skew: Option<String>,
    pub id_token_algs: Option<Vec<String>>,
    pub trusted_audiences: Option<Vec<String>>,
    pub jwks_min_refetch_interval: Option<String>,
    pub jwks_refresh_interval: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub extra_auth_params: Option<BTreeMap<String, String>>,
    pub audience: Option<String>,
    pub max_response_bytes: Option<i64>,
}

/// `[[route]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub upstream: Option<String>,
    pub provider: Option<String>,
    pub auth: Option<String>,
    pub strip_prefix: Option<bool>,
    pub allow_insecure_http: Option<bool>,
    pub ca_file: Option<String>,
    pub headers: Option<BTreeMap<String, OneOrMany>>,
    pub require: Option<BTreeMap<String, OneOrMany>>,
    pub bearer: Option<bool>,
    pub assertion: Option<bool>,
}

/// A claim path or a list of them; a required value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list, whatever form the file used.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
