//! The authorization code flow with PKCE: the authorization URL, the code exchange, ID token
//! validation (with one JWKS refetch on an unknown key), UserInfo, and the end-session URL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::discovery::Discovered;
use super::http::{CallError, Endpoint};
use super::verify::{verify_id_token, Expectations, IdTokenError};
use super::Provider;
use crate::claims::{merge_userinfo, Claims};
use crate::config::ExpiresInUnit;
use crate::oidc::LoginError;

/// A fresh random value for state, nonce or PKCE verifier (256 bits, base64url).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The tokens of a successful token request.
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires, already corrected for `expires_in_unit`.
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// What a finished login yields.
pub struct LoginResult {
    /// ID token claims, merged with UserInfo when configured.
    pub claims: Claims,
    pub tokens: Tokens,
    pub id_token: String,
}

/// What a successful refresh yields.
pub struct Refreshed {
    /// The new ID token's claims (or, without one, the session's), merged with UserInfo when
    /// configured.
    pub claims: Claims,
    /// The new ID token, when the provider sent one.
    pub id_token: Option<String>,
    pub tokens: Tokens,
}

/// What a login asks of the provider besides the code flow's own parameters.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthExtras<'a> {
    /// `prompt` (e.g. `login` to pick another CIS2 role, or to step up).
    pub prompt: Option<&'a str>,
    /// `acr_values`: the authentication levels the route accepts, space-separated.
    pub acr_values: Option<&'a str>,
    /// `max_age` in seconds.
    pub max_age: Option<u64>,
}

impl Provider {
    /// The URL that starts a login at the provider.
    pub fn authorization_url(
        &self,
        d: &Discovered,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        extra: &AuthExtras<'_>,
    ) -> String {
        let prompt = extra.prompt;
        let mut url: Url = d.authorization_endpoint.clone();
        {
            let scope = self.cfg.scopes.join(" ");
            let challenge = pkce_challenge(verifier);
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            // A sign-in's own `prompt` (role switching) takes the place of a configured one.
            for (k, v) in &self.cfg.extra_auth_params {
                if !(prompt.is_some() && k == "prompt") {
                    q.append_pair(k, v);
                }
            }
            if let Some(prompt) = prompt {
                q.append_pair("prompt", prompt);
            }
            if let Some(acr) = extra.acr_values {
                q.append_pair("acr_values", acr);
            }
            if let Some(max_age) = extra.max_age {
                q.append_pair("max_age", &max_age.to_string());
            }
        }
        url.into()
    }

    /// Finishes a login: exchanges the code, validates the ID token, merges UserInfo.
    pub async fn complete_login(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        redirect_uri: &str,
    ) -> Result<LoginResult, LoginError> {
        let d = self
            .discovered()
            .ok_or_else(|| LoginError::NotReady(self.name().to_owned()))?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier),
        ];
        let tokens = self.token_request(&d, &form).await?;
        let id_token = tokens
            .id_token
            .clone()
            .ok_or_else(|| LoginError::TokenResponse("no id_token".into()))?;
        let mut claims = self
            .verify(&d, &id_token, Some(nonce), Some(&tokens.access_token))
            .await?;
        if self.cfg.userinfo {
            let userinfo = self.userinfo(&d, &tokens.access_token).await?;
            merge_userinfo(&mut claims, userinfo)
                .map_err(|e| LoginError::UserInfo(e.to_string()))?;
        }
        Ok(LoginResult {
            claims,
            tokens,
            id_token,
        })
    }

    /// Uses a refresh token (`grant_type=refresh_token`, same client authentication as the
    /// login). A returned ID token is validated like at login, except that it carries no nonce
    /// (OIDC Core §12.2), and must name the same `sub`. `base` is what the claims start from when
    /// no ID token comes back: the session's kept claims. UserInfo is merged when configured.
    pub async fn refresh_tokens(
        &self,
        refresh_token: &str,
        base: &Claims,
    ) -> Result<Refreshed, LoginError> {
        let d = self
            .discovered()
            .ok_or_else(|| LoginError::NotReady(self.name().to_owned()))?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let tokens = self.token_request(&d, &form).await?;
        let (mut claims, id_token) = match &tokens.id_token {
            Some(raw) => {
                let claims = self
                    .verify(&d, raw, None, Some(&tokens.access_token))
                    .await?;
                if claims.get("sub") != base.get("sub") {
                    return Err(IdTokenError::Invalid(
                        "refreshed ID token names another subject".into(),
                    )
                    .into());
                }
                (claims, Some(raw.clone()))
            }
            None => (base.clone(), None),
        };
        if self.cfg.userinfo {
            let userinfo = self.userinfo(&d, &tokens.access_token).await?;
            merge_userinfo(&mut claims, userinfo)
                .map_err(|e| LoginError::UserInfo(e.to_string()))?;
        }
        Ok(Refreshed {
            claims,
            id_token,
            tokens,
        })
    }

    /// Calls the token endpoint with the client's authentication.
    async fn token_request(
        &self,
        d: &Discovered,
        params: &[(&str, &str)],
    ) -> Result<Tokens, LoginError> {
        let endpoint = d.token_endpoint.as_str();
        let auth = self
            .credentials
            .apply(endpoint, crate::clock::now(), d.client_assertion_alg)?;
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.extend(auth.form.iter().map(|(k, v)| (*k, v.as_str())));
        let basic = auth.basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let body = match self
            .http
            .post_form(Endpoint::Token, endpoint, &form, basic)
            .await
        {
            Ok(body) => body,
            Err(e) if e.is_unavailable() => return Err(LoginError::Unavailable(e.to_string())),
            Err(CallError::Status { status, body, .. }) => {
                let code = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                return Err(LoginError::ProviderError(sanitize_code(&code)));
            }
            Err(e) => return Err(LoginError::Unavailable(e.to_string())),
        };
        let parsed: TokenBody =
            serde_json::from_slice(&body).map_err(|e| LoginError::TokenResponse(e.to_string()))?;
        if !parsed
            .token_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("dpop"))
        {
            return Err(LoginError::TokenResponse("token_type is not Bearer".into()));
        }
        let expires_in = parsed.expires_in.as_ref().and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        let expires_in = match self.cfg.expires_in_unit {
            ExpiresInUnit::Seconds => expires_in,
            ExpiresInUnit::Milliseconds => expires_in.map(|ms| ms / 1000),
        };
        Ok(Tokens {
            access_token: parsed.access_token,
            id_token: parsed.id_token,
            refresh_token: parsed.refresh_token,
            expires_in,
        })
    }

    /// Validates an ID token against the cached keys; an unknown key triggers one rate-limited
    /// refetch (the provider rotated its keys).
    async fn verify(
        &self,
        d: &Discovered,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<Claims, LoginError> {
        let uri = d.jwks_uri.as_str();
        let keys = self
            .jwks
            .get(&self.http, uri)
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let expect = Expectations {
            provider: &self.cfg,
            algs: &d.id_token_algs,
            nonce,
            access_token,
            now: chrono::Utc::now(),
        };
        match verify_id_token(id_token, &keys, &expect) {
            Err(IdTokenError::UnknownKey) => match self.jwks.refetch(&self.http, uri).await {
                Some(Ok(keys)) => Ok(verify_id_token(id_token, &keys, &expect)?),
                Some(Err(e)) => Err(LoginError::Unavailable(e.to_string())),
                None => Err(IdTokenError::UnknownKey.into()),
            },
            other => Ok(other?),
        }
    }

    /// The UserInfo claims for an access token.
    async fn userinfo(&self, d: &Discovered, access_token: &str) -> Result<Claims, LoginError> {
        let url = d.userinfo_endpoint.as_ref().ok_or_else(|| {
            LoginError::UserInfo("userinfo = true but the provider has no userinfo_endpoint".into())
        })?;
        let body = self
            .http
            .get(Endpoint::Userinfo, url.as_str(), Some(access_token))
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    LoginError::Unavailable(e.to_string())
                } else {
                    LoginError::UserInfo(e.to_string())
                }
            })?;
        match serde_json::from_slice(&body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(LoginError::UserInfo(
                "not a JSON object (signed UserInfo is not supported)".into(),
            )),
        }
    }

    /// Where to send the browser for RP-initiated logout, if the provider supports it.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let d = self.discovered()?;
        let mut url = d.end_session_endpoint.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &self.cfg.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url.into())
    }
}

/// Keeps an OAuth error code printable and short: it reaches logs and (escaped) pages.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn provider_error_codes_are_sanitised() {
        assert_eq!(
            sanitize_code("invalid_grant<script>"),
            "invalid_grantscript"
        );
    }
}
