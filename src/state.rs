//! Everything a request needs, built once from a validated config: the route table, the
//! providers, the cookie codec and the set of identity header names to strip.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::assertion::{AssertionError, AssertionSigner};
use crate::bearer::BearerVerifier;
use pingora::utils::tls::WrappedX509;

use crate::claims::ClaimPath;
use crate::config::SessionStoreKind;
use crate::config::{Config, RouteConfig};
use crate::forwarded::same_header;
use crate::jws::KeyRing;
use crate::metrics::Metrics;
use crate::oidc::client_auth::ClientAuthError;
use crate::oidc::Provider;
use crate::routing::RouteTable;
use crate::session::cache::OpenedSessions;
use crate::session::redis_store::{RedisSetupError, RedisStore};
use crate::session::{Codec, SessionStore};
use crate::tls::{upstream_ca, TlsError};

/// The gateway's request-time state.
pub struct GatewayState {
    pub config: Config,
    pub routes: RouteTable,
    /// Parallel to `config.providers`.
    pub providers: Vec<Arc<Provider>>,
    pub codec: Codec,
    /// Where sessions live (the cookie, or Redis).
    pub store: SessionStore,
    /// Parallel to `providers`: bearer token validation and its cache.
    pub bearer: Vec<BearerVerifier>,
    /// Parallel to `providers`: keys that verify back-channel logout tokens.
    pub logout_keys: Vec<KeyRing>,
    /// Signs `X-Auth-Assertion` when `server.assertion_key_file` is set.
    pub assertions: Option<AssertionSigner>,
    /// Lower-case header names, `_` read as `-`, that clients may never send upstream.
    strip: Vec<String>,
    /// Per provider: every claim path its routes use (what a session keeps).
    kept_paths: Vec<Vec<ClaimPath>>,
    /// Per route (by `RouteConfig::index`): the upstream address, resolved once at start-up so
    /// that no request waits on DNS.
    upstreams: Vec<SocketAddr>,
    /// Per route: the CA certificates its https upstream is verified against (`None`: the
    /// system roots), parsed once into the form pingora's connector takes.
    upstream_cas: Vec<Option<(Arc<[WrappedX509]>, u64)>>,
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
        previous: &[Arc<Provider>],
        previous_store: Option<&SessionStore>,
    ) -> Result<GatewayState, StateError> {
        let store = match &config.session.store {
            SessionStoreKind::Cookie => SessionStore::Cookie(Arc::new(OpenedSessions::new())),
            SessionStoreKind::Redis(cfg) => match previous_store.and_then(SessionStore::redis) {
                Some(old) if old.config() == cfg => SessionStore::Redis(old.clone()),
                _ => SessionStore::Redis(Arc::new(RedisStore::new(cfg, metrics.clone())?)),
            },
        };
        let providers = config
            .providers
            .iter()
            .map(|p| match previous.iter().find(|old| *old.cfg == **p) {
                Some(old) => Ok(old.clone()),
                None => Provider::new(p.clone(), metrics.clone()).map(Arc::new),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut strip: Vec<String> = Vec::new();
        let mut kept_paths = vec![Vec::new(); config.providers.len()];
        for route in &config.routes {
            for rule in &route.headers {
                let name = normalize_header_name(rule.name.as_str());
                if !strip.contains(&name) {
                    strip.push(name);
                }
                kept_paths[route.provider].extend(rule.paths.iter().cloned());
            }
            kept_paths[route.provider].extend(route.require.iter().map(|r| r.path.clone()));
        }
        let mut upstreams = Vec::with_capacity(config.routes.len());
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
            upstreams.push(addr);
        }
        let bearer = config
            .providers
            .iter()
            .map(|p| BearerVerifier::new(p.clock_skew))
            .collect();
        let assertions = config
            .server
            .assertion_key
            .as_ref()
            .map(|k| AssertionSigner::new(k, &config.server.public_origin))
            .transpose()?;
        let mut upstream_cas = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
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
            upstream_cas.push(ca);
        }
        Ok(GatewayState {
            logout_keys: config.providers.iter().map(|_| KeyRing::new()).collect(),
            bearer,
            assertions,
            upstreams,
            upstream_cas,
            routes: RouteTable::new(config.routes.clone(), config.server.case_insensitive_paths),
            codec: Codec::new(config.session.keys.expose()),
            store,
            providers,
            strip,
            kept_paths,
            config,
        })
    }

    /// Whether a client-sent header must be removed before forwarding.
    pub fn must_strip(&self, name: &str) -> bool {
        let name = name.as_bytes();
        (name.len() >= 7 && same_header(&name[..7], b"x-auth-"))
            || self.strip.iter().any(|s| same_header(name, s.as_bytes()))
    }

    /// The claim paths a session from provider `index` must keep.
    pub fn kept_paths(&self, index: usize) -> &[ClaimPath] {
        &self.kept_paths[index]
    }

    /// The resolved upstream address of a route.
    pub fn upstream_addr(&self, route: &RouteConfig) -> Option<SocketAddr> {
        self.upstreams.get(route.index).copied()
    }

    /// The CA certificates a route's https upstream must chain to (`None`: the system roots),
    /// and a key naming that set of CAs for the connection pool.
    pub fn upstream_ca(&self, route: &RouteConfig) -> (Option<Arc<[WrappedX509]>>, u64) {
        match self.upstream_cas.get(route.index) {
            Some(Some((ca, key))) => (Some(ca.clone()), *key),
            _ => (None, 0),
        }
    }

    /// The provider index of a provider name.
    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name() == name)
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

/// Lower case, `_` as `-`: how proxies and CGI-style apps may read a header name.
fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscores_and_case_do_not_hide_identity_headers() {
        assert_eq!(normalize_header_name("X_Auth_Sub"), "x-auth-sub");
        assert_eq!(normalize_header_name("x-AUTH-org"), "x-auth-org");
    }
}
