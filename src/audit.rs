//! Audit events: each one counts in `oidc_gateway_auth_events_total` and writes one line with
//! target `audit`, so the metric and the log can never disagree.
//!
//! Callers pass only what is safe to log: provider and route names from the config, the user's
//! `sub`, a rule's claim path, a fixed reason word and an error whose `Display` never contains a
//! token, code or cookie. Nothing here may take a raw request, token or session value.

use std::fmt::Display;

use crate::metrics::{AuthEvent, Metrics};

/// A login completed and the session cookie was written.
pub fn login_succeeded(metrics: &Metrics, provider: &str, sub: &str) {
    metrics.auth_event(provider, AuthEvent::LoginSucceeded);
    tracing::info!(target: "audit", event = "login_succeeded", provider, sub, "login succeeded");
}

/// A login failed; `reason` is a fixed word such as `invalid_state` or `provider_unavailable`.
pub fn login_failed(metrics: &Metrics, provider: &str, reason: &str, error: &dyn Display) {
    metrics.auth_event(provider, AuthEvent::LoginFailed);
    tracing::warn!(target: "audit", event = "login_failed", provider, reason, error = %error, "login failed");
}

/// A signed-in user failed `rule` (a claim path) of `route`.
pub fn forbidden(metrics: &Metrics, provider: &str, route: &str, sub: &str, rule: &str) {
    metrics.auth_event(provider, AuthEvent::Forbidden);
    tracing::info!(target: "audit", event = "forbidden", provider, route, sub, rule, "forbidden");
}

/// A user logged out.
pub fn logout(metrics: &Metrics, provider: &str, sub: &str) {
    metrics.auth_event(provider, AuthEvent::Logout);
    tracing::info!(target: "audit", event = "logout", provider, sub, "logout");
}

/// A session's tokens were refreshed at the provider.
pub fn refreshed(metrics: &Metrics, provider: &str, sub: &str) {
    metrics.auth_event(provider, AuthEvent::Refreshed);
    tracing::info!(target: "audit", event = "refreshed", provider, sub, "session refreshed");
}

/// A refresh failed and the session ended; `reason` is a fixed word.
pub fn refresh_failed(
    metrics: &Metrics,
    provider: &str,
    sub: &str,
    reason: &str,
    error: &dyn Display,
) {
    metrics.auth_event(provider, AuthEvent::RefreshFailed);
    tracing::warn!(target: "audit", event = "refresh_failed", provider, sub, reason, error = %error, "refresh failed");
}
