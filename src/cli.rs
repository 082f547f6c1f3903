//! The command line: `run`, `check`, `keygen`, `demo`, and `completions` / `man` / `schema` for
//! packagers and editors,
//! each a small handler that returns the process exit code.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use clap_mangen::Man;

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
        /// The configuration file (TOML).
        #[arg(long, default_value = "/etc/oidc-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config file: print every problem with its key path; exit 0 valid, 1 invalid.
    Check {
        /// The configuration file (TOML).
        #[arg(long, default_value = "/etc/oidc-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Print a fresh base64 32-byte cookie key, or with --jwk write a private key for
    /// private_key_jwt and print its public JWKS.
    Keygen {
        /// Generate a private key for private_key_jwt instead of a cookie key.
        #[arg(long)]
        jwk: bool,
        /// Signature algorithm of the key.
        #[arg(long, default_value = "RS256", requires = "jwk", value_parser = alg_parser())]
        alg: JwkAlg,
        /// Where to write the private key (PEM, mode 0600; never overwritten).
        #[arg(long, requires = "jwk")]
        out: Option<PathBuf>,
    },
    /// A self-contained demo on loopback: a development provider with NHS CIS2-shaped users, an
    /// echo upstream and the gateway.
    #[cfg_attr(not(feature = "demo"), command(hide = true))]
    Demo {
        /// Port of the gateway; the provider uses the next one, the echo upstream the one after,
        /// the admin listener port + 10.
        #[arg(long, default_value_t = 4180)]
        port: u16,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) on stdout, e.g. `oidc-gateway man | man -l -`.
    Man,
    /// Print the JSON Schema of the config file (for TOML language servers such as taplo).
    Schema,
}

/// Runs the parsed command.
pub fn main(cli: Cli) -> ExitCode {
    crate::ring_rsa::install();
    match cli.command {
        Command::Run { config } => {
            telemetry::init(cli.log_format);
            let code = run(&config);
            telemetry::flush();
            code
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
            let code = crate::demo::run(port);
            telemetry::flush();
            code
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            eprintln!(
                "oidc-gateway demo: this build has no demo (built without the `demo` feature)"
            );
            ExitCode::FAILURE
        }
        Command::Completions { shell } => completions(shell, &mut io::stdout()),
        Command::Man => man(&mut io::stdout()),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::config::schema()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
    }
}

/// `--alg` values as the parser, man page and completions list them.
fn alg_parser() -> impl TypedValueParser<Value = JwkAlg> {
    clap::builder::PossibleValuesParser::new(JwkAlg::ALL.map(JwkAlg::as_str))
        .try_map(|s| s.parse::<JwkAlg>())
}

/// A completion script for `shell`.
fn completions(shell: Shell, out: &mut dyn Write) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "oidc-gateway", &mut script);
    if shell == Shell::Bash {
        // clap_complete 4.6 spells a hyphenated binary's subcommand states two ways (clap-rs/clap
        // #6421: `oidc__gateway__subcmd__run` in the dispatch loop, `oidc__subcmd__gateway__...`
        // in the case arms), so nothing after a subcommand would complete. Spell them one way;
        // a no-op once clap_complete is fixed.
        script = String::from_utf8_lossy(&script)
            .replace("oidc__subcmd__gateway", "oidc__gateway")
            .into_bytes();
    }
    match out.write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway completions: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The man page: `oidc-gateway(1)` with every subcommand's flags inline, so one page documents
/// the whole command line (as `man git` does not, but a small tool should).
fn man(out: &mut dyn Write) -> ExitCode {
    let command = Cli::command();
    let page = clap_mangen::Man::new(command.clone());
    let mut result = page.render_title(out);
    for part in [
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ] {
        result = result.and_then(|()| part(&page, out));
    }
    for sub in command
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        result = result.and_then(|()| subcommand_section(sub, out));
    }
    result = result.and_then(|()| files_section(out));
    result = result.and_then(|()| page.render_version_section(out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oidc-gateway man: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One `.SH` section per subcommand: its synopsis, what it does and its options, in roff.
fn subcommand_section(sub: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let page = Man::new(
        sub.clone()
            .bin_name(format!("oidc-gateway {}", sub.get_name())),
    );
    writeln!(out, ".SH \"COMMAND {}\"", sub.get_name().to_uppercase())?;
    let mut buf = Vec::new();
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    page.render_options_section(&mut buf)?;
    // Fold the subcommand's own .SH headings into sub-headings of this section.
    let text = String::from_utf8_lossy(&buf).replace(".SH ", ".SS ");
    out.write_all(text.as_bytes())
}

fn files_section(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        ".SH FILES\n.TP\n/etc/oidc\\-gateway/gateway.toml\nThe configuration (TOML). \
         Check it with \\fBoidc\\-gateway check\\fR; its JSON Schema is \
         /usr/share/oidc\\-gateway/config.schema.json.\n.TP\n\
         /usr/lib/systemd/system/oidc\\-gateway.service\nThe hardened systemd unit; \
         \\fBsystemctl reload oidc\\-gateway\\fR applies a changed configuration.\n\
         .SH ENVIRONMENT\n.TP\nRUST_LOG\nLog filter (default info), e.g. \
         oidc_gateway=debug.\n.SH SEE ALSO\n\\fBsystemd.exec\\fR(5), \
         /usr/share/doc/oidc\\-gateway/"
    )
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
