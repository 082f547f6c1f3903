//! Test harness: a real development provider and echo upstream in-process, the real
//! `oidc-gateway` binary on ephemeral loopback ports, and a small browser (reqwest without
//! redirects plus a cookie jar the tests can inspect and tamper with).
#![allow(dead_code)]

pub mod ca;
pub mod raw;
pub mod redis;
pub mod upstreams;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devprovider::{
    start_echo, DevClient, DevClientAuth, DevProvider, DevProviderOptions, EchoServer,
};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "test-client-secret-3f9a";

/// A free loopback port (bound then released: good enough for tests on one machine).
///
/// Never hands out the same port twice in one test process: pingora listens with port reuse,
/// so two gateways of parallel tests could otherwise share a port that was free for both.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A loopback address on a port from [`free_port`], for the tests' own servers: binding port 0
/// instead could take a port just handed to a gateway that has not bound it yet, and requests
/// meant for that gateway would reach the other server.
pub fn any_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// How the gateway authenticates at the provider in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic,
    Post,
    Jwt(&'static str),
}

/// What a test environment looks like.
pub struct Options {
    pub auth: Auth,
    /// Extra TOML appended to `[session]`.
    pub session_extra: String,
    /// Extra TOML appended to `[server]`.
    pub server_extra: String,
    /// Extra TOML appended to `[providers.dev]`.
    pub provider_extra: String,
    /// Routes (TOML `[[route]]` blocks, maybe more providers); `{echo}` is replaced by the echo
    /// upstream URL, `{issuer}` and `{discovery}` by the dev provider's.
    pub routes: String,
    /// Cookie keys (base64), first encrypts.
    pub keys: Vec<String>,
    pub issuer_path: String,
    pub id_token_lifetime: Duration,
    pub access_token_lifetime: Duration,
    /// Start the provider (false: the gateway starts with its provider down).
    pub start_provider: bool,
    /// The gateway's port (default: a free one), for tests that must know it in advance.
    pub port: Option<u16>,
    /// `server.public_url` (default: the gateway's own origin), e.g. an nginx in front of it.
    pub public_url: Option<String>,
    /// Extra command-line arguments for `oidc-gateway` (e.g. `--log-format json`).
    pub extra_args: Vec<String>,
    /// Files written into the config directory before the gateway starts (certificates, keys).
    pub files: Vec<(String, Vec<u8>)>,
    /// The gateway listens with TLS: `public_url` and `Gateway::base` are `https://`.
    pub https: bool,
}

pub const DEFAULT_ROUTES: &str = r#"
[[route]]
name = "public"
path = "/public"
upstream = "{echo}"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "{echo}"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Role = ["role.code", "role"]
X-Auth-Org = ["org.code", "org"]
X-Auth-Activities = "activities"
X-User = "email"
X-Auth-Selected-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"

[[route]]
name = "ra"
path = "/ra"
upstream = "{echo}"
[route.require]
activities = ["B0008"]
"#;

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: Auth::Basic,
            session_extra: String::new(),
            server_extra: String::new(),
            provider_extra: String::new(),
            routes: DEFAULT_ROUTES.to_owned(),
            keys: vec![oidc_gateway::keygen::cookie_key()],
            issuer_path: String::new(),
            id_token_lifetime: Duration::from_secs(300),
            access_token_lifetime: Duration::from_secs(300),
            start_provider: true,
            port: None,
            public_url: None,
            extra_args: Vec::new(),
            files: Vec::new(),
            https: false,
        }
    }
}

/// A running provider, echo upstream and gateway.
pub struct Env {
    pub provider: Option<DevProvider>,
    pub provider_addr: SocketAddr,
    pub echo: EchoServer,
    pub gateway: Gateway,
    pub dir: tempfile::TempDir,
    pub opts_keys: Vec<String>,
    pub config_text: String,
    provider_opts: DevProviderOptions,
}

/// The gateway process.
pub struct Gateway {
    pub child: Child,
    /// The config directory of gateways that own one.
    pub dir: Option<tempfile::TempDir>,
    pub base: String,
    pub admin: String,
    pub log: PathBuf,
    pub port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Everything the gateway logged so far. Lines are written by a background writer, so
    /// wait until the file stops growing.
    pub fn logs(&self) -> String {
        let mut last = String::new();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now = std::fs::read_to_string(&self.log).unwrap_or_default();
            if now.len() == last.len() && !now.is_empty() {
                return now;
            }
            last = now;
        }
        last
    }

    /// Sends a signal (`"HUP"`, `"TERM"`) to the gateway process with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Env {
    /// Starts everything with default options.
    pub async fn start() -> Env {
        Env::with(Options::default()).await
    }

    /// Starts everything.
    pub async fn with(opts: Options) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in &opts.files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let gateway_port = opts.port.unwrap_or_else(free_port);
        let scheme = if opts.https { "https" } else { "http" };
        let public = opts
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://127.0.0.1:{gateway_port}"));
        let redirect_uri = format!("{public}/oauth2/callback");
        let (auth, provider_auth_toml) = match opts.auth {
            Auth::Basic => (
                DevClientAuth::SecretBasic(CLIENT_SECRET.into()),
                format!("client_secret = \"{CLIENT_SECRET}\""),
            ),
            Auth::Post => (
                DevClientAuth::SecretPost(CLIENT_SECRET.into()),
                format!(
                    "client_auth = \"client_secret_post\"\nclient_secret = \"{CLIENT_SECRET}\""
                ),
            ),
            Auth::Jwt(alg) => {
                let key = jwk::generate(alg.parse().expect("alg")).expect("key");
                let path = dir.path().join("rp.pem");
                std::fs::write(&path, &key.private_pem).expect("write key");
                (
                    DevClientAuth::PrivateKeyJwt(jwk::public_jwks(key.public_jwk)),
                    format!(
                        "client_auth = \"private_key_jwt\"\nprivate_key_file = \"rp.pem\"\nprivate_key_alg = \"{alg}\""
                    ),
                )
            }
        };
        let provider_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let provider_opts = DevProviderOptions {
            bind: provider_addr,
            issuer_path: opts.issuer_path.clone(),
            clients: vec![DevClient::new(CLIENT_ID, auth, redirect_uri)
                .with_post_logout_redirect_uri(format!("{public}/"))
                .with_post_logout_redirect_uri(format!("{public}/bye"))],
            id_token_lifetime: opts.id_token_lifetime,
            access_token_lifetime: opts.access_token_lifetime,
        };
        let provider = if opts.start_provider {
            Some(
                DevProvider::start(provider_opts.clone())
                    .await
                    .expect("provider"),
            )
        } else {
            None
        };
        let issuer = format!("http://{provider_addr}{}", opts.issuer_path);
        let discovery = format!("http://{provider_addr}/.well-known/openid-configuration");
        let echo = start_echo(any_loopback()).await.expect("echo");
        let admin_port = free_port();
        let keys = opts
            .keys
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let routes = opts
            .routes
            .replace("{echo}", &echo.base_url())
            .replace("{issuer}", &issuer)
            .replace("{discovery}", &discovery);
        let config_text = format!(
            r#"
[server]
listen = "127.0.0.1:{gateway_port}"
public_url = "{public}"
threads = 2
{server_extra}

[admin]
listen = "127.0.0.1:{admin_port}"

[session]
keys = [{keys}]
{session_extra}

[providers.dev]
issuer = "{issuer}"
discovery_url = "{discovery}"
client_id = "{CLIENT_ID}"
{provider_auth_toml}
scopes = ["openid", "profile", "email"]
timeout = "2s"
jwks_min_refetch_interval = "1s"
{provider_extra}
{routes}
"#,
            server_extra = opts.server_extra,
            session_extra = opts.session_extra,
            provider_extra = opts.provider_extra,
        );
        let gateway = spawn_gateway_with(
            dir.path(),
            &config_text,
            gateway_port,
            admin_port,
            &Spawn {
                wait_ready: opts.start_provider,
                args: opts.extra_args.clone(),
                https: opts.https,
            },
        );
        Env {
            provider,
            provider_addr,
            echo,
            gateway,
            dir,
            opts_keys: opts.keys,
            config_text,
            provider_opts,
        }
    }

    /// The provider (panics when the test started without one).
    pub fn provider(&self) -> &DevProvider {
        self.provider.as_ref().expect("provider running")
    }

    /// Starts the provider on its reserved port (for tests that begin with it down).
    pub async fn start_provider(&mut self) {
        self.provider = Some(
            DevProvider::start(self.provider_opts.clone())
                .await
                .expect("provider"),
        );
    }

    /// Stops the provider.
    pub fn stop_provider(&mut self) {
        if let Some(p) = self.provider.take() {
            p.shutdown();
        }
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.base)
    }

    /// Replaces the gateway's config file (the one `run` was given) with `text`.
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(self.dir.path().join("gateway.toml"), text).expect("write config");
    }

    /// A second gateway process on the same provider and upstream with other cookie keys.
    pub fn another_gateway(&self, keys: &[String]) -> Gateway {
        let port = self.gateway.port;
        let admin_port = free_port();
        let old_keys = self
            .opts_keys
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let new_keys = keys
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let new_port = free_port();
        // Same public URL (the provider only knows that redirect URI); another listener.
        let text = self
            .config_text
            .replace(
                &format!("keys = [{old_keys}]"),
                &format!("keys = [{new_keys}]"),
            )
            .replace(
                &format!("listen = \"127.0.0.1:{port}\""),
                &format!("listen = \"127.0.0.1:{new_port}\""),
            );
        let text = replace_admin(&text, admin_port);
        let sub = tempfile::tempdir().expect("tempdir").keep();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(entry.path(), sub.join(entry.file_name()));
        }
        spawn_gateway(&sub, &text, new_port, admin_port, true)
    }
}

fn replace_admin(text: &str, admin_port: u16) -> String {
    let mut out = String::new();
    let mut in_admin = false;
    for line in text.lines() {
        if line.trim_start().starts_with('[') {
            in_admin = line.trim() == "[admin]";
        }
        if in_admin && line.trim_start().starts_with("listen") {
            out.push_str(&format!("listen = \"127.0.0.1:{admin_port}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// How to start the gateway process.
#[derive(Debug, Clone, Default)]
pub struct Spawn {
    /// Wait for `/readyz` (else `/healthz`).
    pub wait_ready: bool,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// The proxy listener speaks TLS.
    pub https: bool,
}

/// Writes the config and starts `oidc-gateway run`, waiting until it serves (and, when the
/// provider is up, until it is ready).
pub fn spawn_gateway(
    dir: &Path,
    config_text: &str,
    port: u16,
    admin_port: u16,
    wait_ready: bool,
) -> Gateway {
    spawn_gateway_with(
        dir,
        config_text,
        port,
        admin_port,
        &Spawn {
            wait_ready,
            ..Spawn::default()
        },
    )
}

/// `spawn_gateway` with extra arguments and TLS.
pub fn spawn_gateway_with(
    dir: &Path,
    config_text: &str,
    port: u16,
    admin_port: u16,
    spawn: &Spawn,
) -> Gateway {
    let wait_ready = spawn.wait_ready;
    let config = dir.join("gateway.toml");
    std::fs::write(&config, config_text).expect("write config");
    let log = dir.join(format!("gateway-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(&spawn.args)
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            "trace,h2=info,hyper_util=info,rustls=info,reqwest=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn oidc-gateway");
    let gw = Gateway {
        child,
        dir: None,
        base: format!(
            "{}://127.0.0.1:{port}",
            if spawn.https { "https" } else { "http" }
        ),
        admin: format!("http://127.0.0.1:{admin_port}"),
        log,
        port,
    };
    let path = if wait_ready { "/readyz" } else { "/healthz" };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = std::thread::scope(|_| blocking_get(&format!("{}{path}", gw.admin))) {
            if resp == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not become ready; log:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The admin listener answering does not mean the proxy listener is bound yet: pingora
    // starts each service on its own thread.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy listener did not open; log:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw
}

/// A tiny blocking HTTP GET returning the status code (used before any runtime is involved).
fn blocking_get(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))
}

/// A browser: no automatic redirects, a cookie jar that honours Set-Cookie deletions.
pub struct Browser {
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    pub accept_html: bool,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> String {
        self.header("location").unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The headers the echo upstream received, lower-case name → values.
    pub fn upstream_headers(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.json()["headers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = pair[0].as_str().unwrap_or_default().to_ascii_lowercase();
            out.entry(name)
                .or_default()
                .push(pair[1].as_str().unwrap_or_default().to_owned());
        }
        out
    }
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_headers()
            .get(&name.to_ascii_lowercase())
            .map(|v| v.join("|"))
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    /// A browser over a client of the test's making (e.g. one that trusts a test CA); redirects
    /// must be off.
    pub fn with_client(client: reqwest::Client) -> Browser {
        Browser {
            client,
            cookies: BTreeMap::new(),
            accept_html: true,
        }
    }

    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            accept_html: true,
        }
    }

    /// An API client (no text/html in Accept).
    pub fn api() -> Browser {
        Browser {
            accept_html: false,
            ..Browser::new()
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.request(Method::GET, url, &[]).await
    }

    /// GET as an API client would (`Accept: application/json`), with this browser's cookies.
    pub async fn get_api(&mut self, url: &str) -> Resp {
        self.request(Method::GET, url, &[("accept", "application/json")])
            .await
    }

    pub async fn request(&mut self, method: Method, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.request(method, url);
        // A browser navigation says so with Sec-Fetch-Mode; its Accept stays */* so that the
        // echo upstream answers JSON the tests can read.
        let accept = if self.accept_html {
            "*/*"
        } else {
            "application/json"
        };
        let mut has_accept = false;
        let mut has_cookie = false;
        let mut has_mode = false;
        for (k, v) in headers {
            has_accept |= k.eq_ignore_ascii_case("accept");
            has_cookie |= k.eq_ignore_ascii_case("cookie");
            has_mode |= k.eq_ignore_ascii_case("sec-fetch-mode");
            req = req.header(
                *k,
                HeaderValue::from_bytes(v.as_bytes()).expect("header value"),
            );
        }
        if !has_accept {
            req = req.header("accept", accept);
        }
        if !has_mode && self.accept_html && !has_accept {
            req = req.header("sec-fetch-mode", "navigate");
        }
        // Cookies go only to the gateway (the provider keeps no cookies of interest here).
        if !has_cookie
            && !self.cookies.is_empty()
            && (url.contains("127.0.0.1") || url.contains("localhost"))
        {
            req = req.header("cookie", self.cookie_header());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let r = Resp {
            status,
            headers,
            body,
        };
        self.absorb(&r);
        r
    }

    /// Applies Set-Cookie like a browser: Max-Age=0 or an empty value deletes.
    pub fn absorb(&mut self, r: &Resp) {
        for sc in r.set_cookies() {
            let Ok(c) = cookie::Cookie::parse(sc.clone()) else {
                continue;
            };
            let deleted = c.max_age().is_some_and(|a| a.is_zero()) || c.value().is_empty();
            if deleted {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    /// From a gateway 302 to the provider, through the provider (as `user`) back to the callback;
    /// returns the callback's response.
    pub async fn through_provider(&mut self, to_provider: &Resp, user: &str) -> Resp {
        assert_eq!(
            to_provider.status,
            StatusCode::FOUND,
            "expected a redirect to the provider: {to_provider:?}"
        );
        let authorize = format!("{}&login_hint={user}", to_provider.location());
        let at_provider = self.get(&authorize).await;
        assert_eq!(
            at_provider.status,
            StatusCode::FOUND,
            "provider did not redirect back: {}",
            at_provider.body
        );
        let callback = at_provider.location();
        self.get(&callback).await
    }

    /// Logs in by visiting `url` as `user`, following the flow back to `url`; returns the final
    /// response from the upstream.
    pub async fn login(&mut self, url: &str, user: &str) -> Resp {
        let first = self.get(url).await;
        let back = self.through_provider(&first, user).await;
        assert_eq!(
            back.status,
            StatusCode::FOUND,
            "callback failed: {} {}",
            back.status,
            back.body
        );
        let target = back.location();
        self.get(&target).await
    }

    /// The value of the session (bare or joined chunks).
    pub fn session_cookie_names(&self) -> Vec<String> {
        self.cookies
            .keys()
            .filter(|k| k.starts_with("oidc_session") && !k.contains("_login_"))
            .cloned()
            .collect()
    }
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The value of the first metric line of the gateway at `admin` that starts with `needle`.
pub async fn metric(admin: &str, needle: &str) -> Option<f64> {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
