//! Loopback ports for the gateways and servers the tests start.

use std::net::{SocketAddr, TcpListener};

/// A free loopback port (bound then released: good enough for tests on one machine).
///
/// Never hands out the same port twice in one test process: pingora listens with port reuse,
/// so two gateways of parallel tests could otherwise share a port that was free for both.
pub fn free_port() -> u16 {
    free_ports_at(&[0])
}

static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A port `p` such that `p + offset` is free and not handed out before, for every offset: for
/// programs that take several ports from one number (`oidc-gateway demo --port p` listens on
/// p, p + 1, p + 2 and p + 10). All of them count as handed out.
pub fn free_ports_at(offsets: &[u16]) -> u16 {
    let top = offsets.iter().copied().max().unwrap_or(0);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let Some(ports) = offsets
            .iter()
            .map(|o| port.checked_add(*o))
            .collect::<Option<Vec<u16>>>()
            .filter(|_| port.checked_add(top).is_some())
        else {
            continue;
        };
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let free = ports.iter().all(|p| {
            !given.contains(p) && (*p == port || TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            given.extend(ports);
            return port;
        }
    }
}

/// A loopback address on a port from [`free_port`], for the tests' own servers: binding port 0
/// instead could take a port just handed to a gateway that has not bound it yet, and requests
/// meant for that gateway would reach the other server.
pub fn any_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
