//! The real `oidc-gateway` binary as a child process, in front of a development provider and
//! an echo upstream started in-process ([`Env`]), or against any provider ([`spawn_gateway`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::{any_loopback, free_port};
use devprovider::{
    start_echo, DevClient, DevClientAuth, DevProvider, DevProviderOptions, EchoServer,
};

pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "test-client-secret-3f9a";

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
    /// Wait until `/readyz` says ready (false: until the gateway is up; a gateway whose session
    /// store is down is never ready).
    pub wait_ready: bool,
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
            wait_ready: true,
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
    /// The config directory of gateways that own one, removed with the gateway.
    _dir: Option<tempfile::TempDir>,
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
                wait_ready: opts.start_provider && opts.wait_ready,
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
        self.another_gateway_waiting(keys, true)
    }

    /// `another_gateway`, returning once it is up (`wait_ready = false`) or ready.
    pub fn another_gateway_waiting(&self, keys: &[String], wait_ready: bool) -> Gateway {
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
        spawn_gateway(&sub, &text, new_port, admin_port, wait_ready)
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
        _dir: None,
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
