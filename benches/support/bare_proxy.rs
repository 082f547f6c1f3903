//! The control target of `benches/load.sh`: a bare pingora HTTP/1 reverse proxy built from the
//! very pingora crates the gateway uses (this workspace's vendored pingora-core and
//! pingora-proxy), with nothing but `upstream_peer`. Same server settings as the gateway where
//! they are not SSO: worker threads, one runtime per thread (no work stealing), mimalloc, no
//! socket read buffer, pooled keep-alive upstream connections. Never shipped: an example.
//!
//!   bare-proxy --listen 127.0.0.1:4484 --upstream 127.0.0.1:4481 [--threads 2]
//!
//! What the gateway costs on top of pingora is the ratio of its routes to this proxy; what
//! pingora costs on top of nginx is this proxy's ratio to the nginx reverse proxy.

#[path = "bare.rs"]
mod bare;

/// mimalloc, as the gateway's binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    bare::main();
}
