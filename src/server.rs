//! Builds and runs the pingora server: the proxy listener, the admin listener, a background
//! service that loads providers (discovery and JWKS) and keeps them fresh, and one that reloads
//! the configuration on SIGHUP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::config::Config;
use crate::connections::ConnectionLimit;
use crate::metrics::Metrics;
use crate::oidc::LoadError;
use crate::proxy::Gateway;
use crate::reload::{self, ProviderSupervisor, Reloader};
use crate::state::{GatewayState, StateError};
use crate::tls::{ListenerCert, TlsError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("provider {provider}: {source}")]
    Provider { provider: String, source: LoadError },
    #[error("cannot start the runtime for start-up checks: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen with TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
}

/// Prepares everything `run` needs, checking providers once: an issuer mismatch stops start-up;
/// an unreachable provider does not (it is retried in the background).
pub fn prepare(config: Config) -> Result<(Arc<ArcSwap<GatewayState>>, Metrics), StartError> {
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let metrics = Metrics::new();
    let state = GatewayState::new(config, &metrics)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    for provider in state.providers.iter().map(|p| &p.oidc) {
        let wait = provider.cfg.timeout + Duration::from_secs(1);
        match rt.block_on(async { tokio::time::timeout(wait, provider.load()).await }) {
            Ok(Ok(())) => {
                tracing::info!(provider = provider.name(), issuer = %provider.cfg.issuer, "provider loaded")
            }
            Ok(Err(e)) if e.is_fatal() => {
                return Err(StartError::Provider {
                    provider: provider.name().to_owned(),
                    source: e,
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.name(), error = %e, "provider not reachable at start; retrying in the background (/readyz stays 503 and logins get 503 until it loads)")
            }
            Err(_) => tracing::warn!(
                provider = provider.name(),
                "provider did not answer at start; retrying in the background"
            ),
        }
    }
    state.settle_metrics(&metrics);
    Ok((Arc::new(ArcSwap::from_pointee(state)), metrics))
}

/// Runs the gateway until a signal stops the process. Never returns on success. SIGHUP re-reads
/// `config_path` (none for the demo, which has no file).
pub fn run(
    state: Arc<ArcSwap<GatewayState>>,
    metrics: Metrics,
    config_path: Option<PathBuf>,
) -> Result<(), StartError> {
    let current = state.load_full();
    let server_cfg = &current.config.server;
    let conf = ServerConf {
        threads: server_cfg.threads,
        // SIGTERM: pingora stops accepting at once, then sleeps the grace period while requests
        // in flight go on, then drops whatever is left with its runtimes. So the grace period
        // is the drain time; `Drain` below exits as soon as nothing is in flight any more.
        grace_period_seconds: Some(server_cfg.drain_timeout.as_secs_f64().ceil().max(1.0) as u64),
        graceful_shutdown_timeout_seconds: Some(2),
        // One single-threaded runtime per thread (pingora picks one at random per connection)
        // instead of one work-stealing runtime: a request's hooks and its upstream I/O then
        // stay on one thread, without cross-thread wake-ups (`benches/load.sh`, BENCHMARKS.md).
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy_app = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway::new(state.clone(), metrics.clone()),
    );
    // HTTP/2 (TLS listener): an idle connection ends after `keepalive_timeout`, as HTTP/1's do
    // (pingora's default keeps it for ever). Set once: a reload changes it at the next restart.
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(server_cfg.keepalive_timeout);
    proxy_app.server_options = Some(options);
    let mut proxy = Service::new(
        "oidc-gateway proxy".to_owned(),
        ConnectionLimit::new(proxy_app, state.clone(), metrics.clone()),
    );
    let listen = server_cfg.listen.to_string();
    let listener_cert = match &server_cfg.tls {
        Some(files) => {
            // Our own resolver instead of pingora's file loading (which panics on a bad file):
            // errors name the file, and a reload can swap a renewed certificate in.
            let cert = Arc::new(ListenerCert::load(files)?);
            cert.publish_expiry(&metrics);
            // `intermediate` only records the paths; with a resolver set they are never read.
            let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
                .map_err(|e| StartError::Tls(TlsError::Config(e.to_string())))?;
            settings.set_cert_resolver(cert.clone());
            settings.enable_h2();
            proxy.add_listener(
                ListenerConfig::tcp(listen.as_str())
                    .tls(settings)
                    .l4_buffer(l4_buffer()),
            );
            Some(cert)
        }
        None => {
            proxy.add_listener(ListenerConfig::tcp(listen.as_str()).l4_buffer(l4_buffer()));
            None
        }
    };
    server.add_service(proxy);

    if let Some(admin_addr) = current.config.admin.listen {
        let mut admin = Service::new(
            "oidc-gateway admin".to_owned(),
            Admin {
                state: state.clone(),
                metrics: metrics.clone(),
            },
        );
        admin.add_tcp(&admin_addr.to_string());
        server.add_service(admin);
    }
    let (generation, generation_rx) = tokio::sync::watch::channel(0u64);
    server.add_service(background_service(
        "providers",
        ProviderSupervisor {
            state: state.clone(),
            generation: generation_rx,
        },
    ));
    server.add_service(background_service(
        "drain",
        Drain {
            metrics: metrics.clone(),
        },
    ));
    reload::claim_sighup().map_err(StartError::Signal)?;
    exit_on_sigint().map_err(StartError::Signal)?;
    server.add_service(background_service(
        "reload",
        Reloader {
            config_path,
            state,
            metrics,
            listener_cert,
            generation,
        },
    ));
    tracing::info!(listen = %server_cfg.listen, public_url = %server_cfg.public_origin, "oidc-gateway serving");
    drop(current);
    // `run_forever` would exit inside pingora (after the grace period, or a SIGQUIT upgrade)
    // before the log writer has written the last lines.
    server.run(pingora::server::RunArgs::default());
    crate::telemetry::flush();
    std::process::exit(0)
}

/// The socket buffers of each client connection: no read buffer. Pingora's default 64 KiB read
/// buffer per connection was most of the ~90 KiB that every open connection cost, waiting or
/// not; without it reads go straight into the request's own buffers (4 KiB for the header,
/// pingora's body buffer for a body), which read as much per call (BENCHMARKS.md, slow
/// clients). Writes keep pingora's small buffer, which joins a response head and body.
fn l4_buffer() -> L4BufferSettings {
    L4BufferSettings::new(0, pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE)
}

/// SIGINT (Ctrl-C) ends the process at once, from a thread of its own.
///
/// Pingora's own fast shutdown on SIGINT drops its runtimes one by one; with one runtime per
/// worker thread (`work_stealing: false`), a listener whose runtime is already shutting down
/// can be left accepting in a loop that fails and logs at full speed, forever, which filled a
/// disk with 70 GB of "Accept() failed" lines within minutes. A fast shutdown drops requests
/// in flight anyway, so exiting directly loses nothing but that loop. SIGTERM still drains.
fn exit_on_sigint() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut sigint = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    })?;
    std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            rt.block_on(sigint.recv());
            tracing::info!(
                "SIGINT: exiting now (requests in flight are dropped; SIGTERM drains them)"
            );
            // This notice, not what other threads log meanwhile: pingora's own SIGINT
            // shutdown may already have its accept loops failing (above). Like the requests
            // in flight, lines still batched elsewhere (at most 50 ms of them) are dropped.
            crate::telemetry::flush_current_thread();
            std::process::exit(0);
        })?;
    Ok(())
}

/// Ends the process once a graceful shutdown (SIGTERM) has no request left in flight, instead of
/// always sleeping pingora's whole grace period: a restart then takes as long as the slowest
/// request, not `drain_timeout`.
struct Drain {
    metrics: Metrics,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let in_flight = &self.metrics.requests_in_flight;
        tracing::info!(
            in_flight = in_flight.get(),
            "SIGTERM: no new connections; waiting for requests in flight"
        );
        // The listeners have stopped accepting; poll until the last request has been answered
        // (pingora ends the process itself when the grace period runs out first).
        // Two quiet polls in a row: a connection accepted just before the listener closed has
        // had time to become a counted request.
        let mut quiet = 0;
        while quiet < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            quiet = if in_flight.get() > 0 { 0 } else { quiet + 1 };
        }
        tracing::info!("drained: no request in flight; exiting");
        crate::telemetry::flush();
        std::process::exit(0);
    }
}

/// Prepares the state and serves until shutdown; errors go to stderr and the log.
pub fn start(config: Config, config_path: Option<PathBuf>) -> ExitCode {
    let (state, metrics) = match prepare(config) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("oidc-gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(state, metrics, config_path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
