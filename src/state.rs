//! Everything a request needs, built once from a validated config: the route table, the
//! providers, the cookie codec and the set of identity header names to strip.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::assertion::{AssertionError, AssertionSigner};
use crate::bearer::BearerVerifier;
use pingora::utils::tls::WrappedX509;

use crate::claims::ClaimPath;
use crate::config::{Config, RouteConfig};
use crate::config::{RevocationKind, SessionStoreKind};
use crate::forwarded::IdentityHeaders;
use crate::jws::KeyRing;
use crate::metrics::{Metrics, RouteMetrics};
use crate::oidc::client_auth::ClientAuthError;
use crate::oidc::Provider;
use crate::routing::RouteTable;
use crate::session::cache::OpenedSessions;
use crate::session::redis_store::{RedisSetupError, RedisStore};
use crate::session::revocation::Revocations;
use crate::session::store::CookieStore;
use crate::session::{Codec, SessionStore};
use crate::tls::{upstream_ca, TlsError};

/// The gateway's request-time state.
pub struct GatewayState {
    pub config: Config,
    pub routes: RouteTable,
    /// One per `config.providers` entry, in the same order (`RouteConfig::provider` indexes it).
    pub providers: Vec<ProviderRuntime>,
    pub codec: Codec,
    /// Where sessions live (the cookie, or Redis).
    pub store: SessionStore,
    /// Signs `X-Auth-Assertion` when `server.assertion_key_file` is set.
    pub assertions: Option<AssertionSigner>,
    /// The header names clients may never send upstream.
    pub identity_headers: IdentityHeaders,
    /// One per route, by `RouteConfig::index`.
    upstreams: Vec<RouteUpstream>,
    /// Request metrics: one per route, by `RouteConfig::index`, then the labels of requests
    /// no route took (`NON_ROUTE_LABELS`).
    request_metrics: Vec<RouteMetrics>,
}

/// The `route` labels of requests that no route took: gateway endpoints and refusals, no
/// route matched, and none read at all.
const NON_ROUTE_LABELS: [&str; 3] = ["gateway", "unmatched", "none"];

/// A provider at request time: its OpenID client and what is derived from its routes.
pub struct ProviderRuntime {
    /// Discovery, keys and the token endpoint; taken over by a reload that leaves the
    /// provider's settings unchanged.
    pub oidc: Arc<Provider>,
    /// Bearer token validation and its cache.
    pub bearer: BearerVerifier,
    /// Keys that verify back-channel logout tokens.
    pub logout_keys: KeyRing,
    /// Every claim path its routes use: what a session from this provider keeps.
    pub kept_paths: Vec<ClaimPath>,
}

/// A route's upstream, prepared once so that no request waits on DNS or parses certificates.
struct RouteUpstream {
    addr: SocketAddr,
    /// The CA certificates an https upstream is verified against (`None`: the system roots),
    /// in the form pingora's connector takes, with the pool key naming them.
    ca: Option<(Arc<[WrappedX509]>, u64)>,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    ClientAuth(#[from] ClientAuthError),
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    #[error("route {route}: cannot resolve upstream {address}: {reason}")]
    Resolve {
        route: String,
        address: String,
        reason: String,
    },
    #[error("route {route}: CA file: {source}")]
    Ca { route: String, source: TlsError },
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
}

impl GatewayState {
    /// Makes the metrics show this state's providers and routes: their series exist (at zero),
    /// and those of providers and routes no longer configured are gone. Called once the state
    /// is live: at start-up and after every reload attempt, refused ones included.
    pub fn settle_metrics(&self, metrics: &Metrics) {
        let providers: Vec<&str> = self
            .config
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let routes: Vec<&str> = self.config.routes.iter().map(|r| r.name.as_str()).collect();
        metrics.settle(&providers, &routes);
    }

    /// Builds the state; fails only when a private key cannot be used.
    pub fn new(config: Config, metrics: &Metrics) -> Result<GatewayState, StateError> {
        GatewayState::reusing(config, metrics, &[], None)
    }

    /// Builds the state for a reload: a provider whose settings are unchanged is taken over from
    /// `previous` as it is (its discovery and keys stay loaded); the others start empty. So is
    /// a Redis store whose settings are unchanged (with its connections).
    pub fn reusing(
        config: Config,
        metrics: &Metrics,
        previous: &[ProviderRuntime],
        previous_store: Option<&SessionStore>,
    ) -> Result<GatewayState, StateError> {
        let store = build_store(&config, metrics, previous_store)?;
        let oidc = config
            .providers
            .iter()
            .map(|p| match previous.iter().find(|old| *old.oidc.cfg == **p) {
                Some(old) => Ok(old.oidc.clone()),
                None => Provider::new(p.clone(), metrics.clone()).map(Arc::new),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut kept_paths = vec![Vec::new(); config.providers.len()];
        for route in &config.routes {
            for rule in &route.headers {
                kept_paths[route.provider].extend(rule.paths.iter().cloned());
            }
            kept_paths[route.provider].extend(route.require.iter().map(|r| r.path.clone()));
        }
        let mut addrs = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let addr = route
                .upstream
                .address
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
                .map_err(|reason| StateError::Resolve {
                    route: route.name.clone(),
                    address: route.upstream.address.clone(),
                    reason,
                })?;
            addrs.push(addr);
        }
        let assertions = config
            .server
            .assertion_key
            .as_ref()
            .map(|k| AssertionSigner::new(k, &config.server.public_origin))
            .transpose()?;
        let mut upstreams = Vec::with_capacity(config.routes.len());
        for (route, addr) in config.routes.iter().zip(addrs) {
            let certs = route
                .upstream
                .ca
                .as_ref()
                .or(config.server.upstream_ca.as_ref())
                .filter(|_| route.upstream.tls);
            let ca = match certs {
                Some(c) => {
                    let parsed = upstream_ca(c).map_err(|source| StateError::Ca {
                        route: route.name.clone(),
                        source,
                    })?;
                    Some((parsed, trust_key(c)))
                }
                None => None,
            };
            upstreams.push(RouteUpstream { addr, ca });
        }
        let providers = oidc
            .into_iter()
            .zip(kept_paths)
            .map(|(oidc, kept_paths)| ProviderRuntime {
                bearer: BearerVerifier::new(oidc.cfg.clock_skew),
                logout_keys: KeyRing::new(),
                oidc,
                kept_paths,
            })
            .collect();
        let request_metrics = config
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .chain(NON_ROUTE_LABELS)
            .map(|label| metrics.for_route(label))
            .collect();
        Ok(GatewayState {
            assertions,
            upstreams,
            request_metrics,
            routes: RouteTable::new(config.routes.clone(), config.server.case_insensitive_paths),
            codec: Codec::new(config.session.keys.expose()),
            store,
            providers,
            identity_headers: IdentityHeaders::of(&config.routes),
            config,
        })
    }

    /// The request metrics of a route, or of a request no route took (by its label).
    pub fn request_metrics(
        &self,
        route: Option<&RouteConfig>,
        label: &str,
    ) -> Option<&RouteMetrics> {
        let index = match route {
            Some(r) => r.index,
            None => self.config.routes.len() + NON_ROUTE_LABELS.iter().position(|l| *l == label)?,
        };
        self.request_metrics.get(index)
    }

    /// The resolved upstream address of a route.
    pub fn upstream_addr(&self, route: &RouteConfig) -> Option<SocketAddr> {
        self.upstreams.get(route.index).map(|u| u.addr)
    }

    /// The CA certificates a route's https upstream must chain to (`None`: the system roots),
    /// and a key naming that set of CAs for the connection pool.
    pub fn upstream_ca(&self, route: &RouteConfig) -> (Option<Arc<[WrappedX509]>>, u64) {
        match self.upstreams.get(route.index).and_then(|u| u.ca.as_ref()) {
            Some((ca, key)) => (Some(ca.clone()), *key),
            None => (None, 0),
        }
    }

    /// The provider index of a provider name.
    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.oidc.name() == name)
    }
}

/// Pingora pools upstream connections by address and SNI, not by the CAs that verified them:
/// this key (hashed into the pool key as the peer's `group_key`) keeps a connection verified
/// under one set of CAs from serving a route, or a reloaded config, that trusts another.
fn trust_key(certs: &[Vec<u8>]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in certs {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Never 0, which stands for the system roots.
    u64::from_be_bytes(first).max(1)
}

/// The session store of `config`. A Redis store whose settings are unchanged is taken over
/// from `previous` with its connections, and so is the revocation list with its entries.
fn build_store(
    config: &Config,
    metrics: &Metrics,
    previous: Option<&SessionStore>,
) -> Result<SessionStore, StateError> {
    let session = &config.session;
    let reuse_redis = |cfg: &crate::config::RedisConfig,
                       old: Option<&Arc<RedisStore>>|
     -> Result<Arc<RedisStore>, StateError> {
        match old {
            Some(old) if old.config() == cfg => Ok(old.clone()),
            _ => Ok(Arc::new(RedisStore::new(cfg, metrics.clone())?)),
        }
    };
    Ok(match &session.store {
        SessionStoreKind::Redis(cfg) => {
            SessionStore::Redis(reuse_redis(cfg, previous.and_then(SessionStore::redis))?)
        }
        SessionStoreKind::Cookie => {
            let old = previous.and_then(SessionStore::revocations);
            let redis = match &session.revocation {
                RevocationKind::Memory => None,
                RevocationKind::Redis(cfg) => Some(reuse_redis(cfg, old.and_then(|o| o.redis()))?),
            };
            let skew = config
                .providers
                .iter()
                .map(|p| p.clock_skew)
                .max()
                .unwrap_or_default();
            let jti_keep = crate::backchannel::jti_keep(skew);
            let (keep, capacity) = (session.max_lifetime, session.max_revocations);
            let revocations = match old {
                Some(o) if o.fits(keep, capacity, jti_keep, redis.as_ref()) => o.clone(),
                _ => {
                    let list = Arc::new(Revocations::new(
                        keep,
                        capacity,
                        jti_keep,
                        redis,
                        metrics.clone(),
                    ));
                    if let Some(o) = old {
                        list.take_over(o);
                    }
                    list
                }
            };
            SessionStore::Cookie(Arc::new(CookieStore {
                opened: OpenedSessions::new(),
                revocations,
                registrations: config
                    .providers
                    .iter()
                    .map(|p| (p.name.clone(), registration(&p.issuer, &p.client_id)))
                    .collect(),
            }))
        }
    })
}

/// The name of a client registration at an issuer, which cookie revocations are recorded under.
pub fn registration(issuer: &str, client_id: &str) -> String {
    format!("{issuer}\0{client_id}")
}
