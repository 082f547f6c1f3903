//! oidc-gateway: a reverse proxy that puts OpenID Connect single sign-on in front of web
//! applications that know nothing about it.
//!
//! A request reads top to bottom: `proxy` (pingora's hooks, in order) → `target` (canonical
//! path, endpoint or route: `paths`, `routing`) → `endpoints` (the gateway's own answers) →
//! `access` (the one decision: `session` or `bearer`, `refresh`, `authz` rules) → `upstream`
//! (`forwarded` headers, `identity` headers, `assertion`). `config` is parsed once into typed,
//! validated values and depends on no runtime module; `state` is what a config becomes at
//! request time; `respond` renders every answer the gateway gives itself.
//!
//! Public modules are the ones the binary, the benchmarks and the integration tests use.

mod access;
mod admin;
mod assertion;
mod assurance;
mod audit;
pub mod authz;
mod backchannel;
pub mod bearer;
mod certs;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
mod connections;
mod cors;
#[cfg(feature = "demo")]
mod demo;
mod endpoints;
mod forwarded;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod identity;
mod jws;
pub mod keygen;
mod log_writer;
pub mod metrics;
pub mod oidc;
pub mod paths;
mod proxy;
pub mod refresh;
mod reload;
mod request;
mod respond;
mod ring_rsa;
pub mod routing;
mod server;
pub mod session;
mod state;
mod target;
mod telemetry;
mod tls;
mod upstream;
