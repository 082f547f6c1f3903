//! Logging to stderr with `tracing`: human-readable text or JSON lines, filtered by `RUST_LOG`.
//! Pingora's `log` records arrive through the subscriber's `tracing-log` bridge.
//!
//! Whatever `RUST_LOG` says, the HTTP libraries underneath never log below INFO: at DEBUG and
//! TRACE pingora prints whole request headers (cookies) and the HTTP clients print token
//! requests, and the contract is that no token, code, cookie or secret is logged at any level.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::log_writer::BatchedStderr;
pub use crate::log_writer::{flush, flush_current_thread};

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Targets (prefixes) whose DEBUG/TRACE output can carry secrets.
const CAPPED_AT_INFO: &[&str] = &[
    "pingora",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "tower",
    "axum",
];

/// Whether an event may be logged at all (the ceiling for chatty libraries).
pub fn allowed(target: &str, level: &Level) -> bool {
    *level <= Level::INFO || !CAPPED_AT_INFO.iter().any(|p| target.starts_with(p))
}

/// Installs the global subscriber (once; later calls are ignored).
///
/// Lines go to stderr through `log_writer`, in batches: a slow stderr (journald under load)
/// must not stall the proxy's worker threads, which write an access line per request. Colours
/// only on a terminal: under systemd, escape codes would end up in the journal.
pub fn init(format: LogFormat) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Both filters must pass, so the env filter's most verbose level is the most verbose level
    // of the whole subscriber. Saying so matters for speed: `try_init` hands this hint to the
    // `log` bridge as `log::max_level`, and without it (a filter function has no hint) every
    // debug!/trace! of pingora builds a record and runs the env filter (seen in profiles as
    // `tracing_log::dispatch_record`, a few % of the CPU per request).
    let most_verbose = env.max_level_hint();
    let ceiling = filter_fn(|m| allowed(m.target(), m.level()));
    let ceiling = match most_verbose {
        Some(level) => ceiling.with_max_level_hint(level),
        None => ceiling,
    };
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    INSTALLED.call_once(|| first = true);
    if !first {
        return;
    }
    let base = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(BatchedStderr);
    let layer = match format {
        LogFormat::Text => base.with_filter(env).with_filter(ceiling).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_filter(env)
            .with_filter(ceiling)
            .boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_debug_and_trace_are_never_logged() {
        assert!(!allowed("pingora_proxy", &Level::TRACE));
        assert!(!allowed("hyper_util::client", &Level::DEBUG));
        assert!(allowed("pingora_core::server", &Level::INFO));
        assert!(allowed("oidc_gateway::proxy", &Level::TRACE));
    }
}
