//! Upstreams that read paths the way real frameworks do, written by other people: Debian's
//! Tomcat 10 (drops `;parameters` and resolves `..;` before mapping) and Python's
//! `http.server` (percent-decodes before looking the file up). Both serve a small tree of
//! static files: `/public/x.txt`, `/ra/secret.txt`, `/index.txt`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// What `/ra/secret.txt` holds: seeing it means the request reached the protected resource.
pub const SECRET: &str = "RA-SECRET-7c1e";

fn write_tree(root: &Path) {
    for (path, body) in [
        ("ra/secret.txt", SECRET),
        ("public/x.txt", "PUBLIC"),
        ("index.txt", "INDEX"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// A server process in its own temp directory; killed on drop.
pub struct Upstream {
    child: Child,
    /// Removed with the server.
    _dir: tempfile::TempDir,
    /// `127.0.0.1:port`.
    pub addr: String,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_until_up(self, what: &str, log: &Path) -> Upstream {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOMCAT_HOME: &str = "/usr/share/tomcat10";

/// Debian's Tomcat 10 on a loopback port with a fresh CATALINA_BASE whose ROOT webapp is the
/// static tree (served by Tomcat's DefaultServlet, after Tomcat's own path mapping).
pub fn tomcat() -> Upstream {
    assert!(
        Path::new(TOMCAT_HOME).join("bin/bootstrap.jar").exists(),
        "Tomcat not found: install the Debian package tomcat10 (tests/run.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    for d in ["conf", "logs", "temp", "work", "webapps/ROOT"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    for f in ["web.xml", "catalina.properties", "context.xml"] {
        std::fs::copy(format!("/etc/tomcat10/{f}"), base.join("conf").join(f))
            .unwrap_or_else(|e| panic!("copy /etc/tomcat10/{f}: {e}"));
    }
    let port = free_port();
    std::fs::write(
        base.join("conf/server.xml"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"#
        ),
    )
    .unwrap();
    write_tree(&base.join("webapps/ROOT"));
    let log = base.join("logs/console.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("java")
        .arg(format!("-Dcatalina.home={TOMCAT_HOME}"))
        .arg(format!("-Dcatalina.base={}", base.display()))
        .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
        .arg("-cp")
        .arg(format!(
            "{TOMCAT_HOME}/bin/bootstrap.jar:{TOMCAT_HOME}/bin/tomcat-juli.jar"
        ))
        .arg("org.apache.catalina.startup.Bootstrap")
        .arg("start")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start Tomcat (java)");
    Upstream {
        child,
        _dir: dir,
        addr: format!("127.0.0.1:{port}"),
    }
    .wait_until_up("Tomcat", &log)
}

/// Python's `http.server` on a loopback port, serving the static tree: it percent-decodes the
/// path (`/%72a/` is `/ra/`) before looking a file up, as WSGI servers do.
pub fn python_http_server() -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path());
    let port = free_port();
    let log = dir.path().join("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start python3 -m http.server");
    Upstream {
        child,
        _dir: dir,
        addr: format!("127.0.0.1:{port}"),
    }
    .wait_until_up("python3 http.server", &log)
}
