//! Server-side sessions on a real Redis (`session.store = "redis"`), with two gateway processes
//! sharing it: a session made on one instance works on the other; logout on either (local or
//! back-channel) ends it everywhere at once; concurrent refreshes on both instances make one
//! refresh grant; Redis down or hung fails closed with 503 and recovers without a restart.

use crate::common;

use std::time::Duration;

use common::redis::{RedisOptions, RedisServer};
use common::{eventually, metric, Browser, Env, Gateway, Options};
use devprovider::user;
use oidc_gateway::refresh::MIN_TOKEN_LIFETIME_SECS;
use reqwest::StatusCode;
use serde_json::json;

pub(crate) fn redis_options(redis: &RedisServer, extra: &str) -> Options {
    Options {
        session_extra: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"300ms\"\n{extra}",
            redis.url()
        ),
        ..Options::default()
    }
}

/// A browser that carries a copy of `b`'s cookies (a second tab, or a stolen cookie).
pub(crate) fn copy_of(b: &Browser) -> Browser {
    let mut c = Browser::new();
    c.cookies = b.cookies.clone();
    c
}

pub(crate) fn url(g: &Gateway, path: &str) -> String {
    format!("{}{path}", g.base)
}

/// A login that succeeds at the provider but cannot be stored: 503, no session.
async fn login_fails_closed(env: &Env) {
    let mut bob = Browser::new();
    let first = bob.get(&env.url("/app")).await;
    let back = bob.through_provider(&first, "bob").await;
    assert_eq!(
        back.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        back.body
    );
    assert!(bob.session_cookie_names().is_empty());
}

/// POSTs a logout token to the back-channel endpoint of `g`.
pub(crate) async fn backchannel(g: &Gateway, token: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(url(g, "/oauth2/backchannel_logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .expect("back-channel request");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_instance_works_on_the_other_until_logout_on_either() {
    let redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let b_gw = env.another_gateway(&env.opts_keys);

    let mut b = Browser::new();
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    // The cookie holds only a sealed id: one small cookie, whatever the claims weigh.
    assert_eq!(b.session_cookie_names(), vec!["oidc_session".to_owned()]);
    let value = &b.cookies["oidc_session"];
    assert!(value.len() < 200, "cookie is {} bytes", value.len());
    assert!(!value.contains("alice"));
    // Redis holds it sealed: no claim is readable there either.
    let keys = redis.cli(&["--scan", "--pattern", "oidc-gateway:s:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    let blob = redis.cli(&["GET", keys.trim()]);
    assert!(!blob.contains("alice") && !blob.contains("Alice"), "{blob}");
    let ttl: i64 = redis.cli(&["TTL", keys.trim()]).trim().parse().unwrap();
    assert!((1..=1800).contains(&ttl), "TTL {ttl} s is the idle timeout");

    let on_b = b.get(&url(&b_gw, "/app")).await;
    assert_eq!(on_b.status, StatusCode::OK, "{}", on_b.body);
    assert_eq!(
        on_b.upstream_header("x-auth-sub"),
        r.upstream_header("x-auth-sub")
    );
    assert!(on_b.upstream_header("x-auth-sub").is_some());

    // Local logout through A ends the session for every copy of the cookie, on B too.
    let mut stolen = copy_of(&b);
    let out = b.get(&env.url("/oauth2/logout")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert!(b.session_cookie_names().is_empty());
    let after = stolen.get(&url(&b_gw, "/app")).await;
    assert_eq!(after.status, StatusCode::FOUND, "B still knows the session");
    assert!(
        after.location().contains("/authorize"),
        "{}",
        after.location()
    );
    assert_eq!(redis.cli(&["--scan", "--pattern", "oidc-gateway:s:*"]), "");

    // And the other way round: log in through B, log out through B, A refuses.
    let mut c = Browser::new();
    assert_eq!(
        c.login(&url(&b_gw, "/app"), "bob").await.status,
        StatusCode::OK
    );
    let mut stolen = copy_of(&c);
    assert_eq!(stolen.get(&env.url("/app")).await.status, StatusCode::OK);
    c.get(&url(&b_gw, "/oauth2/logout")).await;
    let api = stolen.get_api(&env.url("/app")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_revokes_by_sid_or_sub_on_every_instance() {
    let redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let b_gw = env.another_gateway(&env.opts_keys);
    let provider = env.provider();

    let mut alice1 = Browser::new();
    assert_eq!(
        alice1.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let mut alice2 = Browser::new();
    assert_eq!(
        alice2.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let mut bob = Browser::new();
    assert_eq!(
        bob.login(&env.url("/app"), "bob").await.status,
        StatusCode::OK
    );
    let alice_sub = user("alice").unwrap().sub();
    let sids = provider.controls.sids_of(alice_sub);
    assert_eq!(sids.len(), 2);

    // sid: only that provider session ends, on both instances, at once.
    let token = provider
        .mint_logout_token(
            common::CLIENT_ID,
            Some(alice_sub),
            Some(&sids[0]),
            json!({}),
        )
        .unwrap();
    let (status, body) = backchannel(&env.gateway, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        alice1.get(&url(&b_gw, "/app")).await.status,
        StatusCode::FOUND
    );
    assert_eq!(alice1.get(&env.url("/app")).await.status, StatusCode::FOUND);
    assert_eq!(alice2.get(&url(&b_gw, "/app")).await.status, StatusCode::OK);

    // A replayed token is refused, on the other instance too.
    let (status, body) = backchannel(&b_gw, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("already used"), "{body}");

    // sub alone: every session of the user ends; other users keep theirs.
    let token = provider
        .mint_logout_token(common::CLIENT_ID, Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, body) = backchannel(&b_gw, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(alice2.get(&env.url("/app")).await.status, StatusCode::FOUND);
    assert_eq!(bob.get(&url(&b_gw, "/app")).await.status, StatusCode::OK);

    assert_eq!(
        metric(
            &env.gateway.admin,
            "oidc_gateway_backchannel_logout_total{provider=\"dev\",result=\"revoked\"}"
        )
        .await,
        Some(1.0)
    );
    assert!(env
        .gateway
        .logs()
        .contains("back-channel logout: sessions revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_tokens_that_break_a_rule_are_refused() {
    let redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let provider = env.provider();
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let alice_sub = user("alice").unwrap().sub();
    let sid = provider.controls.sids_of(alice_sub).pop().unwrap();
    let now = oidc_gateway::clock::now();

    let bad = [
        ("nonce", json!({"nonce": "n"}), "nonce"),
        ("no event", json!({"events": null}), "event"),
        (
            "wrong event",
            json!({"events": {"http://example.org/other": {}}}),
            "event",
        ),
        ("another audience", json!({"aud": "someone-else"}), "aud"),
        (
            "another issuer",
            json!({"iss": "http://127.0.0.1:1/other"}),
            "unknown issuer",
        ),
        ("no jti", json!({"jti": null}), "jti"),
        ("no iat", json!({"iat": null}), "iat"),
        (
            "old",
            json!({"iat": now - 3600, "exp": now + 60}),
            "too old",
        ),
        ("expired", json!({"exp": now - 3600}), "expired"),
    ];
    for (what, extra, expect) in bad {
        let token = provider
            .mint_logout_token(common::CLIENT_ID, Some(alice_sub), Some(&sid), extra)
            .unwrap();
        let (status, body) = backchannel(&env.gateway, &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(body.contains(expect), "{what}: {body}");
    }
    let unsigned = {
        let token = provider
            .mint_logout_token(common::CLIENT_ID, Some(alice_sub), Some(&sid), json!({}))
            .unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    let (status, body) = backchannel(&env.gateway, &unsigned).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = backchannel(&env.gateway, "not-a-jwt").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let get = reqwest::get(env.url("/oauth2/backchannel_logout"))
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);

    // None of that ended the session.
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_on_two_instances_make_one_refresh_grant() {
    let redis = RedisServer::start();
    let env = Env::with(Options {
        access_token_lifetime: Duration::from_secs(1),
        id_token_lifetime: Duration::from_secs(1),
        ..redis_options(&redis, "")
    })
    .await;
    let b_gw = env.another_gateway(&env.opts_keys);
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(MIN_TOKEN_LIFETIME_SECS + 1)).await;

    let cookie = alice.cookie_header();
    let client = reqwest::Client::new();
    let mut requests = Vec::new();
    for i in 0..8 {
        let target = if i % 2 == 0 {
            env.url("/app")
        } else {
            url(&b_gw, "/app")
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
    let grants = env
        .provider()
        .controls
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(
        grants, 1,
        "one refresh grant for the session across both instances"
    );
    // The refreshed session is what both instances now use, without another grant.
    assert_eq!(alice.get(&url(&b_gw, "/app")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_hung_fails_closed_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );

    redis.stop();
    for _ in 0..5 {
        let r = alice.get(&env.url("/app")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.header("retry-after").is_some());
        assert!(r.body.contains("Please try again"), "{}", r.body);
        assert!(!r.body.to_lowercase().contains("x-auth-sub"));
    }
    let api = alice.get_api(&env.url("/app")).await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(api.body.contains("session_store_unavailable"));
    // The cookie was kept, and public routes do not need the store.
    assert!(!alice.session_cookie_names().is_empty());
    assert_eq!(
        alice.get(&env.url("/public/x")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        metric(&env.gateway.admin, "oidc_gateway_session_store_up ").await,
        Some(0.0)
    );
    let ready = reqwest::get(format!("{}/readyz", env.gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("session store"));
    assert!(
        metric(
            &env.gateway.admin,
            "oidc_gateway_session_store_errors_total{op=\"get\"}"
        )
        .await
        .unwrap_or(0.0)
            >= 6.0
    );
    let logs = env.gateway.logs();
    assert_eq!(
        logs.matches("Redis unavailable").count(),
        1,
        "logged once per episode:\n{logs}"
    );

    // Back with its data: the gateway's probe notices by itself, without a request, and then
    // the same cookie works again on every worker thread at once (no flapping back to down
    // while each thread's old connection fails once), with no restart of the gateway.
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), async || {
            metric(&env.gateway.admin, "oidc_gateway_session_store_up ").await == Some(1.0)
        })
        .await,
        "the probe sees Redis back"
    );
    for i in 0..12 {
        // A new client each time: new connections, spread over the gateway's threads.
        let r = copy_of(&alice).get(&env.url("/app")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i} after recovery");
        let api = copy_of(&alice).get_api(&env.url("/app")).await;
        assert_eq!(api.status, StatusCode::OK, "API request {i} after recovery");
    }
    assert_eq!(
        metric(&env.gateway.admin, "oidc_gateway_session_store_up ").await,
        Some(1.0)
    );
    assert_eq!(
        env.gateway.logs().matches("Redis unavailable").count(),
        1,
        "no second episode after recovery:\n{}",
        env.gateway.logs()
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", env.gateway.admin))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(env.gateway.logs().contains("Redis answers again"));

    // Hung (accepts, never answers): 503 within the configured timeout, not a stuck request.
    redis.pause();
    let started = std::time::Instant::now();
    let r = alice.get(&env.url("/app")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    redis.unpause();
    assert!(
        eventually(Duration::from_secs(10), async || {
            alice.get(&env.url("/app")).await.status == StatusCode::OK
        })
        .await
    );
    assert_eq!(
        env.gateway.logs().matches("Redis unavailable").count(),
        2,
        "a second episode is logged once more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_an_acl_user_from_a_url_file() {
    let redis = RedisServer::with(RedisOptions {
        // The default user is off: only the gateway's ACL user gets in.
        args: [
            "--user",
            "default",
            "off",
            "--user",
            "gateway",
            "on",
            ">s3cret-pw",
            "~oidc-gateway:*",
            "+@all",
        ]
        .map(String::from)
        .to_vec(),
        ..RedisOptions::default()
    });
    let good = format!("redis://gateway:s3cret-pw@127.0.0.1:{}", redis.port);
    let env = Env::with(Options {
        session_extra: "store = \"redis\"\nredis_url_file = \"redis-url\"\n".into(),
        files: vec![("redis-url".into(), format!("{good}\n").into_bytes())],
        ..Options::default()
    })
    .await;
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::OK);
    // The password never reaches the logs.
    assert!(!env.gateway.logs().contains("s3cret-pw"));

    // A wrong password fails closed (503, and never ready), with a log line that does not quote
    // it either.
    let wrong = Env::with(Options {
        session_extra: format!(
            "store = \"redis\"\nredis_url = \"redis://gateway:wrong-pw@127.0.0.1:{}\"\n",
            redis.port
        ),
        wait_ready: false,
        ..Options::default()
    })
    .await;
    login_fails_closed(&wrong).await;
    let ready = reqwest::get(format!("{}/readyz", wrong.gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let logs = wrong.gateway.logs();
    assert!(logs.contains("Redis unavailable"), "{logs}");
    assert!(!logs.contains("wrong-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_verifies_the_server_against_the_configured_ca() {
    let ca = common::ca::TestCa::new("redis test CA");
    let cert = ca.server_cert();
    let redis = RedisServer::with(RedisOptions {
        tls: Some((cert.cert_pem.clone(), cert.key_pem.clone())),
        ..RedisOptions::default()
    });
    assert!(redis.url().starts_with("rediss://"));
    let env = Env::with(Options {
        files: vec![("redis-ca.pem".into(), ca.pem().into_bytes())],
        ..redis_options(&redis, "redis_ca_file = \"redis-ca.pem\"")
    })
    .await;
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::OK);

    // Another CA's server is refused: no session can be stored, the login fails closed.
    let other = common::ca::TestCa::new("someone else");
    let env = Env::with(Options {
        files: vec![("redis-ca.pem".into(), other.pem().into_bytes())],
        wait_ready: false,
        ..redis_options(&redis, "redis_ca_file = \"redis-ca.pem\"")
    })
    .await;
    login_fails_closed(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_replaces_the_browsers_previous_session() {
    let redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let mut b = Browser::new();
    assert_eq!(
        b.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let mut old = copy_of(&b);
    let r = b.get(&env.url("/oauth2/sign_in?rd=/app")).await;
    let back = b.through_provider(&r, "bob").await;
    assert_eq!(back.status, StatusCode::FOUND);
    assert_eq!(
        redis
            .cli(&["--scan", "--pattern", "oidc-gateway:s:*"])
            .lines()
            .count(),
        1
    );
    let api = old.get_api(&env.url("/app")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let now = b.get(&env.url("/app")).await;
    assert_eq!(now.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_renews_the_idle_ttl_and_idleness_ends_the_session_in_redis() {
    let redis = RedisServer::start();
    // TTLs, not timeouts, are under test: a generous redis_timeout for a busy test machine.
    let env = Env::with(Options {
        session_extra: format!(
            "store = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"3s\"\nidle_timeout = \"3s\"\n",
            redis.url()
        ),
        ..Options::default()
    })
    .await;
    let mut b = Browser::new();
    assert_eq!(
        b.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let key = redis.cli(&["--scan", "--pattern", "oidc-gateway:s:*"]);
    let key = key.trim();
    let ttl = |redis: &RedisServer| -> i64 { redis.cli(&["PTTL", key]).trim().parse().unwrap() };
    assert!((1..=3000).contains(&ttl(&redis)), "TTL is the idle timeout");
    // Used every 1.5 s for 6 s: each use renews the TTL, so the session outlives 3 s.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(b.get(&env.url("/app")).await.status, StatusCode::OK);
        assert!(ttl(&redis) > 1500, "renewed on activity");
    }
    // Then idle: Redis drops it, and the cookie no longer opens a session.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(redis.cli(&["EXISTS", key]).trim(), "0");
    assert_eq!(b.get(&env.url("/app")).await.status, StatusCode::FOUND);
}

#[test]
fn the_compare_and_set_version_is_what_redis_lua_computes() {
    let redis = RedisServer::start();
    for value in ["", "abc", "v1.AAECAwQ-_x"] {
        let lua = redis.cli(&["EVAL", "return redis.sha1hex(ARGV[1])", "0", value]);
        assert_eq!(
            lua.trim(),
            oidc_gateway::session::redis_store::version(value)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_token_picks_its_provider_by_issuer_and_audience() {
    // Two providers on one issuer: two client registrations at the same OpenID provider.
    let redis = RedisServer::start();
    let mut opts = redis_options(&redis, "");
    opts.routes = r#"
[providers.second]
issuer = "{issuer}"
discovery_url = "{discovery}"
client_id = "gateway-second"
client_secret = "another-secret"
timeout = "2s"

[[route]]
name = "app"
path = "/"
provider = "dev"
upstream = "{echo}"

[[route]]
name = "second"
path = "/second"
provider = "second"
upstream = "{echo}"
"#
    .into();
    let env = Env::with(opts).await;
    let provider = env.provider();
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let alice_sub = user("alice").unwrap().sub();
    // For the second client: accepted (its provider is found by iss and aud together), and
    // it ends none of the first client's sessions.
    let token = provider
        .mint_logout_token("gateway-second", Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, body) = backchannel(&env.gateway, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::OK);
    // For a client of neither: refused, naming aud.
    let token = provider
        .mint_logout_token("gateway-third", Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, body) = backchannel(&env.gateway, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("aud"), "{body}");
    // For the first client: its session ends.
    let token = provider
        .mint_logout_token(common::CLIENT_ID, Some(alice_sub), None, json!({}))
        .unwrap();
    let (status, body) = backchannel(&env.gateway, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_naming_sid_and_sub_also_ends_the_users_sessions_without_a_sid() {
    let redis = RedisServer::start();
    let env = Env::with(redis_options(&redis, "")).await;
    let provider = env.provider();
    // A provider whose ID tokens carry no sid: the session is indexed by its user alone.
    provider
        .controls
        .set_misbehaviour(Some(devprovider::Misbehaviour::NoSid));
    let mut alice = Browser::new();
    assert_eq!(
        alice.login(&env.url("/app"), "alice").await.status,
        StatusCode::OK
    );
    let mut bob = Browser::new();
    assert_eq!(
        bob.login(&env.url("/app"), "bob").await.status,
        StatusCode::OK
    );
    provider.controls.set_misbehaviour(None);
    let alice_sub = user("alice").unwrap().sub();
    let token = provider
        .mint_logout_token(
            common::CLIENT_ID,
            Some(alice_sub),
            Some("a-provider-session"),
            json!({}),
        )
        .unwrap();
    let (status, body) = backchannel(&env.gateway, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(alice.get(&env.url("/app")).await.status, StatusCode::FOUND);
    assert_eq!(bob.get(&env.url("/app")).await.status, StatusCode::OK);
}
