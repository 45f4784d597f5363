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
    Server::start(&config).expect("server starts")
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
    let expired: usize = (0..s.tracker().table.shard_count())
        .map(|i| s.tracker().table.sweep_shard(i, now, 3600, |_| true))
        .sum();
    assert_eq!(expired, 0);
    let t = s.tracker().table.totals();
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
    let s = Server::start(&config).expect("server starts");
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
