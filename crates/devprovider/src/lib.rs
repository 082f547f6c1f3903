//! A development OpenID provider and an echo upstream, in-process on tokio over real loopback
//! HTTP. It serves `oidc-gateway demo` and the gateway's integration tests, so it follows the
//! specs strictly (exact redirect URIs, PKCE S256, single-use codes, client authentication per
//! registered method, RS256 ID tokens with `at_hash`) and has test-only switches ([`Controls`])
//! to misbehave.
//!
//! Endpoints (relative to `base_url`, all advertised in discovery): discovery at
//! `/.well-known/openid-configuration` (always at the root, also when the issuer has a path, as
//! NHS Spine does), JWKS `/.well-known/jwks.json`, `/authorize` (+ `/authorize/login` for the
//! login page's form), `/token`, `/userinfo`, `/logout` (end session).

mod authorize;
mod client_auth;
mod controls;
mod echo;
mod endpoints;
mod http;
mod state;
mod token;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

pub use controls::{
    ClientAuthMethod, Controls, Misbehaviour, TokenRequestRecord, NESTED_CLAIM_DEPTH,
};
pub use echo::{start_echo, EchoServer};
pub use users::{user, users, DevUser};

use state::{
    Provider, RegisteredClient, AUTHORIZE_PATH, DISCOVERY_PATH, END_SESSION_PATH, JWKS_PATH,
    LOGIN_PATH, TOKEN_PATH, USERINFO_PATH,
};

/// How to start a [`DevProvider`].
#[derive(Clone, Debug)]
pub struct DevProviderOptions {
    /// Port 0 picks a free port.
    pub bind: SocketAddr,
    /// `""` makes the issuer `http://addr`; e.g. `"/token"` makes it `http://addr/token` (NHS
    /// Spine style) while discovery stays at `http://addr/.well-known/openid-configuration`.
    pub issuer_path: String,
    pub clients: Vec<DevClient>,
    pub id_token_lifetime: Duration,
    pub access_token_lifetime: Duration,
}

impl Default for DevProviderOptions {
    fn default() -> Self {
        DevProviderOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            issuer_path: String::new(),
            clients: Vec::new(),
            id_token_lifetime: Duration::from_secs(300),
            access_token_lifetime: Duration::from_secs(300),
        }
    }
}

/// A client registered at the provider.
#[derive(Clone, Debug)]
pub struct DevClient {
    pub client_id: String,
    pub auth: DevClientAuth,
    /// Compared exactly (no prefix or normalisation), as the specs require.
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl DevClient {
    /// A client with one redirect URI and no post-logout redirect URIs.
    pub fn new(
        client_id: impl Into<String>,
        auth: DevClientAuth,
        redirect_uri: impl Into<String>,
    ) -> Self {
        DevClient {
            client_id: client_id.into(),
            auth,
            redirect_uris: vec![redirect_uri.into()],
            post_logout_redirect_uris: Vec::new(),
        }
    }

    pub fn with_post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uris.push(uri.into());
        self
    }
}

/// The one token endpoint authentication method a client is registered for.
#[derive(Clone)]
pub enum DevClientAuth {
    SecretBasic(String),
    SecretPost(String),
    /// The client's public JWKS (`{"keys":[...]}`), as printed by `keygen --jwk`.
    PrivateKeyJwt(serde_json::Value),
}

// Hand-written so secrets stay out of logs and test failure output.
impl std::fmt::Debug for DevClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DevClientAuth::SecretBasic(_) => f.write_str("SecretBasic(<redacted>)"),
            DevClientAuth::SecretPost(_) => f.write_str("SecretPost(<redacted>)"),
            DevClientAuth::PrivateKeyJwt(jwks) => {
                f.debug_tuple("PrivateKeyJwt").field(jwks).finish()
            }
        }
    }
}

/// A running development provider. Stops when dropped or on [`DevProvider::shutdown`], so keep
/// it alive for as long as it should serve.
pub struct DevProvider {
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base_url: String,
    /// `base_url` + `issuer_path`.
    pub issuer: String,
    pub discovery_url: String,
    pub controls: Arc<Controls>,
    shutdown: ShutdownOnDrop,
}

impl DevProvider {
    /// Binds, generates the signing key, spawns the server on the current tokio runtime and
    /// returns once listening. Invalid options (issuer path, duplicate client ids, a JWKS that
    /// does not parse) are `InvalidInput` errors.
    pub async fn start(opts: DevProviderOptions) -> std::io::Result<DevProvider> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let path = &opts.issuer_path;
        if !path.is_empty() && (!path.starts_with('/') || path.ends_with('/')) {
            return Err(invalid(format!(
                "issuer_path {path:?} must be empty or start with '/' and not end with '/'"
            )));
        }
        let mut clients = HashMap::new();
        for c in opts.clients {
            let jwks = match &c.auth {
                DevClientAuth::PrivateKeyJwt(v) => Some(
                    serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(v.clone()).map_err(
                        |e| {
                            invalid(format!(
                                "client {:?}: JWKS does not parse: {e}",
                                c.client_id
                            ))
                        },
                    )?,
                ),
                _ => None,
            };
            for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                url::Url::parse(uri).map_err(|e| {
                    invalid(format!(
                        "client {:?}: {uri:?} is not an absolute URL: {e}",
                        c.client_id
                    ))
                })?;
            }
            let id = c.client_id.clone();
            if clients
                .insert(id.clone(), RegisteredClient { client: c, jwks })
                .is_some()
            {
                return Err(invalid(format!("client {id:?} is registered twice")));
            }
        }

        let listener = tokio::net::TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let issuer = format!("{base_url}{}", opts.issuer_path);
        let discovery_url = format!("{base_url}{DISCOVERY_PATH}");

        // RSA key generation takes a noticeable moment; keep it off the async worker threads.
        let key = tokio::task::spawn_blocking(tokens::SigningKey::generate)
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let controls = Arc::new(Controls::new(key));
        let provider = Arc::new(Provider::new(
            issuer.clone(),
            base_url.clone(),
            clients,
            opts.id_token_lifetime,
            opts.access_token_lifetime,
            Arc::clone(&controls),
        ));
        let app = Router::new()
            .route(DISCOVERY_PATH, get(endpoints::discovery))
            .route(JWKS_PATH, get(endpoints::jwks))
            .route(
                AUTHORIZE_PATH,
                get(authorize::authorize_get).post(authorize::authorize_post),
            )
            .route(LOGIN_PATH, post(authorize::login_confirm))
            .route(TOKEN_PATH, post(token::token))
            .route(
                USERINFO_PATH,
                get(endpoints::userinfo).post(endpoints::userinfo),
            )
            .route(
                END_SESSION_PATH,
                get(endpoints::end_session).post(endpoints::end_session),
            )
            .with_state(provider);
        let shutdown = ShutdownOnDrop::spawn(listener, app, "dev provider");
        tracing::info!(%issuer, "dev provider listening");
        Ok(DevProvider {
            addr,
            base_url,
            issuer,
            discovery_url,
            controls,
            shutdown,
        })
    }

    pub fn authorization_endpoint(&self) -> String {
        format!("{}{AUTHORIZE_PATH}", self.base_url)
    }

    /// Also the preferred `aud` of `private_key_jwt` assertions.
    pub fn token_endpoint(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url)
    }

    pub fn userinfo_endpoint(&self) -> String {
        format!("{}{USERINFO_PATH}", self.base_url)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.base_url)
    }

    pub fn end_session_endpoint(&self) -> String {
        format!("{}{END_SESSION_PATH}", self.base_url)
    }

    /// A JWT access token for built-in user `user` with audience `aud`, signed with the current
    /// key, expiring `expires_in` seconds from now (negative: already expired). The provider
    /// itself issues opaque access tokens; this is for testing resource servers (bearer routes).
    pub fn mint_access_token(&self, user: &str, aud: &str, expires_in: i64) -> Option<String> {
        let user = users::user(user)?;
        let now = i64::try_from(state::now_secs()).ok()?;
        let mut claims = user.claims.clone();
        for (k, v) in [
            ("iss", serde_json::json!(self.issuer)),
            ("sub", serde_json::json!(user.sub())),
            ("aud", serde_json::json!(aud)),
            ("iat", serde_json::json!(now)),
            ("exp", serde_json::json!(now + expires_in)),
            ("jti", serde_json::json!(tokens::random_token())),
            ("scope", serde_json::json!("openid profile")),
        ] {
            claims.insert(k.into(), v);
        }
        self.controls
            .current_key()
            .sign(&serde_json::Value::Object(claims))
            .ok()
    }

    /// A back-channel logout token (OpenID Connect Back-Channel Logout 1.0) for client `aud`,
    /// naming `sub` and/or `sid`, signed with the current key. `extra` is merged last, so a
    /// test can break any claim (or add a `nonce`); a `null` removes the claim.
    pub fn mint_logout_token(
        &self,
        aud: &str,
        sub: Option<&str>,
        sid: Option<&str>,
        extra: serde_json::Value,
    ) -> Option<String> {
        let now = state::now_secs();
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "aud": aud,
            "iat": now,
            "exp": now + 120,
            "jti": tokens::random_token(),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        let map = claims.as_object_mut()?;
        if let Some(sub) = sub {
            map.insert("sub".into(), sub.into());
        }
        if let Some(sid) = sid {
            map.insert("sid".into(), sid.into());
        }
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
        self.controls.current_key().sign(&claims).ok()
    }

    /// Graceful stop: no new connections, in-flight requests finish.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

/// Runs an axum app on a listener until triggered or dropped.
struct ShutdownOnDrop(watch::Sender<bool>);

impl ShutdownOnDrop {
    fn spawn(listener: tokio::net::TcpListener, app: Router, what: &'static str) -> Self {
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            let stop = async move {
                // Err means the sender is gone, which also means stop.
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, server = what, "server stopped with an error");
            }
        });
        ShutdownOnDrop(tx)
    }

    fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.trigger();
    }
}
