//! A session cookie that is tampered with, truncated, expired, sealed with a foreign key or made
//! of mismatched chunks is "no session": a redirect to log in (or 401), never a 5xx.

use crate::common;

use common::{Browser, Env, Options};
use reqwest::StatusCode;

/// Asserts that the browser is treated as signed out, both as a browser and as an API client.
async fn assert_signed_out(env: &Env, b: &mut Browser, case: &str) {
    let cookies = b.cookies.clone();
    let r = b.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{case}: {}", r.body);
    assert!(
        r.location()
            .starts_with(&env.provider().authorization_endpoint()),
        "{case}"
    );
    let mut api = Browser::api();
    api.cookies = cookies;
    let r = api.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_and_garbage_cookies_are_no_session() {
    let env = Env::start().await;
    let mut good = Browser::new();
    good.login(&env.url("/"), "alice").await;
    let value = good.cookies["oidc_session"].clone();
    let mut flipped = value.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let cases = [
        ("one byte changed", String::from_utf8(flipped).unwrap()),
        ("truncated", value[..value.len() - 10].to_owned()),
        ("empty", String::new()),
        ("not base64", "%%%not-base64%%%".to_owned()),
        (
            "random",
            "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB".to_owned(),
        ),
        ("huge", "A".repeat(3000)),
    ];
    for (case, v) in cases {
        let mut b = Browser::new();
        b.cookies.insert("oidc_session".into(), v);
        assert_signed_out(&env, &mut b, case).await;
    }
    // The good cookie still works, and nothing above produced a 5xx.
    assert_eq!(good.get(&env.url("/")).await.status, StatusCode::OK);
    let logs = env.gateway.logs();
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&value[..40])).collect();
    assert!(
        leaks.is_empty(),
        "a cookie value reached the logs: {leaks:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_that_are_missing_reordered_mixed_or_too_many_are_no_session() {
    let env = Env::with(Options {
        routes: common::DEFAULT_ROUTES.replace(
            "X-Auth-Activities = \"activities\"",
            "X-Auth-Activities = \"activities\"\nX-Auth-Roles = \"$.nhsid_nrbac_roles[0:15]\"",
        ),
        ..Default::default()
    })
    .await;
    let mut a = Browser::new();
    a.login(&env.url("/"), "big").await;
    let mut c = Browser::new();
    c.login(&env.url("/"), "big").await;
    assert!(a.session_cookie_names().len() >= 2);
    let chunks = a.cookies.clone();

    let mut missing = Browser::new();
    missing.cookies = chunks.clone();
    missing.cookies.remove("oidc_session_1");
    assert_signed_out(&env, &mut missing, "missing chunk").await;

    let mut swapped = Browser::new();
    swapped.cookies = chunks.clone();
    let (c0, c1) = (
        chunks["oidc_session_0"].clone(),
        chunks["oidc_session_1"].clone(),
    );
    swapped.cookies.insert("oidc_session_0".into(), c1);
    swapped.cookies.insert("oidc_session_1".into(), c0);
    assert_signed_out(&env, &mut swapped, "reordered chunks").await;

    let mut mixed = Browser::new();
    mixed.cookies = chunks.clone();
    mixed
        .cookies
        .insert("oidc_session_1".into(), c.cookies["oidc_session_1"].clone());
    assert_signed_out(&env, &mut mixed, "chunks of two sessions").await;

    let mut too_many = Browser::new();
    too_many.cookies = chunks.clone();
    for i in 0..9 {
        too_many
            .cookies
            .insert(format!("oidc_session_{i}"), "x".into());
    }
    assert_signed_out(&env, &mut too_many, "more chunks than allowed").await;

    let mut whole = Browser::new();
    whole.cookies = chunks;
    assert_eq!(whole.get(&env.url("/")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires() {
    let env = Env::with(Options {
        session_extra: "idle_timeout = \"2s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_signed_out(&env, &mut b, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_an_idle_timeout_session_alive() {
    let env = Env::with(Options {
        session_extra: "idle_timeout = \"3s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_maximum_lifetime_expires_despite_activity() {
    let env = Env::with(Options {
        session_extra: "max_lifetime = \"3s\"".into(),
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_signed_out(&env, &mut b, "max lifetime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_keys_rotate_first_encrypts_all_decrypt() {
    let old_key = oidc_gateway::keygen::cookie_key();
    let new_key = oidc_gateway::keygen::cookie_key();
    let env = Env::with(Options {
        keys: vec![old_key.clone()],
        ..Default::default()
    })
    .await;
    let mut b = Browser::new();
    b.login(&env.url("/"), "alice").await;
    let old_session = b.cookies.clone();

    // A gateway with [new, old] accepts the old session and reseals with the new key.
    let rotated = env.another_gateway(&[new_key.clone(), old_key.clone()]);
    let mut r = Browser::new();
    r.cookies = old_session.clone();
    let resp = r.get(&format!("{}/", rotated.base)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    // A gateway that dropped the old key treats it as foreign.
    let dropped = env.another_gateway(&[new_key]);
    let mut f = Browser::new();
    f.cookies = old_session;
    let resp = f.get(&format!("{}/app", dropped.base)).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    let mut f_api = Browser::api();
    f_api.cookies = f.cookies.clone();
    f_api
        .cookies
        .insert("oidc_session".into(), b.cookies["oidc_session"].clone());
    assert_eq!(
        f_api.get(&format!("{}/app", dropped.base)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
