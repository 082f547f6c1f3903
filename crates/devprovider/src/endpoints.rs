//! The provider's read-mostly endpoints: discovery, JWKS, UserInfo and RP-initiated logout
//! (end session). The authorization and token endpoints live in `authorize.rs` / `token.rs`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::controls::{Misbehaviour, NESTED_CLAIM_DEPTH};
use super::http::{
    error_page, html_page, json_response, raw_json_response, redirect_with, OAuthError, Params,
};
use super::state::{
    Provider, AUTHORIZE_PATH, END_SESSION_PATH, JWKS_PATH, TOKEN_PATH, USERINFO_PATH,
};
use super::tokens;
use super::users;

pub(crate) async fn discovery(State(p): State<Arc<Provider>>) -> Response {
    p.controls.count_discovery_fetch();
    if let Err(r) = p.gate().await {
        return r;
    }
    let issuer = match p.controls.misbehaviour() {
        Some(Misbehaviour::DiscoveryIssuerMismatch) => format!("{}/another-issuer", p.base_url),
        _ => p.issuer.clone(),
    };
    // Every claim any built-in user has, so relying parties can see what to expect.
    let mut claims: Vec<String> = [
        "iss",
        "sub",
        "aud",
        "iat",
        "exp",
        "auth_time",
        "nonce",
        "at_hash",
        "sid",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for u in users::users() {
        for k in u.claims.keys() {
            if !claims.contains(k) {
                claims.push(k.clone());
            }
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": issuer,
            "authorization_endpoint": p.url(AUTHORIZE_PATH),
            "token_endpoint": p.url(TOKEN_PATH),
            "userinfo_endpoint": p.url(USERINFO_PATH),
            "jwks_uri": p.url(JWKS_PATH),
            "end_session_endpoint": p.url(END_SESSION_PATH),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported":
                jwk::JwkAlg::ALL.map(jwk::JwkAlg::as_str),
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": claims,
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
        }),
    )
}

pub(crate) async fn jwks(State(p): State<Arc<Provider>>) -> Response {
    p.controls.count_jwks_fetch();
    if let Err(r) = p.gate().await {
        return r;
    }
    let key = p.controls.current_key();
    // Short caching is fine for a JWKS and lets a caching client be exercised.
    let mut resp = json_response(StatusCode::OK, &json!({ "keys": [key.public_jwk] }));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=60"),
    );
    resp
}

/// UserInfo (OIDC Core §5.3): GET or POST with `Authorization: Bearer`.
pub(crate) async fn userinfo(State(p): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    p.controls.count_userinfo_call();
    if let Err(r) = p.gate().await {
        return r;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        return OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "Bearer access token required",
        )
        .with_challenge("Bearer")
        .into_response();
    };
    let user = p
        .store()
        .access
        .get(&token)
        .filter(|g| g.expires > Instant::now())
        .map(|g| g.user);
    let Some(user) = user else {
        return OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "access token is unknown or expired",
        )
        .with_challenge("Bearer error=\"invalid_token\"")
        .into_response();
    };
    let mut claims = user.claims.clone();
    claims.extend(p.controls.userinfo_extra());
    match p.controls.misbehaviour() {
        Some(Misbehaviour::UserinfoSubMismatch) => {
            claims.insert("sub".into(), json!("somebody-else"));
        }
        Some(Misbehaviour::DeeplyNestedUserinfoClaim) => {
            let body = tokens::with_raw_claim(
                &Value::Object(claims).to_string(),
                "deep",
                &tokens::nested_arrays(NESTED_CLAIM_DEPTH),
            );
            return raw_json_response(StatusCode::OK, body);
        }
        _ => {}
    }
    json_response(StatusCode::OK, &Value::Object(claims))
}

/// RP-initiated logout 1.0: `id_token_hint`, `post_logout_redirect_uri` (registered for the
/// client the hint was issued to, or for `client_id`), `state`. Records every call.
pub(crate) async fn end_session(
    State(p): State<Arc<Provider>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = if method == Method::POST {
        Params::parse(&body)
    } else {
        Params::parse(query.unwrap_or_default().as_bytes())
    };
    p.controls.record_end_session(params.to_map());
    if let Err(r) = p.gate().await {
        return r;
    }

    // The hint may be expired or signed by a retired key; it still names the client.
    let hint_claims = params.get("id_token_hint").map(|hint| {
        p.controls
            .all_keys()
            .iter()
            .find_map(|k| k.verify_signature(hint))
    });
    let hint_claims = match hint_claims {
        Some(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid logout request",
                "id_token_hint is not an ID token issued by this provider",
            )
        }
        Some(Some(c)) => Some(c),
        None => None,
    };
    let hint_aud = hint_claims.as_ref().and_then(|c| match c.get("aud") {
        Some(Value::String(a)) => Some(a.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let client_id = match (hint_aud, params.get("client_id")) {
        (Some(a), Some(c)) if a != c => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid logout request",
                "client_id does not match the id_token_hint",
            )
        }
        (Some(a), _) => Some(a),
        (None, c) => c.map(str::to_owned),
    };

    if let Some(target) = params.get("post_logout_redirect_uri") {
        let registered = client_id
            .as_deref()
            .and_then(|id| p.clients.get(id))
            .is_some_and(|c| {
                c.client
                    .post_logout_redirect_uris
                    .iter()
                    .any(|u| u == target)
            });
        if !registered {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid logout request",
                "post_logout_redirect_uri is not registered for this client \
                 (an id_token_hint or client_id must name the client)",
            );
        }
        let state: Vec<(&str, &str)> = params
            .get("state")
            .map(|s| ("state", s))
            .into_iter()
            .collect();
        return redirect_with(target, &state);
    }
    html_page(
        StatusCode::OK,
        "Signed out",
        "<p>You have been signed out of the development OpenID provider.</p>",
    )
}
