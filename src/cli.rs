//! The command line: `run`, `check`, `keygen` and `demo`, each a small handler that returns the
//! process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::keygen;
use crate::server;
use crate::telemetry::{self, LogFormat};
use jwk::JwkAlg;

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
        #[cfg(feature = "demo")]
        Command::Demo { port } => {
            telemetry::init(cli.log_format);
            crate::demo::run(port)
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            eprintln!(
                "oidc-gateway demo: this build has no demo (built without the `demo` feature)"
            );
            ExitCode::FAILURE
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
    server::start(config, Some(path.to_path_buf()))
}

fn keygen_jwk(alg: JwkAlg, out: Option<&Path>) -> ExitCode {
    let Some(out) = out else {
        eprintln!("oidc-gateway keygen --jwk needs --out FILE for the private key");
        return ExitCode::FAILURE;
    };
    let key = match jwk::generate(alg) {
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
    let jwks = jwk::public_jwks(key.public_jwk);
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
