//! oidc-gateway: a reverse proxy that puts OpenID Connect single sign-on in front of web
//! applications that know nothing about it.
//!
//! A request reads top to bottom through these modules: `proxy` (pingora hooks) → `routing`
//! (route match) → `session` (cookie) → `endpoints` / `oidc` (login flow) → `authz` (rules) →
//! `identity` (headers) → upstream. `config` is parsed once into typed structs; `respond` is the
//! one place that renders the gateway's own answers.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod assertion;
pub mod audit;
pub mod authz;
pub mod backchannel;
pub mod bearer;
pub mod claims;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
mod demo;
pub mod endpoints;
pub mod error;
pub mod forwarded;
pub mod identity;
pub mod jws;
pub mod keygen;
pub mod metrics;
pub mod oidc;
pub mod paths;
pub mod proxy;
pub mod refresh;
pub mod reload;
pub mod request;
pub mod respond;
pub mod routing;
pub mod server;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod tls;
