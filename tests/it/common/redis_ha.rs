//! Redis deployments that survive the loss of a node, on loopback ports, from Debian's
//! `redis-server` and `redis-sentinel`: a Sentinel group (one master, one replica, three
//! sentinels) and a six-node Cluster (three masters, each with a replica). Every process is
//! killed when the value is dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_ports_at;
use super::redis::{RedisOptions, RedisServer};

/// `redis-cli -p PORT ARGS...`, its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `check` holds, or panics with `what`.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// One sentinel process.
struct SentinelProcess {
    port: u16,
    child: Child,
}

/// One master, one replica and three sentinels monitoring them as `gw`.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<SentinelProcess>,
    dir: tempfile::TempDir,
}

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "gw";

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        // As docs/scale-out.md advises: a master cut off from its replica refuses writes (the
        // old master after a failover), rather than accepting some that would be lost.
        let master = RedisServer::with(RedisOptions {
            args: [
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
            ]
            .map(String::from)
            .to_vec(),
            ..RedisOptions::default()
        });
        let replica = RedisServer::with(RedisOptions {
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            ..RedisOptions::default()
        });
        wait_for("the replica to sync", Duration::from_secs(10), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_ports_at(&[0]);
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                     dir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display(),
                    master = master.port,
                ),
            )
            .expect("write sentinel.conf");
            let log = std::fs::File::create(dir.path().join(format!("sentinel-{i}.log")))
                .expect("log file");
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start redis-sentinel (tests/run.sh installs it)");
            sentinels.push(SentinelProcess { port, child });
        }
        let group = SentinelGroup {
            master,
            replica,
            sentinels,
            dir,
        };
        for s in &group.sentinels {
            wait_for("a sentinel to listen", Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", s.port)).is_ok()
            });
        }
        // Each sentinel knows the replica and the two other sentinels: a failover can happen.
        for s in &group.sentinels {
            wait_for(
                "the sentinels to find the replica and each other",
                Duration::from_secs(20),
                || {
                    let master = cli(s.port, &["SENTINEL", "MASTER", MASTER_NAME]);
                    let lines: Vec<&str> = master.lines().collect();
                    let field = |name: &str| {
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .and_then(|v| v.parse::<u32>().ok())
                            .unwrap_or(0)
                    };
                    field("num-slaves") >= 1 && field("num-other-sentinels") >= 2
                },
            );
        }
        group
    }

    /// `redis://127.0.0.1:PORT` of every sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The port the sentinels name as the master now.
    pub fn master_port(&self) -> u16 {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        out.lines().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// `SENTINEL FAILOVER`: the replica becomes the master; returns once the sentinels say so.
    pub fn failover(&self) {
        let before = self.master_port();
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "FAILOVER", MASTER_NAME],
        );
        assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
        wait_for(
            "the sentinels to name the new master",
            Duration::from_secs(20),
            || {
                let now = self.master_port();
                now != 0 && now != before
            },
        );
    }

    /// Kills every sentinel.
    pub fn stop_sentinels(&mut self) {
        for s in &mut self.sentinels {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    /// The log files of the sentinels (for a failing test's message).
    pub fn logs(&self) -> String {
        (0..self.sentinels.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("sentinel-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// Six cluster nodes: three masters, each with a replica.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                // The cluster bus listens on port + 10000.
                let port = free_ports_at(&[0, 10000]);
                RedisServer::with(RedisOptions {
                    port: Some(port),
                    args: [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ]
                    .map(String::from)
                    .to_vec(),
                    ..RedisOptions::default()
                })
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Every node says `cluster_state:ok` and knows three masters with a replica each.
    pub fn wait_until_ok(&self) {
        for n in &self.nodes {
            wait_for("the cluster to be ok", Duration::from_secs(30), || {
                let info = n.cli(&["CLUSTER", "INFO"]);
                let nodes = n.cli(&["CLUSTER", "NODES"]);
                info.contains("cluster_state:ok")
                    && nodes.lines().filter(|l| l.contains("master")).count() == 3
                    && nodes.lines().filter(|l| l.contains("slave")).count() == 3
            });
        }
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node (index) that is a master and holds the most keys.
    pub fn busiest_master(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].cli(&["ROLE"]).starts_with("master"))
            .max_by_key(|&i| {
                self.nodes[i]
                    .cli(&["DBSIZE"])
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .expect("a master")
    }

    /// The replica (index) of master `m`.
    pub fn replica_of(&self, m: usize) -> usize {
        let id = self.nodes[m].cli(&["CLUSTER", "MYID"]).trim().to_owned();
        (0..self.nodes.len())
            .find(|&i| {
                self.nodes[i]
                    .cli(&["CLUSTER", "NODES"])
                    .lines()
                    .any(|l| l.contains("myself") && l.contains(&format!("slave {id}")))
            })
            .expect("a replica of the master")
    }

    /// `CLUSTER FAILOVER` on replica `r` (a manual failover: the replica first catches up with
    /// its master); returns once it is a master.
    pub fn failover(&self, r: usize) {
        let out = self.nodes[r].cli(&["CLUSTER", "FAILOVER"]);
        assert!(out.contains("OK"), "CLUSTER FAILOVER: {out}");
        wait_for(
            "the replica to become master",
            Duration::from_secs(20),
            || self.nodes[r].cli(&["ROLE"]).starts_with("master"),
        );
    }

    /// How many session keys (`oidc-gateway:s:*`) the whole cluster holds.
    pub fn session_keys(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
            .map(|n| {
                n.cli(&["--scan", "--pattern", "oidc-gateway:s:*"])
                    .lines()
                    .count()
            })
            .sum()
    }
}
