//! Reload without downtime (SIGHUP) and draining on SIGTERM, against the real binary: a changed
//! header or rule applies to new requests, an invalid config is refused and the old one stays,
//! a new provider is loaded before the swap, requests in flight finish.

use crate::common;

use std::time::{Duration, Instant};

use common::{eventually, Browser, Env};
use reqwest::StatusCode;

/// Waits until the gateway logged `needle` `count` times or more.
async fn wait_log(env: &Env, needle: &str, count: usize) {
    let ok = eventually(Duration::from_secs(15), async || {
        env.gateway.logs().matches(needle).count() >= count
    })
    .await;
    assert!(ok, "never logged {needle:?}:\n{}", env.gateway.logs());
}

async fn metric(env: &Env, name_and_labels: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", env.gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Rewrites the config file and sends SIGHUP, returning once the reload was handled.
async fn reload(env: &Env, text: &str, outcome: &str) {
    wait_log(env, "SIGHUP reloads the configuration", 1).await;
    let before = env.gateway.logs().matches(outcome).count();
    env.rewrite_config(text);
    env.gateway.signal("HUP");
    wait_log(env, outcome, before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_header_and_rule_to_new_requests() {
    let env = Env::start().await;
    let mut alice = Browser::new();
    let r = alice.login(&env.url("/"), "alice").await;
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(alice.get(&env.url("/ra")).await.status, StatusCode::OK);

    let text = env
        .config_text
        .replace("X-Auth-Sub = \"sub\"", "X-Remote-User = \"sub\"")
        .replace("activities = [\"B0008\"]", "activities = [\"B9999\"]");
    reload(&env, &text, "configuration reloaded").await;

    // The session made before the reload still works; the new header and rule apply.
    let r = alice.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.upstream_header("x-remote-user").as_deref(),
        Some("910000000001")
    );
    assert_eq!(r.upstream_header("x-auth-sub"), None);
    assert_eq!(
        alice.get(&env.url("/ra")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        metric(
            &env,
            "oidc_gateway_config_reloads_total{result=\"success\"}"
        )
        .await,
        1.0
    );
    // The provider was unchanged: it was kept, not fetched again.
    assert!(!env.gateway.logs().contains("reload: provider loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_with_its_problems_and_the_old_one_stays() {
    let env = Env::start().await;
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;

    let broken = env
        .config_text
        .replace("X-Auth-Sub = \"sub\"", "X-Remote-User = \"sub\"")
        .replace("auth = \"public\"", "auth = \"publik\"\nupstrem = \"x\"");
    reload(&env, &broken, "reload refused").await;
    let refused = env
        .gateway
        .logs()
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap()
        .to_owned();
    assert!(
        refused.contains("route[0].auth") && refused.contains("route[0].upstrem"),
        "the log line names every problem: {refused}"
    );
    let r = alice.get(&env.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001"),
        "the old configuration stays"
    );
    assert_eq!(r.upstream_header("x-remote-user"), None);

    // Listeners exist since start-up: moving one is refused as well, naming it.
    let port = env.gateway.port;
    let moved = env.config_text.replace(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("listen = \"127.0.0.1:{}\"", common::free_port()),
    );
    reload(&env, &moved, "reload refused").await;
    assert!(env.gateway.logs().contains("server.listen cannot change"));
    assert_eq!(alice.get(&env.url("/")).await.status, StatusCode::OK);
    assert_eq!(
        metric(
            &env,
            "oidc_gateway_config_reloads_total{result=\"failure\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_reload_finishes_on_the_old_state() {
    let env = Env::start().await;
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    let cookie = alice.cookie_header();
    let url = env.url("/slow?ms=2000");
    let slow = tokio::spawn(async move {
        let mut b = Browser::new();
        b.request(reqwest::Method::GET, &url, &[("cookie", &cookie)])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = env
        .config_text
        .replace("X-Auth-Sub = \"sub\"", "X-Remote-User = \"sub\"");
    reload(&env, &text, "configuration reloaded").await;
    let r = alice.get(&env.url("/")).await;
    assert_eq!(
        r.upstream_header("x-remote-user").as_deref(),
        Some("910000000001")
    );
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(
        slow.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001"),
        "the request that started before the reload kept its state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_is_loaded_before_the_swap() {
    let env = Env::start().await;
    // A second provider (the same development provider under another name) and a route for it;
    // with two providers every route names its own.
    let second = env
        .config_text
        .split("[providers.dev]")
        .nth(1)
        .unwrap()
        .split("[[route]]")
        .next()
        .unwrap()
        .to_owned();
    let mut text = env
        .config_text
        .replace("upstream = \"http", "provider = \"dev\"\nupstream = \"http");
    text = text.replacen(
        "[[route]]",
        &format!(
            "[providers.second]{second}\n[[route]]\nname = \"second\"\npath = \"/second\"\nprovider = \"second\"\nupstream = \"{}\"\n\n[[route]]",
            env.echo.base_url()
        ),
        1,
    );
    reload(&env, &text, "configuration reloaded").await;
    assert!(env.gateway.logs().contains("reload: provider loaded"));
    // Ready at once: discovery and keys were fetched before the new state went live.
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        metric(&env, "oidc_gateway_provider_ready{provider=\"second\"}").await,
        1.0
    );
    let mut b = Browser::new();
    let r = b.login(&env.url("/second/x"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["path"], "/second/x");
    // A session of one provider is not accepted on the other's routes: a new login starts.
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::FOUND);
}

/// A reload that changes a provider's settings (not its issuer) while the provider is down:
/// the new provider cannot fetch discovery and keys, so it keeps the last good ones; the
/// gateway stays ready, sessions flow, and logins resume when the provider is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_an_outage_keeps_the_providers_last_good_documents() {
    let env = Env::start().await;
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/"), "alice").await.status,
        StatusCode::OK
    );
    env.provider()
        .controls
        .set_misbehaviour(Some(devprovider::Misbehaviour::Unavailable));
    let text = env.config_text.replace(
        "[providers.dev]\n",
        "[providers.dev]\nprobe_interval = \"4s\"\n",
    );
    assert_ne!(text, env.config_text);
    reload(&env, &text, "configuration reloaded").await;
    assert!(
        env.gateway
            .logs()
            .contains("keeping the discovery document and keys loaded before"),
        "{}",
        env.gateway.logs()
    );
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        metric(&env, "oidc_gateway_provider_ready{provider=\"dev\"}").await,
        1.0
    );
    assert_eq!(alice.get(&env.url("/x")).await.status, StatusCode::OK);
    // Down as before the reload: a login is refused rather than sent to the provider.
    assert_eq!(
        Browser::new().get(&env.url("/")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    env.provider().controls.set_misbehaviour(None);
    let back = eventually(Duration::from_secs(40), async || {
        Browser::new().get(&env.url("/")).await.status == StatusCode::FOUND
    })
    .await;
    assert!(back, "logins never resumed:\n{}", env.gateway.logs());
    assert_eq!(
        Browser::new().login(&env.url("/"), "bob").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish_then_exits() {
    let mut env = Env::start().await;
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    let cookie = alice.cookie_header();
    let url = env.url("/slow?ms=2500");
    let slow = tokio::spawn(async move {
        let mut b = Browser::new();
        b.request(reqwest::Method::GET, &url, &[("cookie", &cookie)])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    env.gateway.signal("TERM");
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.status,
        StatusCode::OK,
        "the request in flight finished"
    );
    assert!(slow.body.contains("/slow"));
    // Then the process ends on its own, well within systemd's TimeoutStopSec=15.
    let deadline = Instant::now() + Duration::from_secs(12);
    let code = loop {
        if let Some(status) = env.gateway.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after SIGTERM:\n{}",
            env.gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code.success(), "exit status {code:?}");
    assert!(sent.elapsed() >= Duration::from_millis(1500));
}

/// SIGINT (Ctrl-C) ends the process at once, right after start-up and traffic too. Pingora's own
/// fast shutdown could leave a listener failing accept() in a loop that logged at full speed,
/// forever (one run in five here); the gateway exits itself instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_at_once_without_a_log_flood() {
    for round in 0..4 {
        let mut env = Env::start().await;
        let mut b = Browser::new();
        assert_eq!(b.get(&env.url("/public/x")).await.status, StatusCode::OK);
        assert_eq!(b.get(&env.url("/")).await.status, StatusCode::FOUND);
        env.gateway.signal("INT");
        let deadline = Instant::now() + Duration::from_secs(3);
        while env.gateway.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "round {round}: still running 3 s after SIGINT"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = env.gateway.logs();
        assert!(!logs.contains("Accept() failed"), "round {round}:\n{logs}");
    }
}
