//! Inputs shared by the criterion benchmarks: the demo's routes (identity headers, rules,
//! JSONPath) over a validated config, and sessions as the callback builds them for the
//! development provider's users and for an NHS Spine ID token shaped like seed 000.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use devprovider::user;
use oidc_gateway::claims::{retain_for, Claims};
use oidc_gateway::config::{parse_str, Config, RouteConfig};
use oidc_gateway::session::cookies::write_session;
use oidc_gateway::session::{Codec, RequestCookies, Session};
use serde_json::{json, Value};

/// The demo's routes and session settings (config/demo.toml) on fixed loopback addresses.
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:4180"
public_url = "http://localhost:4180"

[session]
keys = ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]
secure = true

[providers.dev]
issuer = "http://127.0.0.1:4181"
client_id = "demo"
client_secret = "bench"

[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:4182"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:4182"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Email = "email"
X-Auth-Role = ["role.code", "role"]
X-Auth-Org = ["org.code", "org"]
X-Auth-Activities = "activities"
X-Auth-Selected-Role-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"

[[route]]
name = "registration-authority"
path = "/ra"
upstream = "http://127.0.0.1:4182"
[route.require]
activities = ["B0008"]
"#;

pub fn config() -> Config {
    parse_str(CONFIG, None).unwrap_or_else(|p| panic!("bench config: {p}"))
}

pub fn route<'c>(config: &'c Config, name: &str) -> &'c RouteConfig {
    config
        .routes
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.as_ref())
        .expect("route")
}

/// Every claim path the routes use: what a session keeps.
pub fn kept_paths(config: &Config) -> Vec<oidc_gateway::claims::ClaimPath> {
    let mut out = Vec::new();
    for r in &config.routes {
        for h in &r.headers {
            out.extend(h.paths.iter().cloned());
        }
        out.extend(r.require.iter().map(|q| q.path.clone()));
    }
    out
}

fn object(v: Value) -> Claims {
    match v {
        Value::Object(m) => m,
        _ => Claims::new(),
    }
}

/// The claims of the Spine ID token in seed 000 (role and org objects, activities, amr).
pub fn seed000_claims() -> Claims {
    object(json!({
        "device_id": "AMuvc7H9TlriCn1Rwjz5jWUAVvAqhymJ",
        "role": {"role_id": "240000115894",
                 "name": "\"Admin & Clerical\":\"Management - A & C\":\"Registration Authority Manager\"",
                 "code": "S0080:G0450:R5080"},
        "activities": ["B0005", "B0008"],
        "amr": ["pin", "legacy_signed_challenge"],
        "jti": "2b44cf3602d445e0909a808ad3194341",
        "name": "Seven User Mr",
        "s_hash": "LLJ6GrrF3GenakaKAyYBTg",
        "at_hash": "gNn8ijUTnwM34MxSFzBgYw",
        "sub": "uid=240000109896,ou=People,o=nhs",
        "org": {"name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14"},
        "iat": 1503584477,
        "iss": "https://connect.iam.spine2.ncrs.nhs.uk/token",
        "aud": "s6BhdRkqt3",
        "exp": 1503620477,
        "c_hash": "MPZJ1jWGHrGqL-fMHAEBMQ"
    }))
}

/// A JWT-shaped logout hint as large as an RS256 ID token carrying `claims`.
pub fn id_token_like(claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let sig = URL_SAFE_NO_PAD.encode([7u8; 256]);
    format!("{header}.{body}.{sig}")
}

/// A session as the callback writes it: kept claims, expiries, and the logout hint if asked.
pub fn session(config: &Config, full: &Claims, hint: bool) -> Session {
    let paths = kept_paths(config);
    let mut id_claims = full.clone();
    id_claims.insert("iss".into(), "http://127.0.0.1:4181".into());
    id_claims.insert("aud".into(), "demo".into());
    id_claims.insert("nonce".into(), "n-0S6_WzA2Mj".into());
    Session {
        provider: "dev".into(),
        claims: retain_for(full, paths.iter()),
        created: 4_000_000_000,
        last_seen: 4_000_000_000,
        expires: 4_000_000_000 + 8 * 3600,
        tokens_expire: Some(4_000_000_000 + 300),
        refresh_token: None,
        id_token_hint: hint.then(|| id_token_like(&id_claims)),
        sid: Some("0b3c1f6e-5a8d-4c2e-9f7a-2d6e8b1a4c30".into()),
        id_token_expires: None,
    }
}

/// The named test sessions: (label, session).
pub fn sessions(config: &Config) -> Vec<(&'static str, Session)> {
    let claims = |id: &str| user(id).expect("dev user").claims.clone();
    let mut small = Claims::new();
    small.insert("sub".into(), "910000000002".into());
    small.insert("name".into(), "Bob Builder".into());
    let mut big = session(config, &claims("big"), true);
    if sealed_cookie_header(config, &big).is_none() {
        // As the callback does: a session too large with the hint keeps no hint.
        big.id_token_hint = None;
    }
    vec![
        ("small", session(config, &small, false)),
        ("alice+hint", session(config, &claims("alice"), true)),
        ("seed000+hint", session(config, &seed000_claims(), true)),
        ("big", big),
    ]
}

/// The `Cookie` header a browser sends back for `session`, or `None` when it does not fit.
pub fn sealed_cookie_header(config: &Config, session: &Session) -> Option<String> {
    let codec = Codec::new(config.session.keys.expose());
    let set = write_session(
        &config.session,
        &codec,
        session,
        &RequestCookies::default(),
        4_000_000_000,
    )
    .ok()?;
    Some(
        set.iter()
            .filter_map(|c| cookie::Cookie::parse(c.as_str()).ok())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; "),
    )
}
