//! Config validation as an operator meets it: every problem, with key path and line.

use super::*;
use jwk::JwkAlg;

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"

[session]
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]

[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_secret = "secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse_str(text, None) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

fn keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.key).collect()
}

#[test]
fn a_minimal_config_is_valid_with_contract_defaults() {
    let c = parse_str(MINIMAL, None).unwrap();
    assert_eq!(c.server.callback_path, "/oauth2/callback");
    assert_eq!(
        c.server.redirect_uri,
        "https://apps.example.org/oauth2/callback"
    );
    assert_eq!(c.session.cookie_name, "oidc_session");
    assert!(c.session.secure);
    assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
    assert_eq!(c.session.max_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.session.max_login_states, 5);
    assert_eq!(c.server.max_request_header_bytes, 32 * 1024);
    let p = &c.providers[0];
    assert_eq!(
        p.discovery_url.as_str(),
        "https://connect.example.org/token/.well-known/openid-configuration"
    );
    assert!(matches!(p.client_auth, ClientAuth::SecretBasic(_)));
    let r = &c.routes[0];
    assert_eq!(r.auth, AuthMode::Required);
    let names: Vec<&str> = r.headers.iter().map(|h| h.display.as_str()).collect();
    assert_eq!(
        names,
        [
            "X-Auth-Sub",
            "X-Auth-Name",
            "X-Auth-Email",
            "X-Auth-Role",
            "X-Auth-Org",
            "X-Auth-Activities"
        ]
    );
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let text = r#"
[server]
listen = "nowhere"
public_url = "ftp://x"
colour = "blue"

[session]
keys = ["short"]
idle_timeout = "soon"

[providers.cis2]
issuer = "http://connect.example.org"
client_id = "c"
client_auth = "private_key_jwt"
private_key_file = "/does/not/exist.pem"

[[route]]
path = "/"
upstream = "http://10.0.0.1:3000"
provider = "other"
auth = "maybe"
"#;
    let p = problems(text);
    let by_key = |k: &str| {
        p.iter()
            .find(|x| x.key == k)
            .unwrap_or_else(|| panic!("no problem for {k} in {p:#?}"))
    };
    assert_eq!(by_key("server.listen").line, Some(3));
    assert_eq!(by_key("server.public_url").line, Some(4));
    assert_eq!(by_key("server.colour").message, "unknown key");
    assert_eq!(by_key("server.colour").line, Some(5));
    assert_eq!(by_key("session.keys[0]").line, Some(8));
    assert_eq!(by_key("session.idle_timeout").line, Some(9));
    assert!(by_key("providers.cis2.issuer")
        .message
        .contains("allow_insecure_http"));
    assert!(by_key("providers.cis2.private_key_file")
        .message
        .contains("cannot read"));
    assert!(by_key("route[0].upstream").message.contains("non-loopback"));
    assert!(by_key("route[0].provider")
        .message
        .contains("not a configured provider"));
    assert!(by_key("route[0].auth").message.contains("required, public"));
}

#[test]
fn unset_environment_variables_and_missing_secrets_are_errors() {
    let text = MINIMAL.replace("\"secret\"", "\"${OIDC_GATEWAY_TEST_SURELY_UNSET}\"");
    let p = problems(&text);
    assert_eq!(p[0].key, "providers.cis2.client_secret");
    assert!(p[0].message.contains("OIDC_GATEWAY_TEST_SURELY_UNSET"));
    let text = MINIMAL.replace("client_secret = \"secret\"\n", "");
    assert_eq!(keys(&text), ["providers.cis2.client_secret"]);
}

#[test]
fn secret_files_are_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "client_secret = \"secret\"",
        "client_secret_file = \"secret\"",
    );
    let c = parse_str(&text, Some(dir.path())).unwrap();
    match &c.providers[0].client_auth {
        ClientAuth::SecretBasic(s) => assert_eq!(s.expose(), "from-file"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn http_is_allowed_on_loopback_and_with_the_opt_in() {
    let text = MINIMAL.replace("https://connect.example.org/token", "http://127.0.0.1:9000");
    assert!(problems(&text).is_empty());
    let text = MINIMAL
        .replace("https://connect.example.org/token", "http://idp.internal")
        .replace(
            "client_id = \"client\"",
            "client_id = \"client\"\nallow_insecure_http = true",
        );
    assert!(problems(&text).is_empty());
}

#[test]
fn syntax_errors_name_the_line() {
    let p = problems("[server]\nlisten = \n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(2));
}

#[test]
fn claim_paths_and_header_names_are_checked() {
    let text = format!("{MINIMAL}[route.headers]\n\"Bad Header\" = \"sub\"\nX-Org = \"org..code\"\nX-Sel = \"$[?@.x ==\"\n");
    let k = keys(&text);
    assert!(
        k.contains(&"route[0].headers.Bad Header".to_owned()),
        "{k:?}"
    );
    assert!(k.contains(&"route[0].headers.X-Org".to_owned()), "{k:?}");
    assert!(k.contains(&"route[0].headers.X-Sel".to_owned()), "{k:?}");
}

#[test]
fn duplicate_routes_and_missing_provider_choice_are_errors() {
    let text =
        format!("{MINIMAL}\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:3001\"\n");
    assert_eq!(keys(&text), ["route[1].path"]);
    let text = format!("{MINIMAL}\n[providers.b]\nissuer = \"https://b.example\"\nclient_id = \"x\"\nclient_secret = \"y\"\n");
    assert_eq!(keys(&text), ["route[0].provider"]);
}

#[test]
fn route_paths_are_normalised_prefixes() {
    let text = MINIMAL.replace("path = \"/\"", "path = \"/app/\"");
    let c = parse_str(&text, None).unwrap();
    assert_eq!(c.routes[0].path, "/app");
}

#[test]
fn bearer_routes_need_an_audience_and_assertion_routes_a_key() {
    let text = MINIMAL.replace(
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = \"http://127.0.0.1:3000\"\nbearer = true\nassertion = true",
    );
    let found = problems(&text);
    let bearer = found.iter().find(|p| p.key == "route[0].bearer").unwrap();
    assert!(
        bearer.message.contains("providers.cis2.audience"),
        "{bearer}"
    );
    let key = found
        .iter()
        .find(|p| p.key == "server.assertion_key_file")
        .unwrap();
    assert!(key.message.contains("route[0]"), "{key}");

    let dir = tempfile::tempdir().unwrap();
    let pem = jwk::generate(JwkAlg::ES256).unwrap().private_pem;
    std::fs::write(dir.path().join("assert.pem"), pem).unwrap();
    let text = text
        .replace(
            "client_secret = \"secret\"",
            "client_secret = \"secret\"\naudience = \"api://records\"",
        )
        .replace(
            "public_url = \"https://apps.example.org\"",
            "public_url = \"https://apps.example.org\"\nassertion_key_file = \"assert.pem\"",
        );
    let c = parse_str(&text, Some(dir.path())).unwrap();
    assert!(c.routes[0].bearer && c.routes[0].assertion);
    assert_eq!(c.providers[0].audience.as_deref(), Some("api://records"));
    let key = c.server.assertion_key.as_ref().unwrap();
    assert_eq!(key.alg, JwkAlg::ES256);
    assert_eq!(key.kid.len(), 43);
}

#[test]
fn bearer_and_assertion_make_no_sense_on_public_routes() {
    let text = MINIMAL.replace(
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = \"http://127.0.0.1:3000\"\nauth = \"public\"\nbearer = true\nassertion = true",
    );
    let k = keys(&text);
    assert!(k.contains(&"route[0].bearer".to_owned()), "{k:?}");
    assert!(k.contains(&"route[0].assertion".to_owned()), "{k:?}");
}

#[test]
fn an_unreadable_assertion_key_is_an_error() {
    let text = MINIMAL.replace(
        "public_url = \"https://apps.example.org\"",
        "public_url = \"https://apps.example.org\"\nassertion_key_file = \"/nonexistent/key.pem\"",
    );
    assert_eq!(keys(&text), ["server.assertion_key_file"]);
}

#[test]
fn ca_files_are_checked_and_only_for_https_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-ca.pem"), "hello\n").unwrap();
    let text = MINIMAL.replace(
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = \"http://127.0.0.1:3000\"\nca_file = \"ca.pem\"\n\n[[route]]\npath = \"/tls\"\nupstream = \"https://app.internal\"\nca_file = \"not-a-ca.pem\"",
    );
    let text = text.replace(
        "[session]",
        "upstream_ca_file = \"missing.pem\"\ndrain_timeout = \"2h\"\n\n[session]",
    );
    let found: Vec<String> = match parse_str(&text, Some(dir.path())) {
        Ok(_) => Vec::new(),
        Err(p) => p.0.into_iter().map(|p| p.key).collect(),
    };
    for key in [
        "route[0].ca_file",
        "route[1].ca_file",
        "server.upstream_ca_file",
        "server.drain_timeout",
    ] {
        assert!(found.iter().any(|k| k == key), "{key} not in {found:?}");
    }
    let c = parse_str(MINIMAL, None).unwrap();
    assert_eq!(c.server.drain_timeout, Duration::from_secs(10));
    assert!(c.server.upstream_ca.is_none());
}

#[test]
fn plain_redis_to_another_host_needs_an_explicit_opt_in() {
    let with = |extra: &str| {
        MINIMAL.replace(
            "[session]\n",
            &format!("[session]\nstore = \"redis\"\n{extra}\n"),
        )
    };
    let p = problems(&with("redis_url = \"redis://:hunter2@10.0.0.5:6379\""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "session.redis_url");
    assert!(
        p[0].message.contains("allow_insecure_redis"),
        "{}",
        p[0].message
    );
    assert!(!p[0].message.contains("hunter2"));
    for ok in [
        "redis_url = \"redis://:pw@10.0.0.5:6379\"\nallow_insecure_redis = true",
        "redis_url = \"rediss://:pw@10.0.0.5:6379\"",
        "redis_url = \"redis://127.0.0.1:6379\"",
        "redis_url = \"redis://[::1]:6379\"",
        "redis_url = \"redis://localhost\"",
    ] {
        assert!(
            problems(&with(ok)).is_empty(),
            "{ok}: {:?}",
            problems(&with(ok))
        );
    }
}

#[test]
fn case_insensitive_paths_refuse_routes_that_differ_only_in_case() {
    let two = MINIMAL.to_owned()
        + "\n[[route]]\npath = \"/RA\"\nupstream = \"http://127.0.0.1:3000\"\n[[route]]\npath = \"/ra\"\nupstream = \"http://127.0.0.1:3000\"\n";
    assert!(problems(&two).is_empty(), "{:?}", problems(&two));
    let folded = two.replace("[server]\n", "[server]\ncase_insensitive_paths = true\n");
    let p = problems(&folded);
    assert!(
        p.iter()
            .any(|p| p.message.contains("case_insensitive_paths")),
        "{p:?}"
    );
    let c = parse_str(
        &two.replace("[server]\n", "[server]\ncase_insensitive_paths = false\n"),
        None,
    )
    .unwrap();
    assert!(!c.server.case_insensitive_paths);
}

#[test]
fn route_paths_may_not_carry_parameters() {
    let p = problems(
        &(MINIMAL.to_owned()
            + "\n[[route]]\npath = \"/app;x\"\nupstream = \"http://127.0.0.1:3000\"\n"),
    );
    assert!(p.iter().any(|p| p.message.contains("';'")), "{p:?}");
}

#[test]
fn the_redis_store_needs_a_redis_url_and_keeps_its_password_out_of_messages() {
    let with = |extra: &str| {
        MINIMAL.replace(
            "[session]\n",
            &format!("[session]\nstore = \"redis\"\n{extra}\n"),
        )
    };
    assert_eq!(keys(&with("")), ["session.redis_url"]);
    let p = problems(&with("redis_url = \"http://user:hunter2@127.0.0.1:6379\""));
    assert_eq!(p[0].key, "session.redis_url");
    assert!(!p[0].message.contains("hunter2"), "{}", p[0].message);
    assert_eq!(
        keys(&with(
            "redis_url = \"redis://127.0.0.1\"\nredis_timeout = \"0s\""
        )),
        ["session.redis_timeout"]
    );
    assert_eq!(
        keys(&with(
            "redis_url = \"rediss://h\"\nredis_ca_file = \"/surely/not/there.pem\""
        )),
        ["session.redis_ca_file"]
    );
    let c = parse_str(
        &with("redis_url = \"rediss://gw:pw@redis.internal:6380/2\""),
        None,
    )
    .unwrap();
    match &c.session.store {
        SessionStoreKind::Redis(r) => {
            assert_eq!(r.mode, RedisMode::Standalone);
            assert_eq!(r.nodes.expose(), &["rediss://gw:pw@redis.internal:6380/2"]);
            assert_eq!(r.key_prefix, "oidc-gateway:");
            assert_eq!(r.timeout, Duration::from_millis(500));
            assert!(!format!("{c:?}").contains("pw@"), "Debug hides the URL");
        }
        other => panic!("{other:?}"),
    }
    // Redis keys with the cookie store are a warning, not silently ignored.
    let text = MINIMAL.replace(
        "[session]\n",
        "[session]\nredis_url = \"redis://127.0.0.1\"\n",
    );
    let c = parse_str(&text, None).unwrap();
    assert!(c.warnings.iter().any(|w| w.key == "session.redis_url"));
    assert_eq!(c.session.store, SessionStoreKind::Cookie);
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_key_path() {
    let cases = [
        (
            "listen = \"127.0.0.1:8080\"",
            "threads = \"four\"",
            "server.threads",
        ),
        (
            "client_id = \"client\"",
            "client_id = 42",
            "providers.cis2.client_id",
        ),
        (
            "path = \"/\"",
            "path = \"/\"\nstrip_prefix = \"no\"",
            "route[0].strip_prefix",
        ),
    ];
    for (from, to, key) in cases {
        let p = problems(&MINIMAL.replacen(from, to, 1));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, key);
        assert!(
            p[0].line.is_some() && p[0].message.contains("invalid type"),
            "{p:?}"
        );
    }
}

#[test]
fn redis_deployments_are_checked_with_the_key_path_of_each_problem() {
    let with = |session: &str, table: &str| {
        MINIMAL.replace("[session]\n", &format!("[session]\n{session}\n"))
            + &format!("\n[session.redis]\n{table}\n")
    };
    let store = "store = \"redis\"";
    let nodes3 =
        r#"nodes = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]"#;
    // Sentinel: the sentinels, a master name, credentials for each side.
    let c = parse_str(
        &with(
            store,
            &format!(
                "mode = \"sentinel\"\n{nodes3}\nmaster_name = \"gw\"\nusername = \"gateway\"\npassword = \"pw1\"\nsentinel_password = \"pw2\""
            ),
        ),
        None,
    )
    .unwrap();
    let SessionStoreKind::Redis(r) = &c.session.store else {
        panic!("{:?}", c.session.store)
    };
    assert_eq!(r.nodes.expose().len(), 3);
    assert_eq!(r.username.as_deref(), Some("gateway"));
    match &r.mode {
        RedisMode::Sentinel {
            master_name,
            password,
            ..
        } => {
            assert_eq!(master_name, "gw");
            assert_eq!(password.as_ref().map(|p| p.expose().as_str()), Some("pw2"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{c:?}").contains("pw1"), "Debug hides passwords");
    // Cluster.
    let c = parse_str(&with(store, &format!("mode = \"cluster\"\n{nodes3}")), None).unwrap();
    assert!(matches!(&c.session.store, SessionStoreKind::Redis(r) if r.mode == RedisMode::Cluster));

    for (session, table, expected) in [
        (store, "mode = \"sentinel\"\nnodes = [\"redis://127.0.0.1:26379\"]", "session.redis.master_name"),
        (store, "mode = \"cluster\"\nmaster_name = \"gw\"\nnodes = [\"redis://127.0.0.1:7000\"]", "session.redis.master_name"),
        (store, "mode = \"standalone\"\nsentinel_username = \"s\"\nnodes = [\"redis://127.0.0.1:7000\"]", "session.redis.sentinel_username"),
        (store, "mode = \"cluster\"", "session.redis.nodes"),
        (store, nodes3, "session.redis.nodes"),
        (store, "mode = \"ring\"\nnodes = [\"redis://127.0.0.1:7000\"]", "session.redis.mode"),
        (store, "mode = \"cluster\"\nnodes = [\"redis://127.0.0.1:7000\", \"ftp://127.0.0.1\"]", "session.redis.nodes[1]"),
        (store, "mode = \"cluster\"\nnodes = [\"redis://10.0.0.1:7000\"]", "session.redis.nodes[0]"),
        (store, "mode = \"cluster\"\nnodes = [\"redis://127.0.0.1:7000/3\"]", "session.redis.nodes[0]"),
        (store, "mode = \"cluster\"\nnodes = [\"unix:///run/redis.sock\"]", "session.redis.nodes[0]"),
        (store, "mode = \"cluster\"\nnodes = [\"redis://127.0.0.1:7000\", \"rediss://127.0.0.1:7001\"]", "session.redis.nodes"),
        (store, "nodes = [\"redis://u:p@127.0.0.1:7000\"]\npassword = \"x\"", "session.redis.nodes[0]"),
        (store, "nodes = [\"redis://127.0.0.1:7000\"]\npassword = \"x\"\npassword_file = \"f\"", "session.redis.password"),
        (
            "store = \"redis\"\nredis_url = \"redis://127.0.0.1\"",
            "nodes = [\"redis://127.0.0.1:7000\"]",
            "session.redis",
        ),
        (store, "mode = \"sentinel\"\nmaster_name = \"gw\"\nnodes = [\"redis://127.0.0.1\"]", "session.redis.nodes[0]"),
        (store, "mode = \"sentinel\"\nmaster_name = \"gw\"\nnodes = [\"redis://127.0.0.1:26379/2\"]", "session.redis.nodes[0]"),
        (store, "mode = \"sentinel\"\nmaster_name = \"gw\"\nnodes = [\"redis://:pw@127.0.0.1:26379\"]", "session.redis.nodes[0]"),
        (store, "mode = \"cluster\"\nnodes = [\"redis://u:pw@127.0.0.1:7000\"]", "session.redis.nodes[0]"),
        (store, "nodes = [\"rediss://127.0.0.1:7000/#insecure\"]", "session.redis.nodes[0]"),
        // The revocation list is for cookie sessions; in Redis it needs a Redis.
        ("store = \"redis\"\nrevocation = \"redis\"", "nodes = [\"redis://127.0.0.1\"]", "session.revocation"),
        ("revocation = \"disk\"", "nodes = [\"redis://127.0.0.1\"]", "session.revocation"),
    ] {
        let p = problems(&with(session, table));
        assert!(
            p.iter().any(|p| p.key == expected),
            "{session} / {table}: expected a problem at {expected}, got {p:?}"
        );
    }
    let p = problems(&MINIMAL.replace("[session]\n", "[session]\nrevocation = \"redis\"\n"));
    assert_eq!(p[0].key, "session.redis_url", "{p:?}");
    // Passwords never appear in messages.
    let p = problems(&with(
        store,
        "mode = \"cluster\"\nnodes = [\"redis://u:hunter2@10.0.0.1\"]",
    ));
    assert!(p.iter().all(|p| !p.message.contains("hunter2")), "{p:?}");
}

#[test]
fn cookie_sessions_record_revocations_in_memory_or_in_redis() {
    let c = parse_str(MINIMAL, None).unwrap();
    assert_eq!(c.session.revocation, RevocationKind::Memory);
    assert_eq!(c.session.max_revocations, 100_000);
    let c = parse_str(
        &MINIMAL.replace(
            "[session]\n",
            "[session]\nrevocation = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nmax_revocations = 500\n",
        ),
        None,
    )
    .unwrap();
    assert_eq!(c.session.store, SessionStoreKind::Cookie);
    assert!(
        matches!(&c.session.revocation, RevocationKind::Redis(r) if r.mode == RedisMode::Standalone)
    );
    assert_eq!(c.session.max_revocations, 500);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_huge_value_is_quoted_by_its_start_and_length() {
    let huge = "9".repeat(10 * 1024 * 1024);
    let text = MINIMAL.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"{huge}\""),
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{}", p.len());
    assert_eq!(p[0].key, "server.listen");
    assert!(p[0].message.len() < 200, "{} bytes", p[0].message.len());
    assert!(
        p[0].message.contains("(10485760 bytes)"),
        "{}",
        p[0].message
    );
    assert!(
        p[0].message.contains("is not an address"),
        "{}",
        p[0].message
    );
}

#[test]
fn no_problem_message_is_longer_than_about_a_kilobyte() {
    let long = "x".repeat(5000);
    assert_eq!(
        super::shortened(long, 1024).len(),
        1024 + "… (shortened)".len()
    );
    let accents = "é".repeat(1000);
    let cut = super::shortened(accents, 1023);
    assert!(cut.ends_with("… (shortened)"));
}
