//! What operators see: Prometheus counters that move with what happened, and logs (at trace
//! level) that never contain a token, code, state, cookie value or secret.

mod common;

use common::{query_param, Browser, Env};
use oidc_gateway::devprovider::Misbehaviour;
use reqwest::StatusCode;

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_logins_failures_forbidden_and_logouts() {
    let env = Env::start().await;
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
    alice.get(&env.url("/oauth2/logout")).await;
    let text = reqwest::get(format!("{}/metrics", env.gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
        2.0
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
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("oidc_gateway_"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_hold_no_secrets() {
    let env = Env::with(common::Options {
        auth: common::Auth::Post,
        ..Default::default()
    })
    .await;
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
    // And a broken cookie, which is logged at debug.
    let mut t = Browser::new();
    t.cookies
        .insert("oidc_session".into(), session.replace('A', "B"));
    t.get(&env.url("/")).await;
    let logs = env.gateway.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the test must run at trace level"
    );
    assert!(logs.contains("login succeeded") && logs.contains("login failed"));
    for (what, secret) in [
        ("client secret", common::CLIENT_SECRET),
        ("authorization code", code.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("login cookie", &login_cookie[..32]),
        ("session cookie", &session[..32]),
        ("a JWT (ID token or assertion)", "eyJ"),
    ] {
        let leaks: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(secret))
            .take(3)
            .collect();
        assert!(leaks.is_empty(), "{what} in the logs: {leaks:#?}");
    }
}
