//! What the fuzz targets share: one validated config (two providers, routes of every kind),
//! its cookie codec and route tables, a provider that has fetched nothing, and signing keys
//! whose public halves are the JWKS the JWT targets verify against. Built once per process.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use oidc_gateway::config::{parse_str, Config, ProviderConfig};
use oidc_gateway::metrics::Metrics;
use oidc_gateway::oidc::{Provider, ProviderJwks};
use oidc_gateway::routing::RouteTable;
use oidc_gateway::session::Codec;

/// Key files, a CA certificate and secret files; relative paths in configs resolve here.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// "Now" for every time check the targets make (seed tokens are issued just before it).
pub const NOW: u64 = 1_790_000_000;

/// The config the targets run with (also the first seed of `config_toml`).
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"
trusted_proxies = ["10.0.0.0/8", "192.0.2.10", "2001:db8::/32"]

[session]
cookie_name = "oidc_session"
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="]
max_chunks = 4
max_login_states = 3

[providers.cis2]
issuer = "https://connect.iam.spine2.ncrs.nhs.uk/token"
discovery_url = "https://connect.iam.spine2.ncrs.nhs.uk:4443/.well-known/openid-configuration"
client_id = "s6BhdRkqt3"
client_secret = "fuzz-client-secret"
audience = "https://api.example.org"
id_token_algs = ["RS256", "ES256"]
clock_skew = "60s"

[providers.dev]
issuer = "http://127.0.0.1:9000"
client_id = "gateway"
client_secret = "fuzz-client-secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
provider = "cis2"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Role = ["role.code", "role"]
X-Auth-Org = "org.code"
X-Auth-Selected-Role-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"

[[route]]
path = "/admin"
host = "admin.example.org"
upstream = "http://127.0.0.1:3001"
provider = "cis2"
[route.headers]
X-User = "sub"

[[route]]
path = "/public"
auth = "public"
upstream = "http://127.0.0.1:3002"
provider = "dev"

[[route]]
path = "/api"
bearer = true
strip_prefix = true
upstream = "http://127.0.0.1:3003"
provider = "cis2"

[[route]]
path = "/@team/café"
upstream = "http://127.0.0.1:3004"
provider = "dev"

[[route]]
path = "/ra"
upstream = "http://127.0.0.1:3005"
provider = "cis2"
[route.require]
"$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].activity_codes" = ["B0008"]
"#;

/// Everything built from [`CONFIG`] and the fixture keys.
pub struct Fixture {
    pub config: Config,
    pub codec: Codec,
    /// `cis2` (configured ID token algorithms, bearer audience) and `dev` (advertised ones).
    pub providers: Vec<Provider>,
    pub routes: RouteTable,
    /// The same routes, matched ignoring case.
    pub routes_folded: RouteTable,
    /// Public keys of [`Fixture::es256`] and of the RSA fixture key, as a provider serves them.
    pub jwks: Arc<ProviderJwks>,
    pub jwks_json: Value,
    es256: EncodingKey,
    es256_kid: String,
}

impl Fixture {
    pub fn cis2(&self) -> &ProviderConfig {
        &self.config.providers[0]
    }

    /// `claims` as an ES256 JWT with the fixture key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.es256_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.es256).expect("ES256 signing")
    }

    /// Raw JSON bytes as the payload of an ES256 JWT (any bytes: what a hostile provider could
    /// sign).
    pub fn sign_raw(&self, header: Option<&[u8]>, payload: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let default = json!({"alg": "ES256", "typ": "JWT", "kid": self.es256_kid}).to_string();
        let header = header.unwrap_or(default.as_bytes());
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.es256, Algorithm::ES256)
                .expect("ES256 signing");
        format!("{message}.{signature}")
    }
}

fn public_jwk(file: &str, alg: jwk::JwkAlg) -> (String, Value) {
    let pem = std::fs::read_to_string(Path::new(FIXTURES).join(file)).expect("fixture key");
    let jwk = jwk::public_jwk_from_pem(&pem, alg).expect("fixture public JWK");
    (pem, jwk)
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let config = parse_str(CONFIG, Some(Path::new(FIXTURES))).expect("fuzz config is valid");
    let codec = Codec::new(config.session.keys.expose());
    let metrics = Metrics::new();
    let providers = config
        .providers
        .iter()
        .map(|p| Provider::new(p.clone(), metrics.clone()).expect("provider"))
        .collect();
    let routes = RouteTable::new(config.routes.clone(), false);
    let routes_folded = RouteTable::new(config.routes.clone(), true);
    let (es_pem, es_jwk) = public_jwk("es256.pem", jwk::JwkAlg::ES256);
    let (_, rs_jwk) = public_jwk("rs256.pem", jwk::JwkAlg::RS256);
    let es256_kid = es_jwk["kid"].as_str().expect("kid").to_owned();
    let jwks_json = json!({ "keys": [es_jwk, rs_jwk] });
    let jwks = Arc::new(serde_json::from_value(jwks_json.clone()).expect("fixture JWKS"));
    Fixture {
        codec,
        providers,
        routes,
        routes_folded,
        jwks,
        jwks_json,
        es256: EncodingKey::from_ec_pem(es_pem.as_bytes()).expect("ES256 key"),
        es256_kid,
        config,
    }
});

/// `Set-Cookie` values turned into one `Cookie` header, as a browser sends them back.
pub fn cookie_header(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .filter_map(|s| cookie::Cookie::parse(s.as_str()).ok())
        .filter(|c| !c.value().is_empty())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A header value the gateway sends must be one `http` accepts.
pub fn assert_header_value(bytes: &[u8], what: &str) {
    assert!(
        http::HeaderValue::from_bytes(bytes).is_ok(),
        "{what} is not a valid header value: {:?}",
        String::from_utf8_lossy(bytes)
    );
}
