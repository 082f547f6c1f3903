//! What operators watch with: the alert rules in contrib/prometheus and the Grafana dashboard in
//! contrib/grafana, checked with Debian's promtool and a real Prometheus scraping a real gateway.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ca::TestCa;
use common::{Browser, Env, Options};
use reqwest::StatusCode;
use serde_json::Value;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

fn promtool() -> Command {
    Command::new("promtool")
}

fn run(mut command: Command) -> String {
    let out = command.output().expect(
        "promtool and prometheus from Debian's prometheus package (tests/run.sh installs it)",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?}:\n{text}");
    text
}

/// Every PromQL expression of the dashboard (panel targets and template variables).
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(contrib("grafana/oidc-gateway.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            queries.push(q.to_owned());
        }
    }
    queries
}

/// Every alert expression of the rules file.
fn alert_queries() -> Vec<String> {
    let text = std::fs::read_to_string(contrib("prometheus/alerts.yml")).unwrap();
    // The rules are YAML; JSON-in-YAML is not used, so read `expr:` blocks by their indentation.
    let mut queries = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            queries.push(rest.to_owned());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if next.len() - next.trim_start().len() <= indent.len() && !next.trim().is_empty() {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        queries.push(block);
    }
    queries
}

/// The metric names a query reads.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["oidc_gateway_", "process_"] {
        let mut rest = query;
        while let Some(at) = rest.find(prefix) {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// The sample names a /metrics exposition carries.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Grafana's macros, as Prometheus's own API reads the same query.
fn as_prometheus_query(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
}

/// The dashboard is generated from contrib/grafana/dashboard.py; the JSON is what it prints.
#[test]
fn the_dashboard_json_is_what_its_generator_prints() {
    let out = Command::new("python3")
        .arg(contrib("grafana/dashboard.py"))
        .output()
        .expect("python3 (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(contrib("grafana/oidc-gateway.json")).unwrap(),
    )
    .unwrap();
    assert!(
        generated == committed,
        "run `python3 contrib/grafana/dashboard.py > contrib/grafana/oidc-gateway.json`"
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let mut check = promtool();
    check
        .args(["check", "rules"])
        .arg(contrib("prometheus/alerts.yml"));
    let out = run(check);
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    let mut test = promtool();
    test.current_dir(contrib("prometheus"))
        .args(["test", "rules", "alerts.test.yml"]);
    assert!(run(test).contains("SUCCESS"));
}

/// The alerts the issue asks for are there, by what they watch.
#[test]
fn the_rules_cover_provider_store_logins_errors_jwks_and_certificates() {
    let all: BTreeSet<String> = alert_queries()
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    for watched in [
        "oidc_gateway_provider_up",
        "oidc_gateway_session_store_up",
        "oidc_gateway_auth_events_total",
        "oidc_gateway_requests_total",
        "oidc_gateway_jwks_refresh_total",
        "oidc_gateway_tls_certificate_expiry_timestamp_seconds",
    ] {
        assert!(all.contains(watched), "no alert on {watched}: {all:?}");
    }
}

/// A Prometheus server of its own on a free loopback port, scraping one target every second and
/// evaluating the gateway's alert rules; killed with the test.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: oidc-gateway\n    static_configs:\n      - targets: [\"{target}\"]\n",
            contrib("prometheus/alerts.yml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = common::free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus from Debian's prometheus package (tests/run.sh installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// What the server logged (warnings and errors), for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn query(&self, query: &str) -> Value {
        self.api("query", &[("query", query)])
            .await
            .unwrap_or(Value::Null)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS gateway after a login, a proxied request and an upstream failure: every series the
/// dashboard and the alerts read is in its /metrics (which promtool's linter accepts), every
/// dashboard query returns data from a real Prometheus scraping it, and every alert rule
/// evaluates without error there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_read_only_what_a_running_gateway_serves() {
    let ca = TestCa::new("oidc-gateway monitoring CA");
    let cert = ca.server_cert();
    let env = Env::with(Options {
        https: true,
        server_extra: "tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"".into(),
        routes: format!(
            "{}\n[[route]]\nname = \"down\"\npath = \"/down\"\nupstream = \"http://127.0.0.1:{}\"\n",
            common::DEFAULT_ROUTES,
            common::free_port()
        ),
        files: vec![
            ("server.pem".into(), cert.cert_pem.into_bytes()),
            ("server.key".into(), cert.key_pem.into_bytes()),
        ],
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut alice = Browser::with_client(client);
    let r = alice.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        alice.get(&env.url("/down/x")).await.status,
        StatusCode::BAD_GATEWAY
    );

    let metrics = reqwest::get(format!("{}/metrics", env.gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.txt"), &metrics).unwrap();
    let mut lint = promtool();
    lint.args(["check", "metrics"])
        .stdin(std::fs::File::open(dir.path().join("metrics.txt")).unwrap());
    let problems = run(lint);
    assert!(
        problems.trim().is_empty(),
        "promtool check metrics:\n{problems}"
    );

    let exposed = exposed(&metrics);
    let dashboard = dashboard_queries();
    let alerts = alert_queries();
    assert!(
        dashboard.len() >= 20 && alerts.len() == 9,
        "{dashboard:?} {alerts:?}"
    );
    for query in dashboard.iter().chain(&alerts) {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query that reads no gateway metric: {query}"
        );
        for name in names {
            assert!(
                exposed.contains(&name),
                "{name} (in `{query}`) is not in /metrics:\n{metrics}"
            );
        }
    }

    let admin = env.gateway.admin.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::scraping(&admin);
    // Rates need two scrapes, so wait until the oldest panel query sees them.
    let scraped = common::eventually(Duration::from_secs(30), async || {
        let r = prometheus
            .query("count_over_time(oidc_gateway_requests_in_flight[1m])")
            .await;
        r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(
        scraped,
        "prometheus did not scrape the gateway's admin listener:\n{}",
        prometheus.log()
    );
    for query in &dashboard {
        if query.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL.
        }
        let answer = prometheus.query(&as_prometheus_query(query)).await;
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!result.is_empty(), "no data for the panel query `{query}`");
    }
    let evaluated = common::eventually(Duration::from_secs(20), async || {
        let rules = prometheus.api("rules", &[]).await.unwrap_or(Value::Null);
        let rules: Vec<Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.len() == 9 && rules.iter().all(|r| r["health"] == "ok")
    })
    .await;
    let rules = prometheus.api("rules", &[]).await;
    assert!(
        evaluated,
        "alert rules not all evaluated without error: {rules:?}\n{}",
        prometheus.log()
    );
    // Nothing is wrong with this gateway: no alert fires, not even the certificate ones (the test
    // CA's certificate is valid for longer than 14 days).
    let alerts = prometheus.api("alerts", &[]).await.unwrap();
    assert_eq!(alerts["data"]["alerts"], serde_json::json!([]), "{alerts}");
    let expiry = common::metric(
        &env.gateway.admin,
        "oidc_gateway_tls_certificate_expiry_timestamp_seconds{listener=\"proxy\"}",
    )
    .await
    .unwrap();
    let now = oidc_gateway::clock::now() as f64;
    assert!(expiry > now + 14.0 * 86400.0, "expiry {expiry}, now {now}");
}

/// The standard process metrics sit beside the gateway's own, unprefixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_report_cpu_memory_and_file_descriptors() {
    let env = Env::start().await;
    let rss = common::metric(&env.gateway.admin, "process_resident_memory_bytes ")
        .await
        .unwrap();
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    let fds = common::metric(&env.gateway.admin, "process_open_fds ")
        .await
        .unwrap();
    assert!(fds >= 3.0, "{fds}");
    assert!(
        common::metric(&env.gateway.admin, "process_cpu_seconds_total ")
            .await
            .is_some()
    );
}

/// docs/monitor.md describes what the files hold: every alert and every panel, by name.
#[test]
fn the_monitor_page_lists_every_alert_and_panel() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitor.md"))
            .unwrap();
    let rules = std::fs::read_to_string(contrib("prometheus/alerts.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 9);
    for alert in alerts {
        assert!(
            page.contains(&format!("`{alert}`")),
            "{alert} is not in docs/monitor.md"
        );
    }
    let text = std::fs::read_to_string(contrib("grafana/oidc-gateway.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            page.contains(title),
            "panel {title:?} is not in docs/monitor.md"
        );
    }
}
