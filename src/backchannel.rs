//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed `logout_token` naming
//! a user (`sub`) or one of their sessions at the provider (`sid`); every matching session is
//! revoked: deleted from Redis, or recorded as revoked for cookie sessions (see
//! `session::revocation`), so the next request with it is unauthenticated.
//!
//! The token is validated as §2.6 asks: signature with the provider's JWKS, `iss`, `aud`
//! (this client), `iat` (recent), `exp` when present, the back-channel `events` member, `sid`
//! and/or `sub`, no `nonce` (so an ID token cannot pass for a logout token), and a `jti` not
//! seen before (kept in Redis when sessions or revocations are there, so a replay to another
//! instance is refused too).

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::claims::Claims;
use crate::jws::{JwsError, KeyRing};
use crate::oidc::Provider;
use crate::session::redis_store::{Index, RedisStore, StoreUnavailable};
use crate::session::revocation::{Revocations, RevokeError};

/// The `events` member that marks a logout token.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be (by `iat`), and how long its `jti` is remembered.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// Largest request body accepted (a logout token is a few kilobytes at most).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a back-channel logout was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum BackchannelError {
    /// The request or token is not acceptable: 400. The text is safe to return.
    #[error("{0}")]
    Refused(&'static str),
    /// The provider's keys or the store cannot be reached: 503, the provider may retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreUnavailable> for BackchannelError {
    fn from(e: StoreUnavailable) -> Self {
        BackchannelError::Unavailable(e.to_string())
    }
}

/// What a valid logout token asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    /// When the logout happened, as late as the clock skew allows (Unix seconds; never after the
    /// token arrived).
    pub iat: u64,
}

/// How long a logout token's `jti` must be remembered: longer than a token with this clock skew
/// is accepted, so that no replay of it is accepted.
pub fn jti_keep(skew: Duration) -> Duration {
    (MAX_AGE + skew * 2) * 2
}

/// The `logout_token` parameter of a form-encoded body.
pub fn logout_token(body: &[u8]) -> Result<String, BackchannelError> {
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        if name == "logout_token" {
            if found.is_some() {
                return Err(BackchannelError::Refused("logout_token is repeated"));
            }
            found = Some(value.into_owned());
        }
    }
    found
        .filter(|t| !t.is_empty())
        .ok_or(BackchannelError::Refused("logout_token is missing"))
}

/// The issuer and audiences a token claims, read without verification, to pick the provider
/// whose keys must then verify it. Two providers may share an issuer (two clients of one
/// provider), so the audience takes part in the choice.
pub fn claimed_issuer(token: &str) -> Option<(String, Vec<String>)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let iss = value.get("iss")?.as_str()?.to_owned();
    let aud = match value.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Some((iss, aud))
}

/// Validates a logout token from `provider`.
pub async fn validate(
    keys: &KeyRing,
    provider: &Provider,
    token: &str,
    now: u64,
) -> Result<LogoutRequest, BackchannelError> {
    let claims = keys
        .verify(provider, token, |alg| Ok(validation(provider, alg)))
        .await
        .map_err(|e| match e {
            JwsError::Unavailable(reason) => BackchannelError::Unavailable(reason),
            JwsError::Failed(e) => BackchannelError::Refused(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "logout_token expired",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "logout_token has another issuer",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "logout_token is not meant for this client (aud)"
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "logout_token signature is invalid"
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                    "logout_token lacks iss or aud"
                }
                _ => "logout_token is invalid",
            }),
            JwsError::NotJwt => BackchannelError::Refused("logout_token is not a signed JWT"),
            JwsError::Algorithm => {
                BackchannelError::Refused("logout_token is signed with an algorithm not accepted")
            }
            JwsError::UnknownKey => {
                BackchannelError::Refused("logout_token is signed with an unknown key")
            }
            JwsError::Config(msg) => BackchannelError::Refused(msg),
        })?;
    check_claims(&claims, provider.cfg.clock_skew.as_secs(), now)
}

/// Issuer, audience (this client) and, when present, `exp`, with the provider's clock skew.
pub(crate) fn validation(provider: &Provider, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = provider.cfg.clock_skew.as_secs();
    v.set_issuer(&[provider.cfg.issuer.as_str()]);
    v.set_audience(&[provider.cfg.client_id.as_str()]);
    // A logout token need not expire (exp is optional); when it has one, it is checked.
    v.set_required_spec_claims(&["iss", "aud"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v
}

/// The logout-token rules beyond signature, issuer and audience (spec §2.4 and §2.6).
pub(crate) fn check_claims(
    claims: &Claims,
    skew: u64,
    now: u64,
) -> Result<LogoutRequest, BackchannelError> {
    let refused = BackchannelError::Refused;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(refused("logout_token has no iat"))?;
    if iat > now.saturating_add(skew) {
        return Err(refused("logout_token is issued in the future (iat)"));
    }
    if now.saturating_sub(iat) > MAX_AGE.as_secs() + skew {
        return Err(refused("logout_token is too old (iat)"));
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(EVENT));
    if !matches!(event, Some(Value::Object(_))) {
        return Err(refused("logout_token has no back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(refused("logout_token must not contain a nonce"));
    }
    let text = |name: &str| -> Result<Option<String>, BackchannelError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
            Some(_) => Err(refused("logout_token has a malformed sub, sid or jti")),
        }
    };
    let sub = text("sub")?;
    let sid = text("sid")?;
    if sub.is_none() && sid.is_none() {
        return Err(refused("logout_token has neither sub nor sid"));
    }
    let jti = text("jti")?.ok_or(refused("logout_token has no jti"))?;
    Ok(LogoutRequest {
        sub,
        sid,
        jti,
        // A provider whose clock is behind by up to the skew: count from the latest moment the
        // logout may have happened (never after the token arrived).
        iat: iat.saturating_add(skew).min(now),
    })
}

/// Revokes what a validated logout token names: the sessions of provider session `sid` when
/// given, otherwise every session of `sub`. A replayed `jti` is refused. Returns how many
/// sessions were revoked.
pub async fn revoke(
    store: &RedisStore,
    provider: &str,
    request: &LogoutRequest,
    skew: Duration,
) -> Result<u64, BackchannelError> {
    if !store.first_use(provider, &request.jti).await? {
        return Err(BackchannelError::Refused(
            "logout_token was already used (jti)",
        ));
    }
    let revoked = match (&request.sid, &request.sub) {
        (Some(sid), sub) => {
            let n = store.revoke(Index::Sid, provider, sid).await;
            match (n, sub) {
                // The user's sessions without a sid may be this provider session's too.
                (Ok(n), Some(sub)) => store
                    .revoke(Index::NoSid, provider, sub)
                    .await
                    .map(|m| n + m),
                (n, _) => n,
            }
        }
        (None, Some(sub)) => store.revoke(Index::Sub, provider, sub).await,
        (None, None) => Ok(0),
    };
    match revoked {
        Ok(n) => {
            // Done: from now on the token is a replay. Should this fail, the token stays
            // "begun", and a replay revokes again: harmless.
            let _ = store
                .mark_used(provider, &request.jti, jti_keep(skew))
                .await;
            Ok(n)
        }
        Err(e) => {
            // Not carried out: the provider's retry of this token must not count as a replay.
            let _ = store.forget_jti(provider, &request.jti).await;
            Err(e.into())
        }
    }
}

/// Records what a validated logout token names for cookie sessions: provider session `sid`
/// when given (and the user's sessions without one), otherwise user `sub`, revoked as of the
/// token's `iat` (see `session::revocation`). A replayed `jti` is refused.
pub async fn revoke_cookies(
    list: &Revocations,
    registration: &str,
    request: &LogoutRequest,
) -> Result<(), BackchannelError> {
    match list
        .revoke(
            registration,
            request.sid.as_deref(),
            request.sub.as_deref(),
            &request.jti,
            request.iat,
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(RevokeError::Replayed) => Err(BackchannelError::Refused(
            "logout_token was already used (jti)",
        )),
        Err(RevokeError::Unavailable(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_jti_is_remembered_longer_than_its_token_is_accepted() {
        for skew in [0, 60, 600] {
            let skew = Duration::from_secs(skew);
            assert!(jti_keep(skew) > MAX_AGE + skew * 2);
        }
    }

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().unwrap()
    }

    fn good() -> Value {
        json!({
            "iss": "https://op", "aud": "rp", "iat": 1000, "jti": "j1",
            "sub": "alice", "sid": "s1",
            "events": { EVENT: {} },
        })
    }

    fn refused(v: Value) -> String {
        match check_claims(&claims(v), 60, 1000) {
            Err(BackchannelError::Refused(m)) => m.to_owned(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_token_names_sid_sub_and_jti() {
        let r = check_claims(&claims(good()), 60, 1000).unwrap();
        assert_eq!(r.sub.as_deref(), Some("alice"));
        assert_eq!(r.sid.as_deref(), Some("s1"));
        assert_eq!(r.jti, "j1");
    }

    #[test]
    fn the_backchannel_event_is_required() {
        let mut v = good();
        v["events"] = json!({});
        assert!(refused(v).contains("event"));
        let mut v = good();
        v["events"] = json!({ EVENT: "yes" });
        assert!(refused(v).contains("event"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("events");
        assert!(refused(v).contains("event"));
    }

    #[test]
    fn an_id_token_with_a_nonce_is_not_a_logout_token() {
        let mut v = good();
        v["nonce"] = json!("n");
        assert!(refused(v).contains("nonce"));
    }

    #[test]
    fn sub_or_sid_and_jti_are_required() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("sub");
        v.as_object_mut().unwrap().remove("sid");
        assert!(refused(v).contains("neither"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("jti");
        assert!(refused(v).contains("jti"));
        let mut v = good();
        v["sid"] = json!(5);
        assert!(refused(v).contains("malformed"));
    }

    #[test]
    fn iat_must_be_recent_and_not_in_the_future() {
        let mut v = good();
        v["iat"] = json!(1000 + 61);
        assert!(refused(v).contains("future"));
        let mut v = good();
        v["iat"] = json!(1000 - MAX_AGE.as_secs() as i64 - 61);
        assert!(refused(v).contains("too old"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("iat");
        assert!(refused(v).contains("iat"));
    }

    #[test]
    fn the_token_comes_from_a_form_body_once() {
        assert_eq!(logout_token(b"logout_token=abc").unwrap(), "abc");
        assert!(logout_token(b"other=1").is_err());
        assert!(logout_token(b"logout_token=a&logout_token=b").is_err());
        assert!(logout_token(b"logout_token=").is_err());
    }
}
