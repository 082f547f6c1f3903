//! The token endpoint: `authorization_code` (single-use code, exact redirect URI, PKCE S256) and
//! `refresh_token` (rotating) grants, ID token construction, and the token-response
//! misbehaviours.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::client_auth::{authenticate, method_used};
use super::controls::{Misbehaviour, TokenRequestRecord};
use super::http::{json_response, OAuthError, Params};
use super::state::{now_secs, AccessGrant, Authn, Provider, RefreshGrant, REFRESH_TTL};
use super::tokens::{self, random_token};

pub(crate) async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    p.controls.record_token_request(TokenRequestRecord {
        grant_type: form.get("grant_type").map(str::to_owned),
        auth_method: method_used(&headers, &form),
        form_fields: form.names(),
        authorization_header: headers.contains_key(axum::http::header::AUTHORIZATION),
    });
    if let Err(r) = p.gate().await {
        return r;
    }
    match p.controls.misbehaviour() {
        Some(Misbehaviour::TokenError) => {
            return OAuthError::invalid_grant("<script>x</script>").into_response()
        }
        Some(Misbehaviour::TokenServerError) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "server_error"}),
            )
        }
        _ => {}
    }
    match grant(&p, &headers, &form).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.into_response(),
    }
}

async fn grant(p: &Provider, headers: &HeaderMap, form: &Params) -> Result<Value, OAuthError> {
    if let Some(name) = form.duplicated() {
        return Err(OAuthError::invalid_request(format!(
            "parameter {name} sent more than once"
        )));
    }
    let client = authenticate(p, headers, form)?;
    let client_id = client.client.client_id.as_str();
    match form.get("grant_type") {
        Some("authorization_code") => {
            let authn = redeem_code(p, client_id, form)?;
            issue(p, &authn).await
        }
        Some("refresh_token") => {
            let authn = redeem_refresh(p, client_id, form)?;
            issue(p, &authn).await
        }
        Some(other) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {other:?} is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    }
}

fn redeem_code(p: &Provider, client_id: &str, form: &Params) -> Result<Authn, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    // Removed before any check: a code is consumed by its first presentation, right or wrong.
    let grant = p
        .store()
        .codes
        .remove(code)
        .ok_or_else(|| OAuthError::invalid_grant("code is unknown, expired or already used"))?;
    if grant.expires <= Instant::now() {
        return Err(OAuthError::invalid_grant("code has expired"));
    }
    if grant.authn.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "code was issued to another client",
        ));
    }
    if form.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing (PKCE)"))?;
    // RFC 7636 §4.1: 43–128 unreserved characters.
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed || tokens::s256(verifier) != grant.code_challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(grant.authn)
}

fn redeem_refresh(p: &Provider, client_id: &str, form: &Params) -> Result<Authn, OAuthError> {
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let mut store = p.store();
    let belongs = store
        .refresh
        .get(token)
        .map(|g| g.authn.client_id == client_id);
    match belongs {
        None => {
            return Err(OAuthError::invalid_grant(
                "refresh_token is unknown or expired",
            ))
        }
        Some(false) => {
            return Err(OAuthError::invalid_grant(
                "refresh_token was issued to another client",
            ))
        }
        Some(true) => {}
    }
    // Rotation: the presented refresh token is spent; `issue` hands out a new one.
    let mut authn = store
        .refresh
        .remove(token)
        .map(|g| g.authn)
        .ok_or_else(|| OAuthError::invalid_grant("refresh_token is unknown or expired"))?;
    if let Some(requested) = form.get("scope") {
        let granted: Vec<&str> = authn.scope.split(' ').collect();
        if !requested.split(' ').all(|s| granted.contains(&s)) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "a refresh may not widen the scope",
            ));
        }
        authn.scope = requested.to_owned();
    }
    // OIDC Core §12.2: a refreshed ID token carries no nonce (none was sent for it).
    authn.nonce = None;
    Ok(authn)
}

/// Issues access, refresh and ID tokens for a completed grant.
async fn issue(p: &Provider, authn: &Authn) -> Result<Value, OAuthError> {
    let access_token = random_token();
    let refresh_token = random_token();
    {
        let mut store = p.store();
        store.access.insert(
            access_token.clone(),
            AccessGrant {
                user: authn.user,
                expires: Instant::now() + p.access_token_lifetime,
            },
        );
        store.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                authn: authn.clone(),
                expires: Instant::now() + REFRESH_TTL,
            },
        );
    }
    let misbehaviour = p.controls.misbehaviour();
    let claims = id_token_claims(p, authn, &access_token, misbehaviour);
    let id_token = sign(p, &claims, misbehaviour).await?;

    let secs = p.access_token_lifetime.as_secs();
    let expires_in = if p.controls.expires_in_millis() {
        secs * 1000
    } else {
        secs
    };
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "id_token": id_token,
        "refresh_token": refresh_token,
        "scope": authn.scope,
    }))
}

/// The ID token claims: the user's profile claims, then the protocol claims over them.
fn id_token_claims(
    p: &Provider,
    authn: &Authn,
    access_token: &str,
    m: Option<Misbehaviour>,
) -> Value {
    let now = now_secs();
    let lifetime = p.id_token_lifetime.as_secs();
    let (iat, exp) = match m {
        Some(Misbehaviour::Expired) => (now - 2 * lifetime.max(60), now - lifetime.max(60)),
        Some(Misbehaviour::IssuedInFuture) => (now + 600, now + 600 + lifetime),
        _ => (now, now + lifetime),
    };
    let iss = match m {
        Some(Misbehaviour::WrongIssuer) => format!("{}/not-the-issuer", p.base_url),
        _ => p.issuer.clone(),
    };
    let aud = match m {
        Some(Misbehaviour::WrongAudience) => json!("some-other-client"),
        Some(Misbehaviour::ExtraAudienceNoAzp) => json!([authn.client_id, "other"]),
        _ => json!(authn.client_id),
    };
    let at_hash = match m {
        Some(Misbehaviour::AtHashMismatch) => tokens::at_hash("not the access token"),
        _ => tokens::at_hash(access_token),
    };
    let nonce = match m {
        Some(Misbehaviour::WrongNonce) => Some("not-the-nonce-you-sent".to_owned()),
        _ => authn.nonce.clone(),
    };

    let mut claims = authn.user.claims.clone();
    claims.insert("iss".into(), json!(iss));
    claims.insert("sub".into(), json!(authn.user.sub()));
    claims.insert("aud".into(), aud);
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    claims.insert("auth_time".into(), json!(authn.auth_time));
    if m != Some(Misbehaviour::NoSid) {
        claims.insert("sid".into(), json!(authn.sid));
    }
    claims.insert("at_hash".into(), json!(at_hash));
    claims.insert("jti".into(), json!(random_token()));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    Value::Object(claims)
}

async fn sign(p: &Provider, claims: &Value, m: Option<Misbehaviour>) -> Result<String, OAuthError> {
    let server_error = |what: String| {
        tracing::error!(error = %what, "dev provider: cannot sign an ID token");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot sign the ID token",
        )
    };
    match m {
        Some(Misbehaviour::AlgNone) => Ok(tokens::unsigned(claims)),
        Some(Misbehaviour::UnknownKey) => {
            let key = p
                .controls
                .unknown_key()
                .await
                .ok_or_else(|| server_error("no unpublished key".into()))?;
            key.sign(claims).map_err(|e| server_error(e.to_string()))
        }
        Some(Misbehaviour::DeeplyNestedIdTokenClaim) => p
            .controls
            .current_key()
            .sign_with_raw_claim(
                claims,
                "deep",
                &tokens::nested_arrays(super::controls::NESTED_CLAIM_DEPTH),
            )
            .map_err(|e| server_error(e.to_string())),
        Some(Misbehaviour::BadSignature) => p
            .controls
            .current_key()
            .sign(claims)
            .map(|t| tokens::flip_signature(&t))
            .map_err(|e| server_error(e.to_string())),
        _ => p
            .controls
            .current_key()
            .sign(claims)
            .map_err(|e| server_error(e.to_string())),
    }
}
