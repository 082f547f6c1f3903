//! Builds and runs the pingora server: the proxy listener, the admin listener, a background
//! service that loads providers (discovery and JWKS) and keeps them fresh, and one that reloads
//! the configuration on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::config::Config;
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
    for provider in &state.providers {
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
        // SIGTERM: pingora stops accepting after the grace period, then gives requests in flight
        // up to the shutdown timeout to finish (its default would wait 300 s; systemd's
        // TimeoutStopSec=15 must stay above the sum).
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone(), metrics.clone()),
        "oidc-gateway proxy",
    );
    let listen = server_cfg.listen.to_string();
    let listener_cert = match &server_cfg.tls {
        Some(files) => {
            // Our own resolver instead of pingora's file loading (which panics on a bad file):
            // errors name the file, and a reload can swap a renewed certificate in.
            let cert = Arc::new(ListenerCert::load(files)?);
            // `intermediate` only records the paths; with a resolver set they are never read.
            let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
                .map_err(|e| StartError::Tls(TlsError::Config(e.to_string())))?;
            settings.set_cert_resolver(cert.clone());
            settings.enable_h2();
            proxy.add_tls_with_settings(&listen, None, settings);
            Some(cert)
        }
        None => {
            proxy.add_tcp(&listen);
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
    reload::claim_sighup().map_err(StartError::Signal)?;
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
    server.run_forever()
}
