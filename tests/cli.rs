//! The `ringtracker` binary as an operator runs it.

mod common;

use common::tls::{TlsStream, tls_client};

use std::net::{SocketAddr, UdpSocket};

use common::tracker::*;

#[test]
fn print_config_prints_commented_defaults() {
    let out = bin().arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = [\"0.0.0.0:6969\"]"));
    assert!(text.contains("[tracker]") && text.contains("# Seconds clients are asked"));
    let dir = common::fresh_dir("cli");
    let path = dir.join("printed.toml");
    std::fs::write(&path, &text).unwrap();
    let parsed = ringtracker::config::Config::from_file(&path).unwrap();
    assert_eq!(parsed, ringtracker::config::Config::default());
}

#[test]
fn unknown_config_key_is_a_one_line_error() {
    let dir = common::fresh_dir("cli-bad");
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
    let interval = c.announce(id, [1; 20], 2, 0, -1, 1).interval;
    assert!(
        (810..=900).contains(&interval),
        "--interval 900, jitter 0.1: {interval}"
    );
    stop_with(&mut child, "-TERM");
    let rest = stderr.rest();
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

/// A free loopback port for TCP and UDP both (taken, then let go).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn restarts_at_once_after_sigkill_on_the_same_ports() {
    // A supervisor without a delay restarts the tracker the moment the
    // killed one is reaped; io_uring may hold its sockets a few
    // milliseconds longer. The new one waits for them, bounded.
    let port = free_port();
    let udp = format!("127.0.0.1:{port}");
    let args = ["--udp", &udp, "--http", &udp, "--workers", "2"];
    let (mut t, addr, http, _e) = spawn_both(&args);
    for _ in 0..5 {
        let mut open = std::net::TcpStream::connect(http).unwrap();
        std::io::Write::write_all(&mut open, b"GET /ann").unwrap();
        signal(&t, "-KILL");
        t.wait().unwrap();
        let (next, again, http_again, _e) = spawn_both(&args);
        assert_eq!((again, http_again), (addr, http));
        let mut c = common::Client::new("127.0.0.1:0", addr);
        c.connect();
        drop(open);
        t = next;
    }
    stop_with(&mut t, "-TERM");
}

#[test]
fn sigint_stops_it_too() {
    let (mut child, _, _stderr) =
        spawn(&["--udp", "[::1]:0", "--workers", "1", "--http", "[::1]:0"]);
    stop_with(&mut child, "-INT");
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
    let dir = common::fresh_dir("access");
    let list = dir.join("deny.txt");
    let config = dir.join("deny.toml");
    let (a, b) = ([0xaa; 20], [0xbb; 20]);
    std::fs::write(&list, "# refused\n".to_string() + &"aa".repeat(20) + "\n").unwrap();
    std::fs::write(
        &config,
        format!("[access]\nmode = \"deny\"\nlist = \"{}\"\n", list.display()),
    )
    .unwrap();
    let Started {
        mut child,
        udp: addr,
        mut stderr,
        ..
    } = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
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
    let dir = common::fresh_dir("badlist");
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

#[test]
fn private_credits_reach_the_passkey_journal_at_stop() {
    let dir = common::fresh_dir("ledger");
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
    // Keep the log pipe open until the tracker exits.
    let Started {
        mut child,
        udp,
        http,
        stderr: _log,
        ..
    } = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
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
    // One batch: number, time, passkey, torrent, uploaded, downloaded.
    assert_eq!(lines[0][2..], ["aaaaaaaaaaaaaaaa1", &cc, "1000", "400"]);
    assert_eq!(lines[1][2..], ["bbbbbbbbbbbbbbbb2", &cc, "75", "0"]);
    assert_eq!((lines[0][0], lines[1][0]), ("1", "1"));
    assert!(lines[0][1].parse::<u64>().unwrap() > 1_700_000_000);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn snapshot_config(
    dir: &std::path::Path,
    interval: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let snap = dir.join("swarms.snap");
    let config = dir.join("snap.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = []\n[storage]\nsnapshot = \"{}\"\nsnapshot_interval = {interval}\n",
            snap.display()
        ),
    )
    .unwrap();
    (snap, config)
}

#[test]
fn swarms_come_back_after_a_restart() {
    let dir = common::fresh_dir("restart");
    let (snap, config) = snapshot_config(&dir, 3600);
    let mut t = start_with_config(&config, &[], None);
    assert!(!t.early_log.contains("snapshot loaded"), "none yet");
    let (a, b) = ([0xa1; 20], [0xb2; 20]);
    let mut seeder = common::Client::new("127.0.0.2:0", t.udp);
    let id = seeder.connect();
    seeder.announce(id, a, 2, 0, 0, 7001);
    seeder.announce(id, b, 2, 0, 0, 7001);
    let mut leecher = common::Client::new("127.0.0.3:0", t.udp);
    let id = leecher.connect();
    leecher.announce(id, a, 2, 100, 0, 7002);
    leecher.announce(id, a, 1, 0, 0, 7002); // completed
    let before = leecher.scrape(id, &[a, b]);
    assert_eq!(before, vec![(2, 1, 0), (1, 0, 0)]);
    stop_with(&mut t.child, "-TERM");
    assert!(snap.exists());

    let mut t = start_with_config(&config, &[], None);
    assert!(
        t.early_log
            .contains("2 torrents, 3 peers (0 expired while down)"),
        "{}",
        t.early_log
    );
    let mut c = common::Client::new("127.0.0.4:0", t.udp);
    let id = c.connect();
    assert_eq!(c.scrape(id, &[a, b]), before);
    let reply = c.announce(id, a, 2, 100, 50, 7003);
    let mut peers: Vec<String> = reply.peers.iter().map(|p| p.to_string()).collect();
    peers.sort();
    assert_eq!(peers, ["127.0.0.2:7001", "127.0.0.3:7002"]);
    stop_with(&mut t.child, "-TERM");
    // The previous snapshot is kept beside the new one.
    assert!(dir.join("swarms.snap.prev").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A torrent's completed count outlives its last peer, and a restart from
/// the snapshot; its next peer takes it back and counts on.
#[test]
fn completed_counts_outlive_their_swarm_and_a_restart() {
    let dir = common::fresh_dir("idle-counts");
    let (_, config) = snapshot_config(&dir, 3600);
    let mut t = start_with_config(&config, &[], None);
    let (done, never) = ([0xc3; 20], [0xd4; 20]);
    let mut c = common::Client::new("127.0.0.5:0", t.udp);
    let id = c.connect();
    c.announce(id, done, 2, 100, 0, 7001); // started
    c.announce(id, done, 1, 0, 0, 7001); // completed
    c.announce(id, never, 2, 0, 0, 7001);
    assert_eq!(c.scrape(id, &[done, never]), vec![(1, 1, 0), (1, 0, 0)]);
    c.announce(id, done, 3, 0, 0, 7001); // stopped: the swarm is gone
    c.announce(id, never, 3, 0, 0, 7001);
    assert_eq!(c.scrape(id, &[done, never]), vec![(0, 1, 0), (0, 0, 0)]);
    stop_with(&mut t.child, "-TERM");

    let mut t = start_with_config(&config, &[], None);
    assert!(
        t.early_log.contains(
            "0 torrents, 0 peers (0 expired while down), 1 idle torrents' completed counts"
        ),
        "{}",
        t.early_log
    );
    let mut c = common::Client::new("127.0.0.6:0", t.udp);
    let id = c.connect();
    assert_eq!(c.scrape(id, &[done, never]), vec![(0, 1, 0), (0, 0, 0)]);
    c.announce(id, done, 2, 100, 0, 7002);
    c.announce(id, done, 1, 0, 0, 7002);
    assert_eq!(c.scrape(id, &[done]), vec![(1, 2, 0)]);
    let metrics = common::tracker::http_get(common::tracker::metrics_addr(&t), "/metrics");
    assert!(
        metrics.contains("ringtracker_idle_torrents_evicted_total 0"),
        "{metrics}"
    );
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A .torrent of one 16 KiB file announcing to `url` (the piece hash is
/// made up: the clients only need to announce).
fn torrent_file(url: &str, name: &str) -> Vec<u8> {
    let mut t = format!("d8:announce{}:{url}4:infod6:lengthi16384e", url.len()).into_bytes();
    t.extend_from_slice(format!("4:name{}:{name}", name.len()).as_bytes());
    t.extend_from_slice(b"12:piece lengthi16384e6:pieces20:");
    t.extend_from_slice(&[0x5a; 20]);
    t.extend_from_slice(b"ee");
    t
}

/// Real Transmission (over UDP) and aria2 (over HTTP) clients announce,
/// and each is counted under its own name.
#[test]
fn transmission_and_aria2_are_counted_by_client() {
    use std::process::{Command, Stdio};
    let dir = common::fresh_dir("real-clients");
    let config = dir.join("c.toml");
    std::fs::write(&config, "").unwrap();
    let mut t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
    let udp_url = format!("udp://{}/announce", t.udp);
    let http_url = format!("http://{}/announce", t.http);
    std::fs::write(dir.join("tr.torrent"), torrent_file(&udp_url, "tr.bin")).unwrap();
    std::fs::write(dir.join("a2.torrent"), torrent_file(&http_url, "a2.bin")).unwrap();
    let spawn = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("make test installs transmission-cli and aria2")
    };
    let d = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut transmission = spawn(Command::new("transmission-cli").args([
        "-g",
        &d("tr-config"),
        "-w",
        &d("tr-data"),
        "-p",
        &free_port().to_string(),
        "-M",
        &d("tr.torrent"),
    ]));
    let mut aria2 = spawn(Command::new("aria2c").args([
        &format!("--dir={}", d("a2-data")),
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        &format!("--listen-port={}", free_port()),
        "--seed-time=0",
        &d("a2.torrent"),
    ]));
    let metrics = common::tracker::metrics_addr(&t);
    let count = |client: &str| {
        let text = common::tracker::http_get(metrics, "/metrics");
        let series = format!("ringtracker_announces_by_client_total{{client=\"{client}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count("Transmission") == 0 || count("aria2") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "Transmission {} aria2 {}",
            count("Transmission"),
            count("aria2")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count("other"), 0, "nobody else announced");
    for child in [&mut transmission, &mut aria2] {
        let _ = child.kill();
        let _ = child.wait();
    }
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_killed_mid_write_leaves_a_loadable_file() {
    use ringtracker::storage::snapshot::{Snapshot, sibling};
    let dir = common::fresh_dir("kill");
    // A snapshot every second; the second write of each run stops halfway
    // (test hook) and the tracker is killed right there.
    let (snap, config) = snapshot_config(&dir, 1);
    let mut on_disk = None;
    for round in 0..4u8 {
        let mut t = start_with_config(&config, &[], Some(("RINGTRACKER_TEST_STALL_SNAPSHOT", "2")));
        if let Some(torrents) = on_disk {
            // Exactly what the last complete write held is back.
            let loaded = format!(".snap: {torrents} torrents, ");
            assert!(
                t.early_log.contains(&loaded),
                "round {round}: {}",
                t.early_log
            );
        }
        let mut c = common::Client::new("127.0.0.5:0", t.udp);
        let id = c.connect();
        // Many torrents so that the halfway point of a write holds some.
        for i in 0..=255u8 {
            let mut hash = [round; 20];
            hash[0] = i;
            c.announce(id, hash, 2, 0, 0, 6881);
        }
        wait_for_line(&mut t.stderr, "snapshot written");
        wait_for_line(&mut t.stderr, "snapshot write stalled halfway");
        t.child.kill().unwrap();
        t.child.wait().unwrap();
        // The half-written temporary is there and refused; the snapshot
        // itself loads.
        assert!(Snapshot::read(&sibling(&snap, "tmp")).is_err());
        let s = Snapshot::read(&snap).unwrap().expect("a snapshot");
        assert!(s.torrents <= 256 * (u64::from(round) + 1));
        on_disk = Some(s.torrents);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_snapshot_stops_the_start_unless_discarded() {
    let dir = common::fresh_dir("badsnap");
    let (snap, config) = snapshot_config(&dir, 3600);
    std::fs::write(&snap, b"not a snapshot at all").unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(snap.to_str().unwrap()), "{err}");
    assert!(err.contains("not a ringtracker snapshot"), "{err}");
    assert!(err.contains("--discard-bad-snapshot"), "{err}");
    assert_eq!(std::fs::read(&snap).unwrap(), b"not a snapshot at all");

    let mut t = start_with_config(&config, &["--discard-bad-snapshot"], None);
    assert!(t.early_log.contains("starting empty"), "{}", t.early_log);
    assert_eq!(bad_files(&dir), [b"not a snapshot at all".to_vec()]);
    stop_with(&mut t.child, "-TERM");
    // A second bad file is kept beside the first, not over it.
    std::fs::write(&snap, b"garbage again").unwrap();
    let mut t = start_with_config(&config, &["--discard-bad-snapshot"], None);
    stop_with(&mut t.child, "-TERM");
    let mut kept = bad_files(&dir);
    kept.sort();
    assert_eq!(
        kept,
        [b"garbage again".to_vec(), b"not a snapshot at all".to_vec()]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The contents of every `swarms.snap.bad.*` file in `dir`.
fn bad_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("swarms.snap.bad."))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// With the snapshot unreadable, `--discard-bad-snapshot` loads the one
/// before it (`PATH.prev`) rather than starting empty.
#[test]
fn a_bad_snapshot_is_replaced_by_the_previous_one() {
    let dir = common::fresh_dir("prevsnap");
    let (snap, config) = snapshot_config(&dir, 3600);
    let hash = [0xc3; 20];
    for round in 0..2 {
        // Two clean stops: the second writes PATH and keeps the first as
        // PATH.prev.
        let mut t = start_with_config(&config, &[], None);
        let mut c = common::Client::new("127.0.0.5:0", t.udp);
        let id = c.connect();
        c.announce(id, hash, 2, 0, 0, 7100 + round);
        stop_with(&mut t.child, "-TERM");
    }
    std::fs::write(&snap, b"torn").unwrap();
    let mut t = start_with_config(&config, &["--discard-bad-snapshot"], None);
    assert!(
        t.early_log.contains("loading the previous snapshot"),
        "{}",
        t.early_log
    );
    let mut c = common::Client::new("127.0.0.6:0", t.udp);
    let id = c.connect();
    assert_eq!(
        c.scrape(id, &[hash])[0].0,
        1,
        "the seeder of the previous snapshot"
    );
    stop_with(&mut t.child, "-TERM");
    assert_eq!(bad_files(&dir), [b"torn".to_vec()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The metrics listener's address from the start-up log.
fn announce_n(udp: SocketAddr, n: u8) {
    let mut c = common::Client::new("127.0.0.6:0", udp);
    let id = c.connect();
    for i in 0..n {
        c.announce(id, [i + 1; 20], 2, 0, 0, 6881);
    }
}

#[test]
fn metrics_health_and_stats_data_over_http() {
    let mut t = start(
        bin().args([
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--workers",
            "1",
        ]),
        true,
    );
    let m = metrics_addr(&t);
    announce_n(t.udp, 3);
    let metrics = http_get(m, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"));
    for line in [
        "ringtracker_responses_total{protocol=\"udp\",type=\"announce\"} 3",
        "ringtracker_responses_total{protocol=\"udp\",type=\"connect\"} 1",
        "ringtracker_requests_total{protocol=\"http\",type=\"announce\"} 0",
        "ringtracker_drops_total{protocol=\"udp\",reason=\"bad_connection_id\"} 0",
        "# TYPE ringtracker_seeders gauge",
        "ringtracker_torrents{family=\"ipv6\"} 0",
        "ringtracker_up 1",
        "ringtracker_error_responses_total{protocol=\"udp\",reason=\"unknown_passkey\"} 0",
        "ringtracker_io_uring_events_total{protocol=\"udp\",event=\"sqe_submitted\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for line in metrics.split("\r\n\r\n").nth(1).unwrap().lines() {
        if !line.starts_with('#') {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    let health = http_get(m, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"),
        "{health}"
    );
    let json = http_get(m, "/stats.json");
    assert!(json.contains("\"now\":["), "{json}");
    assert!(json.contains(",3,3,"), "3 announces, 3 torrents: {json}");
    assert!(http_get(m, "/nope").starts_with("HTTP/1.1 404"));
    assert!(http_get(m, "/").contains("<svg id=\"chart-announces\""));
    stop_with(&mut t.child, "-TERM");
}

#[test]
fn announces_are_counted_by_client_software() {
    let mut t = start(
        bin().args([
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--workers",
            "1",
        ]),
        true,
    );
    let mut c = common::Client::new("127.0.0.6:0", t.udp);
    let id = c.connect();
    let peer_ids: [&[u8; 20]; 7] = [
        b"-TR4060-abcdefghijkl",
        b"-TR3000-abcdefghijkl",
        b"A2-1-37-0-abcdefghij",
        b"-qB5010-abcdefghijkl",
        b"\x00garbage-peer-id-xyz",
        b"-AG2000-abcdefghijkl",
        b"-A~0100-abcdefghijkl",
    ];
    for (i, peer_id) in peer_ids.iter().enumerate() {
        let (_, mut p) = c.announce_packet(id, [7; 20], 2, 0, 0, 7000 + i as u16);
        p[36..56].copy_from_slice(*peer_id);
        c.send(&p);
        assert_eq!(c.recv()[..4], 1u32.to_be_bytes(), "an announce reply");
    }
    let target = format!(
        "/announce?info_hash={}&peer_id=-LT2090-abcdefghijkl&port=7100&left=0",
        "%07".repeat(20)
    );
    assert!(http_get(t.http, &target).contains("8:intervali"));
    let metrics = http_get(metrics_addr(&t), "/metrics");
    for line in [
        "ringtracker_announces_by_client_total{client=\"Transmission\"} 2",
        "ringtracker_announces_by_client_total{client=\"aria2\"} 1",
        "ringtracker_announces_by_client_total{client=\"qBittorrent\"} 1",
        "ringtracker_announces_by_client_total{client=\"libtorrent\"} 1",
        "ringtracker_announces_by_client_total{client=\"other\"} 1",
        "ringtracker_announces_by_client_total{client=\"Ares\"} 2",
        "ringtracker_announces_by_client_total{client=\"Vuze\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // One series per name (Ares has two codes), every name always there.
    assert_eq!(metrics.matches("{client=\"Ares\"}").count(), 1);
    let stats = http_get(metrics_addr(&t), "/stats.json");
    assert!(
        stats.contains("\"clients\":[[\"Ares\",2],[\"Transmission\",2],"),
        "{stats}"
    );
    stop_with(&mut t.child, "-TERM");
}

#[test]
fn the_stats_page_renders_its_charts_in_a_real_browser() {
    let mut t = start(
        bin().args(["--udp", "127.0.0.1:0", "--workers", "1"]),
        false,
    );
    let m = metrics_addr(&t);
    announce_n(t.udp, 4);
    let profile = common::fresh_dir("chromium");
    let dom = common::browser_dom(&format!("http://{m}/"), &profile);
    assert!(dom.contains("id=\"announces-total\">4<"), "{dom}");
    assert!(dom.contains("id=\"torrents-now\">4<"), "{dom}");
    // Both charts drew their series from the tracker's numbers.
    for chart in ["chart-announces", "chart-swarms"] {
        let at = dom.find(&format!("id=\"{chart}\"")).unwrap();
        let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
        assert!(!svg.contains("data-points=\"0\""), "{svg}");
        assert!(svg.contains("<polyline class="), "{svg}");
    }
    assert!(
        dom.contains("class=\"torrents series\"") && dom.contains("data-last=\"4\""),
        "{dom}"
    );
    // The test client's peer ids name no client in the table.
    assert!(
        dom.contains("<td>other</td><td class=\"n\">4</td>"),
        "{dom}"
    );
    stop_with(&mut t.child, "-TERM");
    let _ = std::fs::remove_dir_all(&profile);
}

#[test]
fn logs_as_json_objects_on_request() {
    let mut t = start(
        bin().args(["--udp", "127.0.0.1:0", "--log-format", "json"]),
        false,
    );
    for line in t.early_log.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains("\"level\":\"INFO\""), "{line}");
    }
    assert!(
        t.early_log
            .contains("\"message\":\"listening on udp 127.0.0.1:")
    );
    stop_with(&mut t.child, "-TERM");
}

#[test]
fn root_is_dropped_after_binding() {
    let dir = common::fresh_dir("user");
    let config = dir.join("user.toml");
    std::fs::write(&config, "[process]\nuser = \"nobody\"\n").unwrap();
    let mut t = start_with_config(&config, &["--workers", "2"], None);
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.child.id())).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    let we_are_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if we_are_root {
        assert!(
            t.early_log.contains("running as user nobody"),
            "{}",
            t.early_log
        );
        // Real, effective, saved and filesystem uid, in every thread.
        for task in std::fs::read_dir(format!("/proc/{}/task", t.child.id())).unwrap() {
            let s = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            let uids = s.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert!(uids.split_whitespace().skip(1).all(|u| u != "0"), "{uids}");
        }
    } else {
        assert!(
            t.early_log.contains("ignored: not started as root"),
            "{uid_line}"
        );
    }
    // Still serving.
    let mut c = common::Client::new("127.0.0.7:0", t.udp);
    c.connect();
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A self-signed certificate for "localhost": (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

/// A fresh self-signed certificate and key written to `dir`: (the
/// certificate's PEM, its path, the key's path).
fn write_self_signed(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = self_signed();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    (cert, cert_path, key_path)
}

/// One keep-alive announce over an open TLS stream; returns the body.
fn https_announce(s: &mut TlsStream, port: u16) -> Vec<u8> {
    use std::io::Write;
    let hash = "%DD".repeat(20);
    write!(
        s,
        "GET /announce?info_hash={hash}&peer_id=-qB4500-abcdefghijkl&port={port}&uploaded=0&downloaded=0&left=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    https_response(s)
}

/// Read one 200 response; returns its body.
fn https_response(s: &mut TlsStream) -> Vec<u8> {
    let (head, body) = common::read_http_response(s);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body
}

#[test]
fn https_answers_of_more_than_64_kib_arrive_whole() {
    use std::io::Write;
    let dir = common::fresh_dir("tls-big");
    let (cert, cert_path, key_path) = write_self_signed(&dir);
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!("[http]\nlisten = []\n[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n"),
    )
    .unwrap();
    let mut t = start_with_config(&config, &["--https", "127.0.0.1:0"], None);
    let https = addr_after(&t.early_log, "listening on https ").expect("https address");
    // A swarm of 200 peers, so each answer below is ~6.6 KB of dictionaries.
    let mut c = common::Client::new("127.0.0.12:0", t.udp);
    let id = c.connect();
    for port in 1000..1200 {
        c.announce(id, [0xdd; 20], 2, 0, -1, port);
    }
    // Twenty pipelined: ~130 KB of answers in one go, more than rustls
    // takes at once (64 KiB); every byte must arrive.
    let mut s = tls_client(https, &cert).unwrap();
    let hash = "%DD".repeat(20);
    let one = format!(
        "GET /announce?info_hash={hash}&peer_id=-qB4500-abcdefghijkl&port=9&left=5&compact=0&numwant=200 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    );
    s.write_all(one.repeat(20).as_bytes()).unwrap();
    s.flush().unwrap();
    for _ in 0..20 {
        let body = https_response(&mut s);
        assert!(body.len() > 6_000, "{}", String::from_utf8_lossy(&body));
        assert!(body.ends_with(b"ee"), "a whole dictionary");
    }
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scrape of 40 torrents (about 2.8 KB) over HTTPS, on each HTTP
/// backend, comes gzipped to a client that accepts it.
#[test]
fn https_scrapes_are_gzipped_on_both_backends() {
    use std::io::{Read, Write};
    for backend in ["io_uring", "epoll"] {
        let dir = common::fresh_dir("tls-gzip");
        let (cert, cert_path, key_path) = write_self_signed(&dir);
        let config = dir.join("tls.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = []\nbackend = \"{backend}\"\n[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n"
            ),
        )
        .unwrap();
        let mut t = start_with_config(&config, &["--https", "127.0.0.1:0"], None);
        let https = addr_after(&t.early_log, "listening on https ").expect("https address");
        let mut c = common::Client::new("127.0.0.13:0", t.udp);
        let id = c.connect();
        let mut query = String::new();
        for i in 0..40u8 {
            let hash = [i.wrapping_mul(37) ^ 0x5a; 20];
            c.announce(id, hash, 2, 0, -1, 6000);
            let encoded: String = hash.iter().map(|b| format!("%{b:02x}")).collect();
            query.push_str(&format!("info_hash={encoded}&"));
        }
        let mut s = tls_client(https, &cert).unwrap();
        write!(
            s,
            "GET /scrape?{query} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        .unwrap();
        s.flush().unwrap();
        let (head, body) = common::read_http_response(&mut s);
        assert!(
            head.contains("Content-Encoding: gzip\r\n"),
            "{backend}: {head}"
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .expect("a valid gzip body");
        let seeders = plain.windows(13).filter(|w| w == b"8:completei1e").count();
        assert_eq!(
            seeders,
            40,
            "{backend}: {}",
            String::from_utf8_lossy(&plain)
        );
        assert!(body.len() < plain.len(), "{backend}");
        stop_with(&mut t.child, "-TERM");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn https_serves_announces_and_reloads_its_certificate_on_sighup() {
    let dir = common::fresh_dir("tls");
    let (cert_a, cert_path, key_path) = write_self_signed(&dir);
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstats_interval = 1\n[http]\nlisten = []\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    let mut t = start_with_config(&config, &["--https", "127.0.0.1:0"], None);
    let https = addr_after(&t.early_log, "listening on https ").expect("https address");
    let mut old = tls_client(https, &cert_a).unwrap();
    let body = https_announce(&mut old, 7001);
    assert!(
        body.starts_with(b"d8:completei1e"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // A new certificate: new connections get it, the open one goes on.
    let (cert_b, key_b) = self_signed();
    std::fs::write(&cert_path, &cert_b).unwrap();
    std::fs::write(&key_path, &key_b).unwrap();
    signal(&t.child, "-HUP");
    wait_for_line(&mut t.stderr, "tls certificate reloaded");
    let body = https_announce(&mut old, 7001);
    assert!(body.starts_with(b"d8:completei1e"));
    let mut new = tls_client(https, &cert_b).unwrap();
    let body = https_announce(&mut new, 7002);
    assert!(
        body.starts_with(b"d8:completei2e"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        tls_client(https, &cert_a).is_err(),
        "the old certificate is gone"
    );

    // A broken key on reload keeps the certificate in force.
    std::fs::write(&key_path, "not a key").unwrap();
    signal(&t.child, "-HUP");
    let line = wait_for_line(&mut t.stderr, "tls certificate not reloaded");
    assert!(line.contains("tls.key"), "{line}");
    assert!(tls_client(https, &cert_b).is_ok());
    // Plain HTTP on the TLS port is not answered as HTTP (an alert, then
    // the connection closes, perhaps before the request is even written).
    for _ in 0..20 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(https).unwrap();
        let _ = s.write_all(b"GET /announce HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(
            !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
            "{reply:?}"
        );
    }
    // Counted, and not logged one line each: the stats line carries the
    // count, and nothing was logged at WARN meanwhile.
    loop {
        let line = t.stderr.next_line().expect("the tracker logs on");
        assert!(!line.contains("WARN"), "{line}");
        let failed = line
            .split("tls_failed=")
            .nth(1)
            .and_then(|n| n.split_whitespace().next()?.parse::<u32>().ok());
        if failed.is_some_and(|n| n >= 20) {
            break;
        }
    }
    stop_with(&mut t.child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_closed_log_pipe_neither_kills_nor_fails_it() {
    let t = start(bin().args(["--udp", "127.0.0.1:0"]), false);
    let (mut child, udp) = (t.child, t.udp);
    drop(t.stderr);
    // Still serving with nobody reading its log, and a clean stop.
    let mut c = common::Client::new("127.0.0.8:0", udp);
    c.connect();
    stop_with(&mut child, "-TERM");
}

#[test]
fn over_its_rate_limit_an_address_is_dropped_then_told_to_retry() {
    let dir = common::fresh_dir("limits");
    let config = dir.join("limits.toml");
    // One connect and one announce per second per address, no burst.
    std::fs::write(
        &config,
        "[limits]\nconnects_per_second = 1\nconnect_burst = 1\n\
         announces_per_second = 1\nannounce_burst = 1\n",
    )
    .unwrap();
    let t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
    let (mut child, m) = (
        t.child,
        addr_after(&t.early_log, "metrics on http://").unwrap(),
    );

    // 50 connects from one address, not waiting for replies.
    let flood = common::Client::new("127.0.0.9:0", t.udp);
    let mut p = common::PROTOCOL_ID.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    for _ in 0..50 {
        flood.send(&p);
    }
    // One worker, one socket: once another address's connect is answered,
    // every datagram before it has been handled.
    let mut other = common::Client::new("127.0.0.10:0", t.udp);
    other.connect();
    flood.socket.set_nonblocking(true).unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 64];
    while flood.socket.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    // The bucket refills once a second: all 50 could only pass if sending
    // them took 49 seconds.
    assert!((1..50).contains(&answered), "{answered} of 50 answered");
    let metrics = http_get(m, "/metrics");
    let dropped = format!(
        "ringtracker_drops_total{{protocol=\"udp\",reason=\"rate_limited\"}} {}",
        50 - answered
    );
    assert!(metrics.contains(&dropped), "{dropped} not in\n{metrics}");

    // HTTP: the second of two announces in a row is told to come back in
    // a minute (BEP 31).
    let hash = "%EE".repeat(20);
    let q = format!(
        "/announce?info_hash={hash}&peer_id=-qB4500-abcdefghijkl&port=7000&uploaded=0&downloaded=0&left=0"
    );
    let replies: Vec<String> = (0..50).map(|_| http_get(t.http, &q)).collect();
    let limited = "d14:failure reason19:rate limit exceeded8:retry ini1ee";
    let refused = replies.iter().filter(|r| r.ends_with(limited)).count();
    assert!(refused > 0, "{:?}", replies.last());
    assert!(replies[0].contains("8:completei1e"), "{}", replies[0]);
    let counted = format!(
        "ringtracker_error_responses_total{{protocol=\"http\",reason=\"rate_limited\"}} {refused}"
    );
    let metrics = http_get(m, "/metrics");
    assert!(metrics.contains(&counted), "{counted}");
    let routed = "ringtracker_requests_total{protocol=\"http\",type=\"announce\"} 50";
    assert!(metrics.contains(routed), "{routed} not in\n{metrics}");
    stop_with(&mut child, "-TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn credits_are_journaled_once_across_restarts_with_snapshots() {
    let dir = common::fresh_dir("once");
    let (keys, journal, config) = (
        dir.join("passkeys.txt"),
        dir.join("ledger.tsv"),
        dir.join("once.toml"),
    );
    std::fs::write(&keys, "aaaaaaaaaaaaaaaa1\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = []\n[private]\nenabled = true\npasskeys = \"{}\"\nledger = \"{}\"\n\
             [storage]\nsnapshot = \"{}\"\nsnapshot_interval = 3600\n",
            keys.display(),
            journal.display(),
            dir.join("swarms.snap").display()
        ),
    )
    .unwrap();
    let key = "/aaaaaaaaaaaaaaaa1/announce";
    // Run 1: 1000 bytes up. Run 2 (restored from the snapshot): 1500 in
    // the same client session, so 500 more. Run 3: nothing new.
    for (run, uploaded) in [(1, 1000), (2, 1500), (3, 1500)] {
        let mut t = start_with_config(&config, &[], None);
        let mut c = common::Client::new("127.0.0.11:0", t.udp);
        let id = c.connect();
        if run == 1 {
            assert_eq!(private_announce(&mut c, id, key, 2, 0, 0), 1);
        }
        assert_eq!(private_announce(&mut c, id, key, 0, uploaded, 0), 1);
        stop_with(&mut t.child, "-TERM");
    }
    let text = std::fs::read_to_string(&journal).unwrap();
    let credited: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[4])
        })
        .collect();
    assert_eq!(credited, [("1", "1000"), ("2", "500")], "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CPU time (user + system, in clock ticks) of the process's main thread.
fn main_thread_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// An idle tracker whose timers have all fired at least once (a one-second
/// ledger interval with private mode off, the combination that once made
/// main's wait zero for good) must not spin: its main thread sleeps between
/// deadlines. The test waits on the tracker's own log lines, not a timer,
/// and compares CPU time, which a spinning thread piles up whatever the
/// machine's load.
#[test]
fn an_idle_tracker_stays_idle_once_its_timers_have_fired() {
    let dir = common::fresh_dir("idle");
    let config = dir.join("idle.toml");
    std::fs::write(
        &config,
        "[server]\nstats_interval = 1\n[private]\nledger_interval = 1\n[http]\nlisten = []\n",
    )
    .unwrap();
    let mut t = start_with_config(&config, &[], None);
    // Two log lines: every one-second timer is past its first deadline.
    wait_for_line(&mut t.stderr, "stats:");
    wait_for_line(&mut t.stderr, "stats:");
    let before = main_thread_ticks(t.child.id());
    for _ in 0..5 {
        wait_for_line(&mut t.stderr, "stats:");
    }
    let spent = main_thread_ticks(t.child.id()) - before;
    // Five seconds of a spinning thread are hundreds of ticks; a sleeping
    // one wakes once a second and takes none.
    assert!(
        spent < 50,
        "main thread used {spent} ticks in 5 idle seconds"
    );
    stop_with(&mut t.child, "-TERM");
}

#[test]
fn a_worker_whose_ring_fails_drains_it_and_the_tracker_exits() {
    let dir = common::fresh_dir("ring-failure");
    let config = dir.join("plain.toml");
    std::fs::write(&config, "[http]\nlisten = []\n").unwrap();
    for (kind, extra) in [("udp", &[][..]), ("http", &["--http", "127.0.0.1:0"][..])] {
        // The worker fails with its receives (or accepts) and its tick in
        // the kernel: it must cancel them and wait for each to end before
        // its memory goes, then main sees it gone and stops the tracker.
        let env = ("RINGTRACKER_TEST_RING_FAILURE", kind);
        let mut t = start_with_config(&config, extra, Some(env));
        let log = format!("{}{}", t.early_log, t.stderr.rest());
        let status = t.child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{kind}: {log}");
        for needle in [
            format!("{kind} worker 0 stopped: failure forced with operations in flight"),
            format!("{kind} worker 0: ring drained, nothing in flight"),
            format!("worker {kind}-0 stopped unexpectedly; shutting down"),
        ] {
            assert!(log.contains(&needle), "{kind}: no {needle:?} in\n{log}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version_man_page_and_completions_come_from_the_binary() {
    let run = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run(&["--version"]);
    assert!(version.starts_with("ringtracker 0."), "{version}");
    assert!(version.contains(" (git "), "the revision: {version}");
    let man = run(&["--print-man"]);
    assert!(man.contains(".TH ringtracker 1"), "{man}");
    assert!(
        man.contains("print\\-config"),
        "every option is in it: {man}"
    );
    assert!(run(&["--print-completions", "bash"]).contains("_ringtracker()"));
    assert!(run(&["--print-completions", "zsh"]).contains("#compdef ringtracker"));
    assert!(run(&["--print-completions", "fish"]).contains("complete -c ringtracker"));
}

/// The binary under a seccomp filter that makes `io_uring_setup` fail
/// with EPERM, as Docker's default profile does (Debian's python3-seccomp
/// loads the filter, then execs the binary with `args`).
fn without_io_uring(args: &[&str]) -> std::process::Command {
    let script = "import errno, os, sys, seccomp\n\
                  f = seccomp.SyscallFilter(seccomp.ALLOW)\n\
                  f.add_rule(seccomp.ERRNO(errno.EPERM), 'io_uring_setup')\n\
                  f.load()\n\
                  os.execv(sys.argv[1], sys.argv[1:])\n";
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.args(["-c", script, env!("CARGO_BIN_EXE_ringtracker")])
        .args(args);
    cmd
}

#[test]
fn without_io_uring_udp_http_and_https_fall_back_and_say_why() {
    let dir = common::fresh_dir("no-uring");
    let (cert, cert_path, key_path) = write_self_signed(&dir);
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!("[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "--config",
        config,
        "--udp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--workers",
        "1",
    ];
    let mut t = start(&mut without_io_uring(&args), true);
    let mut log = t.early_log.clone();
    while !log.contains("worker(s) started") {
        log.push_str(&t.stderr.next_line().expect("start-up log"));
    }
    let warned = |frontend: &str| {
        let warn = log
            .lines()
            .find(|l| l.contains("io_uring unavailable") && l.contains(frontend))
            .unwrap_or_else(|| panic!("no WARN line for {frontend}:\n{log}"));
        assert!(warn.contains("WARN"), "{warn}");
        assert!(
            warn.contains("io_uring_setup failed: Operation not permitted"),
            "{warn}"
        );
        assert!(warn.contains("kernel.io_uring_disabled = "), "{warn}");
        assert!(warn.contains("Linux "), "{warn}");
    };
    warned("UDP on the mmsg backend");
    warned("HTTP on the epoll backend");
    // UDP, HTTP and HTTPS are served.
    let mut c = common::Client::new("127.0.0.1:0", t.udp);
    let cid = c.connect();
    assert_eq!(c.announce(cid, [0xdd; 20], 2, 0, 10, 6881).seeders, 1);
    let hash = "%DD".repeat(20);
    let http = http_get(
        t.http,
        &format!("/announce?info_hash={hash}&peer_id=-qB4500-abcdefghijkl&port=6882&left=0"),
    );
    assert!(
        http.starts_with("HTTP/1.1 200 OK") && http.contains("8:completei2e"),
        "{http}"
    );
    let https = addr_after(&log, "listening on https ").expect("https address");
    let mut s = tls_client(https, &cert).unwrap();
    let body = https_announce(&mut s, 6883);
    assert!(body.windows(13).any(|w| w == b"8:completei3e"), "{body:?}");
    stop_with(&mut t.child, "-TERM");
    // Forcing io_uring where it is blocked stops the start, saying so.
    std::fs::write(dir.join("forced.toml"), "[http]\nbackend = \"io_uring\"\n").unwrap();
    let forced = dir.join("forced.toml");
    let out = without_io_uring(&["--config", forced.to_str().unwrap(), "--udp", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.backend = \"io_uring\" needs it"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
