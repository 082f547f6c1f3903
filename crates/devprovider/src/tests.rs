//! Integration tests of the development provider over real loopback HTTP, driven by reqwest
//! with redirects off, the way the gateway will talk to it.

use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::client_auth::JWT_BEARER;
use super::tokens::{at_hash, random_token, s256};
use super::*;
use jwk::JwkAlg;

const REDIRECT: &str = "https://rp.example/oauth2/callback?x=1";
const LOGGED_OUT: &str = "https://rp.example/bye";
const BASIC_SECRET: &str = "s3cret:with&odd+chars é";

/// How a test client authenticates at the token endpoint.
#[derive(Clone)]
enum Auth {
    Basic(&'static str, String),
    Post(&'static str, String),
    Jwt(&'static str, String, JwkAlg, String),
}

impl Auth {
    fn client_id(&self) -> &'static str {
        match self {
            Auth::Basic(id, _) | Auth::Post(id, _) | Auth::Jwt(id, ..) => id,
        }
    }
}

struct Harness {
    http: reqwest::Client,
    op: DevProvider,
    basic: Auth,
    post: Auth,
    jwt_es: Auth,
    jwt_ps: Auth,
}

async fn harness(issuer_path: &str) -> Harness {
    let es = jwk::generate(JwkAlg::ES256).unwrap();
    let ps = jwk::generate(JwkAlg::PS256).unwrap();
    let opts = DevProviderOptions {
        issuer_path: issuer_path.into(),
        clients: vec![
            DevClient::new(
                "basic-rp",
                DevClientAuth::SecretBasic(BASIC_SECRET.into()),
                REDIRECT,
            )
            .with_post_logout_redirect_uri(LOGGED_OUT),
            DevClient::new(
                "post-rp",
                DevClientAuth::SecretPost("post-secret".into()),
                REDIRECT,
            ),
            DevClient::new(
                "jwt-es-rp",
                DevClientAuth::PrivateKeyJwt(jwk::public_jwks(es.public_jwk.clone())),
                REDIRECT,
            ),
            DevClient::new(
                "jwt-ps-rp",
                DevClientAuth::PrivateKeyJwt(jwk::public_jwks(ps.public_jwk.clone())),
                REDIRECT,
            ),
        ],
        ..DevProviderOptions::default()
    };
    let op = DevProvider::start(opts).await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Harness {
        http,
        op,
        basic: Auth::Basic("basic-rp", BASIC_SECRET.into()),
        post: Auth::Post("post-rp", "post-secret".into()),
        jwt_es: Auth::Jwt("jwt-es-rp", es.private_pem, JwkAlg::ES256, es.kid),
        jwt_ps: Auth::Jwt("jwt-ps-rp", ps.private_pem, JwkAlg::PS256, ps.kid),
    }
}

/// What the RP keeps between the authorize redirect and the callback.
struct Flow {
    code: String,
    verifier: String,
    nonce: String,
}

impl Harness {
    fn authorize_query(
        &self,
        client_id: &str,
        challenge: &str,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", client_id.into()),
            ("redirect_uri", REDIRECT.into()),
            ("scope", "openid profile email".into()),
            ("state", "st&te=1 é".into()),
            ("nonce", nonce.into()),
            ("code_challenge", challenge.into()),
            ("code_challenge_method", "S256".into()),
        ]
    }

    /// Authorize with `login_hint`, expecting an immediate redirect with a code.
    async fn login(&self, client_id: &str, user: &str) -> Flow {
        let verifier = random_token();
        let nonce = random_token();
        let mut q = self.authorize_query(client_id, &s256(&verifier), &nonce);
        q.push(("login_hint", user.into()));
        let resp = self
            .http
            .get(self.op.authorization_endpoint())
            .query(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let params = location_params(&resp);
        assert_eq!(params["state"], "st&te=1 é");
        assert_eq!(params["x"], "1", "the redirect URI's own query is kept");
        Flow {
            code: params["code"].clone(),
            verifier,
            nonce,
        }
    }

    async fn token(&self, auth: &Auth, form: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut req = self.http.post(self.op.token_endpoint());
        match auth {
            Auth::Basic(id, secret) => {
                // RFC 6749 §2.3.1: form-urlencode before Basic.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(id), Some(enc(secret)));
            }
            Auth::Post(id, secret) => {
                form.push(("client_id".into(), (*id).into()));
                form.push(("client_secret".into(), secret.clone()));
            }
            Auth::Jwt(id, pem, alg, kid) => {
                form.push(("client_id".into(), (*id).into()));
                form.push(("client_assertion_type".into(), JWT_BEARER.into()));
                form.push((
                    "client_assertion".into(),
                    self.assertion(id, pem, *alg, kid, &self.op.token_endpoint()),
                ));
            }
        }
        req.form(&form).send().await.unwrap()
    }

    fn assertion(&self, client_id: &str, pem: &str, alg: JwkAlg, kid: &str, aud: &str) -> String {
        let key = match alg {
            JwkAlg::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let mut header = Header::new(alg.jsonwebtoken_alg());
        header.kid = Some(kid.into());
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"iss": client_id, "sub": client_id, "aud": aud,
                            "jti": random_token(), "iat": now, "exp": now + 60});
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    async fn exchange(&self, auth: &Auth, flow: &Flow) -> reqwest::Response {
        self.token(
            auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &flow.code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &flow.verifier),
            ],
        )
        .await
    }

    /// Verifies an ID token the way a relying party does, against the served JWKS.
    async fn verify_id_token(&self, id_token: &str, client_id: &str) -> Value {
        let jwks: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(self.op.jwks_uri())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let kid = header.kid.expect("ID token has a kid");
        let jwk = jwks.find(&kid).expect("kid is in the JWKS");
        let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
        v.leeway = 0;
        v.set_audience(&[client_id]);
        v.set_issuer(&[&self.op.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<Value>(id_token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims
    }

    async fn userinfo(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.op.userinfo_endpoint())
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }
}

fn location_params(resp: &reqwest::Response) -> HashMap<String, String> {
    let loc = resp.headers()["location"].to_str().unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn body_json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test]
async fn code_flow_with_every_client_auth_method() {
    let h = harness("").await;

    let resp = h.http.get(&h.op.discovery_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let disc = body_json(resp).await;
    assert_eq!(disc["issuer"], h.op.issuer);
    assert_eq!(disc["token_endpoint"], h.op.token_endpoint());
    assert_eq!(disc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        disc["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert!(disc["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("nhsid_nrbac_roles")));
    assert_eq!(h.op.controls.discovery_fetches(), 1);

    for auth in [&h.basic, &h.post, &h.jwt_es, &h.jwt_ps] {
        let client_id = auth.client_id();
        let flow = h.login(client_id, "alice").await;
        let resp = h.exchange(auth, &flow).await;
        assert_eq!(resp.status(), StatusCode::OK, "{client_id}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let tokens = body_json(resp).await;
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 300);
        assert_eq!(tokens["scope"], "openid profile email");
        let access = tokens["access_token"].as_str().unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();

        let claims = h.verify_id_token(id_token, client_id).await;
        assert_eq!(claims["aud"], client_id, "aud is a plain string");
        assert_eq!(claims["nonce"], flow.nonce.as_str());
        assert_eq!(claims["at_hash"], at_hash(access));
        assert_eq!(claims["sub"], "910000000001");
        assert_eq!(claims["org"]["code"], "Q14");
        assert_eq!(claims["role"]["code"], "S0080:G0450:R8000");
        assert!(claims.get("azp").is_none());
        assert!(claims["sid"].is_string() && claims["auth_time"].is_u64());

        let resp = h.userinfo(access).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let info = body_json(resp).await;
        assert_eq!(info["sub"], claims["sub"]);
        assert_eq!(info["name"], "Alice Example");
        assert_eq!(info["activities"], json!(["B0005", "B0008"]));

        // Refresh: new tokens, the old refresh token is spent.
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let resp = h.token(auth, &form).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let refreshed = body_json(resp).await;
        assert_ne!(refreshed["access_token"], tokens["access_token"]);
        assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
        let new_claims = h
            .verify_id_token(refreshed["id_token"].as_str().unwrap(), client_id)
            .await;
        assert_eq!(new_claims["sub"], claims["sub"]);
        assert_eq!(new_claims["auth_time"], claims["auth_time"]);
        let resp = h.token(auth, &form).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(resp).await["error"], "invalid_grant");
    }

    let records = h.op.controls.token_requests();
    assert_eq!(records.len(), 12);
    assert_eq!(records[0].auth_method, ClientAuthMethod::SecretBasic);
    assert!(records[0].authorization_header);
    assert!(!records[0].form_fields.contains(&"client_secret".to_owned()));
    assert_eq!(records[3].auth_method, ClientAuthMethod::SecretPost);
    assert_eq!(records[6].auth_method, ClientAuthMethod::PrivateKeyJwt);
    assert!(!records[6].authorization_header);
    assert_eq!(
        records[6].form_fields,
        [
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(records[7].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(h.op.controls.userinfo_calls(), 4);
}

#[tokio::test]
async fn codes_and_pkce_are_enforced() {
    let h = harness("").await;

    // A replayed code is refused.
    let flow = h.login("post-rp", "bob").await;
    assert_eq!(h.exchange(&h.post, &flow).await.status(), StatusCode::OK);
    let resp = h.exchange(&h.post, &flow).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(resp).await["error"], "invalid_grant");

    // A wrong code_verifier is refused (and spends the code).
    let mut flow = h.login("post-rp", "bob").await;
    let good = std::mem::replace(&mut flow.verifier, random_token());
    let resp = h.exchange(&h.post, &flow).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(resp).await["error"], "invalid_grant");
    flow.verifier = good;
    assert_eq!(
        h.exchange(&h.post, &flow).await.status(),
        StatusCode::BAD_REQUEST
    );

    // redirect_uri must match the authorize request.
    let flow = h.login("post-rp", "bob").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", flow.code.as_str()),
        ("redirect_uri", "https://rp.example/oauth2/callback"),
        ("code_verifier", flow.verifier.as_str()),
    ];
    assert_eq!(
        h.token(&h.post, &form).await.status(),
        StatusCode::BAD_REQUEST
    );

    // A code issued to one client cannot be redeemed by another.
    let flow = h.login("post-rp", "bob").await;
    let resp = h.exchange(&h.basic, &flow).await;
    assert_eq!(body_json(resp).await["error"], "invalid_grant");
}

#[tokio::test]
async fn client_authentication_is_strict() {
    let h = harness("").await;
    let expect_401 = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body_json(resp).await["error"], "invalid_client");
    };
    // Wrong secret, wrong method for the registration, unknown client.
    let flow = h.login("basic-rp", "alice").await;
    expect_401(
        h.exchange(&Auth::Basic("basic-rp", "nope".into()), &flow)
            .await,
    )
    .await;
    let flow = h.login("basic-rp", "alice").await;
    expect_401(
        h.exchange(&Auth::Post("basic-rp", BASIC_SECRET.into()), &flow)
            .await,
    )
    .await;
    let flow = h.login("post-rp", "alice").await;
    expect_401(
        h.exchange(&Auth::Basic("post-rp", "post-secret".into()), &flow)
            .await,
    )
    .await;
    let flow = h.login("post-rp", "alice").await;
    expect_401(h.exchange(&Auth::Post("ghost", "x".into()), &flow).await).await;

    // private_key_jwt: a key of another client, a replayed jti, a wrong audience.
    let Auth::Jwt(_, ps_pem, _, ps_kid) = h.jwt_ps.clone() else {
        unreachable!()
    };
    let flow = h.login("jwt-es-rp", "alice").await;
    expect_401(
        h.exchange(
            &Auth::Jwt("jwt-es-rp", ps_pem.clone(), JwkAlg::PS256, ps_kid.clone()),
            &flow,
        )
        .await,
    )
    .await;

    let Auth::Jwt(_, es_pem, _, es_kid) = h.jwt_es.clone() else {
        unreachable!()
    };
    let flow = h.login("jwt-es-rp", "alice").await;
    let assertion = h.assertion(
        "jwt-es-rp",
        &es_pem,
        JwkAlg::ES256,
        &es_kid,
        &h.op.token_endpoint(),
    );
    let form = |code: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("code_verifier".to_owned(), flow.verifier.clone()),
            ("client_assertion_type".to_owned(), JWT_BEARER.to_owned()),
            ("client_assertion".to_owned(), assertion.clone()),
        ]
    };
    let resp = h
        .http
        .post(h.op.token_endpoint())
        .form(&form(&flow.code))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "client_id may be omitted with an assertion"
    );
    let flow2 = h.login("jwt-es-rp", "alice").await;
    let resp = h
        .http
        .post(h.op.token_endpoint())
        .form(&form(&flow2.code))
        .send()
        .await
        .unwrap();
    expect_401(resp).await;

    let bad_aud = h.assertion(
        "jwt-es-rp",
        &es_pem,
        JwkAlg::ES256,
        &es_kid,
        "https://elsewhere/token",
    );
    let mut f = form(&flow2.code);
    f.last_mut().unwrap().1 = bad_aud;
    expect_401(
        h.http
            .post(h.op.token_endpoint())
            .form(&f)
            .send()
            .await
            .unwrap(),
    )
    .await;

    // The issuer is accepted as audience too.
    let flow3 = h.login("jwt-es-rp", "alice").await;
    let mut f = form(&flow3.code);
    f.last_mut().unwrap().1 =
        h.assertion("jwt-es-rp", &es_pem, JwkAlg::ES256, &es_kid, &h.op.issuer);
    f[3].1 = flow3.verifier.clone();
    assert_eq!(
        h.http
            .post(h.op.token_endpoint())
            .form(&f)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn authorize_errors_never_redirect_to_unregistered_uris() {
    let h = harness("").await;
    let challenge = s256(&random_token());
    let get = |q: Vec<(&'static str, String)>| {
        let req = h.http.get(h.op.authorization_endpoint()).query(&q);
        async move { req.send().await.unwrap() }
    };

    let mut q = h.authorize_query("basic-rp", &challenge, "n");
    q[2].1 = "https://evil.example/cb".into();
    let resp = get(q).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());

    let mut q = h.authorize_query("<b>ghost</b>", &challenge, "n");
    q.push(("login_hint", "alice".into()));
    let resp = get(q).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let text = resp.text().await.unwrap();
    assert!(text.contains("&lt;b&gt;ghost") && !text.contains("<b>ghost"));

    // PKCE is required; errors after the redirect URI is trusted go back to it with state.
    let q: Vec<_> = h
        .authorize_query("basic-rp", &challenge, "n")
        .into_iter()
        .filter(|(k, _)| *k != "code_challenge")
        .collect();
    let resp = get(q).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let p = location_params(&resp);
    assert_eq!(p["error"], "invalid_request");
    assert_eq!(p["state"], "st&te=1 é");

    let mut q = h.authorize_query("basic-rp", &challenge, "n");
    q[3].1 = "profile".into();
    assert_eq!(location_params(&get(q).await)["error"], "invalid_scope");

    let mut q = h.authorize_query("basic-rp", &challenge, "n");
    q[0].1 = "token".into();
    assert_eq!(
        location_params(&get(q).await)["error"],
        "unsupported_response_type"
    );
}

#[tokio::test]
async fn login_page_lists_users_and_confirms() {
    let h = harness("").await;
    let verifier = random_token();
    let q = h.authorize_query("basic-rp", &s256(&verifier), "n-1");
    let resp = h
        .http
        .get(h.op.authorization_endpoint())
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    assert!(page.contains("José Müller"));
    for u in users() {
        assert!(page.contains(&format!("value=\"{}\"", u.id)));
    }
    let txn = page
        .split("name=\"txn\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let confirm = format!("{}/login", h.op.authorization_endpoint());
    let resp = h
        .http
        .post(&confirm)
        .form(&[("txn", txn.as_str()), ("user", "jose")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let code = location_params(&resp)["code"].clone();
    let flow = Flow {
        code,
        verifier,
        nonce: "n-1".into(),
    };
    let tokens = body_json(h.exchange(&h.basic, &flow).await).await;
    let claims = h
        .verify_id_token(tokens["id_token"].as_str().unwrap(), "basic-rp")
        .await;
    assert_eq!(claims["name"], "José Müller");
    assert_eq!(claims["nonce"], "n-1");

    // The login transaction is single-use.
    let resp = h
        .http
        .post(&confirm)
        .form(&[("txn", txn.as_str()), ("user", "jose")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rotation_changes_the_kid() {
    let h = harness("/token").await;
    assert_eq!(h.op.issuer, format!("{}/token", h.op.base_url));
    let disc = body_json(h.http.get(&h.op.discovery_url).send().await.unwrap()).await;
    assert_eq!(disc["issuer"], h.op.issuer);

    let before = h.op.controls.current_kid();
    let flow = h.login("basic-rp", "alice").await;
    let old_id_token = body_json(h.exchange(&h.basic, &flow).await).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    h.op.controls.rotate_signing_key();
    let after = h.op.controls.current_kid();
    assert_ne!(before, after);

    let jwks = body_json(h.http.get(h.op.jwks_uri()).send().await.unwrap()).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [after.as_str()]);
    assert_eq!(jwk::thumbprint(&jwks["keys"][0]).unwrap(), after);

    let flow = h.login("basic-rp", "alice").await;
    let tokens = body_json(h.exchange(&h.basic, &flow).await).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id_token)
            .unwrap()
            .kid
            .as_deref(),
        Some(after.as_str())
    );
    h.verify_id_token(id_token, "basic-rp").await;
    assert_eq!(h.op.controls.jwks_fetches(), 2);

    // Logout with a pre-rotation hint still works and redirects with state.
    let resp = h
        .http
        .get(h.op.end_session_endpoint())
        .query(&[
            ("id_token_hint", old_id_token.as_str()),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "s1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()["location"],
        "https://rp.example/bye?state=s1"
    );
    // An unregistered target is refused, and no hint means a plain page.
    let resp = h
        .http
        .get(h.op.end_session_endpoint())
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = h
        .http
        .get(h.op.end_session_endpoint())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let calls = h.op.controls.end_session_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["state"], "s1");
}

#[tokio::test]
async fn misbehaviours_show_up_where_expected() {
    let h = harness("").await;
    let c = &h.op.controls;
    let raw_claims =
        |t: &str| -> Value { jsonwebtoken::dangerous::insecure_decode_claims(t).unwrap() };

    let id_token_with = |m: Misbehaviour| {
        let h = &h;
        async move {
            h.op.controls.set_misbehaviour(Some(m));
            let flow = h.login("post-rp", "alice").await;
            let tokens = body_json(h.exchange(&h.post, &flow).await).await;
            h.op.controls.set_misbehaviour(None);
            tokens
        }
    };

    let t = id_token_with(Misbehaviour::ExtraAudienceNoAzp).await;
    let claims = raw_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], json!(["post-rp", "other"]));
    assert!(claims.get("azp").is_none());

    let t = id_token_with(Misbehaviour::AlgNone).await;
    let id = t["id_token"].as_str().unwrap();
    assert!(id.ends_with('.'));

    let t = id_token_with(Misbehaviour::UnknownKey).await;
    let kid = jsonwebtoken::decode_header(t["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(kid, c.current_kid());

    let t = id_token_with(Misbehaviour::AtHashMismatch).await;
    let claims = raw_claims(t["id_token"].as_str().unwrap());
    assert_ne!(
        claims["at_hash"],
        at_hash(t["access_token"].as_str().unwrap())
    );

    let t = id_token_with(Misbehaviour::Expired).await;
    let claims = raw_claims(t["id_token"].as_str().unwrap());
    assert!(claims["exp"].as_u64().unwrap() < jsonwebtoken::get_current_timestamp());

    c.set_misbehaviour(Some(Misbehaviour::TokenError));
    let flow = h.login("post-rp", "alice").await;
    let resp = h.exchange(&h.post, &flow).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(resp).await["error_description"],
        "<script>x</script>"
    );
    c.set_misbehaviour(None);

    c.set_misbehaviour(Some(Misbehaviour::Unavailable));
    let resp = h.http.get(&h.op.discovery_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        h.http.get(h.op.jwks_uri()).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    c.set_misbehaviour(Some(Misbehaviour::DiscoveryIssuerMismatch));
    let disc = body_json(h.http.get(&h.op.discovery_url).send().await.unwrap()).await;
    assert_ne!(disc["issuer"], h.op.issuer);
    c.set_misbehaviour(None);
    assert_eq!(c.discovery_fetches(), 2);

    c.set_expires_in_millis(true);
    let flow = h.login("post-rp", "alice").await;
    let t = body_json(h.exchange(&h.post, &flow).await).await;
    assert_eq!(t["expires_in"], 300_000);
    c.set_expires_in_millis(false);

    c.set_misbehaviour(Some(Misbehaviour::UserinfoSubMismatch));
    let info = body_json(h.userinfo(t["access_token"].as_str().unwrap()).await).await;
    assert_ne!(info["sub"], "910000000001");
    c.set_misbehaviour(None);
    assert_eq!(h.userinfo("nope").await.status(), StatusCode::UNAUTHORIZED);

    c.set_delay(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    h.http.get(h.op.jwks_uri()).send().await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    c.set_delay(std::time::Duration::ZERO);
}

#[tokio::test]
async fn echo_reports_requests_and_sleeps_on_slow() {
    let echo = start_echo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/some/path?a=1&b=2", echo.base_url()))
        .header("X-Auth-Sub", "alice")
        .body("ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_json(resp).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/some/path");
    assert_eq!(body["query"], "a=1&b=2");
    assert!(body["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["x-auth-sub", "alice"])));

    let page = http
        .get(format!("{}/?q=<x>", echo.base_url()))
        .header("accept", "text/html")
        .header("x-evil", "<script>")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Echo upstream"));
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));

    let started = std::time::Instant::now();
    let resp = http
        .get(format!("{}/slow?ms=150", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));

    echo.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(reqwest::Client::new()
        .get(echo.base_url())
        .send()
        .await
        .is_err());
}

/// The gateway validates with openidconnect 4.1: its types must accept our discovery document,
/// JWKS and ID tokens (CIS2 extras included) unchanged.
#[tokio::test]
async fn openidconnect_crate_accepts_discovery_jwks_and_id_token() {
    use openidconnect::core::{
        CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm, CoreProviderMetadata,
    };

    #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
    struct Extra(HashMap<String, Value>);
    impl openidconnect::AdditionalClaims for Extra {}
    type IdToken = openidconnect::IdToken<
        Extra,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >;

    let h = harness("/token").await;
    let disc = body_json(h.http.get(&h.op.discovery_url).send().await.unwrap()).await;
    let meta: CoreProviderMetadata = serde_json::from_value(disc).unwrap();
    assert_eq!(meta.issuer().as_str(), h.op.issuer);
    let jwks: CoreJsonWebKeySet =
        serde_json::from_value(body_json(h.http.get(h.op.jwks_uri()).send().await.unwrap()).await)
            .unwrap();
    assert_eq!(jwks.keys().len(), 1);

    let flow = h.login("basic-rp", "big").await;
    let tokens = body_json(h.exchange(&h.basic, &flow).await).await;
    let id_token: IdToken = tokens["id_token"].as_str().unwrap().parse().unwrap();
    let verifier = CoreIdTokenVerifier::new_public_client(
        openidconnect::ClientId::new("basic-rp".into()),
        meta.issuer().clone(),
        jwks,
    );
    let claims = id_token
        .claims(&verifier, &openidconnect::Nonce::new(flow.nonce.clone()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), "910000000004");
    assert_eq!(
        claims.additional_claims().0["nhsid_nrbac_roles"]
            .as_array()
            .unwrap()
            .len(),
        40
    );
    let wrong = openidconnect::Nonce::new("other".into());
    assert!(id_token.claims(&verifier, &wrong).is_err());
}
