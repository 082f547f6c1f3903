//! What the upstream receives: the connection (the route's resolved address, TLS with its CA
//! set, the timeouts) and the request head (client-sent identity headers, gateway cookies and
//! untrusted forwarding headers gone; the gateway's forwarding headers, the canonical URI, the
//! identity headers and the assertion in).

use std::net::IpAddr;
use std::time::Instant;

use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, ErrorType::InvalidHTTPHeader, OrErr, Result};

use crate::access::Identity;
use crate::config::RouteConfig;
use crate::forwarded::{self, Seen};
use crate::identity;
use crate::state::GatewayState;

/// The connection to a route's upstream.
pub fn peer(state: &GatewayState, route: &RouteConfig) -> Result<Box<HttpPeer>> {
    let upstream = &route.upstream;
    let addr = state.upstream_addr(route).ok_or_else(|| {
        Error::explain(ErrorType::ConnectNoRoute, "upstream address not resolved")
    })?;
    let mut peer = HttpPeer::new(addr, upstream.tls, upstream.sni.clone());
    let server = &state.config.server;
    peer.options.connection_timeout = Some(server.upstream_connect_timeout);
    peer.options.total_connection_timeout = Some(server.upstream_connect_timeout);
    peer.options.read_timeout = Some(server.upstream_read_timeout);
    // A configured CA file replaces the system roots for this upstream.
    let (ca, trust) = state.upstream_ca(route);
    peer.options.ca = ca;
    peer.group_key = trust;
    Ok(Box::new(peer))
}

/// What the proxy decided for the upstream request (kept across pingora's retries).
pub struct Outgoing<'a> {
    pub peer: Option<IpAddr>,
    pub client_host: Option<&'a http::HeaderValue>,
    /// The canonical path and query before `strip_prefix`.
    pub canonical_uri: &'a str,
    /// Set when the upstream must not get the client's raw target.
    pub uri: Option<&'a http::Uri>,
    pub identity: Option<&'a Identity>,
    pub assertion: Option<&'a str>,
}

/// Rewrites the request head pingora copied from the client into the upstream's.
pub fn request(
    state: &GatewayState,
    route: &RouteConfig,
    out: &Outgoing<'_>,
    upstream: &mut RequestHeader,
) -> Result<()> {
    forwarded::strip_identity_headers(&state.identity_headers, upstream);
    forwarded::strip_gateway_cookies(&state.config.session, upstream)?;
    let seen = Seen {
        peer: out.peer,
        host: out.client_host,
        uri: out.canonical_uri,
    };
    forwarded::set_forwarding_headers(&state.config.server, &seen, upstream)?;
    if let Some(uri) = out.uri {
        upstream.set_uri(uri.clone());
    }
    if let Some(who) = out.identity {
        for (rule, value) in identity::headers(&route.headers, who.claims()) {
            // Parsed names and the rendered bytes as they are: no copy of either per header.
            let value = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
                .or_err(InvalidHTTPHeader, "identity header value")?;
            upstream.insert_header_case(&rule.name, rule.spelling.clone(), value)?;
        }
    }
    if let Some(assertion) = out.assertion {
        upstream.insert_header(crate::assertion::HEADER, assertion)?;
    }
    Ok(())
}

/// When the upstream was asked, and how long until its response head arrived.
#[derive(Default)]
pub struct Timing {
    started: Option<Instant>,
    head: Option<std::time::Duration>,
}

impl Timing {
    /// The first attempt starts the clock (a retry does not).
    pub fn start(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// The first response head stops it (informational heads such as 100 Continue come
    /// first).
    pub fn head_arrived(&mut self) {
        if self.head.is_none() {
            self.head = self.started.map(|t| t.elapsed());
        }
    }

    /// The upstream's time: until its head, or until now for one that never answered (a
    /// failed upstream still took this long, up to its timeout).
    pub fn elapsed(&self) -> Option<std::time::Duration> {
        self.head.or_else(|| self.started.map(|t| t.elapsed()))
    }
}
