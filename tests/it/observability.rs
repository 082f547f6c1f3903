//! What operators see: Prometheus counters that move with what happened, and logs (at trace
//! level) that never contain a token, code, state, cookie value or secret.

use crate::common;

use common::{query_param, Browser, Env, Options};
use devprovider::Misbehaviour;
use reqwest::StatusCode;
use serde_json::Value;

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The metrics once every request has been counted: a client has its response a moment before
/// the gateway's logging hook counts the request and its context leaves `requests_in_flight`.
async fn scrape(env: &Env) -> String {
    let admin = env.gateway.admin.clone();
    let settled = common::eventually(std::time::Duration::from_secs(5), async || {
        common::metric(&admin, "oidc_gateway_requests_in_flight").await == Some(0.0)
    })
    .await;
    assert!(settled, "requests stayed in flight");
    scrape_now(env).await
}

/// The metrics as they are this moment.
async fn scrape_now(env: &Env) -> String {
    reqwest::get(format!("{}/metrics", env.gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn status(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The default routes plus one whose upstream refuses connections.
fn routes_with_a_dead_upstream() -> String {
    format!(
        "{}\n[[route]]\nname = \"down\"\npath = \"/down\"\nupstream = \"http://127.0.0.1:{}\"\n",
        common::DEFAULT_ROUTES,
        common::free_port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_logins_failures_forbidden_refreshes_and_logouts() {
    // Provider tokens that expire at once: the gateway refreshes them after
    // MIN_TOKEN_LIFETIME_SECS.
    let env = Env::with(Options {
        routes: routes_with_a_dead_upstream(),
        access_token_lifetime: std::time::Duration::from_secs(1),
        id_token_lifetime: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut alice = Browser::new();
    alice.login(&env.url("/"), "alice").await;
    let mut bob = Browser::new();
    bob.login(&env.url("/"), "bob").await;
    assert_eq!(bob.get(&env.url("/ra")).await.status, StatusCode::FORBIDDEN);
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::WrongAudience));
    let mut eve = Browser::new();
    let first = eve.get(&env.url("/")).await;
    eve.through_provider(&first, "alice").await;
    env.provider().controls.set_misbehaviour(None);
    // An upstream failure: 502, counted for its route, with the time spent trying.
    let down = alice.get(&env.url("/down/x")).await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert!(down.body.contains("not answering"), "{}", down.body);
    // A refresh: alice's tokens have expired, her next request refreshes them first.
    tokio::time::sleep(std::time::Duration::from_secs(
        oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS + 1,
    ))
    .await;
    assert_eq!(alice.get(&env.url("/")).await.status, StatusCode::OK);
    alice.get(&env.url("/oauth2/logout")).await;
    let text = scrape(&env).await;
    let ev = |e: &str| {
        metric(
            &text,
            &format!("oidc_gateway_auth_events_total{{event=\"{e}\",provider=\"dev\"}}"),
        )
    };
    assert_eq!(ev("login_started"), 3.0, "{text}");
    assert_eq!(ev("login_succeeded"), 2.0);
    assert_eq!(ev("login_failed"), 1.0);
    assert_eq!(ev("forbidden"), 1.0);
    assert_eq!(ev("logout"), 1.0);
    // At least alice's refresh; on a slow machine bob's or alice's earlier requests may already
    // have been due too.
    let refreshed = ev("refreshed");
    assert!(refreshed >= 1.0, "{text}");
    assert_eq!(ev("refresh_failed"), 0.0);
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_requests_total{route=\"ra\",status=\"403\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_requests_total{route=\"app\",status=\"200\"}"
        ),
        3.0
    );
    assert!(
        metric(
            &text,
            "oidc_gateway_jwks_refresh_total{provider=\"dev\",result=\"success\"}"
        ) >= 1.0
    );
    assert!(metric(&text, "oidc_gateway_provider_request_duration_seconds_count{endpoint=\"token\",provider=\"dev\"}") >= 3.0);
    assert!(
        metric(
            &text,
            "oidc_gateway_request_duration_seconds_count{route=\"app\"}"
        ) >= 2.0
    );
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_requests_total{route=\"down\",status=\"502\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_upstream_duration_seconds_count{route=\"down\"}"
        ),
        1.0
    );
    // The upstream answered for every proxied request of the app route (2 logins landing, the
    // refreshed request).
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_upstream_duration_seconds_count{route=\"app\"}"
        ),
        3.0,
        "{text}"
    );
    // Nothing is in flight but the scrape's own admin request, which the proxy does not count.
    assert_eq!(metric(&text, "oidc_gateway_requests_in_flight"), 0.0);
    // One session written per successful login and per refresh.
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_session_cookie_bytes_count{provider=\"dev\"}"
        ),
        2.0 + refreshed
    );
    assert!(
        metric(
            &text,
            "oidc_gateway_session_cookie_bytes_sum{provider=\"dev\"}"
        ) > 200.0
    );
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_provider_errors_total{endpoint=\"token\",provider=\"dev\"}"
        ),
        0.0,
        "the wrong-audience login got its tokens; it failed on validation"
    );
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        // The gateway's own, and the standard process metrics beside them (contract).
        assert!(
            line.starts_with("oidc_gateway_") || line.starts_with("process_"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_gauge_counts_a_slow_request_while_it_runs() {
    let env = Env::start().await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let url = env.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { b.get(&url).await.status });
    let env_ref = &env;
    let seen = common::eventually(std::time::Duration::from_secs(5), async || {
        metric(
            &scrape_now(env_ref).await,
            "oidc_gateway_requests_in_flight",
        ) == 1.0
    })
    .await;
    assert!(seen, "the slow request was never counted in flight");
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(
        metric(&scrape(&env).await, "oidc_gateway_requests_in_flight"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_while_the_provider_is_up_then_down() {
    let mut env = Env::start().await;
    let admin = env.gateway.admin.clone();
    assert_eq!(status(&format!("{admin}/healthz")).await, 200);
    assert_eq!(status(&format!("{admin}/readyz")).await, 200);
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    env.stop_provider();
    // Loaded once, the gateway stays ready: sessions keep flowing without the provider.
    assert_eq!(status(&format!("{admin}/healthz")).await, 200);
    assert_eq!(status(&format!("{admin}/readyz")).await, 200);
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    // A login cannot finish: 503, and the failed token call is counted by endpoint.
    let mut other = Browser::new();
    let first = other.get(&env.url("/")).await;
    let state = query_param(&first.location(), "state").unwrap();
    let r = other
        .get(&env.url(&format!("/oauth2/callback?code=x&state={state}")))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = scrape(&env).await;
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_provider_errors_total{endpoint=\"token\",provider=\"dev\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "oidc_gateway_auth_events_total{event=\"login_failed\",provider=\"dev\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "oidc_gateway_provider_ready{provider=\"dev\"}"),
        1.0
    );
}

/// A full login, use, userinfo and logout, a failed login and a tampered cookie: everything that
/// could leak. Returns the secrets seen on the wire, to be searched for in the logs.
async fn secret_scenario(env: &Env) -> Vec<(&'static str, String)> {
    let mut b = Browser::new();
    let first = b.get(&env.url("/app?q=1")).await;
    let state = query_param(&first.location(), "state").unwrap();
    let nonce = query_param(&first.location(), "nonce").unwrap();
    let login_cookie = b.cookies.values().next().cloned().unwrap();
    let at_provider = b
        .get(&format!("{}&login_hint=alice", first.location()))
        .await;
    let code = query_param(&at_provider.location(), "code").unwrap();
    let back = b.get(&at_provider.location()).await;
    assert_eq!(back.status, StatusCode::FOUND);
    let session = b.cookies["oidc_session"].clone();
    b.get(&env.url("/app")).await;
    b.get(&env.url("/oauth2/userinfo")).await;
    b.get(&env.url("/oauth2/logout")).await;
    // A failed login too: its error paths log as well.
    env.provider()
        .controls
        .set_misbehaviour(Some(Misbehaviour::BadSignature));
    let mut c = Browser::new();
    let f = c.get(&env.url("/")).await;
    c.through_provider(&f, "bob").await;
    env.provider().controls.set_misbehaviour(None);
    // And a broken cookie, which is logged at debug.
    let mut t = Browser::new();
    t.cookies
        .insert("oidc_session".into(), session.replace('A', "B"));
    t.get(&env.url("/")).await;
    vec![
        ("client secret", common::CLIENT_SECRET.to_owned()),
        ("authorization code", code),
        ("state", state),
        ("nonce", nonce),
        ("login cookie", login_cookie[..32].to_owned()),
        ("session cookie", session[..32].to_owned()),
        ("a JWT (ID token or assertion)", "eyJ".to_owned()),
    ]
}

fn assert_no_secrets(logs: &str, secrets: &[(&str, String)]) {
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the test must run at trace level"
    );
    for (what, secret) in secrets {
        let leaks: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .take(3)
            .collect();
        assert!(leaks.is_empty(), "{what} in the logs: {leaks:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_hold_no_secrets() {
    let env = Env::with(Options {
        auth: common::Auth::Post,
        ..Default::default()
    })
    .await;
    let secrets = secret_scenario(&env).await;
    let logs = env.gateway.logs();
    assert!(logs.contains("login succeeded") && logs.contains("login failed"));
    assert_no_secrets(&logs, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_access_and_audit_fields_and_no_secrets() {
    let env = Env::with(Options {
        auth: common::Auth::Post,
        extra_args: vec!["--log-format".into(), "json".into()],
        ..Default::default()
    })
    .await;
    let secrets = secret_scenario(&env).await;
    let logs = env.gateway.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 20, "{logs}");
    for l in &lines {
        assert!(l["level"].is_string() && l["target"].is_string(), "{l}");
    }
    let event = |name: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "audit" && l["event"] == name)
            .unwrap_or_else(|| panic!("no audit line {name}"))
            .clone()
    };
    assert_eq!(event("login_succeeded")["sub"], "910000000001");
    assert_eq!(event("login_succeeded")["provider"], "dev");
    assert!(event("login_failed")["reason"].is_string());
    assert_eq!(event("logout")["sub"], "910000000001");
    let proxied = lines
        .iter()
        .find(|l| l["target"] == "access" && l["route"] == "app" && l["status"] == 200)
        .expect("an access line for the app route");
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["sub"], "910000000001");
    assert!(proxied["duration_ms"].as_f64().is_some(), "{proxied}");
    assert!(proxied["upstream_ms"].as_f64().is_some(), "{proxied}");
    // The path is logged without its query.
    assert!(lines
        .iter()
        .filter(|l| l["target"] == "access")
        .all(|l| !l["path"].as_str().unwrap_or("").contains('?')));
    assert_no_secrets(&logs, &secrets);
}
