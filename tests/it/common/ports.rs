//! Loopback ports for the gateways and servers the tests start.

use std::net::{SocketAddr, TcpListener};

/// A free loopback port (bound then released: good enough for tests on one machine).
///
/// Never hands out the same port twice in one test process: pingora listens with port reuse,
/// so two gateways of parallel tests could otherwise share a port that was free for both.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
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
