//! The gateway's configuration: typed, validated, holding ready-made values.
//!
//! This is the only configuration type the rest of the crate sees. `load` reads a TOML file,
//! `validate` turns the raw mirror into these structs and reports every problem at once.
//! Nothing downstream parses strings from the file again.

mod raw;
pub mod secrets;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use url::Url;

use crate::claims::ClaimPath;
pub use raw::schema;
pub use secrets::Secret;
pub use validate::{parse_str, Problem, Problems};

/// Validated configuration of one gateway process.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub session: SessionConfig,
    /// Providers in the order of their names; routes refer to them by index.
    pub providers: Vec<Arc<ProviderConfig>>,
    pub routes: Vec<Arc<RouteConfig>>,
    /// Warnings that do not stop the gateway (printed by `check` and logged by `run`).
    pub warnings: Vec<Problem>,
}

/// `[server]`
#[derive(Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The external origin, e.g. `https://apps.example.org` (no trailing slash, no path).
    pub public_origin: String,
    /// Whether the public origin is https (decides nothing about cookies; see `session.secure`).
    pub public_https: bool,
    pub callback_path: String,
    /// `public_origin + callback_path`.
    pub redirect_uri: String,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<IpNet>,
    /// Origins (scheme://host[:port]) allowed to read 401 answers cross-origin.
    pub cors_origins: Vec<String>,
    pub max_request_header_bytes: usize,
    pub threads: usize,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
    /// Signs `X-Auth-Assertion` on routes with `assertion = true`; served at `/oauth2/jwks.json`.
    pub assertion_key: Option<PrivateKey>,
    /// `upstream_ca_file`: CA certificates (DER) for https upstreams without their own
    /// `ca_file`; `None` means the system roots.
    pub upstream_ca: Option<CaCerts>,
    /// On SIGTERM, how long requests in flight may take to finish before the process exits.
    pub drain_timeout: Duration,
    /// Route matching ignores ASCII case (IIS-style upstreams serve `/RA` as `/ra`).
    pub case_insensitive_paths: bool,
    /// The longest wait for a whole request header on a new connection.
    pub request_header_timeout: Duration,
    /// The longest idle wait for the next request on a keep-alive connection (whole seconds).
    pub keepalive_timeout: Duration,
    /// Open client connections at most.
    pub max_connections: usize,
}

/// The certificates (DER) of a CA file, read and checked once.
pub type CaCerts = Arc<Vec<Vec<u8>>>;

/// Certificate and key for TLS on the proxy listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// `[admin]`
#[derive(Debug)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
}

/// Where sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreKind {
    /// The cookie is the session (sealed, chunked when large).
    Cookie,
    /// The cookie holds a sealed random id; the session is in Redis.
    Redis(Box<RedisConfig>),
}

/// A Redis deployment: where the server-side sessions (or the shared revocations) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs (or one `unix://` path in standalone mode): the server,
    /// the sentinels, or the cluster nodes to start from. URLs may hold credentials.
    pub nodes: Secret<Vec<String>>,
    /// ACL user and password on the Redis servers (besides any in the URLs).
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// Prepended to every key, so several gateways (or other apps) can share one Redis.
    pub key_prefix: String,
    /// Every Redis command (and connection attempt) fails after this long: fail closed, fast.
    pub timeout: Duration,
    /// PEM CA certificates that a `rediss://` server is verified against instead of the
    /// system roots.
    pub ca_file: Option<PathBuf>,
}

/// How a Redis deployment is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One server (`redis_url`, or `mode = "standalone"` with one node).
    Standalone,
    /// The nodes are sentinels; they name the current master of `master_name`.
    Sentinel {
        master_name: String,
        username: Option<String>,
        password: Option<Secret<String>>,
    },
    /// The nodes are cluster nodes; the client follows the cluster's slot map.
    Cluster,
}

/// With the cookie store: where back-channel logouts are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationKind {
    /// In this instance's memory, at most `capacity` entries.
    Memory,
    /// In Redis, shared by every instance (each keeps a copy in memory).
    Redis(Box<RedisConfig>),
}

/// `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `[session]`
#[derive(Debug)]
pub struct SessionConfig {
    pub cookie_name: String,
    /// AES-256 keys; the first encrypts, all decrypt.
    pub keys: Secret<Vec<[u8; 32]>>,
    pub secure: bool,
    pub same_site: SameSite,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub store: SessionStoreKind,
    /// Only with `SessionStoreKind::Cookie` (Redis sessions are deleted instead).
    pub revocation: RevocationKind,
    /// Most revocations kept in memory; beyond it older cookie sessions are all refused.
    pub max_revocations: usize,
    pub max_login_states: usize,
    pub max_chunks: usize,
}

/// How the gateway authenticates itself at the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    SecretBasic(Secret<String>),
    SecretPost(Secret<String>),
    PrivateKeyJwt(PrivateKey),
}

/// A private signing key (`private_key_jwt`, identity assertions), loaded and checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateKey {
    pub pem: Secret<String>,
    /// The configured algorithm, else the key's default (RS256; ES256 or ES384 by curve).
    pub alg: jwk::JwkAlg,
    /// Whether `alg` was configured. A client key without one signs with the first algorithm
    /// for its kind of key that the provider advertises (see `oidc::discovery`).
    pub alg_configured: bool,
    /// RFC 7638 thumbprint of the public key: what `keygen --jwk` printed as `kid`.
    pub kid: String,
}

/// Unit of `expires_in` in token responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresInUnit {
    Seconds,
    Milliseconds,
}

/// `[providers.NAME]`. `PartialEq` lets a reload keep a provider whose settings did not change
/// (with its loaded discovery and keys) instead of fetching them again.
#[derive(Debug, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    /// Exactly as configured: ID tokens and discovery must name this issuer.
    pub issuer: String,
    pub discovery_url: Url,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub userinfo: bool,
    pub expires_in_unit: ExpiresInUnit,
    pub timeout: Duration,
    pub clock_skew: Duration,
    /// `None`: the provider's advertised list minus `none` and HS*.
    pub id_token_algs: Option<Vec<String>>,
    pub trusted_audiences: Vec<String>,
    pub jwks_min_refetch_interval: Duration,
    pub jwks_refresh_interval: Duration,
    /// How often reachability is probed; zero: never.
    pub probe_interval: Duration,
    pub allow_insecure_http: bool,
    pub extra_auth_params: Vec<(String, String)>,
    /// The `aud` that access tokens sent as `Authorization: Bearer` must carry (bearer routes).
    pub audience: Option<String>,
    /// Largest discovery, JWKS, token or UserInfo response read from the provider.
    pub max_response_bytes: usize,
}

/// `auth` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
}

/// Where a route forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` to connect to.
    pub address: String,
    pub tls: bool,
    /// SNI / certificate name for https upstreams.
    pub sni: String,
    /// The route's `ca_file`: the only CAs its certificate may come from.
    pub ca: Option<CaCerts>,
}

/// One identity header and the claim paths it is taken from (first present wins).
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Lower-case, for matching.
    pub name: HeaderName,
    /// As configured (`X-Auth-Sub`): legacy apps sometimes compare header names by case.
    pub display: String,
    /// `display` as shared bytes: the upstream request takes it without a copy per request.
    pub spelling: bytes::Bytes,
    pub paths: Vec<ClaimPath>,
}

/// One `route.require` entry: the claim at `path` must hold one of `values`.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub path: ClaimPath,
    pub values: Vec<String>,
}

/// `[[route]]`
#[derive(Debug)]
pub struct RouteConfig {
    /// Position in the file (and in `Config::routes`).
    pub index: usize,
    /// Label for metrics and logs: `name`, else `host` + `path`.
    pub name: String,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Normalised prefix: starts with `/`, no trailing `/` except for the root.
    pub path: String,
    pub upstream: Upstream,
    /// Index into `Config::providers`.
    pub provider: usize,
    pub auth: AuthMode,
    pub strip_prefix: bool,
    pub headers: Vec<HeaderRule>,
    pub require: Vec<Requirement>,
    /// Accept `Authorization: Bearer <JWT>` access tokens of the route's provider.
    pub bearer: bool,
    /// Send `X-Auth-Assertion`, a short-lived JWT the gateway signs, to the upstream.
    pub assertion: bool,
    /// CORS for `server.cors_origins` is the gateway's: it answers preflights and sets the
    /// `Access-Control-Allow-*` headers of responses (see `cors.rs`).
    pub cors: bool,
    /// How the user must have authenticated (see `assurance.rs`).
    pub assurance: Assurance,
}

/// A route's authentication requirements (OpenID Connect `acr_values` and `max_age`, RFC 9470).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assurance {
    /// Accepted `acr` values; empty: any.
    pub acr: Vec<String>,
    /// The longest time since `auth_time`, in seconds.
    pub max_age: Option<u64>,
}

impl Assurance {
    pub fn is_required(&self) -> bool {
        !self.acr.is_empty() || self.max_age.is_some()
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems::single(Problem::new(
                "",
                None,
                format!("cannot read {}: {e}", path.display()),
            ))
        })?;
        parse_str(&text, path.parent())
    }
}
