//! Token endpoint client authentication, exactly per the client's registered method:
//! `client_secret_basic` (RFC 6749 §2.3.1, form-urlencoded id and secret inside Basic),
//! `client_secret_post`, and `private_key_jwt` (RFC 7523 / OIDC Core §9).

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

use super::controls::ClientAuthMethod;
use super::http::{OAuthError, Params};
use super::state::{now_secs, Provider, RegisteredClient, TOKEN_PATH};
use super::DevClientAuth;

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Latest acceptable assertion `exp`, from now (the brief's "≤ 5 min ahead"), plus a little
/// allowance for clock skew between test processes.
const MAX_ASSERTION_LIFETIME: u64 = 300;
const SKEW: u64 = 5;

/// Which method the request used, judged from what it carries.
pub(crate) fn method_used(headers: &HeaderMap, form: &Params) -> ClientAuthMethod {
    let basic = basic_header(headers).is_some();
    let post = form.get("client_secret").is_some();
    let jwt = form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some();
    match (basic, post, jwt) {
        (false, false, false) => ClientAuthMethod::None,
        (true, false, false) => ClientAuthMethod::SecretBasic,
        (false, true, false) => ClientAuthMethod::SecretPost,
        (false, false, true) => ClientAuthMethod::PrivateKeyJwt,
        _ => ClientAuthMethod::Several,
    }
}

fn basic_header(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
}

/// Authenticates the client of a token request.
pub(crate) fn authenticate<'p>(
    p: &'p Provider,
    headers: &HeaderMap,
    form: &Params,
) -> Result<&'p RegisteredClient, OAuthError> {
    match method_used(headers, form) {
        ClientAuthMethod::Several => Err(OAuthError::invalid_request(
            "more than one client authentication method in one request",
        )),
        ClientAuthMethod::None => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
        ClientAuthMethod::SecretBasic => basic(p, headers, form),
        ClientAuthMethod::SecretPost => secret_post(p, form),
        ClientAuthMethod::PrivateKeyJwt => private_key_jwt(p, form),
    }
}

fn lookup<'p>(p: &'p Provider, client_id: &str) -> Result<&'p RegisteredClient, OAuthError> {
    p.clients
        .get(client_id)
        .ok_or_else(|| OAuthError::invalid_client(format!("unknown client {client_id:?}")))
}

fn wrong_method(client: &RegisteredClient, used: &str) -> OAuthError {
    let registered = match client.client.auth {
        DevClientAuth::SecretBasic(_) => "client_secret_basic",
        DevClientAuth::SecretPost(_) => "client_secret_post",
        DevClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
    };
    OAuthError::invalid_client(format!(
        "client is registered for {registered}, the request used {used}"
    ))
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined with ':'.
fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn basic<'p>(
    p: &'p Provider,
    headers: &HeaderMap,
    form: &Params,
) -> Result<&'p RegisteredClient, OAuthError> {
    let bad = || {
        OAuthError::invalid_client("malformed Basic credentials")
            .with_challenge("Basic realm=\"token\"")
    };
    let encoded = basic_header(headers).ok_or_else(bad)?;
    let decoded = STANDARD.decode(encoded).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let (id, secret) = (
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    );
    if form.get("client_id").is_some_and(|f| f != id) {
        return Err(OAuthError::invalid_client(
            "client_id in the form differs from the Basic credentials",
        )
        .with_challenge("Basic realm=\"token\""));
    }
    let client = lookup(p, &id).map_err(|e| e.with_challenge("Basic realm=\"token\""))?;
    match &client.client.auth {
        DevClientAuth::SecretBasic(s) if *s == secret => Ok(client),
        DevClientAuth::SecretBasic(_) => Err(OAuthError::invalid_client("wrong client secret")
            .with_challenge("Basic realm=\"token\"")),
        _ => {
            Err(wrong_method(client, "client_secret_basic").with_challenge("Basic realm=\"token\""))
        }
    }
}

fn secret_post<'p>(p: &'p Provider, form: &Params) -> Result<&'p RegisteredClient, OAuthError> {
    let id = form
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("client_id is missing"))?;
    let client = lookup(p, id)?;
    match &client.client.auth {
        DevClientAuth::SecretPost(s) if Some(s.as_str()) == form.get("client_secret") => Ok(client),
        DevClientAuth::SecretPost(_) => Err(OAuthError::invalid_client("wrong client secret")),
        _ => Err(wrong_method(client, "client_secret_post")),
    }
}

fn private_key_jwt<'p>(p: &'p Provider, form: &Params) -> Result<&'p RegisteredClient, OAuthError> {
    if form.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion_type must be {JWT_BEARER}"
        )));
    }
    let assertion = form
        .get("client_assertion")
        .ok_or_else(|| OAuthError::invalid_client("client_assertion is missing"))?;
    let bad = |what: String| OAuthError::invalid_client(format!("client_assertion: {what}"));

    // The client is named by client_id when sent, else by the (not yet verified) iss; either
    // way the signature check below against that client's keys decides.
    let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|e| bad(format!("not a JWT ({e})")))?;
    let claimed_iss = unverified.get("iss").and_then(Value::as_str);
    let client_id = form
        .get("client_id")
        .or(claimed_iss)
        .ok_or_else(|| bad("no client_id and no iss".into()))?;
    let client = lookup(p, client_id)?;
    if !matches!(client.client.auth, DevClientAuth::PrivateKeyJwt(_)) {
        return Err(wrong_method(client, "private_key_jwt"));
    }
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| bad("client has no registered keys".into()))?;

    let header =
        jsonwebtoken::decode_header(assertion).map_err(|e| bad(format!("bad header ({e})")))?;
    if !jwk::JwkAlg::ALL
        .iter()
        .any(|a| a.jsonwebtoken_alg() == header.alg)
    {
        return Err(bad(format!("alg {:?} is not accepted", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        // Without a kid only an unambiguous single key will do.
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| bad(format!("no registered key with kid {:?}", header.kid)))?;
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg != jsonwebtoken::jwk::KeyAlgorithm::from(header.alg) {
            return Err(bad(format!(
                "key {:?} is registered for {key_alg}, the assertion uses {:?}",
                header.kid, header.alg
            )));
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("unusable key ({e})")))?;

    let token_endpoint = p.url(TOKEN_PATH);
    let mut v = Validation::new(header.alg);
    v.leeway = SKEW;
    v.set_audience(&[token_endpoint.as_str(), p.issuer.as_str()]);
    v.set_issuer(&[client_id]);
    v.sub = Some(client_id.to_owned());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &v)
        .map_err(|e| bad(format!("rejected ({e})")))?
        .claims;

    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let now = now_secs();
    if exp > now + MAX_ASSERTION_LIFETIME + SKEW {
        return Err(bad("exp is more than 5 minutes ahead".into()));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("jti is missing".into()))?;
    let mut store = p.store();
    let key = format!("{client_id}\u{0}{jti}");
    if store.assertion_jtis.contains_key(&key) {
        return Err(bad("jti was already used".into()));
    }
    store.assertion_jtis.insert(key, exp);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("%FF"), None);
    }

    #[test]
    fn method_detection() {
        let mut h = HeaderMap::new();
        let form = Params::parse(b"client_id=x&client_secret=y");
        assert_eq!(method_used(&h, &form), ClientAuthMethod::SecretPost);
        h.insert(header::AUTHORIZATION, "basic eDp5".parse().unwrap());
        assert_eq!(method_used(&h, &form), ClientAuthMethod::Several);
        assert_eq!(
            method_used(&h, &Params::parse(b"grant_type=x")),
            ClientAuthMethod::SecretBasic
        );
        assert_eq!(
            method_used(&HeaderMap::new(), &Params::parse(b"client_assertion=a")),
            ClientAuthMethod::PrivateKeyJwt
        );
    }
}
