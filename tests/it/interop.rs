//! Independent parts for interoperability tests: the certified OpenID Provider `oidc-provider`
//! (npm, pinned in tests/interop/op/package-lock.json) run as a child process on a free loopback
//! port, a gateway configured for it, and helpers to drive its login and logout pages over HTTP.
//! `bash tests/run.sh` installs the npm packages; so does the first test that needs them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{free_port, spawn_gateway, Browser, Gateway, Resp};

/// Secret of the client_secret_basic and client_secret_post clients: with characters that must
/// be form-encoded inside HTTP Basic (RFC 6749 §2.3.1), which oidc-provider insists on. Only
/// printable ASCII: oidc-provider refuses other secrets (RFC 6749 VSCHAR).
pub const OP_SECRET: &str = "s3cr%t:+/ =&~x";

/// The folder with package.json, package-lock.json and server.js.
pub fn op_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/op")
}

/// Runs `npm ci` once when node_modules is missing (tests/run.sh normally did it already).
pub fn ensure_npm_packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    DONE.get_or_init(|| {
        let _guard = LOCK.lock().unwrap();
        let dir = op_dir();
        if dir.join("node_modules/oidc-provider").is_dir()
            && dir.join("node_modules/playwright-core").is_dir()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the interoperability tests");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    });
}

/// How to start the provider.
pub struct OpOptions {
    /// The gateway's public URL (redirect URIs are registered under it).
    pub gateway: String,
    /// Public JWKS of the private_key_jwt client.
    pub jwks: Value,
    /// The algorithm the private_key_jwt client is registered for.
    pub jwt_alg: &'static str,
    pub access_token_ttl: u64,
    pub id_token_ttl: u64,
    pub rotate_refresh_token: bool,
}

/// A running oidc-provider; killed when dropped.
pub struct Op {
    child: Child,
    pub issuer: String,
    _dir: tempfile::TempDir,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Op {
    /// Starts the provider; a start that fails or hangs (a port taken meanwhile, a machine
    /// busy with other tests) is retried on another port, and the last failure names its log.
    pub fn start(opts: &OpOptions) -> Op {
        ensure_npm_packages();
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Op::try_start(opts) {
                Ok(op) => return op,
                Err(why) => failures.push(why),
            }
        }
        panic!("oidc-provider did not start:\n{}", failures.join("\n"));
    }

    fn try_start(opts: &OpOptions) -> Result<Op, String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("op.json");
        std::fs::write(
            &cfg,
            json!({
                "gateway": opts.gateway,
                "port": free_port(),
                "secret": OP_SECRET,
                "jwks": opts.jwks,
                "jwtAlg": opts.jwt_alg,
                "accessTokenTtl": opts.access_token_ttl,
                "idTokenTtl": opts.id_token_ttl,
                "rotateRefreshToken": opts.rotate_refresh_token,
            })
            .to_string(),
        )
        .unwrap();
        let log = dir.path().join("op.log");
        let mut child = Command::new("node")
            .arg(op_dir().join("server.js"))
            .arg(&cfg)
            .current_dir(op_dir())
            // Held open: the provider exits when this test process goes away.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("node is needed for the interoperability tests");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let started = rx.recv_timeout(Duration::from_secs(45));
        let issuer = started
            .as_deref()
            .ok()
            .and_then(|line| serde_json::from_str::<Value>(line).ok())
            .and_then(|v| v["issuer"].as_str().map(str::to_owned));
        match issuer {
            Some(issuer) => Ok(Op {
                child,
                issuer,
                _dir: dir,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "  printed {started:?}; its stderr: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        }
    }
}

impl Op {
    /// What oidc-provider wrote to stderr (failed back-channel deliveries, crashes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("op.log")).unwrap_or_default()
    }
}

/// Which of the provider's three clients the gateway is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClient {
    Basic,
    Post,
    /// private_key_jwt with `private_key_alg = "RS256"`.
    Jwt,
    /// private_key_jwt with a key made by `keygen --jwk --alg ALG`, the client registered for
    /// ALG only, and no `private_key_alg`: the gateway must pick ALG from what the provider
    /// advertises (RS512 first, as CIS2 does).
    JwtAdvertised(&'static str),
}

/// Routes of the gateway in front of oidc-provider; `{echo}` is the echo upstream.
pub const OP_ROUTES: &str = r#"
[[route]]
name = "app"
path = "/"
upstream = "{echo}"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Name = "name"
X-Auth-Email = "email"
X-Auth-Role = ["role.code", "role"]
X-Auth-Org = "org.code"
X-Auth-Activities = "activities"
X-Auth-Workgroups = "workgroups"
X-Auth-Acr = "acr"
X-Auth-Amr = "amr"
X-Auth-Selected-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"
# Large for the user "big" (40 roles): several session cookie chunks.
X-Auth-Roles = "$.nhsid_nrbac_roles[0:15]"

[[route]]
name = "bye"
path = "/bye"
upstream = "{echo}"
auth = "public"

# Smartcard logins only (CIS2's AAL3), and a login at most 3 seconds old.
[[route]]
name = "aal3"
path = "/aal3"
upstream = "{echo}"
require_acr = ["AAL3_ANY"]
[route.headers]
X-Auth-Sub = "sub"

[[route]]
name = "recent"
path = "/recent"
upstream = "{echo}"
max_auth_age = "3s"
[route.headers]
X-Auth-Sub = "sub"

# Called from pages on the echo upstream's origin (server.cors_origins), as a single-page app.
[[route]]
name = "spa-api"
path = "/spa-api"
upstream = "{echo}"
cors = true
[route.headers]
X-Auth-Sub = "sub"

[[route]]
name = "ra"
path = "/ra"
upstream = "{echo}"
[route.headers]
X-Auth-Sub = "sub"
[route.require]
activities = ["B0008"]
"#;

/// oidc-provider, an echo upstream and a gateway using one of the provider's clients.
pub struct OpEnv {
    pub op: Op,
    pub echo: devprovider::EchoServer,
    pub gateway: Gateway,
    pub dir: tempfile::TempDir,
}

pub struct OpEnvOptions {
    pub client: OpClient,
    pub access_token_ttl: u64,
    pub id_token_ttl: u64,
    pub rotate_refresh_token: bool,
    /// Extra TOML for `[session]`.
    pub session_extra: String,
}

impl Default for OpEnvOptions {
    fn default() -> Self {
        OpEnvOptions {
            client: OpClient::Basic,
            access_token_ttl: 600,
            id_token_ttl: 600,
            rotate_refresh_token: false,
            session_extra: String::new(),
        }
    }
}

impl OpEnv {
    pub async fn start(opts: OpEnvOptions) -> OpEnv {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin = free_port();
        let public = format!("http://127.0.0.1:{port}");
        // The private_key_jwt client's key comes from the gateway's own keygen command.
        let key = dir.path().join("rp.pem");
        let jwt_alg = match opts.client {
            OpClient::JwtAdvertised(alg) => alg,
            _ => "RS256",
        };
        let out = Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
            .args(["keygen", "--jwk", "--alg", jwt_alg, "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen --jwk failed");
        let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
        let op = Op::start(&OpOptions {
            gateway: public.clone(),
            jwks,
            jwt_alg,
            access_token_ttl: opts.access_token_ttl,
            id_token_ttl: opts.id_token_ttl,
            rotate_refresh_token: opts.rotate_refresh_token,
        });
        let echo = devprovider::start_echo(crate::common::any_loopback())
            .await
            .unwrap();
        let auth = match opts.client {
            OpClient::Basic => format!(
                "client_id = \"gw-basic\"\nclient_secret = {}",
                toml_string(OP_SECRET)
            ),
            OpClient::Post => format!(
                "client_id = \"gw-post\"\nclient_auth = \"client_secret_post\"\nclient_secret = {}",
                toml_string(OP_SECRET)
            ),
            OpClient::Jwt => "client_id = \"gw-jwt\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"rp.pem\"\nprivate_key_alg = \"RS256\"".to_owned(),
            OpClient::JwtAdvertised(_) => "client_id = \"gw-jwt\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"rp.pem\"".to_owned(),
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{public}"
threads = 2
cors_origins = ["{echo_origin}"]

[admin]
listen = "127.0.0.1:{admin}"

[session]
keys = ["{key}"]
{session_extra}

[providers.op]
issuer = "{issuer}"
{auth}
scopes = ["openid", "profile", "email", "nationalrbacaccess"]
userinfo = true
timeout = "5s"
{routes}
"#,
            key = oidc_gateway::keygen::cookie_key(),
            session_extra = opts.session_extra,
            issuer = op.issuer,
            routes = OP_ROUTES.replace("{echo}", &echo.base_url()),
            echo_origin = echo.base_url(),
        );
        let gateway = spawn_gateway(dir.path(), &config, port, admin, true);
        OpEnv {
            op,
            echo,
            gateway,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.base)
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Resolves a `Location` against the URL it came from.
pub fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(String::from)
        .unwrap_or_else(|_| location.to_owned())
}

/// Follows redirects (GET) from `resp` while they stay at `origin`; returns the last response and
/// its URL.
pub async fn follow_at(
    b: &mut Browser,
    mut url: String,
    mut resp: Resp,
    origin: &str,
) -> (String, Resp) {
    for _ in 0..10 {
        if !resp.status.is_redirection() {
            break;
        }
        let next = resolve(&url, &resp.location());
        if !next.starts_with(origin) {
            break;
        }
        url = next;
        resp = b.get(&url).await;
    }
    (url, resp)
}

/// POSTs a form as the browser (cookies in, Set-Cookie absorbed), without following redirects.
pub async fn post_form(b: &mut Browser, url: &str, fields: &[(&str, &str)]) -> Resp {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.post(url).form(fields);
    if !b.cookies.is_empty() {
        req = req.header("cookie", b.cookie_header());
    }
    let resp = req.send().await.unwrap();
    let r = Resp {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    };
    b.absorb(&r);
    r
}

/// The value of `<input ... name="NAME" value="VALUE">` in a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.split("value=\"").nth(1)?.split('"').next()?;
    Some(v.to_owned())
}

/// The `action` of the first form in a page.
pub fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let v = html[at..].split("action=\"").nth(1)?.split('"').next()?;
    Some(html_escape::decode_html_entities(v).into_owned())
}

/// From the gateway's 302 to oidc-provider, through its login page (as `user`), back to the
/// gateway's callback; returns the callback's response.
pub async fn login_at_op(b: &mut Browser, op: &Op, to_op: &Resp, user: &str) -> Resp {
    assert_eq!(to_op.status, StatusCode::FOUND, "{to_op:?}");
    let authorize = to_op.location();
    assert!(authorize.starts_with(&op.issuer), "{authorize}");
    let first = b.get(&authorize).await;
    let (page_url, page) = follow_at(b, authorize, first, &op.issuer).await;
    assert_eq!(page.status, StatusCode::OK, "login page: {}", page.body);
    assert!(page.body.contains("name=\"login\""), "{}", page.body);
    let action = resolve(&page_url, &form_action(&page.body).expect("login form"));
    let submitted = post_form(
        b,
        &action,
        &[("prompt", "login"), ("login", user), ("password", "any")],
    )
    .await;
    assert!(
        submitted.status.is_redirection(),
        "login submission: {} {}",
        submitted.status,
        submitted.body
    );
    let (_, back) = follow_at(b, action, submitted, &op.issuer).await;
    assert!(back.status.is_redirection(), "{back:?}");
    let callback = back.location();
    assert!(callback.contains("/oauth2/callback?"), "{callback}");
    b.get(&callback).await
}

/// Logs in at `url` through oidc-provider as `user`; returns the upstream's response.
pub async fn login(b: &mut Browser, env: &OpEnv, path: &str, user: &str) -> Resp {
    let first = b.get(&env.url(path)).await;
    let back = login_at_op(b, &env.op, &first, user).await;
    assert_eq!(
        back.status,
        StatusCode::FOUND,
        "callback: {} {}",
        back.status,
        back.body
    );
    let target = back.location();
    b.get(&target).await
}

/// Through oidc-provider's RP-initiated logout confirmation page; returns where it sends the
/// browser afterwards.
pub async fn confirm_logout_at_op(b: &mut Browser, op: &Op, end_session_url: &str) -> String {
    let page = b.get(end_session_url).await;
    assert_eq!(page.status, StatusCode::OK, "logout page: {}", page.body);
    let xsrf = input_value(&page.body, "xsrf").expect("xsrf field");
    let action = resolve(
        end_session_url,
        &form_action(&page.body).expect("logout form"),
    );
    assert!(action.starts_with(&op.issuer));
    let done = post_form(b, &action, &[("xsrf", &xsrf), ("logout", "yes")]).await;
    assert!(done.status.is_redirection(), "{done:?}");
    resolve(&action, &done.location())
}
