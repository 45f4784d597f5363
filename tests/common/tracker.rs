//! The `ringtracker` binary as an operator runs it: start it with
//! arguments or a config file, read its log with deadlines, signal it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringtracker"))
}

/// Start the binary and read its log until it names its UDP address.
/// The caller owns the child and waits for it (a test that fails first
/// leaves it to `Tracker`'s drop, which kills it).
pub fn spawn(args: &[&str]) -> (Tracker, SocketAddr, Log) {
    let (child, udp, _, stderr) = spawn_both(args);
    (child, udp, stderr)
}

/// Like `spawn`, also waiting for (and returning) the HTTP address.
pub fn spawn_both(args: &[&str]) -> (Tracker, SocketAddr, SocketAddr, Log) {
    let t = start(bin().args(args), args.contains(&"--http"));
    (t.child, t.udp, t.http, t.stderr)
}

/// The socket address right after `needle` in a log line (human or JSON).
pub fn addr_after(line: &str, needle: &str) -> Option<SocketAddr> {
    let rest = line.split(needle).nth(1)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A tracker started by `start`.
pub struct Started {
    pub child: Tracker,
    pub udp: SocketAddr,
    /// The UDP address if HTTP was not asked for.
    pub http: SocketAddr,
    pub stderr: Log,
    /// The log up to the listening lines.
    pub early_log: String,
}

/// How long a test waits for a line of the tracker's log before it fails.
pub const LOG_DEADLINE: Duration = Duration::from_secs(60);

/// The tracker's log (its stderr), read line by line.
pub struct Log {
    lines: BufReader<std::process::ChildStderr>,
    pid: u32,
}

/// While it lives, a watchdog that SIGKILLs the tracker once `LOG_DEADLINE`
/// has passed: a read of its log that would block for good then sees the
/// log end, and the test fails instead of hanging CI. (It waits to fail,
/// never to pass.)
pub struct Deadline {
    _done: mpsc::Sender<()>,
}

impl Deadline {
    pub fn new(pid: u32) -> Deadline {
        let (done, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if wait.recv_timeout(LOG_DEADLINE) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        });
        Deadline { _done: done }
    }
}

impl Log {
    /// The next line, or `None` once the log ended (or its deadline passed).
    pub fn next_line(&mut self) -> Option<String> {
        let _deadline = Deadline::new(self.pid);
        let mut line = String::new();
        (self.lines.read_line(&mut line).unwrap_or(0) > 0).then_some(line)
    }

    /// Everything until the log ends (the tracker exited).
    pub fn rest(&mut self) -> String {
        let _deadline = Deadline::new(self.pid);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.lines, &mut rest);
        rest
    }
}

/// Start `cmd` (the binary with its arguments) and read its log until it
/// names its addresses.
#[allow(clippy::zombie_processes)]
pub fn start(cmd: &mut Command, wants_http: bool) -> Started {
    // Metrics on an ephemeral port: tests run side by side.
    let mut child = cmd
        .args(["--metrics", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = Log {
        lines: BufReader::new(child.stderr.take().unwrap()),
        pid: child.id(),
    };
    let mut early_log = String::new();
    let (mut udp, mut http) = (None, None);
    loop {
        let Some(line) = stderr.next_line() else {
            let status = child.wait();
            panic!("exited before listening: {status:?}\n{early_log}");
        };
        early_log.push_str(&line);
        udp = udp.or_else(|| addr_after(&line, "listening on udp "));
        http = http.or_else(|| addr_after(&line, "listening on http "));
        if let Some(u) = udp
            && (http.is_some() || !wants_http)
        {
            let http = http.unwrap_or(u);
            return Started {
                child: Tracker(child),
                udp: u,
                http,
                stderr,
                early_log,
            };
        }
    }
}

/// Send a signal to the tracker (the test's only way to talk to it as an
/// operator does).
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// Stop the tracker with `sig` and check it exits cleanly.
pub fn stop_with(child: &mut Child, sig: &str) {
    signal(child, sig);
    assert!(child.wait().unwrap().success(), "clean exit after {sig}");
}

/// Read log lines until one contains `needle` (the tracker says when a
/// reload is done, so the test waits on that line, not on a timer). Each
/// line is waited for at most `LOG_DEADLINE`.
pub fn wait_for_line(stderr: &mut Log, needle: &str) -> String {
    loop {
        let line = stderr
            .next_line()
            .unwrap_or_else(|| panic!("log ended (or stalled) before {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

pub fn start_with_config(
    config: &std::path::Path,
    extra: &[&str],
    env: Option<(&str, &str)>,
) -> Started {
    let mut cmd = bin();
    cmd.args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .args(extra);
    if !extra.contains(&"--workers") {
        cmd.args(["--workers", "1"]);
    }
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    start(&mut cmd, extra.contains(&"--http"))
}

/// The metrics listener's address, from the start-up log.
pub fn metrics_addr(t: &Started) -> SocketAddr {
    addr_after(&t.early_log, "metrics on http://").expect("metrics address logged")
}

/// One `Connection: close` GET; the whole reply as text.
pub fn http_get(addr: SocketAddr, target: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // Turns a missing reply into a failure instead of a hang.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// The tracker's process: killed when dropped, so a test that fails (or
/// forgets) does not leave a tracker running that holds ports and mounts.
pub struct Tracker(pub Child);

impl std::ops::Deref for Tracker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Tracker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
