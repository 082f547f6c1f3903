//! The binary's commands as an operator runs them: check, keygen, demo, man, completions.

use crate::common;

use std::process::Command;

use common::Browser;
use reqwest::StatusCode;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
}

const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"
[session]
keys = ["${TEST_COOKIE_KEY}"]
[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_secret_file = "secret.txt"
[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
"#;

#[test]
fn check_accepts_a_valid_config_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "s3cret\n").unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, VALID).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("TEST_COOKIE_KEY", oidc_gateway::keygen::cookie_key())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

/// The README's minimal configuration is one a new user can copy: `check` accepts it.
#[test]
fn the_readmes_minimal_config_passes_check() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("the README shows a TOML configuration")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the TOML block ends");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &readme[start..end]).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("GATEWAY_COOKIE_KEY", oidc_gateway::keygen::cookie_key())
        .env("OIDC_CLIENT_SECRET", "secret")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_lists_every_problem_with_key_path_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    let text = VALID.replace(
        "client_id = \"client\"",
        "client_id = \"client\"\nscopes = [\"profile\"]\ncolour = \"red\"",
    ) + "timeout = \"soon\"\n";
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .env_remove("TEST_COOKIE_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "session.keys[0] (line 6): environment variable TEST_COOKIE_KEY is not set",
        "providers.cis2.scopes (line 10): must include \"openid\"",
        "providers.cis2.colour (line 11): unknown key",
        "providers.cis2.client_secret_file (line 12): cannot read",
        "route[0].timeout (line 16): unknown key",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_names_connection_settings_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "s3cret\n").unwrap();
    let cfg = dir.path().join("gw.toml");
    let text = VALID.replace(
        "public_url = \"https://apps.example.org\"",
        "public_url = \"https://apps.example.org\"\nrequest_header_timeout = \"0s\"\nkeepalive_timeout = \"1500ms\"\nmax_connections = 0",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("TEST_COOKIE_KEY", oidc_gateway::keygen::cookie_key())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "server.request_header_timeout (line 5): must be between 1s and 10m",
        "server.keepalive_timeout (line 6): must be whole seconds between 1s and 1h",
        "server.max_connections (line 7)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_reports_a_missing_file_clearly() {
    let out = bin()
        .args(["check", "--config", "/nonexistent/gw.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/gw.toml"));
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, "[server]\nlisten = 1\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn keygen_prints_a_fresh_32_byte_key() {
    use base64::Engine;
    let a = bin().arg("keygen").output().unwrap();
    let b = bin().arg("keygen").output().unwrap();
    let (a, b) = (
        String::from_utf8(a.stdout).unwrap(),
        String::from_utf8(b.stdout).unwrap(),
    );
    assert_ne!(a, b);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);
}

#[test]
fn keygen_jwk_writes_a_private_key_and_prints_its_public_jwks() {
    use std::os::unix::fs::PermissionsExt;
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("rp.pem");
        let out = bin()
            .args(["keygen", "--jwk", "--alg", alg, "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["alg"], alg);
        assert_eq!(jwk["use"], "sig");
        assert!(
            jwk.get("d").is_none(),
            "the public JWKS must not hold the private key"
        );
        assert_eq!(jwk["kid"].as_str().unwrap(), jwk::thumbprint(jwk).unwrap());
        let kty = if alg.starts_with("ES") { "EC" } else { "RSA" };
        assert_eq!(jwk["kty"], kty, "{alg}");
        if alg == "ES384" {
            assert_eq!(jwk["crv"], "P-384");
        }
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.contains("PRIVATE KEY"));
        // Never overwrites.
        let again = bin()
            .args(["keygen", "--jwk", "--alg", alg, "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
    }
}

/// The README's first command: `oidc-gateway demo` serves a working login on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_a_login_with_nhs_shaped_identity() {
    // The demo listens on port, port + 1, port + 2 and port + 10.
    let port = common::free_ports_at(&[0, 1, 2, 10]);
    let mut child = bin()
        .args(["demo", "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut text = String::new();
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("stop with Ctrl-C") {
                break;
            }
        }
        // Keep draining in the background so the demo never writes into a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        text
    })
    .await
    .unwrap();
    let base = format!("http://localhost:{port}");
    assert!(banner.contains(&format!("{base}/")), "{banner}");
    let admin = format!("http://127.0.0.1:{}/readyz", port + 10);
    // Ready, and the proxy listener bound too: pingora starts each service on its own thread,
    // so the admin listener may answer first.
    let ready = common::eventually(std::time::Duration::from_secs(15), async || {
        reqwest::get(&admin).await.is_ok_and(|r| r.status() == 200)
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
    })
    .await;
    assert!(ready);
    // localhost may resolve to ::1 first; talk to the IPv4 listener with the public Host.
    let mut b = Browser::new();
    let first = b
        .request(
            reqwest::Method::GET,
            &format!("http://127.0.0.1:{port}/"),
            &[
                ("host", &format!("localhost:{port}")),
                ("sec-fetch-mode", "navigate"),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::FOUND);
    let back = b.through_provider(&first, "alice").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let home = b
        .request(
            reqwest::Method::GET,
            &format!("http://127.0.0.1:{port}/"),
            &[
                ("host", &format!("localhost:{port}")),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert_eq!(home.upstream_header("x-auth-org").as_deref(), Some("Q14"));
    assert_eq!(
        home.upstream_header("x-auth-activities").as_deref(),
        Some("B0005,B0008")
    );
}

/// The binary's commands, as the man page and completions must know them.
const COMMANDS: [&str; 7] = [
    "run",
    "check",
    "keygen",
    "demo",
    "completions",
    "man",
    "schema",
];

/// Every flag each command accepts (read off its `--help`), so tests compare against the parser
/// itself rather than a list that could drift with it.
fn long_flags_of(command: &[&str]) -> Vec<String> {
    let out = bin().args(command).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    help.split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '=']).to_string())
        .filter(|w| w != "--help" && w != "--version")
        .collect()
}

/// `oidc-gateway man` renders with man(1) without a warning and documents every command and
/// every flag the parser knows, so the packaged page cannot fall behind the binary.
#[test]
fn the_man_page_renders_and_documents_every_command_and_flag() {
    let page = bin().arg("man").output().unwrap();
    assert!(page.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oidc-gateway.1");
    std::fs::write(&file, &page.stdout).unwrap();
    let rendered = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&file)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .expect("man(1) from the man-db package (tests/run.sh installs it)");
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(
        rendered.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    // man(1) hyphenates and joins lines; compare on text with the hyphenation taken out.
    let text = String::from_utf8_lossy(&rendered.stdout).replace("‐\n", "");
    for command in COMMANDS {
        assert!(
            text.contains(&format!("oidc-gateway {command} ")),
            "no synopsis for {command}:\n{text}"
        );
        for flag in long_flags_of(&[command]) {
            assert!(text.contains(&flag), "{command} {flag} missing:\n{text}");
        }
    }
    for flag in long_flags_of(&[]) {
        assert!(text.contains(&flag), "{flag} missing:\n{text}");
    }
    assert!(text.contains("/etc/oidc-gateway/gateway.toml"));
}

/// The bash completion script, sourced by a real bash, completes commands and their flags.
#[test]
fn bash_completion_completes_commands_and_flags() {
    let script = bin().args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oidc-gateway.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let complete = |words: &str| -> String {
        let program = format!(
            r#"source "$1"
            COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
            COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}
            _oidc__gateway oidc-gateway "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
            echo "${{COMPREPLY[@]}}""#
        );
        let out = Command::new("bash")
            .args(["-c", &program, "bash"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = complete("oidc-gateway ''");
    for command in COMMANDS {
        assert!(
            commands.split_whitespace().any(|w| w == command),
            "{commands}"
        );
    }
    assert_eq!(complete("oidc-gateway ke").trim(), "keygen");
    let keygen_flags = complete("oidc-gateway keygen --");
    for flag in long_flags_of(&["keygen"]) {
        assert!(keygen_flags.contains(&flag), "{flag}: {keygen_flags}");
    }
}

/// zsh and fish scripts name the binary's commands; an unknown shell is a usage error.
#[test]
fn completions_for_zsh_and_fish_and_a_clear_error_for_others() {
    let zsh = bin().args(["completions", "zsh"]).output().unwrap();
    let zsh = String::from_utf8(zsh.stdout).unwrap();
    assert!(zsh.starts_with("#compdef oidc-gateway"), "{zsh}");
    let fish = bin().args(["completions", "fish"]).output().unwrap();
    let fish = String::from_utf8(fish.stdout).unwrap();
    assert!(fish.contains("complete -c oidc-gateway") && fish.contains("keygen"));
    let bad = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}
