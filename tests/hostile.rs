//! What a legal but hostile client can do to the `ringtracker` binary over
//! loopback, and what it must not achieve: take memory without bound, or
//! service away from everybody else.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::tracker::*;

/// A config file in `dir` serving HTTP on an ephemeral loopback port, one
/// worker, with `extra` appended (TOML).
fn http_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("tracker.toml");
    std::fs::write(&path, format!("[http]\n{extra}\n")).unwrap();
    path
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let s: TcpStream = socket.into();
    // Turns a missing reply into a failure instead of a hang.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    common::read_http_response(s)
}

fn announce(hash: &str, port: u16, extra: &str) -> String {
    format!(
        "GET /announce?info_hash={hash}&peer_id=-XX0001-{port:012}&port={port}&left=1{extra} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
}

/// Pipeline `requests` on `s`, then read every answer.
fn pipeline(s: &mut TcpStream, requests: &[String]) {
    s.write_all(requests.concat().as_bytes()).unwrap();
    for _ in requests {
        let (head, _) = read_response(s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
}

/// Resident set size of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A counter's value in the /metrics text (the line starting with `series`).
fn metric(metrics: SocketAddr, series: &str) -> u64 {
    let text = http_get(metrics, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{text}")) as u64
}

/// Poll `done` until it holds; fail after a generous deadline.
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::yield_now();
    }
}

const HTTP_REQUESTS: &str = "ringtracker_requests_total{protocol=\"http\",type=\"request\"} ";

/// Write as much of `data` as the socket takes without blocking: a client
/// that pipelines and never reads.
fn write_what_fits(s: &TcpStream, data: &[u8]) {
    s.set_nonblocking(true).unwrap();
    let mut s = s;
    let mut rest = data;
    while !rest.is_empty() {
        match s.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
}

#[test]
fn pipelining_clients_that_never_read_pin_a_bounded_buffer_each() {
    let dir = common::fresh_dir("pipeline");
    let config = http_config(&dir, "full_scrape = true\n[server]\nworkers = 1");
    let mut t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
    let metrics = metrics_addr(&t);
    // 2,000 torrents (a full scrape of ~100 KB) and a swarm of 200 peers
    // (a 200-peer dictionary answer of ~15 KB).
    let mut filler = connect_from([127, 0, 0, 2], t.http);
    for chunk in (0..2000).collect::<Vec<u32>>().chunks(100) {
        let requests: Vec<String> = chunk
            .iter()
            .map(|i| announce(&format!("{i:020}"), 1000, ""))
            .collect();
        pipeline(&mut filler, &requests);
    }
    let big = "b".repeat(20);
    let swarm: Vec<String> = (0..200).map(|p| announce(&big, 2000 + p, "")).collect();
    pipeline(&mut filler, &swarm);
    let filled = 2000 + 200;
    let before = rss(t.child.id());

    // 300 clients pipeline ~36 KB of requests each and never read: half
    // full scrapes, half 200-peer announces as dictionaries.
    let scrapes = "GET /scrape HTTP/1.1\r\nHost: t\r\n\r\n".repeat(36 * 1024 / 34);
    let announces =
        announce(&big, 9, "&compact=0&numwant=200").repeat(36 * 1024 / (big.len() + 110));
    let mut hostile = Vec::new();
    for i in 0..300u32 {
        let from = [127, 0, 1, 2 + (i % 10) as u8];
        let s = connect_from(from, t.http);
        let load = if i % 2 == 0 { &scrapes } else { &announces };
        write_what_fits(&s, load.as_bytes());
        hostile.push(s);
    }
    // Every hostile connection has had answers written for it.
    poll_until("each hostile client answered once", || {
        metric(metrics, HTTP_REQUESTS) >= filled + 300
    });
    // A fresh client is answered meanwhile, and memory stays bounded: at
    // most 256 KiB per hostile connection (docs/ARCHITECTURE.md: the write
    // buffer holds at most 64 KiB plus one answer, and may have grown to
    // twice that; the read buffer is 9 KiB).
    let bound = 300 * 256 * 1024;
    for round in 0..20 {
        let mut fresh = connect_from([127, 0, 0, 3], t.http);
        pipeline(&mut fresh, &[announce(&big, 3, "")]);
        let grown = rss(t.child.id()).saturating_sub(before);
        assert!(
            grown <= bound,
            "round {round}: RSS grew by {grown} bytes, over {bound}"
        );
    }
    // The hostile clients are still served once they read: each gets
    // whole, well-formed answers.
    for s in hostile.iter_mut().take(4) {
        s.set_nonblocking(false).unwrap();
        let (head, body) = read_response(s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.starts_with(b"d"), "{}", String::from_utf8_lossy(&body));
    }
    drop(hostile);
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether the tracker closed `s` without a word (read: end or reset; a
/// read that times out means it is still open).
fn closed_at_once(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn one_address_cannot_take_every_connection_slot() {
    let dir = common::fresh_dir("per-ip");
    let config = http_config(&dir, "max_connections_per_ip = 4");
    // Two workers: the cap holds over both (the kernel spreads connections).
    let mut t = start_with_config(&config, &["--http", "127.0.0.1:0", "--workers", "2"], None);
    let metrics = metrics_addr(&t);
    let hog = [127, 0, 2, 2];
    // Four connections that trickle a never-finished head: each is open.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect_from(hog, t.http);
            s.write_all(b"GET /ann").unwrap();
            s
        })
        .collect();
    poll_until("four connections counted", || {
        metric(
            metrics,
            "ringtracker_http_connections_total{protocol=\"http\"} ",
        ) >= 4
    });
    // A fifth from the same address is closed at once, and counted.
    let mut fifth = connect_from(hog, t.http);
    assert!(closed_at_once(&mut fifth));
    assert_eq!(
        metric(
            metrics,
            "ringtracker_drops_total{protocol=\"http\",reason=\"over_address_cap\"} "
        ),
        1
    );
    // Another address is served meanwhile.
    let mut other = connect_from([127, 0, 2, 3], t.http);
    pipeline(&mut other, &[announce(&"o".repeat(20), 7, "")]);
    // Once one of the four has gone, the address may connect again.
    drop(held.pop());
    poll_until("a slot freed for the address", || {
        let mut s = connect_from(hog, t.http);
        s.write_all(announce(&"h".repeat(20), 8, "").as_bytes())
            .is_ok()
            && answered(&mut s)
    });
    drop(held);
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether the tracker answers the request sent on `s` (else it closed
/// the connection without a word).
fn answered(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 12];
    match s.read(&mut b) {
        Ok(n) if n > 0 => {
            assert!(b"HTTP/1.1 200".starts_with(&b[..n]));
            true
        }
        _ => false,
    }
}

#[test]
fn trickling_clients_do_not_hold_up_health_checks() {
    let dir = common::fresh_dir("metrics-trickle");
    let config = http_config(&dir, "listen = []");
    let mut t = start_with_config(&config, &[], None);
    let metrics = metrics_addr(&t);
    // Twenty clients each keep a request head going, a byte at a time.
    let mut trickling: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(metrics).unwrap();
            s.write_all(b"GET /hea").unwrap();
            s
        })
        .collect();
    for _ in 0..10 {
        for s in &mut trickling {
            s.write_all(b"l").unwrap();
        }
        let reply = http_get(metrics, "/health");
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    }
    // A head never finished is closed at its deadline, bytes or not.
    let s = &mut trickling[0];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    assert!(s.read_to_end(&mut rest).is_ok() && rest.is_empty());
    drop(trickling);
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Start with `config` and return the one-line error it stops with.
fn refused_start(config: &std::path::Path) -> String {
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "must refuse to start");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn list_files_are_regular_files_within_their_bounds() {
    let dir = common::fresh_dir("list-bounds");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let hash = "ab".repeat(20);
    let big = dir.join("big.txt");
    std::fs::write(&big, format!("{hash}\n").repeat(50)).unwrap();
    let key = "abcdef0123456789";
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, format!("{key}\n{key}x\n{key}y\n")).unwrap();
    let cases = [
        // (file setting, limits, what the one-line error must say)
        (
            format!("[access]\nmode = \"allow\"\nlist = {fifo:?}"),
            "a FIFO, not a regular file",
        ),
        (
            "[access]\nbanned = \"/dev/zero\"".to_string(),
            "a device, not a regular file",
        ),
        (
            format!("[access]\nmode = \"deny\"\nlist = {big:?}\nmax_list_bytes = 1024"),
            "larger than 1024 bytes (access.max_list_bytes)",
        ),
        (
            format!(
                "[access]\nmax_list_entries = 2\n[private]\nenabled = true\npasskeys = {keys:?}"
            ),
            "line 3: more than 2 entries (access.max_list_entries)",
        ),
    ];
    for (i, (settings, expected)) in cases.iter().enumerate() {
        let config = dir.join(format!("case{i}.toml"));
        std::fs::write(&config, format!("{settings}\n[http]\nlisten = []\n")).unwrap();
        let err = refused_start(&config);
        assert!(err.contains(expected), "case {i}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fifo_swapped_in_for_the_list_is_refused_by_a_reload() {
    let dir = common::fresh_dir("list-reload");
    let list = dir.join("deny.txt");
    let denied = [7u8; 20];
    std::fs::write(&list, format!("{}\n", "07".repeat(20))).unwrap();
    let config = dir.join("deny.toml");
    std::fs::write(
        &config,
        format!("[access]\nmode = \"deny\"\nlist = {list:?}\n[http]\nlisten = []\n"),
    )
    .unwrap();
    let mut t = start_with_config(&config, &[], None);
    std::fs::remove_file(&list).unwrap();
    mkfifo(&list);
    signal(&t.child, "-HUP");
    let line = wait_for_line(&mut t.stderr, "access list not reloaded");
    assert!(line.contains("a FIFO, not a regular file"), "{line}");
    // The old list is still in force, and the tracker serves.
    let mut c = common::Client::new("127.0.0.1:0", t.udp);
    let id = c.connect();
    let (_, p) = c.announce_packet(id, denied, 2, 0, -1, 6881);
    c.send(&p);
    let reply = c.recv();
    assert_eq!(&reply[..4], &3u32.to_be_bytes(), "denied by the old list");
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bytes `pid` has read so far (/proc/PID/io `rchar`).
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn sigterm_stops_a_start_that_is_reading_a_large_list() {
    let dir = common::fresh_dir("list-sigterm");
    let list = dir.join("allow.txt");
    let lines: String = (0..4_000_000u64)
        .map(|i| format!("{:040x}\n", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    std::fs::write(&list, &lines).unwrap();
    let config = dir.join("allow.toml");
    std::fs::write(
        &config,
        format!("[access]\nmode = \"allow\"\nlist = {list:?}\n[http]\nlisten = []\n"),
    )
    .unwrap();
    let mut child = bin()
        .args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the list is read, it is being parsed: SIGTERM now.
    poll_until("the list read", || {
        bytes_read(child.id()) >= lines.len() as u64
    });
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    // Stopped by the signal itself, before serving: not at the end of a
    // start that ignored it.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status:?}\n{log}");
    assert!(!log.contains("listening"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (in parentheses): state is field 3, utime 14.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, the HTTP worker neither spins nor stops
/// accepting: its listener pauses a tick at a time, and the connections
/// waiting in the backlog are served once descriptors are free again.
/// (The tracker runs with 64 descriptors and its start-up check of the
/// limit off, as a tracker whose descriptors went elsewhere would.)
fn out_of_file_descriptors(backend: &str) {
    let dir = common::fresh_dir(&format!("emfile-{backend}"));
    let config = http_config(&dir, &format!("backend = \"{backend}\""));
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=64:64")
        .arg(env!("CARGO_BIN_EXE_ringtracker"))
        .args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0", "--workers", "1"])
        .env("RINGTRACKER_TEST_NOFILE_UNCHECKED", "1");
    let mut t = start(&mut cmd, true);
    let pid = t.child.id();
    let request = announce(&"e".repeat(20), 1, "");
    let conns: Vec<TcpStream> = (0..90)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 1], t.http);
            s.write_all(request.as_bytes()).unwrap();
            s
        })
        .collect();
    wait_for_line(&mut t.stderr, "accepting connections fails");
    let (ticks, at) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2)); // the window CPU is measured over
    let used = (cpu_ticks(pid) - ticks) as f64 / 100.0;
    let wall = at.elapsed().as_secs_f64();
    assert!(
        used < wall / 2.0,
        "{used:.2} s of CPU in {wall:.2} s while out of descriptors"
    );
    // The answered connections close, and every other one is answered as
    // descriptors come free (each closed after its answer).
    let (answered, waiting): (Vec<TcpStream>, Vec<TcpStream>) = conns.into_iter().partition(|s| {
        s.set_nonblocking(true).unwrap();
        let ready = s.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0);
        s.set_nonblocking(false).unwrap();
        ready
    });
    assert!(
        !answered.is_empty() && !waiting.is_empty(),
        "{}",
        answered.len()
    );
    drop(answered);
    for mut s in waiting {
        let (head, _) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    wait_for_line(&mut t.stderr, "accepting connections again");
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn out_of_file_descriptors_io_uring() {
    out_of_file_descriptors("io_uring");
}

#[test]
fn out_of_file_descriptors_epoll() {
    out_of_file_descriptors("epoll");
}

/// `ringtracker` with `args`, its open-file limit (soft and hard) at
/// `limit` and CAP_SYS_RESOURCE dropped, so it may not raise the limit.
fn under_fd_limit(limit: u32, config: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--bounding-set",
        "-sys_resource",
        "--inh-caps",
        "-sys_resource",
    ])
    .args(["prlimit", &format!("--nofile={limit}:{limit}")])
    .arg(env!("CARGO_BIN_EXE_ringtracker"))
    .args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
    .args(["--http", "127.0.0.1:0", "--workers", "2"]);
    cmd
}

#[test]
fn connections_the_open_file_limit_cannot_carry() {
    let dir = common::fresh_dir("nofile");
    // The operator's own cap that cannot fit is a start-up error naming
    // both numbers.
    let config = http_config(&dir, "max_connections = 5000");
    let out = under_fd_limit(2000, &config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("(5000 × 2) needs 11024 open files") && err.contains("RLIMIT_NOFILE is 2000"),
        "{err}"
    );
    // The default cap is lowered to what fits, with one warning, and the
    // tracker serves.
    let config = http_config(&dir, "");
    let mut t = start(&mut under_fd_limit(2000, &config), true);
    assert!(
        t.early_log
            .contains("each worker takes at most 488 connections"),
        "{}",
        t.early_log
    );
    let mut s = connect_from([127, 0, 0, 1], t.http);
    pipeline(&mut s, &[announce(&"f".repeat(20), 1, "")]);
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}
