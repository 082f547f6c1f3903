//! Forward-auth behind a real nginx (`auth_request /oauth2/auth`): nginx fronts the echo upstream
//! and the gateway's `/oauth2/` endpoints on one origin, as in the README snippet, so the
//! gateway's session cookie and redirects work unchanged. Needs the Debian package `nginx`
//! (`tests/run.sh` installs it).

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Browser, Env, Options};
use reqwest::{Method, StatusCode};

const AUDIENCE: &str = "api://records";

const ROUTES: &str = r#"
[[route]]
name = "ra"
path = "/ra"
upstream = "{echo}"
[route.require]
activities = ["B0008"]

[[route]]
name = "api"
path = "/api"
upstream = "{echo}"
bearer = true

[[route]]
name = "app"
path = "/"
upstream = "{echo}"
"#;

/// An nginx master process in its own prefix directory; killed (with its workers) on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL to the master leaves workers that exit once their listener's master is gone;
        // ask for a fast shutdown first so no worker outlives the test.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx not found: install the Debian package nginx (tests/run.sh does)");
}

/// The README's auth_request setup, on loopback ports, everything inside a temp prefix.
fn start_nginx(port: u16, gateway: &str, upstream: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"
# nginx runs as root in CI containers; workers must be able to read this temp prefix.
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    server {{
        listen 127.0.0.1:{port};

        # Sign-in, callback and logout of the gateway, on the application's origin.
        location /oauth2/ {{
            proxy_pass http://{gateway};
            proxy_set_header Host $http_host;
        }}

        location = /oauth2/auth {{
            internal;
            proxy_pass http://{gateway};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Uri "";
        }}

        location / {{
            auth_request /oauth2/auth;
            auth_request_set $auth_sub $upstream_http_x_auth_sub;
            auth_request_set $auth_name $upstream_http_x_auth_name;
            auth_request_set $auth_org $upstream_http_x_auth_org;
            auth_request_set $auth_activities $upstream_http_x_auth_activities;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
            # proxy_set_header replaces what the client sent under these names.
            proxy_set_header X-Auth-Sub $auth_sub;
            proxy_set_header X-Auth-Name $auth_name;
            proxy_set_header X-Auth-Org $auth_org;
            proxy_set_header X-Auth-Activities $auth_activities;
            error_page 401 = @sign_in;
            proxy_pass http://{upstream};
        }}

        # API clients get the 401 itself, not a redirect to a login page.
        location /api/ {{
            auth_request /oauth2/auth;
            auth_request_set $auth_sub $upstream_http_x_auth_sub;
            proxy_set_header X-Auth-Sub $auth_sub;
            proxy_pass http://{upstream};
        }}

        location @sign_in {{
            return 302 $scheme://$http_host/oauth2/sign_in?rd=$request_uri;
        }}
    }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nginx
}

async fn setup() -> (Env, Nginx) {
    let nginx_port = free_port();
    let env = Env::with(Options {
        public_url: Some(format!("http://127.0.0.1:{nginx_port}")),
        provider_extra: format!("audience = \"{AUDIENCE}\""),
        server_extra: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        routes: ROUTES.into(),
        ..Default::default()
    })
    .await;
    let nginx = start_nginx(
        nginx_port,
        &format!("127.0.0.1:{}", env.gateway.port),
        &env.echo.addr.to_string(),
    );
    (env, nginx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_sends_browsers_to_sign_in_and_passes_identity_headers() {
    let (env, nginx) = setup().await;
    let mut b = Browser::new();
    let first = b.get(&format!("{}/app/page", nginx.base)).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", nginx.error_log());
    assert_eq!(
        first.location(),
        format!("{}/oauth2/sign_in?rd=/app/page", nginx.base)
    );
    let to_provider = b.get(&first.location()).await;
    assert!(
        to_provider
            .location()
            .starts_with(&env.provider().authorization_endpoint()),
        "{:?}",
        to_provider
    );
    let back = b.through_provider(&to_provider, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert_eq!(back.location(), format!("{}/app/page", nginx.base));
    let r = b
        .request(
            Method::GET,
            &back.location(),
            &[("x-auth-sub", "spoofed"), ("x-auth-org", "EVIL")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["path"], "/app/page");
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    assert_eq!(
        r.upstream_header("x-auth-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        r.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0008")
    );
}

/// nginx → gateway sign-in → provider → callback → back at `url`, through nginx all along.
async fn login_via_nginx(b: &mut Browser, url: &str, user: &str) -> common::Resp {
    let first = b.get(url).await;
    assert_eq!(first.status, StatusCode::FOUND);
    let to_provider = b.get(&first.location()).await;
    let back = b.through_provider(&to_provider, user).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert_eq!(back.location(), url);
    b.get(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_answers_403_when_the_routes_rules_fail() {
    let (_env, nginx) = setup().await;
    let url = format!("{}/ra/x", nginx.base);
    let mut bob = Browser::new();
    let r = login_via_nginx(&mut bob, &url, "bob").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let mut alice = Browser::new();
    let ok = login_via_nginx(&mut alice, &url, "alice").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forward_auth_accepts_bearer_tokens_and_answers_401_without_one() {
    let (env, nginx) = setup().await;
    let url = format!("{}/api/records", nginx.base);
    let none = Browser::api().get(&url).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let token = env
        .provider()
        .mint_access_token("alice", AUDIENCE, 300)
        .unwrap();
    let auth = format!("Bearer {token}");
    let r = Browser::api()
        .request(Method::GET, &url, &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-sub").as_deref(),
        Some("910000000001")
    );
    let expired = env
        .provider()
        .mint_access_token("alice", AUDIENCE, -600)
        .unwrap();
    let auth = format!("Bearer {expired}");
    let r = Browser::api()
        .request(Method::GET, &url, &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|w| w.contains("invalid_token")));
}
