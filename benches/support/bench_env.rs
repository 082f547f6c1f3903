//! Helper for `benches/load.sh`; not part of the gateway. Three jobs the shell script cannot do
//! well on its own:
//!
//! - `provider`: run the development OpenID provider on a fixed loopback port, in its own
//!   process, so that the gateway under test is the plain release binary with a generated
//!   config (its RSS and CPU time are then the gateway's alone).
//! - `mint`: make many distinct, valid session cookies offline. The session cookie is sealed
//!   with the configured key, so with the same config this uses the crate's own `Codec` and
//!   `write_session` exactly as the callback does; the template is a cookie from a real login,
//!   so the size (claims and logout hint) is what users really carry.
//! - `logins`: full authorization code flows through the gateway against the development
//!   provider (`login_hint` skips its login page), with a fixed number of concurrent browsers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up stops

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devprovider::{DevClient, DevClientAuth, DevProvider, DevProviderOptions};
use oidc_gateway::clock::now;
use oidc_gateway::config::Config;
use oidc_gateway::session::cookies::write_session;
use oidc_gateway::session::{Codec, RequestCookies};

fn usage() -> ! {
    eprintln!(
        "usage: bench-env provider --port P --redirect-uri URL --client-secret S\n\
         \x20          [--id-token-lifetime SECS] [--access-token-lifetime SECS]\n\
         \x20          [--bearer-audience AUD --bearer-out FILE [--bearer-lifetime SECS]]\n\
         \x20      bench-env mint --config FILE --cookie 'name=value; ...' --count N --out FILE\n\
         \x20      bench-env logins --url URL --concurrency C --seconds S [--user alice]"
    );
    std::process::exit(2)
}

/// `--name value` pairs after the subcommand.
fn arg(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn need(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| {
        eprintln!("bench-env: missing {name}");
        usage()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cmd.as_str() {
        "provider" => rt.block_on(provider(&args)),
        "mint" => mint(&args),
        "logins" => rt.block_on(logins(&args)),
        _ => usage(),
    }
}

async fn provider(args: &[String]) {
    let port: u16 = need(args, "--port").parse().unwrap_or_else(|_| usage());
    let opts = DevProviderOptions {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        clients: vec![DevClient::new(
            "bench",
            DevClientAuth::SecretBasic(need(args, "--client-secret")),
            need(args, "--redirect-uri"),
        )],
        // Long-lived tokens by default: no refresh happens during a benchmark. The fault soak
        // (benches/fault_soak.sh) sets short ones to make the gateway refresh.
        id_token_lifetime: Duration::from_secs(secs_arg(args, "--id-token-lifetime", 24 * 3600)),
        access_token_lifetime: Duration::from_secs(secs_arg(
            args,
            "--access-token-lifetime",
            24 * 3600,
        )),
        ..DevProviderOptions::default()
    };
    let p = DevProvider::start(opts).await.expect("dev provider starts");
    println!("{}", p.issuer);
    // `--bearer-out FILE`: a JWT access token for alice with audience `--bearer-audience`, signed
    // with this process's key, written to FILE (atomically, by rename) now and again every half
    // lifetime, for API clients of `bearer = true` routes (the provider itself issues opaque
    // access tokens).
    if let Some(out) = arg(args, "--bearer-out") {
        let aud = need(args, "--bearer-audience");
        let lifetime = secs_arg(args, "--bearer-lifetime", 600).max(2);
        let tmp = format!("{out}.tmp");
        loop {
            let token = p
                .mint_access_token("alice", &aud, i64::try_from(lifetime).unwrap_or(600))
                .expect("mint access token");
            std::fs::write(&tmp, format!("{token}\n")).expect("write bearer token");
            std::fs::rename(&tmp, &out).expect("rename bearer token");
            tokio::time::sleep(Duration::from_secs(lifetime / 2)).await;
        }
    }
    std::future::pending::<()>().await;
}

/// `--name SECS` (whole seconds), or `default`.
fn secs_arg(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage()))
}

fn mint(args: &[String]) {
    let path = PathBuf::from(need(args, "--config"));
    let config = Config::load(&path).unwrap_or_else(|p| panic!("config: {p}"));
    let cfg = &config.session;
    let codec = Codec::new(cfg.keys.expose());
    let header = need(args, "--cookie");
    let template = RequestCookies::parse(
        std::iter::once(header.as_bytes()),
        &cfg.cookie_name,
        cfg.max_chunks,
    )
    .session(cfg, &codec)
    .unwrap_or_else(|m| panic!("the template cookie does not open: {m}"));
    let count: usize = need(args, "--count").parse().unwrap_or_else(|_| usage());
    let sub = template.subject().to_owned();
    let t = now();
    let mut out = String::new();
    for i in 0..count {
        let mut s = template.clone();
        s.claims
            .insert("sub".into(), format!("{sub}-{i:05}").into());
        s.created = t;
        s.last_seen = t;
        s.expires = t + cfg.max_lifetime.as_secs();
        let set = write_session(cfg, &codec, &s, &RequestCookies::default(), t)
            .unwrap_or_else(|e| panic!("cannot seal: {e}"));
        let pairs: Vec<String> = set
            .iter()
            .filter_map(|c| cookie::Cookie::parse(c.as_str()).ok())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        out.push_str(&pairs.join("; "));
        out.push('\n');
    }
    std::fs::write(need(args, "--out"), out).expect("write cookies");
}

/// `name=value` of every Set-Cookie that sets (not deletes) a cookie.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
        .filter(|c| !c.value().is_empty())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect()
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// One full code flow: protected page → provider → callback → session cookie.
async fn login(client: &reqwest::Client, url: &str, user: &str) -> Result<(), String> {
    let r = client
        .get(url)
        .header("Sec-Fetch-Mode", "navigate")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let login_cookies = set_cookies(&r).join("; ");
    let to_provider = location(&r).ok_or("no redirect to the provider")?;
    let r = client
        .get(format!("{to_provider}&login_hint={user}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let callback = location(&r).ok_or("no redirect to the callback")?;
    let r = client
        .get(callback)
        .header("Cookie", login_cookies)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let session = set_cookies(&r);
    if r.status().as_u16() != 302 || session.is_empty() {
        return Err(format!("callback answered {}", r.status()));
    }
    Ok(())
}

async fn logins(args: &[String]) {
    let url = need(args, "--url");
    let concurrency: usize = need(args, "--concurrency")
        .parse()
        .unwrap_or_else(|_| usage());
    let seconds: f64 = need(args, "--seconds").parse().unwrap_or_else(|_| usage());
    let user = arg(args, "--user").unwrap_or_else(|| "alice".into());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, user) = (client.clone(), url.clone(), user.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match login(&client, &url, &user).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("bench-env: login failed: {e}");
                        }
                        1
                    }
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One line for the script: logins failed seconds.
    println!(
        "{} {} {:.3}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        elapsed
    );
}
