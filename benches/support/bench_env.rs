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
//! - `trickle`: slow clients for `benches/slow_clients.sh` (slowloris): connections that send
//!   the start of a request header and then one byte every interval, never finishing it. In
//!   Rust on one thread, so that the attack costs the 2-core machine little CPU and the normal
//!   client beside it measures the gateway, not the generator (a Python asyncio version took
//!   about a core for 10,000 connections).
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
         \x20      bench-env logins --url URL --concurrency C --seconds S [--user alice]\n\
         \x20      bench-env trickle --port P --connections N --interval SECS --seconds SECS\n\
         \x20          [--reopen] [--status FILE]"
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
        "trickle" => {
            // One thread: the attack must not take the cores it is measured beside.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(trickle(&args));
        }
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

/// What `trickle` counts, shared by its connection tasks (one thread: plain cells would do, but
/// tasks must be `'static`).
#[derive(Default)]
struct TrickleStats {
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    lifetimes_ms: std::sync::Mutex<Vec<u64>>,
}

/// `trickle`: N connections that each send the start of a request header and then one more
/// byte every interval, never finishing it. A connection the server closes is counted with how
/// long it lived and, with `--reopen`, replaced, so that N stay open for the whole run. Prints
/// one JSON object: opened, closed_by_server, refused (connect failed, or closed before the
/// first trickled byte), peak_open and the lifetimes (p50, p99, max seconds). Writes the open
/// count to `--status FILE` every second.
async fn trickle(args: &[String]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: &[u8] = b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let port: u16 = need(args, "--port").parse().unwrap_or_else(|_| usage());
    let conns: u64 = need(args, "--connections")
        .parse()
        .unwrap_or_else(|_| usage());
    let interval =
        Duration::from_secs_f64(need(args, "--interval").parse().unwrap_or_else(|_| usage()));
    let seconds: f64 = need(args, "--seconds").parse().unwrap_or_else(|_| usage());
    let reopen = args.iter().any(|a| a == "--reopen");
    let status = arg(args, "--status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let stats = Arc::new(TrickleStats::default());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let mut tasks = Vec::new();
    // Connects spread over about two seconds, so that the listen backlog is not the limit.
    let spread = Duration::from_secs(2) / u32::try_from(conns.max(1)).unwrap_or(u32::MAX);
    for i in 0..conns {
        let stats = stats.clone();
        let first = spread * u32::try_from(i).unwrap_or(u32::MAX);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(first).await;
            while tokio::time::Instant::now() < deadline {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if reopen {
                        continue;
                    }
                    return;
                };
                stats.opened.fetch_add(1, Ordering::Relaxed);
                let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                stats.peak_open.fetch_max(open, Ordering::Relaxed);
                let born = Instant::now();
                let (mut closed, mut sent) = (s.write_all(HEAD).await.is_err(), 0u64);
                let mut buf = [0u8; 512];
                while !closed && tokio::time::Instant::now() < deadline {
                    // The server closing shows as EOF (or an error) on read.
                    let wake = (tokio::time::Instant::now() + interval).min(deadline);
                    tokio::select! {
                        r = s.read(&mut buf) => closed = !matches!(r, Ok(n) if n > 0),
                        () = tokio::time::sleep_until(wake) => {
                            if tokio::time::Instant::now() < deadline {
                                closed = s.write_all(b"a").await.is_err();
                                sent += 1;
                            }
                        }
                    }
                }
                stats.open.fetch_sub(1, Ordering::Relaxed);
                if closed {
                    let lived = born.elapsed();
                    if sent == 0 && lived < Duration::from_millis(500) {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        let ms = u64::try_from(lived.as_millis()).unwrap_or(u64::MAX);
                        stats.lifetimes_ms.lock().unwrap().push(ms);
                    }
                }
                if !reopen {
                    return;
                }
            }
        }));
    }
    if let Some(path) = status {
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let open = stats.open.load(Ordering::Relaxed);
                let _ = std::fs::write(&path, format!("{open}\n"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut lifetimes = std::mem::take(&mut *stats.lifetimes_ms.lock().unwrap());
    lifetimes.sort_unstable();
    let pct = |p: f64| -> serde_json::Value {
        if lifetimes.is_empty() {
            return serde_json::Value::Null;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((p * lifetimes.len() as f64) as usize).min(lifetimes.len() - 1);
        #[allow(clippy::cast_precision_loss)]
        let secs = (lifetimes[i] as f64 / 10.0).round() / 100.0;
        secs.into()
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "opened": load(&stats.opened),
        "closed_by_server": load(&stats.closed_by_server),
        "refused": load(&stats.refused),
        "peak_open": load(&stats.peak_open),
        "lifetime_p50": pct(0.5),
        "lifetime_p99": pct(0.99),
        "lifetime_max": pct(1.0),
    });
    println!("{out}");
}
