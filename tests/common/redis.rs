//! Real Redis servers for the cluster tests: each started on a free
//! loopback port in a temporary directory, with no persistence, and killed
//! when dropped. Waits are polls with deadlines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for a server to answer, or for a cluster to form.
pub const REDIS_DEADLINE: Duration = Duration::from_secs(60);

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// A loopback TCP port nobody listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Redis {
    /// A server in `dir` (made if missing) on a free port.
    pub fn start(dir: &Path) -> Redis {
        Redis::start_with(dir, &[])
    }

    /// The same, with extra `redis-server` arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Redis {
        std::fs::create_dir_all(dir).unwrap();
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.restart();
        r
    }

    /// (Re)start on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (make test installs Debian's redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_DEADLINE;
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis on {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p PORT ARGS...`: its output.
    /// `redis-cli -x`: `args`, then `last` (binary-safe, from stdin) as the
    /// command's last argument.
    pub fn cli_with(&self, args: &[&str], last: &[u8]) -> String {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "-x"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli (make test installs Debian's redis-tools)");
        child.stdin.take().unwrap().write_all(last).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let password = self
            .extra
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.extra.get(i + 1));
        let auth: Vec<&str> = match password {
            Some(p) => vec!["-a", p.as_str(), "--no-auth-warning"],
            None => Vec::new(),
        };
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(&auth)
            .args(args)
            .output()
            .expect("redis-cli (make test installs Debian's redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters (`--cluster-enabled yes`) joined by `redis-cli --cluster
/// create … --cluster-replicas 0`, once every slot is served.
pub fn redis_cluster(dir: &Path) -> Vec<Redis> {
    let nodes: Vec<Redis> = (0..3)
        .map(|i| {
            let d = dir.join(format!("node{i}"));
            Redis::start_with(
                &d,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    d.join("nodes.conf").to_str().unwrap(),
                ],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cluster create: {out:?}");
    let deadline = Instant::now() + REDIS_DEADLINE;
    while !nodes
        .iter()
        .all(|r| r.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the cluster never formed");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes
}
