//! The serde mirror of the TOML file, exactly as an operator writes it.
//!
//! Nothing here is validated or interpreted: strings stay strings so that `validate` can report
//! every problem with its key path. Unknown keys are collected by the loader (serde_ignored), so
//! one run of `check` lists all of them instead of stopping at the first.
//!
//! The same types describe the file as a JSON Schema (`oidc-gateway schema`,
//! docs/config.schema.json), so editors complete and check keys with the descriptions below.
//! The schema is stricter than serde here (closed tables, enumerated values, duration syntax) but
//! never stricter than `check`. Fields with a schema of their own (`schema_with`) carry
//! `#[serde(default)]`, which changes nothing for serde but keeps them optional in the schema.

use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

/// oidc-gateway configuration (`/etc/oidc-gateway/gateway.toml`). Any string may contain
/// `${ENV_VAR}`; every secret has a `*_file` twin.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Config")]
pub struct RawConfig {
    /// The proxy listener and what it believes.
    #[serde(default)]
    pub server: RawServer,
    /// The admin listener: metrics and health.
    #[serde(default)]
    pub admin: RawAdmin,
    /// Session cookies, keys and the session store.
    #[serde(default)]
    pub session: RawSession,
    /// OpenID providers, by a NAME of your choosing (`[providers.cis2]`).
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Routes (`[[route]]`): host and path prefix, upstream, provider, headers and rules.
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// `[server]`: the proxy listener.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Server")]
pub struct RawServer {
    /// Address of the proxy listener, `ip:port`. Default: "0.0.0.0:8080".
    pub listen: Option<String>,
    /// The external origin, `http(s)://host[:port]` without path, query or user. Required.
    /// redirect_uri = public_url + callback_path.
    #[schemars(required)]
    pub public_url: Option<String>,
    /// Where the provider sends the browser back. Default: "/oauth2/callback".
    pub callback_path: Option<String>,
    /// PEM certificate chain: the listener terminates TLS (with `tls_key_file`).
    /// SIGHUP reads it again.
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<String>,
    /// CIDRs or IPs whose X-Forwarded-* / X-Original-URI headers are believed, and the
    /// only peers forward-auth (/oauth2/auth) answers. Default: [].
    pub trusted_proxies: Option<Vec<String>>,
    /// Origins (besides the gateway's own) that may read a 401 answer cross-origin.
    pub cors_origins: Option<Vec<String>>,
    /// Request line and headers larger than this get 431. Default: 32768.
    #[schemars(range(min = 1024, max = 1048576))]
    pub max_request_header_bytes: Option<i64>,
    /// Proxy worker threads. Default: the number of CPUs.
    #[schemars(range(min = 1, max = 256))]
    pub threads: Option<i64>,
    /// Connecting to an upstream. Default: "5s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub upstream_connect_timeout: Option<String>,
    /// Waiting for an upstream's answer; past it the client gets 504. Default: "60s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub upstream_read_timeout: Option<String>,
    /// PEM private key that signs X-Auth-Assertion (routes with `assertion = true`).
    pub assertion_key_file: Option<String>,
    /// Algorithm of the identity assertion. Default: ES256 for an EC key, else RS256.
    #[serde(default)]
    #[schemars(schema_with = "signing_alg")]
    pub assertion_key_alg: Option<String>,
    /// PEM CA certificates that https:// upstreams are verified against (routes without
    /// their own `ca_file`). Default: the system roots.
    pub upstream_ca_file: Option<String>,
    /// On SIGTERM, how long requests in flight may take to finish (at most 1h). Default: "10s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub drain_timeout: Option<String>,
    /// Route matching ignores ASCII case (for IIS and the like). Default: false.
    pub case_insensitive_paths: Option<bool>,
    /// How long a client may take to send a whole request header, from connecting (or, on a
    /// keep-alive connection, from the end of the previous answer plus `keepalive_timeout`);
    /// past it the connection is closed. Default: "10s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub request_header_timeout: Option<String>,
    /// How long an idle keep-alive connection waits for its next request (whole seconds, 1s to
    /// 1h). Default: "75s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub keepalive_timeout: Option<String>,
    /// Open client connections at most; more are closed at once and counted in
    /// `oidc_gateway_connections_dropped_total{reason="max_connections"}`. Default: 20000.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<i64>,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Admin")]
pub struct RawAdmin {
    /// The admin listener (/metrics, /healthz, /readyz), `ip:port`; none without it.
    /// It has no authentication: bind it to loopback or a private network.
    pub listen: Option<String>,
}

/// `[session]`: session cookies, keys and store.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Session")]
pub struct RawSession {
    /// Session cookie name (letters, digits, `_`, `-`); also the prefix of chunk and
    /// login-state cookies. Default: "oidc_session".
    #[schemars(regex(pattern = r"^([A-Za-z0-9_-]+|.*\$\{[^}]+\}.*)$"))]
    pub cookie_name: Option<String>,
    /// Base64 32-byte keys from `oidc-gateway keygen`; the first encrypts, all decrypt
    /// (rotation). Required, or `keys_file`.
    pub keys: Option<Vec<String>>,
    /// The same keys, one per line, from a file (systemd LoadCredential=).
    pub keys_file: Option<String>,
    /// The Secure cookie attribute (HttpOnly is always set). Default: true.
    pub secure: Option<bool>,
    /// The SameSite attribute. Default: "lax" (keep it: the provider's redirect back is a
    /// cross-site navigation).
    #[serde(default)]
    #[schemars(schema_with = "same_site")]
    pub same_site: Option<String>,
    /// A session not used for this long ends. Default: "30m".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub idle_timeout: Option<String>,
    /// A session ends this long after login, used or not. Default: "8h".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub max_lifetime: Option<String>,
    /// Where sessions live: the encrypted cookie itself, or Redis. Default: "cookie".
    #[serde(default)]
    #[schemars(schema_with = "store")]
    pub store: Option<String>,
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` or `unix:///path`.
    /// Required with store = "redis" (or `redis_url_file`).
    pub redis_url: Option<String>,
    /// The Redis URL (with its password) from a file.
    pub redis_url_file: Option<String>,
    /// Prefix of every Redis key the gateway writes. Default: "oidc-gateway:".
    pub redis_key_prefix: Option<String>,
    /// Every Redis command fails after this long (1ms..30s). Default: "500ms".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub redis_timeout: Option<String>,
    /// PEM CA certificates that a rediss:// server must chain to. Default: the system roots.
    pub redis_ca_file: Option<String>,
    /// Allow redis:// (no TLS) to a host that is not loopback. Default: false.
    pub allow_insecure_redis: Option<bool>,
    /// A Redis deployment (standalone, Sentinel or Cluster); `redis_url` is the shorthand for
    /// a standalone server. Used by store = "redis" and by revocation = "redis".
    pub redis: Option<RawRedis>,
    /// With store = "cookie": where back-channel logouts are recorded until the sessions they
    /// end could have expired. "memory" (this instance only) or "redis" (shared by every
    /// instance through the Redis of `[session.redis]` / `redis_url`). Default: "memory".
    #[serde(default)]
    #[schemars(schema_with = "revocation")]
    pub revocation: Option<String>,
    /// Most revoked provider sessions and users this instance remembers (10..10000000). When
    /// more arrive, every older cookie session is refused (fail closed). Default: 100000.
    #[schemars(range(min = 10, max = 10_000_000))]
    pub max_revocations: Option<i64>,
    /// Login-state cookies (logins in progress) per browser. Default: 5.
    #[schemars(range(min = 1, max = 20))]
    pub max_login_states: Option<i64>,
    /// Most cookies (about 3800 bytes each) one session may use. Default: 4.
    #[schemars(range(min = 1, max = 8))]
    pub max_chunks: Option<i64>,
}

/// `[session.redis]`: where Redis is and how to reach it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Redis")]
pub struct RawRedis {
    /// "standalone" (one server), "sentinel" (nodes are the sentinels, which name the master)
    /// or "cluster" (nodes are some of the cluster's nodes). Default: "standalone".
    #[serde(default)]
    #[schemars(schema_with = "redis_mode")]
    pub mode: Option<String>,
    /// `redis://host:port` or `rediss://host:port` (TLS) URLs: the server (standalone, exactly
    /// one), the sentinels, or cluster nodes to discover the cluster from.
    pub nodes: Option<Vec<String>>,
    /// Sentinel only (required there): the name the sentinels monitor the master under.
    pub master_name: Option<String>,
    /// ACL user on the Redis servers.
    pub username: Option<String>,
    /// Password on the Redis servers (or `password_file`).
    pub password: Option<String>,
    /// File holding the password on the Redis servers.
    pub password_file: Option<String>,
    /// Sentinel only: ACL user on the sentinels.
    pub sentinel_username: Option<String>,
    /// Sentinel only: password on the sentinels (or `sentinel_password_file`).
    pub sentinel_password: Option<String>,
    /// Sentinel only: file holding the password on the sentinels.
    pub sentinel_password_file: Option<String>,
}

/// `[providers.NAME]`: one OpenID provider.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Provider")]
pub struct RawProvider {
    /// The issuer exactly as the provider writes it in discovery and ID tokens. Required.
    #[schemars(required)]
    pub issuer: Option<String>,
    /// Where discovery is served, when not under the issuer (NHS Spine).
    /// Default: issuer + "/.well-known/openid-configuration".
    pub discovery_url: Option<String>,
    /// The client id registered at the provider. Required.
    #[schemars(required)]
    pub client_id: Option<String>,
    /// How the gateway authenticates at the token endpoint. Default: "client_secret_basic".
    #[serde(default)]
    #[schemars(schema_with = "client_auth")]
    pub client_auth: Option<String>,
    /// Client secret for client_secret_basic / client_secret_post (or `client_secret_file`).
    pub client_secret: Option<String>,
    /// The client secret from a file (systemd LoadCredential=).
    pub client_secret_file: Option<String>,
    /// PEM private key for private_key_jwt (`oidc-gateway keygen --jwk --out FILE`).
    pub private_key_file: Option<String>,
    /// Algorithm of the client assertion. Default: ES256 for an EC key, else RS256.
    #[serde(default)]
    #[schemars(schema_with = "signing_alg")]
    pub private_key_alg: Option<String>,
    /// Scopes to request; must include "openid". Default: ["openid", "profile", "email"].
    pub scopes: Option<Vec<String>>,
    /// Also call UserInfo at login and merge its claims (its sub must match). Default: false.
    pub userinfo: Option<bool>,
    /// The unit of `expires_in` in token responses (some brokers send ms). Default: "s".
    #[serde(default)]
    #[schemars(schema_with = "expires_in_unit")]
    pub expires_in_unit: Option<String>,
    /// Limit for every call to the provider. Default: "10s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub timeout: Option<String>,
    /// Tolerance for exp, iat and nbf (at most 10m). Default: "60s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub clock_skew: Option<String>,
    /// Accepted ID token algorithms. Default: the provider's list minus none and HS*.
    pub id_token_algs: Option<Vec<String>>,
    /// `aud` values accepted besides client_id (azp must then be client_id). Default: [].
    pub trusted_audiences: Option<Vec<String>>,
    /// An unknown `kid` refetches the JWKS at most this often. Default: "30s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub jwks_min_refetch_interval: Option<String>,
    /// Discovery and JWKS are refreshed this often. Default: "1h".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub jwks_refresh_interval: Option<String>,
    /// How often the provider's JWKS URI is asked whether the provider answers (a GET, its body
    /// unread beyond `max_response_bytes`); while it does not, new logins get 503 instead of a
    /// redirect to it. "0s" turns the probe off (then only failed calls tell). Default: "5s".
    #[serde(default)]
    #[schemars(schema_with = "duration")]
    pub probe_interval: Option<String>,
    /// Allow http:// issuer, discovery and endpoints on non-loopback hosts. Default: false.
    pub allow_insecure_http: Option<bool>,
    /// Extra query parameters on the authorization request (prompt, acr_values, ...).
    pub extra_auth_params: Option<BTreeMap<String, String>>,
    /// The `aud` that bearer access tokens must carry on this provider's `bearer = true` routes.
    pub audience: Option<String>,
    /// The largest answer read from the provider. Default: 1048576.
    #[schemars(range(min = 4096, max = 67108864))]
    pub max_response_bytes: Option<i64>,
}

/// `[[route]]`: one route.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Route")]
pub struct RawRoute {
    /// Label in metrics and logs. Default: host + path, or path.
    pub name: Option<String>,
    /// Match only this Host (case-insensitive, port ignored). Default: any host.
    pub host: Option<String>,
    /// Prefix on whole path segments; the longest match wins. Default: "/".
    pub path: Option<String>,
    /// `http(s)://host[:port]` the route forwards to. Required.
    #[schemars(required)]
    pub upstream: Option<String>,
    /// The provider NAME (a key of [providers]); required when there are several.
    pub provider: Option<String>,
    /// "required": a session is needed; "public": no session, no identity headers.
    /// Default: "required".
    #[serde(default)]
    #[schemars(schema_with = "auth")]
    pub auth: Option<String>,
    /// Forward without the route's prefix (/api/x -> /x). Default: false.
    pub strip_prefix: Option<bool>,
    /// Allow an http:// upstream on a non-loopback host. Default: false.
    pub allow_insecure_http: Option<bool>,
    /// PEM CA certificates this https:// upstream must chain to. Default: server.upstream_ca_file.
    pub ca_file: Option<String>,
    /// Identity headers sent upstream: header name = claim path, or a list of paths (first
    /// present wins). Default: X-Auth-Sub, -Name, -Email, -Role, -Org, -Activities.
    pub headers: Option<BTreeMap<String, OneOrMany>>,
    /// Every key (a claim path) must match; a key matches when the claim has any listed value.
    pub require: Option<BTreeMap<String, OneOrMany>>,
    /// Also accept `Authorization: Bearer <JWT>` access tokens of the route's provider.
    pub bearer: Option<bool>,
    /// Send X-Auth-Assertion, a short-lived JWT signed with server.assertion_key_file.
    pub assertion: Option<bool>,
    /// The gateway answers CORS preflights (OPTIONS) from server.cors_origins and sets the CORS
    /// headers of this route's responses itself. Default: false.
    pub cors: Option<bool>,
    /// The session's `acr` must be one of these (e.g. CIS2's "AAL3_ANY"); else the browser
    /// logs in again with `acr_values`, an API client gets 401 insufficient_user_authentication.
    pub require_acr: Option<Vec<String>>,
    /// The user must have authenticated (`auth_time`) at most this long ago, e.g. "15m"; else
    /// the browser logs in again with `max_age`.
    pub max_auth_age: Option<String>,
}

/// A claim path or a list of them; a required value or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OneOrMany")]
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

/// The JSON Schema of the whole file.
pub fn schema() -> Schema {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    // TOML has no null: an absent key is how a file leaves a setting out.
    settings
        .transforms
        .push(Box::new(schemars::transform::RecursiveTransform(
            without_null,
        )));
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    schema.insert("title".into(), "oidc-gateway configuration".into());
    schema
}

/// Takes `null` out of what `Option` fields allow.
fn without_null(schema: &mut Schema) {
    if let Some(serde_json::Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".into(), only);
        }
    }
    if let Some(serde_json::Value::Array(options)) = schema.get_mut("anyOf") {
        options.retain(|o| o != &serde_json::json!({ "type": "null" }));
    }
}

/// `${NAME}`: any string may come from the environment, so fixed values also allow it.
const ENV_REFERENCE: &str = r"\$\{[^}]+\}";

/// One of `values`, or a value from the environment.
fn one_of(values: &[&str]) -> Schema {
    json_schema!({
        "type": "string",
        "anyOf": [{ "enum": values }, { "pattern": ENV_REFERENCE }]
    })
}

fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "A duration: numbers with units, e.g. \"500ms\", \"90s\", \"1.5m\", \"8h\", \"1h 30m\".",
        "anyOf": [
            { "pattern": r"^\s*(0|([0-9]+(\.[0-9]*)?\s*[A-Za-zµ]+\s*)+)\s*$" },
            { "pattern": ENV_REFERENCE }
        ]
    })
}

fn signing_alg(_: &mut SchemaGenerator) -> Schema {
    one_of(&["RS256", "ES256", "PS256"])
}

fn same_site(_: &mut SchemaGenerator) -> Schema {
    one_of(&["lax", "strict", "none", "Lax", "Strict", "None"])
}

fn store(_: &mut SchemaGenerator) -> Schema {
    one_of(&["cookie", "redis"])
}

fn revocation(_: &mut SchemaGenerator) -> Schema {
    one_of(&["memory", "redis"])
}

fn redis_mode(_: &mut SchemaGenerator) -> Schema {
    one_of(&["standalone", "sentinel", "cluster"])
}

fn client_auth(_: &mut SchemaGenerator) -> Schema {
    one_of(&[
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ])
}

fn expires_in_unit(_: &mut SchemaGenerator) -> Schema {
    one_of(&["s", "ms"])
}

fn auth(_: &mut SchemaGenerator) -> Schema {
    one_of(&["required", "public"])
}
