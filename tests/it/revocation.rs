//! Back-channel logout with cookie sessions (`store = "cookie"`): the provider ends a session
//! and the gateway refuses its cookies from then on, on the proxied path and at `/oauth2/auth`;
//! with `revocation = "redis"` on every instance, including one that starts afterwards.

use crate::common;
use crate::redis_store::{backchannel, copy_of, url};

use std::time::Duration;

use common::redis::RedisServer;
use common::{eventually, metric, Browser, Env, Gateway, Options};
use devprovider::user;
use reqwest::{Method, StatusCode};
use serde_json::json;

const TRUSTED: &str = "trusted_proxies = [\"127.0.0.1/32\"]";

async fn logged_in(g: &str, user: &str) -> Browser {
    let mut b = Browser::new();
    let r = b.login(&format!("{g}/app"), user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b
}

/// What `b` gets at `/app` on `g`: 200 with a session, 302 to the provider without.
async fn app(b: &Browser, g: &Gateway) -> StatusCode {
    copy_of(b).get(&url(g, "/app")).await.status
}

/// What forward-auth says about `b` on `g` (202: allowed).
async fn forward_auth(b: &Browser, g: &Gateway) -> StatusCode {
    let mut c = copy_of(b);
    c.accept_html = false;
    c.request(
        Method::GET,
        &url(g, "/oauth2/auth"),
        &[("x-original-uri", "/app/x")],
    )
    .await
    .status
}

async fn ready(g: &Gateway) -> (StatusCode, String) {
    let r = reqwest::get(format!("{}/readyz", g.admin)).await.unwrap();
    (r.status(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_cookie_sessions_by_sid_or_by_sub() {
    let env = Env::with(Options {
        server_extra: TRUSTED.into(),
        ..Options::default()
    })
    .await;
    let g = &env.gateway;
    let provider = env.provider();
    let alice1 = logged_in(&g.base, "alice").await;
    let alice2 = logged_in(&g.base, "alice").await;
    let bob = logged_in(&g.base, "bob").await;
    let alice_sub = user("alice").unwrap().sub();
    let sids = provider.controls.sids_of(alice_sub);
    assert_eq!(sids.len(), 2);

    // sid: that provider session's cookies are refused at once, everywhere they are checked.
    let token = provider
        .mint_logout_token(
            common::CLIENT_ID,
            Some(alice_sub),
            Some(&sids[0]),
            json!({}),
        )
        .unwrap();
    let (status, body) = backchannel(g, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app(&alice1, g).await, StatusCode::FOUND);
    assert_eq!(forward_auth(&alice1, g).await, StatusCode::UNAUTHORIZED);
    let mut api = copy_of(&alice1);
    let r = api.get_api(&url(g, "/app")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "login_required");
    // The user's other session stays.
    assert_eq!(app(&alice2, g).await, StatusCode::OK);
    assert_eq!(forward_auth(&alice2, g).await, StatusCode::ACCEPTED);

    // A replay is refused.
    let (status, body) = backchannel(g, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("already used"), "{body}");

    // sub alone: every earlier session of the user; other users keep theirs.
    let token = provider
        .mint_logout_token(common::CLIENT_ID, Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, body) = backchannel(g, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app(&alice2, g).await, StatusCode::FOUND);
    assert_eq!(app(&bob, g).await, StatusCode::OK);
    // sid s1 (with alice's sessions without a sid), and alice.
    assert_eq!(
        metric(&g.admin, "oidc_gateway_session_revocations ").await,
        Some(3.0)
    );
    let logs = g.logs();
    assert!(
        logs.contains("back-channel logout: sessions revoked"),
        "{logs}"
    );

    // A later login of the same user is a new session, not a revoked one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = logged_in(&g.base, "alice").await;
    assert_eq!(app(&again, g).await, StatusCode::OK);
    // Revocations survive a reload (SIGHUP) of an unchanged session config.
    assert!(
        eventually(Duration::from_secs(5), async || g
            .logs()
            .contains("SIGHUP reloads the configuration"))
        .await
    );
    g.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), async || {
            metric(
                &g.admin,
                "oidc_gateway_config_reloads_total{result=\"success\"}",
            )
            .await
            .unwrap_or(0.0)
                >= 1.0
        })
        .await,
        "{}",
        g.logs()
    );
    assert_eq!(app(&alice1, g).await, StatusCode::FOUND);
    assert_eq!(app(&again, g).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_in_redis_reach_every_instance_and_one_started_later() {
    let mut redis = RedisServer::start();
    let env = Env::with(Options {
        server_extra: TRUSTED.into(),
        session_extra: format!(
            "revocation = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"300ms\"\n",
            redis.url()
        ),
        ..Options::default()
    })
    .await;
    let a = &env.gateway;
    let b = env.another_gateway(&env.opts_keys);
    let provider = env.provider();
    let alice1 = logged_in(&a.base, "alice").await;
    let alice2 = logged_in(&a.base, "alice").await;
    // Cookie sessions: Redis holds no session, only what is revoked.
    assert_eq!(redis.cli(&["--scan", "--pattern", "oidc-gateway:s:*"]), "");
    assert_eq!(app(&alice1, &b).await, StatusCode::OK);
    let alice_sub = user("alice").unwrap().sub();
    let sids = provider.controls.sids_of(alice_sub);

    let token = provider
        .mint_logout_token(
            common::CLIENT_ID,
            Some(alice_sub),
            Some(&sids[0]),
            json!({}),
        )
        .unwrap();
    let (status, body) = backchannel(a, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app(&alice1, a).await, StatusCode::FOUND);
    // The other instance follows the shared list within about a second.
    assert!(
        eventually(Duration::from_secs(3), async || app(&alice1, &b).await
            == StatusCode::FOUND)
        .await,
        "instance B still accepts the revoked session"
    );
    assert_eq!(forward_auth(&alice1, &b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app(&alice2, &b).await, StatusCode::OK);
    // A replay to the other instance is refused.
    let (status, body) = backchannel(&b, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The sid, and the user's sessions without a sid.
    assert_eq!(redis.cli(&["XLEN", "oidc-gateway:revocations"]).trim(), "2");

    // An instance started afterwards reads the list before it admits a cookie session.
    let c = env.another_gateway(&env.opts_keys);
    assert_eq!(app(&alice1, &c).await, StatusCode::FOUND);
    assert_eq!(app(&alice2, &c).await, StatusCode::OK);

    // Redis away: cookie sessions keep flowing on instances that read the list; a logout
    // cannot be recorded (503, the provider retries); an instance that never read the list
    // cannot tell and fails closed.
    redis.stop();
    assert_eq!(app(&alice2, a).await, StatusCode::OK);
    let token = provider
        .mint_logout_token(common::CLIENT_ID, Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, _) = backchannel(a, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        eventually(Duration::from_secs(5), async || metric(
            &a.admin,
            "oidc_gateway_session_store_up "
        )
        .await
            == Some(0.0))
        .await,
        "the probe reports Redis down"
    );
    let d = env.another_gateway_waiting(&env.opts_keys, false);
    let r = copy_of(&alice2).get(&url(&d, "/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let (status, body) = ready(&d).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("revocation list"), "{body}");

    // Back: the provider's retry is carried out, and every instance refuses alice2.
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), async || ready(&d).await.0
            == StatusCode::OK)
        .await,
        "instance D reads the list once Redis is back"
    );
    // The provider retries until the gateway reaches Redis again.
    assert!(
        eventually(Duration::from_secs(10), async || backchannel(a, &token)
            .await
            .0
            == StatusCode::OK)
        .await,
        "the retried logout is carried out"
    );
    for g in [a, &b, &c, &d] {
        assert!(
            eventually(Duration::from_secs(3), async || app(&alice2, g).await
                == StatusCode::FOUND)
            .await,
            "{} still accepts alice's sessions",
            g.base
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_naming_sid_and_sub_also_ends_cookie_sessions_without_a_sid() {
    let env = Env::start().await;
    let g = &env.gateway;
    let provider = env.provider();
    provider
        .controls
        .set_misbehaviour(Some(devprovider::Misbehaviour::NoSid));
    let alice = logged_in(&g.base, "alice").await;
    let bob = logged_in(&g.base, "bob").await;
    provider.controls.set_misbehaviour(None);
    let with_sid = logged_in(&g.base, "alice").await;
    let alice_sub = user("alice").unwrap().sub();
    let token = provider
        .mint_logout_token(
            common::CLIENT_ID,
            Some(alice_sub),
            Some("another-provider-session"),
            json!({}),
        )
        .unwrap();
    let (status, body) = backchannel(g, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Her session without a sid may be that provider session: refused. Her session of another
    // provider session, and bob's, stay.
    assert_eq!(app(&alice, g).await, StatusCode::FOUND);
    assert_eq!(app(&with_sid, g).await, StatusCode::OK);
    assert_eq!(app(&bob, g).await, StatusCode::OK);
}
