//! Sessions on Redis deployments that survive the loss of a node: a Sentinel group and a
//! Cluster, each shared by two gateway instances. A forced failover while authenticated
//! requests run is followed by the gateways reaching the new master by themselves within
//! 10 s; requests in that window get the documented 503 with `Retry-After` (never a redirect to
//! login); afterwards every session written before is still valid, and refresh single-flight
//! still holds across the two instances.

use crate::common;
use crate::redis_store::{copy_of, url};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_ha::{Cluster, SentinelGroup, MASTER_NAME};
use common::{Browser, Env, Gateway, Options};
use oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS;
use reqwest::StatusCode;

/// `[session]` keys for a Redis deployment given as a `[session.redis]` table.
/// A Redis deployment for the gateways. `redis_timeout` leaves room for a busy machine: the
/// logins that seed these tests once got 503 when cluster commands took more than 300 ms while
/// the whole suite ran; what is tested here is failover, not latency.
fn deployment(table: &str) -> Options {
    Options {
        session_extra: format!(
            "store = \"redis\"\nredis_timeout = \"1s\"\n\n[session.redis]\n{table}\n"
        ),
        ..Options::default()
    }
}

fn nodes(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!("nodes = [{}]", quoted.join(", "))
}

/// One answer the load saw.
struct Seen {
    at: Instant,
    status: StatusCode,
    retry_after: bool,
}

/// Authenticated requests, one after another per browser (every 100 ms), until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Seen>>>,
}

impl Load {
    fn start(targets: Vec<(String, String)>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let tasks = targets
            .into_iter()
            .map(|(target, cookie)| {
                let stop = stop.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = client
                            .get(&target)
                            .header("cookie", &cookie)
                            .header("accept", "text/html")
                            .send()
                            .await;
                        let (status, retry_after) = match r {
                            Ok(r) => (r.status(), r.headers().contains_key("retry-after")),
                            // A transport error is an answer no client should get.
                            Err(_) => (StatusCode::BAD_GATEWAY, false),
                        };
                        seen.push(Seen {
                            at: Instant::now(),
                            status,
                            retry_after,
                        });
                        // Steady, not a flood: the other tests share the machine.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    seen
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_by_key(|s| s.at);
        all
    }
}

/// Logs in `n` browsers, alternating between the two instances.
async fn sessions(a: &Gateway, b: &Gateway, n: usize) -> Vec<Browser> {
    let mut out = Vec::new();
    for i in 0..n {
        let g = if i % 2 == 0 { a } else { b };
        let mut br = Browser::new();
        let user = if i % 3 == 0 { "bob" } else { "alice" };
        let r = br.login(&url(g, "/app"), user).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        out.push(br);
    }
    out
}

/// Runs load on every session through both instances while `failover` runs, and checks what
/// the clients saw: only 200, or 503 with Retry-After inside a window of at most 10 s after
/// the failover began; and every session still valid on both instances afterwards.
async fn survive(a: &Gateway, b: &Gateway, browsers: &[Browser], failover: impl FnOnce()) {
    let targets = browsers
        .iter()
        .flat_map(|br| {
            [a, b]
                .into_iter()
                .map(|g| (url(g, "/app"), br.cookie_header()))
        })
        .collect();
    let load = Load::start(targets);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::task::block_in_place(failover);
    let failed_over = started.elapsed();
    // Writes reach the new master from both instances (a login stores a new session) within
    // 10 s of the failover's start: the gateways found it by themselves.
    let mut during = Vec::new();
    for g in [a, b] {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut br = Browser::new();
            let first = br.get(&url(g, "/app")).await;
            let back = br.through_provider(&first, "alice").await;
            if back.status == StatusCode::FOUND {
                during.push(br);
                break;
            }
            assert_eq!(
                back.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "a login during the failover: {}",
                back.body
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}: no login stored {:?} after the failover began ({tries} tries)",
                g.base,
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let writable = started.elapsed();
    // Keep the load on until it has seen 2 s of success after the failover.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let healthy = async {
            for br in browsers {
                for g in [a, b] {
                    if copy_of(br).get(&url(g, "/app")).await.status != StatusCode::OK {
                        return false;
                    }
                }
            }
            true
        }
        .await;
        if healthy || Instant::now() > deadline {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = load.finish().await;
    let before = seen.iter().filter(|s| s.at < started).count();
    assert!(before > 0, "the load ran before the failover");
    let mut last_error = None;
    for s in &seen {
        match s.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE if s.retry_after => last_error = Some(s.at),
            other => panic!(
                "{other} (retry-after: {}) {:?} after the failover began: only 200 or 503 with Retry-After may be seen",
                s.retry_after,
                s.at.saturating_duration_since(started)
            ),
        }
    }
    let errors = seen.iter().filter(|s| s.status != StatusCode::OK).count();
    if let Some(at) = last_error {
        let window = at.saturating_duration_since(started);
        assert!(
            window <= Duration::from_secs(10),
            "503 until {window:?} after the failover began (failover took {failed_over:?})"
        );
    }
    eprintln!(
        "failover: {} requests, {errors} answered 503 with Retry-After, last at {:?}, failover command took {failed_over:?}, both instances stored new logins after {writable:?}",
        seen.len(),
        last_error.map(|at| at.saturating_duration_since(started))
    );
    let after = seen
        .iter()
        .filter(|s| last_error.is_none_or(|e| s.at > e))
        .count();
    assert!(after > 0, "requests succeeded after the failover");
    // Every session written before the failover is still there, on both instances, and so are
    // those stored during it.
    for br in browsers.iter().chain(&during) {
        for g in [a, b] {
            let r = copy_of(br).get(&url(g, "/app")).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {}", g.base, r.body);
        }
    }
}

/// On the deployment of `table` (after its failover), two instances whose provider issues
/// 1-second tokens: a session whose tokens are due, used by 8 concurrent requests on both,
/// makes one refresh grant at the provider.
async fn one_refresh_across_instances(table: &str) {
    let env = Env::with(Options {
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(1),
        ..deployment(table)
    })
    .await;
    let b = &env.another_gateway(&env.opts_keys);
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(MIN_TOKEN_LIFETIME_SECS + 1)).await;
    let grants = || {
        env.provider()
            .controls
            .token_requests()
            .into_iter()
            .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
            .count()
    };
    let before = grants();
    let cookie = alice.cookie_header();
    let client = reqwest::Client::new();
    let mut requests = Vec::new();
    for i in 0..8 {
        let target = if i % 2 == 0 {
            env.url("/app")
        } else {
            url(b, "/app")
        };
        let req = client
            .get(target)
            .header("cookie", cookie.clone())
            .header("accept", "application/json");
        requests.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        grants() - before,
        1,
        "one refresh grant across both instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_under_load_loses_no_session() {
    let group = SentinelGroup::start();
    let table = format!(
        "mode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\n{}",
        nodes(&group.sentinel_urls())
    );
    let env = Env::with(deployment(&table)).await;
    let b = env.another_gateway(&env.opts_keys);
    let browsers = sessions(&env.gateway, &b, 6).await;
    // Written before the failover means replicated (replication itself is asynchronous).
    let acked = group.master.cli(&["WAIT", "1", "2000"]);
    assert_eq!(acked.trim(), "1", "the replica acknowledged the sessions");
    let old_master = group.master_port();
    survive(&env.gateway, &b, &browsers, || group.failover()).await;
    assert_eq!(
        group.master_port(),
        group.replica.port,
        "the replica is the master now:\n{}",
        group.logs()
    );
    assert_ne!(old_master, group.replica.port);
    one_refresh_across_instances(&table).await;
    // Each instance switched to the new master (found by its probe, or asked again after an
    // error).
    for g in [&env.gateway, &b] {
        let logs = g.logs();
        assert!(
            logs.contains("the sentinels name another Redis master (failover); switching to it")
                || logs.matches("the sentinels named the Redis master").count() >= 2,
            "{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_failover_under_load_loses_no_session() {
    let cluster = Cluster::start();
    let table = format!("mode = \"cluster\"\n{}", nodes(&cluster.urls()[..3]));
    let env = Env::with(deployment(&table)).await;
    let b = env.another_gateway(&env.opts_keys);
    let browsers = sessions(&env.gateway, &b, 9).await;
    assert_eq!(cluster.session_keys(), 9, "every session is in the cluster");
    // The master with the most sessions hands over to its replica (CLUSTER FAILOVER waits for
    // the replica to catch up first).
    let master = cluster.busiest_master();
    let replica = cluster.replica_of(master);
    survive(&env.gateway, &b, &browsers, || cluster.failover(replica)).await;
    assert!(cluster.nodes[master].cli(&["ROLE"]).starts_with("slave"));
    one_refresh_across_instances(&table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_sentinel_and_no_master_requests_fail_closed_and_fast() {
    let mut group = SentinelGroup::start();
    let table = format!(
        "mode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\n{}",
        nodes(&group.sentinel_urls())
    );
    let env = Env::with(deployment(&table)).await;
    let browsers = sessions(&env.gateway, &env.gateway, 1).await;
    group.stop_sentinels();
    group.master.stop();
    group.replica.stop();
    // Many requests at once, each needing a master nobody can name: every one gets the 503
    // within a bound (no queue of lookups), never a redirect to login.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = browsers[0].cookie_header();
    let started = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..30 {
        let req = client
            .get(env.url("/app"))
            .header("cookie", &cookie)
            .header("accept", "text/html");
        requests.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (r.status(), r.headers().contains_key("retry-after"))
        }));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), (StatusCode::SERVICE_UNAVAILABLE, true));
    }
    // Refused at once by every sentinel: no request waits out the lookup budget.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}
