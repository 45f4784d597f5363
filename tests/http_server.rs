//! The HTTP frontend over real TCP on loopback: announces, scrapes,
//! keep-alive, pipelining, and clients that are slow, idle or not HTTP.
//! Every scenario runs on both HTTP backends (io_uring and epoll).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringtracker::app;
use ringtracker::config::{Config, HttpBackend};
use ringtracker::net::Server;

fn start(backend: HttpBackend, listen: &str, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.http.backend = backend;
    config.udp.listen = Vec::new();
    config.http.listen = vec![listen.parse().unwrap()];
    config.server.workers = 2;
    tweak(&mut config);
    app::start(&config).expect("server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    // Turns a missing reply into a failure instead of a hang; nothing waits
    // on it to pass.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read one response: (status line, headers, body).
fn read_response(s: &mut TcpStream) -> (String, String, Vec<u8>) {
    let (head, body) = common::read_http_response(s);
    let status = head.lines().next().unwrap().to_string();
    (status, head, body)
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn hash(c: u8) -> String {
    std::iter::repeat_n(c as char, 20).collect()
}

fn announce(c: u8, port: u16, left: u64, extra: &str) -> String {
    format!(
        "GET /announce?info_hash={}&peer_id=-XX0001-abcdefghijkl&port={port}&left={left}{extra} HTTP/1.1\r\nHost: t\r\n\r\n",
        hash(c)
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn two_peers_meet_and_scrape_counts(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |_| {});
    let addr = server.http_addrs()[0];
    let mut a = connect(addr);
    a.write_all(announce(b'a', 6881, 0, "&event=started").as_bytes())
        .unwrap();
    let (status, _, body) = read_response(&mut a);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        contains(&body, b"8:completei1e"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let mut b = connect(addr);
    b.write_all(announce(b'a', 6882, 10, "&event=started").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut b);
    let mut peer = b"5:peers6:".to_vec();
    peer.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
    assert!(contains(&body, &peer), "{}", String::from_utf8_lossy(&body));
    assert!(contains(&body, b"11:external ip4:\x7f\x00\x00\x01"));
    // The leecher completes; then a scrape sees two seeders and a download.
    b.write_all(announce(b'a', 6882, 0, "&event=completed").as_bytes())
        .unwrap();
    read_response(&mut b);
    b.write_all(format!("GET /scrape?info_hash={} HTTP/1.1\r\n\r\n", hash(b'a')).as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut b);
    assert!(contains(
        &body,
        b"8:completei2e10:downloadedi1e10:incompletei0e"
    ));
    // Stopped removes.
    a.write_all(announce(b'a', 6881, 0, "&event=stopped").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut a);
    assert!(
        contains(&body, b"8:completei1e"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

fn ipv6_peers_come_in_peers6(backend: HttpBackend) {
    let server = start(backend, "[::1]:0", |_| {});
    let addr = server.http_addrs()[0];
    let mut a = connect(addr);
    a.write_all(announce(b'6', 7001, 0, "").as_bytes()).unwrap();
    read_response(&mut a);
    a.write_all(announce(b'6', 7002, 5, "").as_bytes()).unwrap();
    let (_, _, body) = read_response(&mut a);
    assert!(
        contains(&body, b"5:peers0:6:peers618:"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// One torrent, a seeder over IPv6 and a leecher over IPv4 on one server:
/// each is sent the other (BEP 7), the asker's own family first.
fn ipv4_and_ipv6_peers_meet_over_http(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| {
        c.http.listen.push("[::1]:0".parse().unwrap());
    });
    let (v4, v6) = (server.http_addrs()[0], server.http_addrs()[1]);
    assert!(v4.is_ipv4() && v6.is_ipv6());
    let mut seeder = connect(v6);
    seeder
        .write_all(announce(b'd', 7001, 0, "&event=started").as_bytes())
        .unwrap();
    read_response(&mut seeder);
    let mut leecher = connect(v4);
    leecher
        .write_all(announce(b'd', 7002, 5, "&event=started").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut leecher);
    let mut v6_seeder = b"5:peers0:6:peers618:".to_vec();
    v6_seeder.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v6_seeder.extend_from_slice(&7001u16.to_be_bytes());
    assert!(
        contains(&body, &v6_seeder),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(contains(&body, b"8:completei1e10:downloadedi0e"));
    // The seeder's next announce lists the IPv4 leecher.
    seeder
        .write_all(announce(b'd', 7001, 0, "").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut seeder);
    let v4_leecher = b"5:peers6:\x7f\x00\x00\x01\x1b\x5a";
    assert!(
        contains(&body, v4_leecher),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // compact=0: one list, own family first.
    seeder
        .write_all(announce(b'd', 7003, 5, "&compact=0").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut seeder);
    let listed = b"5:peersld2:ip3:::14:porti7001eed2:ip9:127.0.0.14:porti7002eee";
    assert!(
        contains(&body, listed),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Off: each family alone again.
    let server = start(backend, "127.0.0.1:0", |c| {
        c.http.listen.push("[::1]:0".parse().unwrap());
        c.tracker.dual_stack_replies = false;
    });
    let mut seeder = connect(server.http_addrs()[1]);
    seeder
        .write_all(announce(b'd', 7001, 0, "").as_bytes())
        .unwrap();
    read_response(&mut seeder);
    let mut leecher = connect(server.http_addrs()[0]);
    leecher
        .write_all(announce(b'd', 7002, 5, "").as_bytes())
        .unwrap();
    let (_, _, body) = read_response(&mut leecher);
    assert!(
        contains(&body, b"5:peers0:e"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

fn keep_alive_and_pipelining_answer_in_order(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |_| {});
    let mut s = connect(server.http_addrs()[0]);
    // Three requests in one write: an announce, a 404, a scrape.
    let pipelined = format!(
        "{}GET /nope HTTP/1.1\r\n\r\nGET /scrape?info_hash={} HTTP/1.1\r\n\r\n",
        announce(b'p', 1000, 0, ""),
        hash(b'p')
    );
    s.write_all(pipelined.as_bytes()).unwrap();
    let (st1, _, b1) = read_response(&mut s);
    let (st2, _, _) = read_response(&mut s);
    let (st3, _, b3) = read_response(&mut s);
    assert_eq!(st1, "HTTP/1.1 200 OK");
    assert!(b1.starts_with(b"d8:complete"));
    assert_eq!(st2, "HTTP/1.1 404 Not Found");
    assert_eq!(st3, "HTTP/1.1 200 OK");
    assert!(contains(&b3, b"5:filesd20:"));
    // And the connection is still usable.
    s.write_all(announce(b'p', 1001, 0, "").as_bytes()).unwrap();
    let (st, _, _) = read_response(&mut s);
    assert_eq!(st, "HTTP/1.1 200 OK");
}

fn connection_close_and_http_1_0_close_after_the_reply(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |_| {});
    let addr = server.http_addrs()[0];
    let mut s = connect(addr);
    s.write_all(
        b"GET /scrape?info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (_, head, _) = read_response(&mut s);
    assert!(head.contains("Connection: close"));
    assert!(closed(&mut s));
    let mut s = connect(addr);
    s.write_all(b"GET /scrape?info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.0\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(closed(&mut s));
}

fn garbage_gets_400_and_long_requests_431(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |_| {});
    let addr = server.http_addrs()[0];
    let mut s = connect(addr);
    s.write_all(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert!(closed(&mut s));
    let mut s = connect(addr);
    // Over the 8 KiB limit but within what the server reads, so it closes
    // with nothing unread (a close with unread data would be a reset).
    let long = format!("GET /announce?{} HTTP/1.1\r\n", "x".repeat(8_300));
    s.write_all(long.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut s);
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert!(closed(&mut s));
    let mut s = connect(addr);
    s.write_all(b"GET /announce?info_hash=%zz HTTP/1.1\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(
        status, "HTTP/1.1 200 OK",
        "client errors are bencoded failures"
    );
    assert!(body.starts_with(b"d14:failure reason"));
}

fn idle_and_half_sent_connections_do_not_block_an_announce(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| c.server.workers = 1);
    let addr = server.http_addrs()[0];
    let mut idle: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for s in idle.iter_mut().take(25) {
        s.write_all(b"GET /announce?info_hash=").unwrap();
    }
    let mut s = connect(addr);
    s.write_all(announce(b'i', 5000, 0, "").as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The half-sent ones finish their request and are answered too.
    let rest = format!(
        "{}&peer_id=-XX0001-abcdefghijkl&port=1&left=0 HTTP/1.1\r\n\r\n",
        hash(b'i')
    );
    idle[0].write_all(rest.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut idle[0]);
    assert_eq!(status, "HTTP/1.1 200 OK");
}

fn connections_over_the_cap_are_refused_old_ones_unharmed(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| {
        c.server.workers = 1;
        c.http.max_connections = 3;
    });
    let addr = server.http_addrs()[0];
    let mut old: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    // Make sure the three are accepted before the fourth arrives.
    for s in old.iter_mut() {
        s.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        read_response(s);
    }
    let mut extra = connect(addr);
    assert!(
        closed(&mut extra),
        "the fourth connection is closed at once"
    );
    for s in old.iter_mut() {
        s.write_all(announce(b'c', 4000, 0, "").as_bytes()).unwrap();
        let (status, _, _) = read_response(s);
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
}

fn private_mode_over_real_sockets(backend: HttpBackend) {
    let dir = common::fresh_dir("http-private");
    let keys = dir.join("passkeys.txt");
    std::fs::write(&keys, "# members\nmemberKey0123456789\n").unwrap();
    let server = start(backend, "127.0.0.1:0", |c| {
        c.private.enabled = true;
        c.private.passkeys = Some(keys.clone());
        c.tracker.max_numwant = 50;
    });
    let mut s = connect(server.http_addrs()[0]);
    s.write_all(announce(b'q', 1, 0, "").as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        body,
        b"d14:failure reason15:unknown passkey8:retry in5:nevere"
    );
    let keyed = announce(b'q', 1, 0, "").replace("/announce?", "/memberKey0123456789/announce?");
    s.write_all(keyed.as_bytes()).unwrap();
    let (_, _, body) = read_response(&mut s);
    assert!(
        body.starts_with(b"d8:completei1e"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

fn a_banned_address_gets_no_reply_at_all(backend: HttpBackend) {
    let dir = common::fresh_dir("http-bans");
    let bans = dir.join("banned.txt");
    std::fs::write(&bans, "# us\n127.0.0.0/8\n").unwrap();
    let server = start(backend, "127.0.0.1:0", |c| {
        c.access.banned = Some(bans.clone())
    });
    let mut s = connect(server.http_addrs()[0]);
    s.write_all(announce(b'b', 1, 0, "").as_bytes()).unwrap();
    let mut reply = Vec::new();
    // The connection is closed without a byte.
    let _ = s.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` announces for distinct torrents (`tag`, index), one after another.
fn announces_for_many_torrents(tag: u8, n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut hash = [tag; 20];
        hash[..4].copy_from_slice(&i.to_be_bytes());
        let encoded: String = hash.iter().map(|b| format!("%{b:02x}")).collect();
        out.extend_from_slice(
            format!(
                "GET /announce?info_hash={encoded}&peer_id=-XX0001-abcdefghijkl&port=7000&left=0 HTTP/1.1\r\nHost: t\r\nUser-Agent: qBittorrent/4.6.0\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    out
}

/// Write `bytes` from a thread of its own (the server stops reading while
/// its replies wait to be read) and read `n` responses; their bodies.
fn pipeline(addr: SocketAddr, bytes: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    let sent = std::thread::spawn(move || writer.write_all(&bytes));
    let mut reader = std::io::BufReader::new(s);
    let bodies = (0..n)
        .map(|_| common::read_http_response(&mut reader).1)
        .collect();
    sent.join().unwrap().unwrap();
    bodies
}

fn thousands_of_pipelined_announces_are_all_answered(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| c.server.workers = 1);
    let requests = announces_for_many_torrents(b'P', 3000);
    assert!(requests.len() > 500_000, "{}", requests.len());
    let bodies = pipeline(server.http_addrs()[0], requests, 3000);
    for b in &bodies {
        assert!(
            b.starts_with(b"d8:completei1e"),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
}

fn a_full_scrape_of_megabytes_reaches_a_fast_reader(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| {
        c.server.workers = 1;
        c.http.full_scrape = true;
    });
    let addr = server.http_addrs()[0];
    let torrents = 32_000;
    pipeline(
        addr,
        announces_for_many_torrents(b'S', torrents),
        torrents as usize,
    );
    let mut s = std::io::BufReader::new(connect(addr));
    s.get_mut()
        .write_all(b"GET /scrape HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, body) = common::read_http_response(&mut s);
    assert!(body.len() > 2 << 20, "{} bytes", body.len());
    let entries = body.windows(10).filter(|w| w == b"8:complete").count();
    assert_eq!(entries, torrents as usize);
    // And the connection still serves.
    s.get_mut()
        .write_all(announce(b'z', 1, 0, "").as_bytes())
        .unwrap();
    let (head, _) = common::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
}

/// `n` announces for torrents with random-looking info hashes (as real
/// SHA-1 ones are: they do not compress), one peer each.
fn announces_for_random_torrents(n: u64) -> (Vec<u8>, Vec<[u8; 20]>) {
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..n {
        let mut hash = [0u8; 20];
        for chunk in hash.chunks_mut(8) {
            chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
        }
        let encoded: String = hash.iter().map(|b| format!("%{b:02x}")).collect();
        out.extend_from_slice(
            format!(
                "GET /announce?info_hash={encoded}&peer_id=-XX0001-abcdefghijkl&port=7000&left=0 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        hashes.push(hash);
    }
    (out, hashes)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .expect("a valid gzip body");
    plain
}

/// GET `target` with `headers` on a fresh connection: (head, body).
fn get(addr: SocketAddr, target: &str, headers: &str) -> (String, Vec<u8>) {
    let mut s = std::io::BufReader::new(connect(addr));
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
    s.get_mut().write_all(request.as_bytes()).unwrap();
    common::read_http_response(&mut s)
}

/// Scrapes over 1 KiB go gzipped to clients that accept it: a 50,000
/// torrent full scrape (compressed once per build), a many-hash scrape,
/// and to curl --compressed; small ones and other clients get them plain.
fn big_scrapes_are_gzipped_for_clients_that_accept_it(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| {
        c.server.workers = 1;
        c.http.full_scrape = true;
    });
    let addr = server.http_addrs()[0];
    let (announces, hashes) = announces_for_random_torrents(50_000);
    pipeline(addr, announces, hashes.len());
    let (head, plain) = get(addr, "/scrape", "");
    assert!(!head.contains("Content-Encoding") && head.contains("Vary: Accept-Encoding"));
    let entries = plain.windows(10).filter(|w| w == b"8:complete").count();
    assert_eq!(entries, 50_000);
    let (head, gzipped) = get(addr, "/scrape", "Accept-Encoding: gzip, deflate\r\n");
    assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
    assert_eq!(gunzip(&gzipped), plain);
    assert!(
        gzipped.len() * 3 <= plain.len(),
        "{} bytes gzipped of {}",
        gzipped.len(),
        plain.len()
    );
    // The same build's gzip form, shared.
    let (_, again) = get(addr, "/scrape", "Accept-Encoding: gzip\r\n");
    assert_eq!(again, gzipped);
    // curl decodes it.
    let url = format!("http://{addr}/scrape");
    let curl = std::process::Command::new("curl")
        .args(["-s", "--compressed", "-D", "-", &url])
        .output()
        .expect("curl (make test installs it)");
    assert!(curl.status.success());
    let text = curl.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&text[..split]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(&text[split..], &plain[..]);
    // A scrape of 40 hashes (about 2.8 KB) too; one hash (under 1 KiB) not.
    let query: String = hashes[..40]
        .iter()
        .map(|h| {
            let e: String = h.iter().map(|b| format!("%{b:02x}")).collect();
            format!("info_hash={e}&")
        })
        .collect();
    let (head, body) = get(
        addr,
        &format!("/scrape?{query}"),
        "Accept-Encoding: gzip\r\n",
    );
    assert!(head.contains("Content-Encoding: gzip"), "{head}");
    let (_, plain40) = get(addr, &format!("/scrape?{query}"), "");
    assert_eq!(gunzip(&body), plain40);
    assert_eq!(
        plain40.windows(10).filter(|w| w == b"8:complete").count(),
        40
    );
    let one = query.split('&').next().unwrap();
    let (head, body) = get(addr, &format!("/scrape?{one}"), "Accept-Encoding: gzip\r\n");
    assert!(!head.contains("Content-Encoding") && body.starts_with(b"d5:files"));
    // Announces stay plain.
    let target = format!(
        "/announce?info_hash={}&peer_id=-XX0001-abcdefghijkl&port=1&left=0",
        hash(b'g')
    );
    let (head, _) = get(addr, &target, "Accept-Encoding: gzip\r\n");
    assert!(
        !head.contains("Content-Encoding") && !head.contains("Vary"),
        "{head}"
    );
}

fn reply_intervals_spread_within_their_jitter_band(backend: HttpBackend) {
    let server = start(backend, "127.0.0.1:0", |c| c.tracker.interval_jitter = 0.2);
    let mut s = connect(server.http_addrs()[0]);
    let mut intervals = std::collections::HashSet::new();
    for i in 0..100u16 {
        s.write_all(announce(b'j', 7000 + i, 0, "").as_bytes())
            .unwrap();
        let (_, _, body) = read_response(&mut s);
        let text = String::from_utf8_lossy(&body).into_owned();
        let at = text.find("8:intervali").expect("an interval") + 11;
        let interval: u32 = text[at..].split('e').next().unwrap().parse().unwrap();
        assert!((1440..=1800).contains(&interval), "{interval}");
        assert!(
            text.contains("12:min intervali900e"),
            "min interval is not jittered"
        );
        intervals.insert(interval);
    }
    assert!(intervals.len() > 10, "{intervals:?}");
}

/// Each scenario above, once per backend.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $name() { super::$name(super::HttpBackend::IoUring) })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name(super::HttpBackend::Epoll) })*
        }
    };
}

per_backend!(
    two_peers_meet_and_scrape_counts,
    ipv6_peers_come_in_peers6,
    ipv4_and_ipv6_peers_meet_over_http,
    keep_alive_and_pipelining_answer_in_order,
    connection_close_and_http_1_0_close_after_the_reply,
    garbage_gets_400_and_long_requests_431,
    idle_and_half_sent_connections_do_not_block_an_announce,
    connections_over_the_cap_are_refused_old_ones_unharmed,
    private_mode_over_real_sockets,
    a_banned_address_gets_no_reply_at_all,
    thousands_of_pipelined_announces_are_all_answered,
    a_full_scrape_of_megabytes_reaches_a_fast_reader,
    reply_intervals_spread_within_their_jitter_band,
    big_scrapes_are_gzipped_for_clients_that_accept_it,
);
