//! A real `redis-server` (Debian's package) on a loopback port, for the Redis session store
//! tests: started, stopped, restarted on the same port with its data (append-only file with
//! fsync on every write), and paused (SIGSTOP) to play a slow server.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running (or stopped) redis-server.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// Whether the server speaks TLS only.
    pub tls: bool,
}

/// How to start the server.
#[derive(Default, Clone)]
pub struct RedisOptions {
    /// Extra `--directive value` arguments (e.g. `--requirepass`).
    pub args: Vec<String>,
    /// TLS only: (certificate PEM, key PEM) written into the server's directory.
    pub tls: Option<(String, String)>,
    /// The port (default: a free one).
    pub port: Option<u16>,
}

impl RedisServer {
    /// Starts a server with default options.
    pub fn start() -> RedisServer {
        RedisServer::with(RedisOptions::default())
    }

    /// Starts a server on a free port in a new directory.
    pub fn with(opts: RedisOptions) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = opts.port.unwrap_or_else(free_port);
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        let tls = opts.tls.is_some();
        if let Some((cert, key)) = &opts.tls {
            std::fs::write(dir.path().join("server.pem"), cert).expect("write cert");
            std::fs::write(dir.path().join("server.key"), key).expect("write key");
            for (k, v) in [
                ("--port", "0".to_owned()),
                ("--tls-port", port.to_string()),
                (
                    "--tls-cert-file",
                    dir.path().join("server.pem").display().to_string(),
                ),
                (
                    "--tls-key-file",
                    dir.path().join("server.key").display().to_string(),
                ),
                ("--tls-auth-clients", "no".to_owned()),
            ] {
                args.push(k.into());
                args.push(v);
            }
        } else {
            args.push("--port".into());
            args.push(port.to_string());
        }
        args.extend(opts.args);
        let mut server = RedisServer {
            port,
            dir,
            args,
            child: None,
            tls,
        };
        server.resume_service();
        server
    }

    /// `redis://127.0.0.1:PORT` (or `rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: nothing is saved that was not already on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.resume_service();
    }

    /// SIGSTOP: connections stay open but nothing is answered (a hung server).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after `pause`.
    pub fn unpause(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{name} failed");
        }
    }

    fn resume_service(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start redis-server (apt-get install redis-server; tests/run.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting connections; the append-only file is loaded before that.
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!("redis-server did not start on port {}:\n{log}", self.port);
    }

    /// Runs `redis-cli` against the server (plain TCP servers only) and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused server too.
        self.stop();
    }
}
