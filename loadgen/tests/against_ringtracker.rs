//! loadgen against the real ringtracker on loopback: every request answered,
//! every reply valid. Counts only; no timing is asserted.

use std::process::Command;

use ringtracker::config::Config;
use ringtracker::net::Server;

fn server() -> Server {
    let mut config = Config::default();
    config.udp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.http.listen = Vec::new();
    ringtracker::app::start(&config).expect("server starts")
}

fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn once_mode_fills_one_swarm() {
    let s = server();
    let target = s.udp_addrs()[0].to_string();
    let r = loadgen(&[
        "--target",
        &target,
        "--mode",
        "once",
        "--torrents",
        "1",
        "--peers",
        "3000",
        "--sources",
        "4",
        "--first-source",
        "127.17.0.1",
        "--timeout-ms",
        "5000",
        "--duration",
        "60",
    ]);
    let c = &r["counts"];
    assert_eq!(c["announces"], 3000, "{r}");
    assert_eq!(c["lost"], 0);
    assert_eq!(c["invalid"], 0);
    assert_eq!(c["errors"], 0);
    // Refresh the table's gauges (a sweep at the server's own time expires
    // nothing: every peer has just announced).
    let now = s.now();
    let expired: usize = (0..s.tracker().table().shard_count())
        .map(|i| {
            s.tracker()
                .table()
                .sweep_shard(i, now, 3600, |_| true, |_, _, _| {})
        })
        .sum();
    assert_eq!(expired, 0);
    let t = s.tracker().table().totals();
    assert_eq!((t.torrents, t.seeders + t.leechers), (1, 3000));
}

#[test]
fn closed_loop_with_scrapes_gets_only_valid_replies() {
    let s = server();
    let target = s.udp_addrs()[0].to_string();
    let r = loadgen(&[
        "--target",
        &target,
        "--torrents",
        "1000",
        "--peers",
        "20000",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--scrape-share",
        "0.2",
        "--first-source",
        "127.18.0.1",
        "--sources",
        "8",
        "--timeout-ms",
        "5000",
    ]);
    let c = &r["counts"];
    assert!(c["announces"].as_u64().unwrap() > 0, "{r}");
    assert!(c["scrapes"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(c["invalid"], 0, "{r}");
    assert_eq!(c["errors"], 0, "{r}");
}

#[test]
fn http_mode_fills_a_swarm_and_scrapes() {
    let mut config = Config::default();
    config.udp.listen = Vec::new();
    config.http.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    let s = ringtracker::app::start(&config).expect("server starts");
    let target = s.http_addrs()[0].to_string();
    let r = loadgen(&[
        "--protocol",
        "http",
        "--target",
        &target,
        "--mode",
        "once",
        "--torrents",
        "1",
        "--peers",
        "2000",
        "--sources",
        "4",
        "--first-source",
        "127.19.0.1",
        "--timeout-ms",
        "5000",
        "--duration",
        "60",
    ]);
    let c = &r["counts"];
    assert_eq!(c["announces"], 2000, "{r}");
    assert_eq!(
        (
            c["lost"].as_u64(),
            c["invalid"].as_u64(),
            c["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    let r = loadgen(&[
        "--protocol",
        "http",
        "--target",
        &target,
        "--torrents",
        "100",
        "--peers",
        "2000",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--scrape-share",
        "0.3",
        "--sources",
        "4",
        "--first-source",
        "127.19.0.1",
        "--timeout-ms",
        "5000",
    ]);
    let c = &r["counts"];
    assert!(
        c["announces"].as_u64().unwrap() > 0 && c["scrapes"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_eq!(
        (c["invalid"].as_u64(), c["errors"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
}

#[test]
fn refuses_targets_off_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--target", "192.0.2.1:6969"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// A stand-in tracker that answers every announce twice: the second copy
/// finds its request no longer pending, exactly like a reply after the
/// timeout. It must count as delivered (goodput) and late, never as on
/// time, so that an overloaded server's late replies still show.
#[test]
fn replies_to_requests_no_longer_pending_count_as_goodput_not_on_time() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let target = socket.local_addr().unwrap().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let (action, tid) = (&buf[8..12], &buf[12..16]);
            if n == 16 && action == [0, 0, 0, 0] {
                let reply = [&[0u8; 4][..], tid, &7u64.to_be_bytes()].concat();
                socket.send_to(&reply, from).unwrap();
            } else if n >= 98 && action == [0, 0, 0, 1] {
                let reply = [&[0, 0, 0, 1][..], tid, &[0u8; 12]].concat();
                socket.send_to(&reply, from).unwrap();
                socket.send_to(&reply, from).unwrap();
            }
        }
    });
    let peers = 300u64;
    let r = loadgen(&[
        "--target",
        &target,
        "--mode",
        "once",
        "--torrents",
        "1",
        "--peers",
        &peers.to_string(),
        "--sources",
        "1",
        // Few at a time: the stand-in's socket buffer must not overflow.
        "--inflight",
        "8",
        "--first-source",
        "127.20.0.1",
        "--timeout-ms",
        "5000",
        "--duration",
        "60",
    ]);
    done.store(true, Ordering::Relaxed);
    fake.join().unwrap();
    let c = &r["counts"];
    assert_eq!(c["announces"].as_u64(), Some(peers), "{r}");
    // The very last duplicate may come after loadgen has stopped reading.
    let late = c["late"].as_u64().unwrap();
    assert!(late == peers || late + 1 == peers, "{r}");
    let arrived = c["arrived"].as_u64().unwrap();
    // The connect reply is delivered too.
    assert_eq!(arrived, peers + late + 1, "{r}");
    assert_eq!(c["invalid"], 0, "{r}");
    assert!(r["goodput_per_second"].as_f64().unwrap() > r["replies_per_second"].as_f64().unwrap());
}
