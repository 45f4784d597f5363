//! The `ringtracker` binary as an operator runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringtracker"))
}

/// Start the binary and read its log until it names its UDP address.
/// The caller owns the child and waits for it.
fn spawn(args: &[&str]) -> (Child, SocketAddr, BufReader<std::process::ChildStderr>) {
    let (child, udp, _, stderr) = spawn_both(args);
    (child, udp, stderr)
}

/// Like `spawn`, also waiting for (and returning) the HTTP address.
#[allow(clippy::zombie_processes)]
fn spawn_both(
    args: &[&str],
) -> (
    Child,
    SocketAddr,
    SocketAddr,
    BufReader<std::process::ChildStderr>,
) {
    let mut child = bin()
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let (mut udp, mut http) = (None, None);
    let wants_http = args.contains(&"--http");
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("exited before listening: {status:?}");
        }
        if let Some(rest) = line.trim().split("listening on udp ").nth(1) {
            udp = Some(rest.parse().unwrap());
        }
        if let Some(rest) = line.trim().split("listening on http ").nth(1) {
            http = Some(rest.parse().unwrap());
        }
        if let Some(u) = udp
            && (http.is_some() || !wants_http)
        {
            let h = http.unwrap_or(u);
            return (child, u, h, stderr);
        }
    }
}

/// Send a signal to the tracker (the test's only way to talk to it as an
/// operator does).
fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// Stop the tracker with `sig` and check it exits cleanly.
fn stop_with(child: &mut Child, sig: &str) {
    signal(child, sig);
    assert!(child.wait().unwrap().success(), "clean exit after {sig}");
}

#[test]
fn print_config_prints_commented_defaults() {
    let out = bin().arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = [\"0.0.0.0:6969\"]"));
    assert!(text.contains("[tracker]") && text.contains("# Seconds clients are asked"));
    let dir = std::env::temp_dir().join(format!("rt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("printed.toml");
    std::fs::write(&path, &text).unwrap();
    let parsed = ringtracker::config::Config::from_file(&path).unwrap();
    assert_eq!(parsed, ringtracker::config::Config::default());
}

#[test]
fn unknown_config_key_is_a_one_line_error() {
    let dir = std::env::temp_dir().join(format!("rt-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[tracker]\ninterval = 900\nnumwant = 3\n").unwrap();
    let out = bin().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("numwant") && err.contains("line 3"), "{err}");
}

#[test]
fn bind_failure_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin()
        .args(["--udp", &addr, "--workers", "1", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_second_instance_on_the_same_http_port_is_refused() {
    let (mut first, _, http, _e) = spawn_both(&[
        "--udp",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--http",
        "127.0.0.1:0",
    ]);
    let out = bin()
        .args(["--udp", "127.0.0.1:0", "--http", &http.to_string()])
        .output()
        .unwrap();
    stop_with(&mut first, "-TERM");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("http {http}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn a_second_instance_on_the_same_port_is_refused() {
    // SO_REUSEPORT would let a second tracker join the first one's port and
    // take half its traffic; it must fail like any other bind conflict.
    let (mut first, addr, _stderr) = spawn(&[
        "--udp",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--http",
        "127.0.0.1:0",
    ]);
    let out = bin()
        .args([
            "--udp",
            &addr.to_string(),
            "--workers",
            "1",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    stop_with(&mut first, "-TERM");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&addr.to_string()) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let (mut child, addr, mut stderr) = spawn(&[
        "--udp",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--interval",
        "900",
        "--http",
        "127.0.0.1:0",
    ]);
    let mut c = common::Client::new("127.0.0.1:0", addr);
    let id = c.connect();
    assert_eq!(c.announce(id, [1; 20], 2, 0, -1, 1).interval, 900);
    stop_with(&mut child, "-TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn restarts_at_once_on_the_same_port() {
    // The ring must hand its sockets back before the process exits, or a
    // restarted tracker (systemd, an operator) finds the port taken.
    let (mut first, addr, _e) = spawn(&[
        "--udp",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--http",
        "127.0.0.1:0",
    ]);
    stop_with(&mut first, "-TERM");
    let (mut second, again, _e) = spawn(&[
        "--udp",
        &addr.to_string(),
        "--workers",
        "2",
        "--http",
        "127.0.0.1:0",
    ]);
    assert_eq!(again, addr);
    let mut c = common::Client::new("127.0.0.1:0", addr);
    c.connect();
    stop_with(&mut second, "-TERM");
}

#[test]
fn sigint_stops_it_too() {
    let (mut child, _, _stderr) =
        spawn(&["--udp", "[::1]:0", "--workers", "1", "--http", "[::1]:0"]);
    stop_with(&mut child, "-INT");
}

/// Read log lines until one contains `needle` (the tracker says when a
/// reload is done, so the test waits on that line, not on a timer).
fn wait_for_line(stderr: &mut BufReader<std::process::ChildStderr>, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "log ended before {needle:?}"
        );
        if line.contains(needle) {
            return line;
        }
    }
}

fn announce_outcome(c: &mut common::Client, id: u64, hash: [u8; 20]) -> Result<(), String> {
    let (_, p) = c.announce_packet(id, hash, 2, 0, -1, 6881);
    c.send(&p);
    let r = c.recv();
    match u32::from_be_bytes(r[..4].try_into().unwrap()) {
        1 => Ok(()),
        3 => Err(String::from_utf8_lossy(&r[8..]).into_owned()),
        a => panic!("unexpected action {a}"),
    }
}

#[test]
fn access_list_is_enforced_and_reloaded_on_sighup() {
    let dir = std::env::temp_dir().join(format!("rt-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("deny.txt");
    let config = dir.join("deny.toml");
    let (a, b) = ([0xaa; 20], [0xbb; 20]);
    std::fs::write(&list, "# refused\n".to_string() + &"aa".repeat(20) + "\n").unwrap();
    std::fs::write(
        &config,
        format!("[access]\nmode = \"deny\"\nlist = \"{}\"\n", list.display()),
    )
    .unwrap();
    let (mut child, addr, mut stderr) = spawn(&[
        "--config",
        config.to_str().unwrap(),
        "--udp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]);
    let mut c = common::Client::new("127.0.0.1:0", addr);
    let id = c.connect();
    let refused = announce_outcome(&mut c, id, a).unwrap_err();
    assert_eq!(refused, "torrent not allowed on this tracker");
    assert_eq!(announce_outcome(&mut c, id, b), Ok(()));

    // Refuse b instead of a, and reload.
    std::fs::write(&list, "bb".repeat(20) + "\n").unwrap();
    signal(&child, "-HUP");
    wait_for_line(&mut stderr, "access list reloaded (1 info hashes)");
    assert_eq!(announce_outcome(&mut c, id, a), Ok(()));
    assert!(announce_outcome(&mut c, id, b).is_err());

    // A malformed list is refused and the one in force stays.
    std::fs::write(&list, "bb".repeat(20) + "\nnot a hash\n").unwrap();
    signal(&child, "-HUP");
    let line = wait_for_line(&mut stderr, "access list not reloaded");
    assert!(line.contains("line 2"), "{line}");
    assert!(announce_outcome(&mut c, id, b).is_err());
    assert_eq!(announce_outcome(&mut c, id, a), Ok(()));

    stop_with(&mut child, "-TERM");
}

#[test]
fn a_malformed_access_list_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("rt-badlist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("allow.txt");
    std::fs::write(&list, "# ok\n\nzz\n").unwrap();
    let config = dir.join("allow.toml");
    std::fs::write(
        &config,
        format!(
            "[access]\nmode = \"allow\"\nlist = \"{}\"\n",
            list.display()
        ),
    )
    .unwrap();
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("allow.txt") && err.contains("line 3"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A UDP announce carrying `path` in BEP 41 URLData and the session's
/// running totals.
fn private_announce(
    c: &mut common::Client,
    id: u64,
    path: &str,
    event: u32,
    uploaded: u64,
    downloaded: u64,
) -> u32 {
    let (_, mut p) = c.announce_packet(id, [0xcc; 20], event, 100, -1, 6881);
    p[56..64].copy_from_slice(&downloaded.to_be_bytes());
    p[72..80].copy_from_slice(&uploaded.to_be_bytes());
    p.extend_from_slice(&[2, path.len() as u8]);
    p.extend_from_slice(path.as_bytes());
    c.send(&p);
    u32::from_be_bytes(c.recv()[..4].try_into().unwrap())
}

fn http_get(addr: SocketAddr, target: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn private_credits_reach_the_ledger_journal_at_stop() {
    let dir = std::env::temp_dir().join(format!("rt-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (keys, journal, config) = (
        dir.join("passkeys.txt"),
        dir.join("ledger.tsv"),
        dir.join("private.toml"),
    );
    let _ = std::fs::remove_file(&journal);
    std::fs::write(&keys, "aaaaaaaaaaaaaaaa1\nbbbbbbbbbbbbbbbb2\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[private]\nenabled = true\npasskeys = \"{}\"\nledger = \"{}\"\nledger_interval = 3600\n",
            keys.display(),
            journal.display()
        ),
    )
    .unwrap();
    let (mut child, udp, http, _stderr) = spawn_both(&[
        "--config",
        config.to_str().unwrap(),
        "--udp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--workers",
        "1",
    ]);
    // UDP, passkey in URLData: started at 0, then 1000 up / 400 down.
    let mut c = common::Client::new("127.0.0.1:0", udp);
    let id = c.connect();
    let key_a = "/aaaaaaaaaaaaaaaa1/announce";
    assert_eq!(private_announce(&mut c, id, key_a, 2, 0, 0), 1);
    assert_eq!(private_announce(&mut c, id, key_a, 0, 1000, 400), 1);
    // An unknown key is refused and credits nothing.
    assert_eq!(
        private_announce(&mut c, id, "/cccccccccccccccc3/announce", 0, 9, 9),
        3
    );
    // HTTP, passkey in the path.
    let hash = "%CC".repeat(20);
    let query = |event: &str, up: u64| {
        format!(
            "/bbbbbbbbbbbbbbbb2/announce?info_hash={hash}&peer_id=-qB4500-abcdefghijkl&port=7000&uploaded={up}&downloaded=0&left=0{event}"
        )
    };
    assert!(http_get(http, &query("&event=started", 0)).contains("8:completei"));
    assert!(http_get(http, &query("", 70)).contains("8:completei"));
    assert!(http_get(http, &query("&event=stopped", 75)).contains("8:completei"));

    stop_with(&mut child, "-TERM");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    lines.sort();
    let cc = "cc".repeat(20);
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0][1..], ["aaaaaaaaaaaaaaaa1", &cc, "1000", "400"]);
    assert_eq!(lines[1][1..], ["bbbbbbbbbbbbbbbb2", &cc, "75", "0"]);
    assert!(lines[0][0].parse::<u64>().unwrap() > 1_700_000_000);
    std::fs::remove_dir_all(&dir).unwrap();
}
