//! What is kept on disk survives the worst: the tracker killed (SIGKILL)
//! under load, again and again, at points a seeded generator picks (after
//! each restart the snapshot loads, every peer a completed snapshot held is
//! served again, and the private ledger journal has every batch once, none
//! lost; at the end every byte the clients reported is credited exactly
//! once), and a disk that fills up (the tracker serves on, counts the
//! failed snapshots, and the last one that fitted is what a restart loads).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::Client;
use common::tracker::*;

const KEYS: [&str; 3] = ["crashloopkey0000", "crashloopkey0001", "crashloopkey0002"];
const PEERS: usize = 6;

/// A deterministic generator (xorshift64*): the kill points of a run are
/// the same every time.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One client session: its address, passkey, torrent and running total.
struct Peer {
    from: String,
    key: &'static str,
    hash: [u8; 20],
    uploaded: u64,
}

impl Peer {
    /// Announce the session's running total (after `started` once); the
    /// tracker must answer with an announce.
    fn announce(&self, tracker: SocketAddr, event: u32) {
        let mut c = Client::new(&self.from, tracker);
        let id = c.connect();
        let (_, mut p) = c.announce_packet(id, self.hash, event, 100, -1, 6881);
        p[72..80].copy_from_slice(&self.uploaded.to_be_bytes());
        let path = format!("/{}/announce", self.key);
        p.extend_from_slice(&[2, path.len() as u8]);
        p.extend_from_slice(path.as_bytes());
        c.send(&p);
        let action = u32::from_be_bytes(c.recv()[..4].try_into().unwrap());
        assert_eq!(action, 1, "announce answered");
    }
}

/// Leechers of `hash` as an HTTP scrape with `key` reports them.
fn leechers(http: SocketAddr, key: &str, hash: [u8; 20]) -> u64 {
    let escaped: String = hash.iter().map(|b| format!("%{b:02x}")).collect();
    let reply = http_get(http, &format!("/{key}/scrape?info_hash={escaped}"));
    let at = reply.find("10:incompletei").expect("scrape counts") + 14;
    reply[at..reply[at..].find('e').unwrap() + at]
        .parse()
        .unwrap()
}

/// The journal's batches, checked: numbered 1, 2, 3… in order, each one
/// contiguous (none twice, none missing). Returns credited uploads per
/// passkey, and the last batch.
fn check_journal(text: &str) -> (BTreeMap<String, u64>, u64) {
    let mut credited = BTreeMap::new();
    let mut last = 0u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let batch: u64 = f[0].parse().unwrap();
        assert!(
            batch == last || batch == last + 1,
            "batch {batch} after {last}:\n{text}"
        );
        last = batch;
        *credited.entry(f[2].to_string()).or_insert(0) += f[4].parse::<u64>().unwrap();
    }
    (credited, last)
}

#[test]
fn killed_again_and_again_it_loses_no_snapshot_and_credits_each_byte_once() {
    let dir = common::fresh_dir("crash-loop");
    let (keys, journal, config) = (
        dir.join("passkeys.txt"),
        dir.join("ledger.tsv"),
        dir.join("crash.toml"),
    );
    std::fs::write(&keys, KEYS.join("\n")).unwrap();
    std::fs::write(
        &config,
        format!(
            "[private]\nenabled = true\npasskeys = {keys:?}\nledger = {journal:?}\n\
             [storage]\nsnapshot = {:?}\nsnapshot_interval = 1\n",
            dir.join("swarms.snap")
        ),
    )
    .unwrap();
    let mut peers: Vec<Peer> = (0..PEERS)
        .map(|i| Peer {
            from: format!("127.0.3.{}:0", i + 1),
            key: KEYS[i % KEYS.len()],
            hash: [0x40 + (i % 2) as u8; 20],
            uploaded: 0,
        })
        .collect();
    let mut rng = Seeded(0x5eed_c0de_2026_1130);
    // Peers some completed snapshot is known to hold.
    let mut durable = 0;
    for run in 0..6 {
        let mut t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
        if run > 0 {
            assert!(
                t.early_log.contains("snapshot loaded from"),
                "{}",
                t.early_log
            );
            // Every peer of a completed snapshot is served again.
            let served: u64 = [0usize, 1]
                .iter()
                .map(|&i| leechers(t.http, peers[i].key, peers[i].hash))
                .sum();
            assert!(
                served >= durable as u64,
                "run {run}: {served} of {durable} peers"
            );
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            check_journal(&text);
        }
        // Load: the first run starts a few sessions, each run adds one and
        // reports more bytes on every open session.
        let open = (2 + run).min(PEERS);
        for (i, p) in peers.iter_mut().enumerate().take(open) {
            let event = if p.uploaded == 0 { 2 } else { 0 };
            p.uploaded += 1000 * (i as u64 + 1);
            p.announce(t.udp, event);
        }
        // Two snapshots that end after the load began: the second began
        // after it, so it holds every open session.
        wait_for_line(&mut t.stderr, "snapshot written to");
        wait_for_line(&mut t.stderr, "snapshot written to");
        durable = open;
        // More reports, then SIGKILL at a seeded point among them.
        let burst = rng.below(3 * open as u64) + 1;
        for n in 0..burst {
            let p = &mut peers[n as usize % open];
            p.uploaded += 7;
            p.announce(t.udp, 0);
        }
        signal(&t.child, "-KILL");
        t.child.wait().unwrap();
    }
    // A last run that reports every session's total and stops cleanly:
    // then each byte is credited exactly once.
    let mut t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
    for p in &mut peers {
        p.uploaded += 1;
        p.announce(t.udp, if p.uploaded == 1 { 2 } else { 0 });
    }
    stop_with(&mut t.child, "-TERM");
    let (credited, batches) = check_journal(&std::fs::read_to_string(&journal).unwrap());
    assert!(batches >= 7, "a batch per run at least: {batches}");
    for key in KEYS {
        let reported: u64 = peers
            .iter()
            .filter(|p| p.key == key)
            .map(|p| p.uploaded)
            .sum();
        assert_eq!(credited.get(key).copied().unwrap_or(0), reported, "{key}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Read the log until the next snapshot attempt: its torrent count if it
/// was written, `None` if it failed.
fn next_snapshot(log: &mut Log) -> Option<u64> {
    loop {
        let line = log.next_line().expect("the log goes on");
        if line.contains("snapshot not written") {
            return None;
        }
        if let Some(rest) = line.split("snapshot written to ").nth(1) {
            let torrents = rest.split(": ").nth(1).unwrap().split(' ').next().unwrap();
            return Some(torrents.parse().unwrap());
        }
    }
}

#[test]
fn a_full_disk_costs_snapshots_not_service_nor_the_last_good_one() {
    let dir = common::fresh_dir("disk-full");
    let disk = SmallDisk::mount(dir.join("disk"), "96k");
    let config = dir.join("full.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = []\n[storage]\nsnapshot = {:?}\nsnapshot_interval = 1\n",
            disk.0.join("swarms.snap")
        ),
    )
    .unwrap();
    let mut t = start_with_config(&config, &[], None);
    let mut c = Client::new("127.0.4.1:0", t.udp);
    let id = c.connect();
    // Torrents 200 at a time until a snapshot no longer fits.
    let (mut torrents, mut last_good) = (0u32, None);
    loop {
        for _ in 0..200 {
            torrents += 1;
            let mut hash = [0u8; 20];
            hash[..4].copy_from_slice(&torrents.to_be_bytes());
            c.announce(id, hash, 2, 100, -1, 6881);
        }
        // Two snapshots: the second began after these announces.
        let attempts = [next_snapshot(&mut t.stderr), next_snapshot(&mut t.stderr)];
        if let Some(failed) = attempts.iter().position(Option::is_none) {
            last_good = attempts[..failed]
                .iter()
                .flatten()
                .last()
                .copied()
                .or(last_good);
            break;
        }
        last_good = attempts[1];
        assert!(torrents < 100_000, "the disk never filled");
    }
    let last_good = last_good.expect("a snapshot fitted before the disk filled");
    // Still serving, the failure counted.
    let reply = c.announce(id, [0xee; 20], 2, 0, -1, 6881);
    assert_eq!(reply.seeders, 1);
    let failures = http_get(metrics_addr(&t), "/metrics");
    assert!(
        failures
            .lines()
            .any(|l| l.starts_with("ringtracker_snapshot_failures_total ") && !l.ends_with(" 0")),
        "{failures}"
    );
    // The last snapshot that fitted is what a restart loads.
    signal(&t.child, "-KILL");
    t.child.wait().unwrap();
    let mut t = start_with_config(&config, &[], None);
    let loaded = format!(
        "snapshot loaded from {}: {last_good} torrents",
        disk.0.join("swarms.snap").display()
    );
    assert!(
        t.early_log.contains(&loaded),
        "{loaded:?} not in\n{}",
        t.early_log
    );
    signal(&t.child, "-KILL");
    t.child.wait().unwrap();
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}
