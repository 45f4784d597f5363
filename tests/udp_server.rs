//! The real server (workers with SO_REUSEPORT sockets) on loopback
//! ephemeral ports, spoken to over real UDP sockets. Every test runs once
//! per UDP backend: io_uring and recvmmsg/sendmmsg.

mod common;

use std::net::SocketAddr;

use common::Client;
use ringtracker::app;
use ringtracker::config::{Config, UdpBackend};
use ringtracker::net::Server;
use ringtracker::stats::{self, Counter};

fn start(backend: UdpBackend, listen: &[&str], tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.udp.backend = backend;
    config.http.listen = Vec::new();
    config.udp.listen = listen.iter().map(|a| a.parse().unwrap()).collect();
    config.server.workers = 2;
    config.udp.recv_buffers = 256;
    config.udp.send_slots = 64;
    tweak(&mut config);
    app::start(&config).expect("server starts")
}

fn counter(server: &Server, c: Counter) -> u64 {
    stats::totals(server.stats())[c as usize]
}

fn swarm_meets(bind: &str, server: &Server) {
    let addr = server.udp_addrs()[0];
    let hash = [7u8; 20];
    let mut seeder = Client::new(bind, addr);
    let mut leecher = Client::new(bind, addr);
    let cs = seeder.connect();
    let cl = leecher.connect();
    let r = seeder.announce(cs, hash, 2, 0, -1, 50_001);
    assert_eq!((r.seeders, r.leechers, r.peers.len()), (1, 0, 0));
    assert!(
        (1620..=1800).contains(&r.interval),
        "interval {} within its jitter",
        r.interval
    );
    let r = leecher.announce(cl, hash, 2, 1000, -1, 50_002);
    assert_eq!((r.seeders, r.leechers), (1, 1));
    let seeder_ip = seeder.socket.local_addr().unwrap().ip();
    assert_eq!(r.peers, vec![SocketAddr::new(seeder_ip, 50_001)]);
    // The seeder now gets the leecher.
    let r = seeder.announce(cs, hash, 0, 0, -1, 50_001);
    assert_eq!(r.peers, vec![SocketAddr::new(seeder_ip, 50_002)]);
}

fn seeder_and_leecher_meet_over_ipv4(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |_| {});
    swarm_meets("127.0.0.1:0", &server);
}

fn seeder_and_leecher_meet_over_ipv6(backend: UdpBackend) {
    let server = start(backend, &["[::1]:0"], |_| {});
    swarm_meets("[::1]:0", &server);
}

fn ipv4_and_ipv6_sockets_side_by_side_keep_separate_swarms(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0", "[::1]:0"], |_| {});
    let (v4, v6) = (server.udp_addrs()[0], server.udp_addrs()[1]);
    assert!(v4.is_ipv4() && v6.is_ipv6());
    let hash = [3u8; 20];
    let mut a = Client::new("127.0.0.1:0", v4);
    let mut b = Client::new("[::1]:0", v6);
    let ca = a.connect();
    let cb = b.connect();
    a.announce(ca, hash, 2, 0, -1, 40_000);
    let r = b.announce(cb, hash, 2, 10, -1, 40_001);
    assert_eq!((r.seeders, r.leechers), (1, 1), "counts cover the torrent");
    assert!(
        r.peers.is_empty(),
        "an IPv4 peer is never sent to an IPv6 client"
    );
}

fn stopped_removes_and_completed_counts_in_scrape(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |_| {});
    let addr = server.udp_addrs()[0];
    let hash = [9u8; 20];
    let mut a = Client::new("127.0.0.1:0", addr);
    let mut b = Client::new("127.0.0.1:0", addr);
    let ca = a.connect();
    let cb = b.connect();
    a.announce(ca, hash, 2, 500, -1, 1111);
    b.announce(cb, hash, 2, 500, -1, 2222);
    assert_eq!(a.scrape(ca, &[hash]), vec![(0, 0, 2)]);
    let r = a.announce(ca, hash, 1, 0, -1, 1111);
    assert_eq!((r.seeders, r.leechers), (1, 1));
    assert_eq!(a.scrape(ca, &[hash, [1; 20]]), vec![(1, 1, 1), (0, 0, 0)]);
    let r = b.announce(cb, hash, 3, 500, -1, 2222);
    assert!(r.peers.is_empty());
    assert_eq!((r.seeders, r.leechers), (1, 0));
    let r = b.announce(cb, hash, 0, 500, -1, 2223);
    assert_eq!(r.peers.len(), 1, "only the seeder is left");
}

fn numwant_is_capped_by_config(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |c| {
        c.tracker.max_numwant = 5;
        c.tracker.default_numwant = 3;
    });
    let addr = server.udp_addrs()[0];
    let hash = [4u8; 20];
    let mut c = Client::new("127.0.0.1:0", addr);
    let id = c.connect();
    // Peers are told apart by address and announced port.
    for port in 1..=10 {
        c.announce(id, hash, 2, 0, 0, 30_000 + port);
    }
    let mut l = Client::new("127.0.0.1:0", addr);
    let lid = l.connect();
    assert_eq!(l.announce(lid, hash, 2, 1, 100, 1).peers.len(), 5);
    assert_eq!(l.announce(lid, hash, 0, 1, -1, 1).peers.len(), 3);
    assert_eq!(l.announce(lid, hash, 0, 1, 0, 1).peers.len(), 3);
    assert_eq!(l.announce(lid, hash, 0, 1, 2, 1).peers.len(), 2);
}

fn connection_id_is_refused_from_another_address(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |_| {});
    let addr = server.udp_addrs()[0];
    let hash = [5u8; 20];
    let mut a = Client::new("127.0.0.1:0", addr);
    let mut b = Client::new("127.0.0.2:0", addr);
    let stolen = a.connect();
    let (_, p) = b.announce_packet(stolen, hash, 2, 0, -1, 7000);
    b.send(&p);
    // The server answers one client's datagrams in order, so if the bad
    // announce had been answered, that answer would come first.
    let fresh = b.connect();
    assert_ne!(fresh, stolen);
    assert_eq!(counter(&server, Counter::DropBadConnectionId), 1);
    assert_eq!(
        a.scrape(stolen, &[hash]),
        vec![(0, 0, 0)],
        "no swarm was made"
    );
    let r = b.announce(fresh, hash, 2, 0, -1, 7000);
    assert_eq!(r.seeders, 1);
}

fn garbage_does_not_stop_it(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |_| {});
    let addr = server.udp_addrs()[0];
    let mut c = Client::new("127.0.0.1:0", addr);
    let id = c.connect();
    let mut sent = 0;
    for len in [0usize, 1, 15, 16, 17, 97, 98, 99, 1500, 1900, 3000] {
        for fill in [0u8, 0xff, 0x41] {
            let mut p = vec![fill; len];
            if len >= 16 && fill == 0x41 {
                // A valid connection id with a nonsense action or body.
                p[..8].copy_from_slice(&id.to_be_bytes());
            }
            c.send(&p);
            sent += 1;
        }
    }
    let mut unknown_scrape = id.to_be_bytes().to_vec();
    unknown_scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1]);
    unknown_scrape.extend_from_slice(&[1, 2, 3]);
    c.send(&unknown_scrape);
    let err = c.recv();
    assert_eq!(
        err[..8],
        [0, 0, 0, 3, 0, 0, 0, 1],
        "error reply for a valid id"
    );
    // Still serving, and every datagram was counted.
    let id = c.connect();
    assert_eq!(c.scrape(id, &[[1; 20]]), vec![(0, 0, 0)]);
    let t = stats::totals(server.stats());
    assert_eq!(t[Counter::Received as usize], sent + 4);
    let dropped: u64 = [
        Counter::DropTooShort,
        Counter::DropBadMagic,
        Counter::DropUnknownAction,
        Counter::DropShortAnnounce,
        Counter::DropBadConnectionId,
        Counter::DropOversized,
    ]
    .iter()
    .map(|c| t[*c as usize])
    .sum();
    let replied = t[Counter::ReplyConnect as usize]
        + t[Counter::ReplyAnnounce as usize]
        + t[Counter::ReplyScrape as usize]
        + t[Counter::ReplyError as usize];
    assert_eq!(dropped + replied, t[Counter::Received as usize]);
    assert!(
        t[Counter::DropOversized as usize] >= 3,
        "3000-byte datagrams"
    );
}

fn scrape_of_74_and_75_hashes(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |_| {});
    let addr = server.udp_addrs()[0];
    let mut c = Client::new("127.0.0.1:0", addr);
    let id = c.connect();
    c.announce(id, [1; 20], 2, 0, -1, 6000);
    let hashes: Vec<[u8; 20]> = (1..=75).map(|i| [i as u8; 20]).collect();
    let r = c.scrape(id, &hashes[..74]);
    assert_eq!(r.len(), 74);
    assert_eq!(r[0], (1, 0, 0));
    let r = c.scrape(id, &hashes);
    assert_eq!(r.len(), 74, "the first 74 are answered");
    // Up to 96 hashes (a 1936-byte datagram) on both backends alike; a
    // longer datagram is dropped and counted.
    let hashes: Vec<[u8; 20]> = (1..=97).map(|i| [i as u8; 20]).collect();
    assert_eq!(c.scrape(id, &hashes[..96]).len(), 74);
    let before = counter(&server, Counter::DropOversized);
    let tid = c.tid();
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    hashes.iter().for_each(|h| p.extend_from_slice(h));
    c.send(&p);
    // Ordering by a reply that comes after the dropped datagram.
    assert_eq!(c.scrape(id, &hashes[..1]).len(), 1);
    assert_eq!(counter(&server, Counter::DropOversized), before + 1);
}

fn replies_leave_from_the_address_the_request_came_to(backend: UdpBackend) {
    // Bound to the wildcard address, asked on 127.0.0.3: the reply must come
    // from 127.0.0.3 (Client::recv checks the source).
    let server = start(backend, &["0.0.0.0:0"], |_| {});
    let port = server.udp_addrs()[0].port();
    for target in ["127.0.0.3", "127.0.0.1"] {
        let mut c = Client::new("127.0.0.1:0", format!("{target}:{port}").parse().unwrap());
        c.connect();
    }
}

fn workers_share_one_swarm_table(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |c| c.server.workers = 2);
    let addr = server.udp_addrs()[0];
    let hash = [8u8; 20];
    // Many client sockets: SO_REUSEPORT spreads them across both workers
    // (all 32 on one worker has odds of 2^-31).
    let mut clients: Vec<Client> = (0..32).map(|_| Client::new("127.0.0.1:0", addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let id = c.connect();
        c.announce(id, hash, 2, 0, -1, 20_000 + i as u16);
    }
    let id = clients[0].connect();
    assert_eq!(clients[0].scrape(id, &[hash]), vec![(32, 0, 0)]);
    let busy_workers = server
        .stats()
        .iter()
        .filter(|w| w.get(Counter::Received) > 0)
        .count();
    assert_eq!(busy_workers, 2);
}

/// A file in a directory of this test's own.
fn temp_file(test: &str, backend: UdpBackend, name: &str, text: &str) -> std::path::PathBuf {
    let dir = common::fresh_dir(&format!("{test}-{backend:?}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The action and message of a reply.
fn action(reply: &[u8]) -> (u32, String) {
    let a = u32::from_be_bytes(reply[..4].try_into().unwrap());
    (a, String::from_utf8_lossy(&reply[8..]).into_owned())
}

fn banned_addresses_get_nothing_and_filtered_clients_are_refused(backend: UdpBackend) {
    let bans = temp_file("bans", backend, "banned.txt", "127.0.0.12\n10.0.0.0/8\n");
    let server = start(backend, &["127.0.0.1:0"], |c| {
        // One worker: datagrams are handled in the order they arrive.
        c.server.workers = 1;
        c.access.banned = Some(bans.clone());
        c.access.clients = ringtracker::tracker::access::AccessMode::Deny;
        c.access.client_prefixes = vec!["-RT".into()];
    });
    let addr = server.udp_addrs()[0];
    let banned = Client::new("127.0.0.12:0", addr);
    let mut p = common::PROTOCOL_ID.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
    banned.send(&p);
    // Answered after the banned connect was handled: it got nothing.
    let mut other = Client::new("127.0.0.13:0", addr);
    let id = other.connect();
    banned.socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let nothing = banned.socket.recv_from(&mut buf).unwrap_err();
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(counter(&server, Counter::DropBanned), 1);
    // The test client's peer id starts with -RT: refused, permanently.
    let (_, packet) = other.announce_packet(id, [3; 20], 2, 0, -1, 6881);
    other.send(&packet);
    assert_eq!(
        action(&other.recv()),
        (3, "client software not allowed on this tracker".into())
    );
    assert_eq!(counter(&server, Counter::ErrorClientNotAllowed), 1);
    std::fs::remove_dir_all(bans.parent().unwrap()).unwrap();
}

fn private_mode_reads_the_passkey_from_url_data(backend: UdpBackend) {
    let keys = temp_file("private", backend, "passkeys.txt", "memberKey0123456789\n");
    let server = start(backend, &["127.0.0.1:0"], |c| {
        c.private.enabled = true;
        c.private.passkeys = Some(keys.clone());
    });
    let mut c = Client::new("127.0.0.1:0", server.udp_addrs()[0]);
    let id = c.connect();
    let with_path = |c: &mut Client, path: &str| {
        let (_, mut p) = c.announce_packet(id, [4; 20], 2, 0, -1, 6881);
        if !path.is_empty() {
            p.extend_from_slice(&[2, path.len() as u8]);
            p.extend_from_slice(path.as_bytes());
        }
        c.send(&p);
        action(&c.recv())
    };
    assert_eq!(with_path(&mut c, ""), (3, "unknown passkey".into()));
    assert_eq!(
        with_path(&mut c, "/wrongKey0123456789/announce"),
        (3, "unknown passkey".into())
    );
    assert_eq!(with_path(&mut c, "/memberKey0123456789/announce").0, 1);
    // Scrapes carry no passkey: refused.
    let tid = c.tid();
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p.extend_from_slice(&[4; 20]);
    c.send(&p);
    assert_eq!(action(&c.recv()).0, 3);
    assert_eq!(counter(&server, Counter::ErrorUnknownPasskey), 2);
    assert_eq!(counter(&server, Counter::ErrorPrivateScrape), 1);
    std::fs::remove_dir_all(keys.parent().unwrap()).unwrap();
}

fn reply_intervals_spread_within_their_jitter_band(backend: UdpBackend) {
    let server = start(backend, &["127.0.0.1:0"], |c| {
        c.tracker.interval_jitter = 0.2
    });
    let mut c = Client::new("127.0.0.1:0", server.udp_addrs()[0]);
    let cid = c.connect();
    let intervals: Vec<u32> = (0..100u16)
        .map(|i| c.announce(cid, [9; 20], 0, 0, 0, 7000 + i).interval)
        .collect();
    assert!(
        intervals.iter().all(|i| (1440..=1800).contains(i)),
        "{intervals:?}"
    );
    let distinct: std::collections::HashSet<_> = intervals.iter().collect();
    assert!(distinct.len() > 10, "{intervals:?}");
}

/// Each scenario above, once per backend.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $name() { super::$name(ringtracker::config::UdpBackend::IoUring) })*
        }
        mod mmsg {
            $(#[test] fn $name() { super::$name(ringtracker::config::UdpBackend::Mmsg) })*
        }
    };
}

per_backend!(
    seeder_and_leecher_meet_over_ipv4,
    seeder_and_leecher_meet_over_ipv6,
    ipv4_and_ipv6_sockets_side_by_side_keep_separate_swarms,
    stopped_removes_and_completed_counts_in_scrape,
    numwant_is_capped_by_config,
    connection_id_is_refused_from_another_address,
    garbage_does_not_stop_it,
    scrape_of_74_and_75_hashes,
    replies_leave_from_the_address_the_request_came_to,
    workers_share_one_swarm_table,
    banned_addresses_get_nothing_and_filtered_clients_are_refused,
    private_mode_reads_the_passkey_from_url_data,
    reply_intervals_spread_within_their_jitter_band,
);
