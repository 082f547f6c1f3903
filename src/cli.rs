//! The command line: `run`, `check`, `keygen` and `demo`, each a small handler that returns the
//! process exit code.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::keygen::{self, JwkAlg};
use crate::server;
use crate::telemetry::{self, LogFormat};

/// OpenID Connect single sign-on in front of web applications that know nothing about it.
#[derive(Debug, Parser)]
#[command(name = "oidc-gateway", version, about)]
pub struct Cli {
    /// Log line format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway.
    Run {
        #[arg(long, default_value = "/etc/oidc-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config file: print every problem with its key path; exit 0 valid, 1 invalid.
    Check {
        #[arg(long, default_value = "/etc/oidc-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Print a fresh base64 32-byte cookie key, or with --jwk write a private key for
    /// private_key_jwt and print its public JWKS.
    Keygen {
        #[arg(long)]
        jwk: bool,
        #[arg(long, default_value = "RS256", requires = "jwk")]
        alg: JwkAlg,
        /// Where to write the private key (PEM, mode 0600; never overwritten).
        #[arg(long, requires = "jwk")]
        out: Option<PathBuf>,
    },
    /// A self-contained demo on loopback: a development provider with NHS CIS2-shaped users, an
    /// echo upstream and the gateway.
    Demo {
        /// Port of the gateway; the provider uses the next one, the echo upstream the one after,
        /// the admin listener port + 10.
        #[arg(long, default_value_t = 4180)]
        port: u16,
    },
}

/// Runs the parsed command.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { config } => {
            telemetry::init(cli.log_format);
            run(&config)
        }
        Command::Check { config } => check(&config),
        Command::Keygen { jwk: false, .. } => {
            println!("{}", keygen::cookie_key());
            ExitCode::SUCCESS
        }
        Command::Keygen {
            jwk: true,
            alg,
            out,
        } => keygen_jwk(alg, out.as_deref()),
        Command::Demo { port } => {
            telemetry::init(cli.log_format);
            demo(port)
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|problems| {
        eprintln!("{}: {} problem(s):", path.display(), problems.0.len());
        let mut sorted: Vec<_> = problems.0.iter().collect();
        sorted.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.key.clone()));
        for p in sorted {
            eprintln!("  error: {p}");
        }
        ExitCode::FAILURE
    })
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("  warning: {w}");
            }
            println!(
                "{}: OK ({} provider(s), {} route(s))",
                path.display(),
                config.providers.len(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    start(config, Some(path.to_path_buf()))
}

fn start(config: Config, config_path: Option<PathBuf>) -> ExitCode {
    let (state, metrics) = match server::prepare(config) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("oidc-gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server::run(state, metrics, config_path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen_jwk(alg: JwkAlg, out: Option<&Path>) -> ExitCode {
    let Some(out) = out else {
        eprintln!("oidc-gateway keygen --jwk needs --out FILE for the private key");
        return ExitCode::FAILURE;
    };
    let key = match keygen::generate(alg) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("oidc-gateway: cannot generate a key: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = keygen::write_private_key(out, &key.private_pem) {
        eprintln!("oidc-gateway: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let jwks = keygen::public_jwks(key.public_jwk);
    println!(
        "{}",
        serde_json::to_string_pretty(&jwks).unwrap_or_default()
    );
    eprintln!(
        "private key written to {} (kid {}); register the JWKS above at the provider",
        out.display(),
        key.kid
    );
    ExitCode::SUCCESS
}

/// The demo config, with `@NAME@` placeholders filled in at start.
const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

fn demo(port: u16) -> ExitCode {
    let (Some(provider_port), Some(echo_port), Some(admin_port)) = (
        port.checked_add(1),
        port.checked_add(2),
        port.checked_add(10),
    ) else {
        eprintln!("oidc-gateway demo: --port is too high");
        return ExitCode::FAILURE;
    };
    let secret = crate::oidc::flow::random_token();
    let public_url = format!("http://localhost:{port}");
    let redirect_uri = format!("{public_url}/oauth2/callback");
    // The provider and the echo upstream run on their own runtime, on a thread of their own.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let provider_secret = secret.clone();
    let public = public_url.clone();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            use crate::devprovider::{
                start_echo, DevClient, DevClientAuth, DevProvider, DevProviderOptions,
            };
            let opts = DevProviderOptions {
                bind: SocketAddr::from((Ipv4Addr::LOCALHOST, provider_port)),
                clients: vec![DevClient::new(
                    "demo",
                    DevClientAuth::SecretBasic(provider_secret),
                    redirect_uri,
                )
                .with_post_logout_redirect_uri(format!("{public}/"))],
                ..DevProviderOptions::default()
            };
            let started = async {
                let provider = DevProvider::start(opts)
                    .await
                    .map_err(|e| format!("development provider on port {provider_port}: {e}"))?;
                let echo = start_echo(SocketAddr::from((Ipv4Addr::LOCALHOST, echo_port)))
                    .await
                    .map_err(|e| format!("echo upstream on port {echo_port}: {e}"))?;
                Ok::<_, String>((provider, echo))
            }
            .await;
            match started {
                Ok(servers) => {
                    let _ = ready_tx.send(Ok(servers.0.issuer.clone()));
                    // Keep both alive for the life of the process.
                    let _keep = servers;
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let issuer = match ready_rx.recv() {
        Ok(Ok(issuer)) => issuer,
        Ok(Err(e)) => {
            eprintln!("oidc-gateway demo: cannot start {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("oidc-gateway demo: the development provider thread stopped");
            return ExitCode::FAILURE;
        }
    };
    let text = DEMO_CONFIG
        .replace("@GATEWAY_PORT@", &port.to_string())
        .replace("@ADMIN_PORT@", &admin_port.to_string())
        .replace("@ECHO_PORT@", &echo_port.to_string())
        .replace("@ISSUER@", &issuer)
        .replace("@COOKIE_KEY@", &keygen::cookie_key())
        .replace("@CLIENT_SECRET@", &secret);
    let config = match crate::config::parse_str(&text, None) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("oidc-gateway demo: the embedded config is invalid:\n{problems}");
            return ExitCode::FAILURE;
        }
    };
    // A closed stdout (piped into something that went away) must not stop the demo.
    let banner = format!(
        "\n  oidc-gateway demo\n  open            {public_url}/            (sign in as alice, bob, jose or big)\n  public route    {public_url}/public/     (no sign-in)\n  rule route      {public_url}/ra/         (requires activity B0008: alice yes, bob no)\n  provider        {issuer}\n  metrics         http://127.0.0.1:{admin_port}/metrics\n  stop with Ctrl-C\n\n"
    );
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    start(config, None)
}
