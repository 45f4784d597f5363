//! A small BEP 15 client for the integration tests.
#![allow(dead_code)]

pub mod admin;
pub mod mariadb;
pub mod redis;
pub mod tls;
pub mod tracker;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

pub const PROTOCOL_ID: u64 = 0x41727101980;

/// A blocking UDP client. The read timeout only turns a lost reply into a
/// test failure instead of a hang; no test waits on it to pass.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    next_tid: u32,
}

pub struct AnnounceReply {
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
    pub peers: Vec<SocketAddr>,
}

impl Client {
    pub fn new(bind: &str, server: SocketAddr) -> Client {
        let socket = UdpSocket::bind(bind).expect("bind client");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            socket,
            server,
            next_tid: 1,
        }
    }

    pub fn tid(&mut self) -> u32 {
        self.next_tid += 1;
        self.next_tid
    }

    pub fn send(&self, packet: &[u8]) {
        self.socket.send_to(packet, self.server).unwrap();
    }

    pub fn recv(&self) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        // A wait with a timeout may end early with EINTR (seen in CI when
        // the test process was stopped and continued): wait again.
        let (n, from) = loop {
            match self.socket.recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("reply"),
            }
        };
        assert_eq!(
            from, self.server,
            "reply must come from the address we sent to"
        );
        buf[..n].to_vec()
    }

    pub fn connect(&mut self) -> u64 {
        let tid = self.tid();
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        self.send(&p);
        let r = self.recv();
        assert_eq!(r.len(), 16);
        assert_eq!(r[..4], 0u32.to_be_bytes());
        assert_eq!(r[4..8], tid.to_be_bytes());
        u64::from_be_bytes(r[8..16].try_into().unwrap())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn announce_packet(
        &mut self,
        cid: u64,
        info_hash: [u8; 20],
        event: u32,
        left: u64,
        num_want: i32,
        port: u16,
    ) -> (u32, Vec<u8>) {
        let tid = self.tid();
        let mut p = cid.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p.extend_from_slice(&info_hash);
        p.extend_from_slice(b"-RT0001-abcdefghijkl");
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&event.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&num_want.to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        (tid, p)
    }

    pub fn announce(
        &mut self,
        cid: u64,
        info_hash: [u8; 20],
        event: u32,
        left: u64,
        num_want: i32,
        port: u16,
    ) -> AnnounceReply {
        let (tid, p) = self.announce_packet(cid, info_hash, event, left, num_want, port);
        self.send(&p);
        let r = self.recv();
        assert!(r.len() >= 20, "announce reply of {} bytes", r.len());
        assert_eq!(r[..4], 1u32.to_be_bytes(), "action announce: {r:?}");
        assert_eq!(r[4..8], tid.to_be_bytes());
        let be = |at: usize| u32::from_be_bytes(r[at..at + 4].try_into().unwrap());
        let entry = if self.server.is_ipv4() { 6 } else { 18 };
        assert_eq!((r.len() - 20) % entry, 0);
        let peers = r[20..]
            .chunks(entry)
            .map(|c| {
                let port = u16::from_be_bytes([c[entry - 2], c[entry - 1]]);
                let ip: std::net::IpAddr = if entry == 6 {
                    <[u8; 4]>::try_from(&c[..4]).unwrap().into()
                } else {
                    <[u8; 16]>::try_from(&c[..16]).unwrap().into()
                };
                SocketAddr::new(ip, port)
            })
            .collect();
        AnnounceReply {
            interval: be(8),
            leechers: be(12),
            seeders: be(16),
            peers,
        }
    }

    /// (seeders, completed, leechers) per hash.
    pub fn scrape(&mut self, cid: u64, hashes: &[[u8; 20]]) -> Vec<(u32, u32, u32)> {
        let tid = self.tid();
        let mut p = cid.to_be_bytes().to_vec();
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        for h in hashes {
            p.extend_from_slice(h);
        }
        self.send(&p);
        let r = self.recv();
        assert_eq!(r[..4], 2u32.to_be_bytes(), "action scrape: {r:?}");
        assert_eq!(r[4..8], tid.to_be_bytes());
        r[8..]
            .chunks(12)
            .map(|c| {
                let be = |at: usize| u32::from_be_bytes(c[at..at + 4].try_into().unwrap());
                (be(0), be(4), be(8))
            })
            .collect()
    }
}

/// An empty directory of this test's own (`name` unique per test), under
/// the system's temporary directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Read one HTTP response from `s`: its head (status line and headers) and
/// exactly Content-Length bytes of body.
pub fn read_http_response(s: &mut impl std::io::Read) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        // A read may end early with EINTR (seen in CI): read again.
        let n = match s.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "connection closed before a response");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, body)
}

/// `url` loaded in headless chromium (the page's scripts run to the end in
/// virtual time), its DOM as text. `make test` installs Debian's chromium.
pub fn browser_dom(url: &str, profile: &std::path::Path) -> String {
    use std::process::Command;
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a headless browser: `make test` installs Debian's chromium");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
            // Runs the page's script (and its fetch of /stats.json) to
            // completion in virtual time, then prints the DOM.
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "page script did not render:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}
