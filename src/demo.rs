//! `oidc-gateway demo`: the development provider and the echo upstream on a runtime of their
//! own, and the gateway in front of them, all on loopback with the embedded `config/demo.toml`.
//! Compiled only with the default `demo` feature.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use devprovider::{start_echo, DevClient, DevClientAuth, DevProvider, DevProviderOptions};

use crate::{keygen, server};

/// The demo config, with `@NAME@` placeholders filled in at start.
const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Runs the demo until the process is stopped.
pub fn run(port: u16) -> ExitCode {
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
    server::start(config, None)
}
