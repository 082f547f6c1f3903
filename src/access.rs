//! The one decision "who is this request, and may it pass".
//!
//! Every place that needs an identity (the proxy, forward-auth, UserInfo, logout) calls
//! [`Access::decide`]: it reads the bearer token or the session cookie, loads the session from
//! the store (cookie or Redis: callers never ask which), applies expiry and the provider check,
//! refreshes due tokens, applies the route's rules ([`Access::authorize`], the only place
//! `route.require` is evaluated) and writes back activity. What it returns is an identity with
//! the cookies to set, or a [`Denial`]; [`denied`] is the one table that turns a denial into
//! the response. So a forward-auth-only deployment refreshes and extends sessions exactly like
//! the proxied path, and no endpoint can forget a step.

use std::sync::Arc;

use http::HeaderMap;

use crate::assurance::{self, StepUp};
use crate::audit;
use crate::authz;
use crate::bearer::{bearer_token, BearerError, BearerIdentity};
use crate::claims::Claims;
use crate::clock::now;
use crate::config::RouteConfig;
use crate::metrics::Metrics;
use crate::refresh::{self, RefreshError, Refresher, Stored};
use crate::respond::{self, Reply};
use crate::session::cookies::clear_session;
use crate::session::{
    Handle, LoadError, Loaded, Miss, RequestCookies, SaveError, Session as UserSession,
};
use crate::state::GatewayState;

/// The decision-maker: metrics and the single-flight refresher, which outlive configuration
/// swaps so that a refresh in flight is still shared.
#[derive(Clone)]
pub struct Access {
    pub metrics: Metrics,
    refresher: Refresher,
}

/// What a decision is about.
pub struct Ask<'a> {
    pub headers: &'a HeaderMap,
    pub cookies: &'a RequestCookies<'a>,
    /// The route whose provider, bearer setting and rules apply. `None`: a session of any
    /// configured provider, no rules (UserInfo, logout).
    pub route: Option<&'a RouteConfig>,
    /// Whether the client is a browser (403 page or JSON).
    pub browser: bool,
    /// Apply expiry, refresh due tokens and write back activity. False for logout, which ends
    /// the session as it is stored: an idle or expired session still has a provider session
    /// to end (RP-initiated logout with its `id_token_hint`).
    pub extend: bool,
}

impl<'a> Ask<'a> {
    /// A request for `route`, as the proxy and forward-auth ask it: tokens refreshed and
    /// activity written back.
    pub fn for_route(
        headers: &'a HeaderMap,
        cookies: &'a RequestCookies<'a>,
        route: &'a RouteConfig,
    ) -> Ask<'a> {
        Ask {
            headers,
            cookies,
            route: Some(route),
            browser: crate::request::is_browser(headers),
            extend: true,
        }
    }
}

/// An identified request's user: a session or a bearer token, shared with the cache it came
/// from rather than copied.
pub enum Identity {
    Session(Arc<UserSession>),
    Bearer(Arc<BearerIdentity>),
}

impl Identity {
    pub fn claims(&self) -> &Claims {
        match self {
            Identity::Session(s) => &s.claims,
            Identity::Bearer(b) => &b.claims,
        }
    }

    /// The user, for access lines.
    pub fn subject(&self) -> Option<&str> {
        self.claims().get("sub").and_then(|s| s.as_str())
    }
}

/// A request that may pass.
pub struct Admitted {
    pub identity: Identity,
    /// `Set-Cookie` values for a touched or refreshed session.
    pub set_cookies: Vec<String>,
    /// Where the session is stored (`None` for bearer tokens): what logout removes.
    pub handle: Option<Handle>,
}

/// Why a request may not pass.
#[derive(Debug)]
pub enum Denial {
    /// No usable session (absent, expired, revoked, refresh rejected): a browser logs in, an
    /// API client gets 401. `clear` deletes stale session cookies on the way.
    LoginRequired { clear: Vec<String> },
    /// A bearer token that is not accepted (or whose keys cannot be loaded).
    BearerRefused(BearerError),
    /// Identified, but the route's rules are not met: 403 (always JSON for a bearer token,
    /// which only API clients send). `sub` is for the access line; `set_cookies` carries a
    /// session refreshed on the way (its old refresh token may be spent).
    Forbidden {
        sub: Option<String>,
        bearer: bool,
        set_cookies: Vec<String>,
    },
    /// Identified, but not authenticated as the route requires (`require_acr`,
    /// `max_auth_age`): a browser signs in again asking for it (the session stays until that
    /// succeeds), an API client gets 401 `insufficient_user_authentication`. `set_cookies` as
    /// for `Forbidden`.
    StepUp {
        step_up: StepUp,
        sub: Option<String>,
        set_cookies: Vec<String>,
    },
    /// Tokens are due for refresh and the provider cannot be reached: 503, the cookie stays.
    ProviderUnavailable,
    /// The session store does not answer: 503, the cookie stays (fail closed).
    StoreUnavailable,
}

impl Access {
    pub fn new(metrics: Metrics) -> Access {
        Access {
            metrics,
            refresher: Refresher::new(),
        }
    }

    /// Identifies the request and applies the route's rules (see the module comment).
    pub async fn decide(&self, state: &GatewayState, ask: &Ask<'_>) -> Result<Admitted, Denial> {
        // A bearer token on a bearer route decides alone: valid or refused, never a login.
        if let Some(route) = ask.route.filter(|r| r.bearer) {
            if let Some(token) = bearer_token(ask.headers) {
                let runtime = &state.providers[route.provider];
                let identity = runtime
                    .bearer
                    .verify(&runtime.oidc, &runtime.kept_paths, token)
                    .await
                    .map_err(|e| {
                        tracing::debug!(route = %route.name, reason = %e, "bearer token refused");
                        Denial::BearerRefused(e)
                    })?;
                self.authorize(state, route, &identity.claims, true)?;
                return Ok(Admitted {
                    identity: Identity::Bearer(identity),
                    set_cookies: Vec::new(),
                    handle: None,
                });
            }
        }
        let cfg = &state.config.session;
        let now = now();
        let Loaded {
            session: mut user,
            handle,
        } = self.load(state, ask, now).await?;
        let provider_index = match ask.route {
            Some(r) => r.provider,
            None => state
                .provider_index(&user.provider)
                .ok_or_else(|| self.miss(state, ask, Miss::OtherProvider))?,
        };
        let mut reseal = ask.extend && user.needs_touch(cfg, now);
        let mut was_refreshed = false;
        if ask.extend && refresh::is_due(&user, now) {
            let provider = &state.providers[provider_index].oidc;
            let kept = &state.providers[provider_index].kept_paths;
            let refreshed = if provider.is_down() {
                // Known to be down: asking would only wait out its timeout on every request.
                Err(RefreshError::Unavailable)
            } else {
                match &handle {
                    Handle::Redis { .. } => {
                        let stored = Stored {
                            cfg,
                            store: &state.store,
                            codec: &state.codec,
                            handle: &handle,
                        };
                        self.refresher
                            .refresh_stored(stored, provider, kept, &user, &self.metrics, now)
                            .await
                    }
                    Handle::Cookie => {
                        self.refresher
                            .refresh(provider, kept, &user, &self.metrics, now)
                            .await
                    }
                }
            };
            match refreshed {
                Ok(fresh) => {
                    user = Arc::new(fresh);
                    reseal = true;
                    was_refreshed = true;
                }
                // An outage while the ID token still holds: the session goes on as it is and
                // a later request refreshes it.
                Err(RefreshError::Unavailable) if refresh::rides_out_outage(&user, now) => {
                    tracing::debug!(
                        provider = provider.name(),
                        "refresh postponed: provider unavailable, ID token still valid"
                    );
                }
                // Fail closed: the provider's tokens have expired and it cannot confirm the
                // user now, so this request waits; the cookie stays for when it is back.
                Err(RefreshError::Unavailable) => return Err(Denial::ProviderUnavailable),
                Err(RefreshError::Store) => return Err(Denial::StoreUnavailable),
                Err(RefreshError::Rejected(_)) => {
                    return Err(Denial::LoginRequired {
                        clear: clear_session(cfg, ask.cookies),
                    })
                }
            }
        }
        // Rules after a refresh (its claims count) and before re-sealing: a forbidden request
        // does not extend the session, unless it was refreshed (the provider may have rotated
        // the refresh token the old cookie holds).
        if let Some(route) = ask.route {
            if let Err(mut denial) = self.authorize(state, route, &user.claims, false) {
                if was_refreshed {
                    let fresh = Arc::make_mut(&mut user);
                    fresh.last_seen = now;
                    let saved = self.save(state, &handle, fresh, ask.cookies, now).await;
                    if let (
                        Ok(set),
                        Denial::Forbidden { set_cookies, .. } | Denial::StepUp { set_cookies, .. },
                    ) = (saved, &mut denial)
                    {
                        *set_cookies = set;
                    }
                }
                return Err(denial);
            }
        }
        let mut set_cookies = Vec::new();
        if reseal {
            // A copy: the cache of opened cookies keeps the session as it was sealed.
            let fresh = Arc::make_mut(&mut user);
            fresh.last_seen = now;
            match self.save(state, &handle, fresh, ask.cookies, now).await {
                Ok(set) => set_cookies = set,
                Err(SaveError::Unavailable(_)) => return Err(Denial::StoreUnavailable),
                Err(SaveError::Gone) => {
                    tracing::debug!("session revoked during the request");
                    return Err(Denial::LoginRequired {
                        clear: clear_session(cfg, ask.cookies),
                    });
                }
                Err(e) => tracing::warn!(error = %e, "could not re-seal the session"),
            }
        }
        Ok(Admitted {
            identity: Identity::Session(user),
            set_cookies,
            handle: Some(handle),
        })
    }

    /// The route's authentication requirements (a step-up when unmet), then its rules: the
    /// first unmet one is counted, audited and answered with 403.
    pub fn authorize(
        &self,
        state: &GatewayState,
        route: &RouteConfig,
        claims: &Claims,
        bearer: bool,
    ) -> Result<(), Denial> {
        if let Err(step_up) = assurance::check(&route.assurance, claims, now()) {
            let sub = claims.get("sub").and_then(|s| s.as_str());
            tracing::info!(route = %route.name, sub = sub.unwrap_or("-"), acr_unmet = step_up.acr_unmet, "step-up authentication required");
            return Err(Denial::StepUp {
                step_up,
                sub: sub.map(str::to_owned),
                set_cookies: Vec::new(),
            });
        }
        let Some(unmet) = authz::first_unmet(&route.require, claims) else {
            return Ok(());
        };
        let provider = state.providers[route.provider].oidc.name();
        let sub = claims.get("sub").and_then(|s| s.as_str());
        audit::forbidden(
            &self.metrics,
            provider,
            &route.name,
            sub.unwrap_or("-"),
            unmet.path.text(),
        );
        Err(Denial::Forbidden {
            sub: sub.map(str::to_owned),
            bearer,
            set_cookies: Vec::new(),
        })
    }

    /// The stored session, unexpired and of the route's provider.
    async fn load(&self, state: &GatewayState, ask: &Ask<'_>, now: u64) -> Result<Loaded, Denial> {
        let cfg = &state.config.session;
        let loaded = match state.store.load(cfg, &state.codec, ask.cookies).await {
            Ok(l) => l,
            Err(LoadError::Unavailable(_)) => return Err(Denial::StoreUnavailable),
            Err(LoadError::Miss(miss)) => return Err(self.miss(state, ask, miss)),
        };
        if let Some(miss) = loaded.session.expired_at(cfg, now).filter(|_| ask.extend) {
            return Err(self.miss(state, ask, miss));
        }
        if let Some(route) = ask.route {
            if loaded.session.provider != state.providers[route.provider].oidc.name() {
                return Err(self.miss(state, ask, Miss::OtherProvider));
            }
        }
        Ok(loaded)
    }

    /// No usable session. A stale or broken session cookie is cleared on the way to the
    /// login; one of another provider is kept (it is still good on that provider's routes).
    fn miss(&self, state: &GatewayState, ask: &Ask<'_>, miss: Miss) -> Denial {
        if miss != Miss::Absent {
            let route = ask.route.map(|r| r.name.as_str()).unwrap_or("-");
            tracing::debug!(reason = %miss, route, "no usable session");
        }
        let clear = if miss == Miss::OtherProvider {
            Vec::new()
        } else {
            clear_session(&state.config.session, ask.cookies)
        };
        Denial::LoginRequired { clear }
    }

    /// Saves a touched or refreshed session. A cookie session that no longer fits drops its
    /// logout hint rather than the session, as at login.
    async fn save(
        &self,
        state: &GatewayState,
        handle: &Handle,
        user: &mut UserSession,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, SaveError> {
        let cfg = &state.config.session;
        let mut saved = state
            .store
            .save(cfg, &state.codec, handle, user, cookies, now)
            .await;
        if matches!(saved, Err(SaveError::TooLarge(_))) && user.id_token_hint.is_some() {
            tracing::debug!("session too large with the logout hint; dropping it");
            user.id_token_hint = None;
            saved = state
                .store
                .save(cfg, &state.codec, handle, user, cookies, now)
                .await;
        }
        if let Ok(set) = &saved {
            self.metrics.session_written(&user.provider, set);
        }
        saved
    }
}

/// How the caller answers a login that is needed.
pub enum OnLogin<'a> {
    /// A browser is sent to the provider (the reply that starts the login); an API client gets
    /// 401 with this sign-in URL.
    Redirect {
        start: &'a dyn Fn() -> Reply,
        login_url: &'a str,
        cors: Option<&'a str>,
    },
    /// Always 401 JSON with this sign-in URL (forward-auth, UserInfo: the caller redirects).
    Api { login_url: &'a str },
}

/// The one table from denials to responses.
pub fn denied(denial: Denial, browser: bool, on_login: OnLogin<'_>) -> Reply {
    match denial {
        Denial::LoginRequired { clear } => match on_login {
            OnLogin::Redirect { start, .. } if browser => start().with_cookies(clear),
            OnLogin::Redirect {
                login_url, cors, ..
            } => respond::login_required_api(login_url, cors).with_cookies(clear),
            OnLogin::Api { login_url } => {
                respond::login_required_api(login_url, None).with_cookies(clear)
            }
        },
        Denial::BearerRefused(e) => respond::bearer_refused(&e),
        // Bearer requests are API requests: a JSON 403, whatever their Accept says.
        Denial::Forbidden {
            bearer,
            set_cookies,
            ..
        } => respond::forbidden(browser && !bearer).with_cookies(set_cookies),
        // A bearer token cannot sign in again: its client gets the RFC 9470 challenge.
        Denial::StepUp {
            step_up,
            set_cookies,
            ..
        } => match on_login {
            OnLogin::Redirect { start, .. } if browser => start().with_cookies(set_cookies),
            OnLogin::Redirect {
                login_url, cors, ..
            } => respond::step_up_api(login_url, &step_up, cors).with_cookies(set_cookies),
            OnLogin::Api { login_url } => {
                respond::step_up_api(login_url, &step_up, None).with_cookies(set_cookies)
            }
        },
        Denial::ProviderUnavailable => respond::provider_unavailable(browser),
        Denial::StoreUnavailable => respond::store_unavailable(browser),
    }
}
