//! The integration tests, linked into one binary: each module drives the real `oidc-gateway`
//! binary over loopback HTTP for one area of behaviour; `common` is the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod interop;

mod authz;
mod bearer;
mod canonical_property;
mod cli;
mod connections;
mod cors;
mod forward_auth;
mod hardening;
mod headers;
mod hostile;
mod id_token;
mod login_flow;
mod monitoring;
mod nginx;
mod observability;
mod oidc_provider;
mod paths;
mod profiles;
mod provider_down;
mod redis_ha;
mod redis_store;
mod refresh;
mod reload;
mod revocation;
mod schema;
mod session_cookie;
mod systemd;
mod tls;
mod upstream;
