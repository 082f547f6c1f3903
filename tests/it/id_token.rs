//! Everything wrong a provider can send back is refused: the login fails with 401 and a link to
//! start again (or 503 when the provider is down), never a session.

use crate::common;

use common::{Browser, Env};
use devprovider::Misbehaviour;
use reqwest::StatusCode;

async fn login_with(env: &Env, m: Misbehaviour) -> common::Resp {
    env.provider().controls.set_misbehaviour(Some(m));
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let back = b.through_provider(&first, "alice").await;
    assert!(b.session_cookie_names().is_empty(), "{m:?} left a session");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_id_tokens_fail_the_login_with_401_and_a_retry_link() {
    let env = Env::start().await;
    for m in [
        Misbehaviour::WrongIssuer,
        Misbehaviour::WrongAudience,
        Misbehaviour::ExtraAudienceNoAzp,
        Misbehaviour::Expired,
        Misbehaviour::IssuedInFuture,
        Misbehaviour::WrongNonce,
        Misbehaviour::BadSignature,
        Misbehaviour::AlgNone,
        Misbehaviour::AtHashMismatch,
        Misbehaviour::UnknownKey,
    ] {
        let r = login_with(&env, m).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m:?}: {}", r.body);
        assert!(r.body.contains("Sign-in failed"), "{m:?}");
        assert!(
            r.body.contains("/oauth2/sign_in?rd=%2Fapp"),
            "{m:?}: {}",
            r.body
        );
    }
    let logs = env.gateway.logs();
    for reason in [
        "wrong issuer",
        "wrong audience",
        "expired",
        "nonce mismatch",
        "at_hash",
        "unknown key",
    ] {
        assert!(logs.contains(reason), "no log line saying {reason:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_refetches_the_jwks_at_most_once_per_interval() {
    let env = Env::start().await;
    let before = env.provider().controls.jwks_fetches();
    for _ in 0..5 {
        let r = login_with(&env, Misbehaviour::UnknownKey).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Five logins with an unknown kid within jwks_min_refetch_interval (1 s): one refetch.
    assert_eq!(env.provider().controls.jwks_fetches() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_provider_key_is_picked_up_by_one_refetch() {
    let env = Env::start().await;
    let mut b = Browser::new();
    assert_eq!(b.login(&env.url("/"), "alice").await.status, StatusCode::OK);
    let before = env.provider().controls.jwks_fetches();
    env.provider().controls.rotate_signing_key();
    let mut b2 = Browser::new();
    let r = b2.login(&env.url("/"), "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(env.provider().controls.jwks_fetches() - before, 1);
    // Sessions made before the rotation keep working: they do not depend on provider keys.
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_with_a_published_1024_bit_rsa_key_is_refused() {
    let env = Env::start().await;
    env.provider().controls.rotate_to_weak_signing_key();
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let r = b.through_provider(&first, "alice").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("Sign-in failed"));
    assert!(b.session_cookie_names().is_empty());
    assert!(env.gateway.logs().contains("bad signature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_response_fails_the_login_without_echoing_provider_text() {
    let env = Env::start().await;
    let r = login_with(&env, Misbehaviour::TokenError).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("invalid_grant"));
    assert!(!r.body.contains("<script>"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_the_authorization_response_fails_cleanly() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let state = common::query_param(&first.location(), "state").unwrap();
    let r = b
        .get(&env.url(&format!(
            "/oauth2/callback?error=access_denied%3Cscript%3E&state={state}"
        )))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body.contains("access_denied") && !r.body.contains("<script>"),
        "{}",
        r.body
    );
    assert!(
        !b.cookies.keys().any(|k| k.contains("_login_")),
        "the login cookie is consumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_5xx_or_outage_at_the_token_endpoint_gives_503_with_retry_after() {
    let env = Env::start().await;
    let r = login_with(&env, Misbehaviour::TokenServerError).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_fails_the_login_within_the_timeout() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let authorize = format!("{}&login_hint=alice", first.location());
    let at_provider = b.get(&authorize).await;
    env.provider()
        .controls
        .set_delay(std::time::Duration::from_secs(5));
    let started = std::time::Instant::now();
    let r = b.get(&at_provider.location()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    // timeout = "2s" in the test config.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_problems_fail_the_callback() {
    let env = Env::start().await;
    // A callback nobody started.
    let mut b = Browser::new();
    let r = b
        .get(&env.url("/oauth2/callback?code=abc&state=nobody-started-this"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // No state at all.
    assert_eq!(
        b.get(&env.url("/oauth2/callback?code=abc")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A state that belongs to another browser's login.
    let mut victim = Browser::new();
    let first = victim.get(&env.url("/app")).await;
    let authorize = format!("{}&login_hint=alice", first.location());
    let mut attacker = Browser::new();
    let at_provider = attacker.get(&authorize).await;
    let r = attacker.get(&at_provider.location()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(attacker.session_cookie_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_does_not_log_in_again() {
    let env = Env::start().await;
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let authorize = format!("{}&login_hint=alice", first.location());
    let at_provider = b.get(&authorize).await;
    let callback = at_provider.location();
    let login_cookies = b.cookies.clone();
    let ok = b.get(&callback).await;
    assert_eq!(ok.status, StatusCode::FOUND);
    // Replay with the same (captured) cookies: the code is single-use at the provider.
    let mut replay = Browser::new();
    replay.cookies = login_cookies;
    let r = replay.get(&callback).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(replay.session_cookie_names().is_empty());
    // Replay in the browser that finished: its login cookie is gone.
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_for_another_subject_fails_the_login() {
    let env = Env::with(common::Options {
        provider_extra: "userinfo = true".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    assert_eq!(b.login(&env.url("/"), "alice").await.status, StatusCode::OK);
    assert!(env.provider().controls.userinfo_calls() >= 1);
    let r = login_with(&env, Misbehaviour::UserinfoSubMismatch).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(env.gateway.logs().contains("UserInfo sub differs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_response_naming_another_issuer_is_refused() {
    let env = Env::start().await;
    for (iss, ok) in [
        ("https://evil.example", false),
        (env.provider().issuer.as_str(), true),
    ] {
        let mut b = Browser::new();
        let first = b.get(&env.url("/app")).await;
        let at_provider = b
            .get(&format!("{}&login_hint=alice", first.location()))
            .await;
        let encoded: String = url::form_urlencoded::byte_serialize(iss.as_bytes()).collect();
        let r = b
            .get(&format!("{}&iss={encoded}", at_provider.location()))
            .await;
        let want = if ok {
            StatusCode::FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(r.status, want, "iss {iss}: {}", r.body);
    }
}
