//! The JSON Schema of the config file (docs/config.schema.json): the one the binary derives from
//! the types `check` reads, named by every example config, and in step with `check`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn published() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo("docs/config.schema.json")).unwrap())
        .unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&published()).unwrap()
}

/// A TOML file as the JSON value a language server checks against the schema.
fn as_json(toml_text: &str) -> Value {
    let value: toml::Value = toml::from_str(toml_text).unwrap();
    serde_json::to_value(value).unwrap()
}

fn schema_errors(toml_text: &str) -> Vec<String> {
    let validator = validator();
    let instance = as_json(toml_text);
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// What `check` says of a config (exit code and output), with its secret in place.
fn check(toml_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "s3cret\n").unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, toml_text).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&file)
        .env("TEST_COOKIE_KEY", oidc_gateway::keygen::cookie_key())
        .env("TEST_AUTH", "client_secret_post")
        .env("my.store", "cookie")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_published_schema_is_the_one_the_binary_derives() {
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    let derived: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        derived == published(),
        "docs/config.schema.json is stale: run `cargo run -- schema > docs/config.schema.json`"
    );
    assert_eq!(
        derived["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn every_example_config_names_the_schema_and_passes_it() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") || path.ends_with("demo.toml") {
            continue; // demo.toml has @PLACEHOLDERS@ until the demo fills them in.
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("#:schema ../docs/config.schema.json"),
            "{} does not name the schema on its first line",
            path.display()
        );
        let errors = schema_errors(&text);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} example configs");
}

const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"
drain_timeout = "1m 30s"
upstream_connect_timeout = "1.5s"
upstream_read_timeout = "0.5m"
[session]
keys = ["${TEST_COOKIE_KEY}"]
same_site = "Lax"
store = "${my.store}"
idle_timeout = "1h30m"
max_lifetime = "8 hours"
[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_auth = "${TEST_AUTH}"
client_secret_file = "secret.txt"
clock_skew = "0"
[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
[route.headers]
X-Auth-Sub = "sub"
X-Auth-Role = ["role.code", "role"]
[route.require]
activities = "B0008"
"#;

/// The schema is never stricter than `check`: what `check` accepts (environment references in
/// fixed-value keys, either spelling of a list, durations with several units) passes it.
#[test]
fn what_check_accepts_the_schema_accepts() {
    assert_eq!(check(VALID).0, 0, "{}", check(VALID).1);
    let errors = schema_errors(VALID);
    assert!(errors.is_empty(), "{errors:#?}");
}

/// The mistakes an editor should underline are the ones `check` refuses.
#[test]
fn the_schema_refuses_what_check_refuses() {
    let cases = [
        (
            "an unknown key",
            VALID.replace("drain_timeout", "drain_timout"),
            "drain_timout",
        ),
        (
            "an unknown client_auth",
            VALID.replace("${TEST_AUTH}", "client_secret_jwt"),
            "client_auth",
        ),
        (
            "a duration without a unit",
            VALID.replace("\"1m 30s\"", "\"90\""),
            "drain_timeout",
        ),
        (
            "a boolean as a string",
            VALID.replace(
                "same_site = \"Lax\"",
                "same_site = \"Lax\"\nsecure = \"yes\"",
            ),
            "secure",
        ),
        (
            "a route without an upstream",
            VALID.replace("upstream = \"http://127.0.0.1:3000\"", ""),
            "upstream",
        ),
        (
            "a thread count out of range",
            VALID.replace("drain_timeout = \"1m 30s\"", "threads = 0"),
            "threads",
        ),
        (
            "an unknown table",
            format!("{VALID}\n[metrics]\nlisten = \"x\"\n"),
            "metrics",
        ),
    ];
    for (what, text, key) in cases {
        let errors = schema_errors(&text);
        assert!(!errors.is_empty(), "the schema accepts {what}");
        assert!(
            errors.iter().any(|e| e.contains(key)),
            "{what}: {errors:#?}"
        );
        let (code, out) = check(&text);
        assert_eq!(code, 1, "check accepts {what}: {out}");
        assert!(out.contains(key), "{what}: {out}");
    }
}

/// The schema carries the documentation editors show on hover.
#[test]
fn every_key_has_a_description() {
    let schema = published();
    let defs = schema["$defs"].as_object().unwrap();
    let mut keys = 0;
    for (table, def) in defs {
        for (key, property) in def["properties"].as_object().into_iter().flatten() {
            let text = property["description"].as_str().unwrap_or_default();
            assert!(text.len() > 10, "{table}.{key} has no description");
            keys += 1;
        }
    }
    assert!(keys > 60, "{keys}");
}
