//! Test harness: a real development provider and echo upstream in-process, the real
//! `oidc-gateway` binary on ephemeral loopback ports, and a small browser (reqwest without
//! redirects plus a cookie jar the tests can inspect and tamper with).

mod browser;
pub mod ca;
mod gateway;
mod ports;
pub mod raw;
pub mod redis;
pub mod redis_ha;
pub mod upstreams;

pub use browser::*;
pub use gateway::*;
pub use ports::*;

use std::time::{Duration, Instant};

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The value of the first metric line of the gateway at `admin` that starts with `needle`.
pub async fn metric(admin: &str, needle: &str) -> Option<f64> {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
