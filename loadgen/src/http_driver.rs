//! HTTP mode: announces and scrapes over keep-alive TCP connections, one
//! per source address (so the tracker sees as many client addresses as
//! the UDP mode uses), pipelined up to a depth per connection, driven by
//! epoll on non-blocking sockets.
//!
//! Responses on a connection come in request order, so each connection
//! keeps a FIFO of its requests' kinds and intended send times; a response
//! is checked (status 200, a bencoded announce / scrape / failure body)
//! and timed against the head of that FIFO. The same closed, open and once
//! modes as UDP, with the same counters and histogram.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::RngExt;
use rand::rngs::SmallRng;

use crate::driver::{Counts, Mode, Progress, RunConfig, RunResult};
use crate::workload::{Kind, Workload};

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    /// Requests sent and not yet answered: kind and intended time (ns).
    pending: VecDeque<(Kind, u64)>,
    /// Once mode: next of this source's peers to announce.
    cursor: u32,
    dead: bool,
}

fn bind_connect(source: Ipv4Addr, target: SocketAddr) -> io::Result<TcpStream> {
    // std cannot pick the source address of a TCP connection; socket2-free
    // version: bind with libc on a fresh socket, then hand it to std.
    // SAFETY: plain socket calls on an fd we create and own; sockaddr_in
    // is fully initialised before use.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(source).to_be();
        if libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&sa) as u32,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let SocketAddr::V4(t) = target else {
            return Err(io::Error::other("IPv4 targets only"));
        };
        let mut ta: libc::sockaddr_in = std::mem::zeroed();
        ta.sin_family = libc::AF_INET as libc::sa_family_t;
        ta.sin_port = t.port().to_be();
        ta.sin_addr.s_addr = u32::from(*t.ip()).to_be();
        if libc::connect(
            fd,
            (&ta as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&ta) as u32,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

fn write_announce(w: &Workload, out: &mut Vec<u8>, k: u32, event: &str) {
    let (_, port) = w.peer_address(k);
    let left = if w.is_seeder(k) { 0 } else { 1 << 20 };
    let (mut uploaded, mut downloaded) = (0, 0);
    out.extend_from_slice(b"GET /");
    if let Some(key) = w.passkey(k) {
        out.extend_from_slice(&key);
        out.push(b'/');
        uploaded = w.next_total();
        downloaded = if left == 0 { 0 } else { uploaded };
    }
    out.extend_from_slice(b"announce?info_hash=");
    push_hex(out, &w.info_hash(w.peer_torrent(k)));
    let _ = write!(
        out,
        "&peer_id=-LG0001-{k:012}&port={port}&uploaded={uploaded}&downloaded={downloaded}&left={left}&compact=1&numwant={}{event} HTTP/1.1\r\nHost: t\r\n\r\n",
        w.config.numwant
    );
}

fn write_scrape(w: &Workload, out: &mut Vec<u8>, rng: &mut SmallRng) {
    out.extend_from_slice(b"GET /scrape?");
    for i in 0..w.config.scrape_hashes {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(b"info_hash=");
        let k = rng.random_range(0..w.config.peers);
        push_hex(out, &w.info_hash(w.peer_torrent(k)));
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
}

fn random_event(rng: &mut SmallRng, weights: &[u32; 4]) -> &'static str {
    let total: u32 = weights.iter().sum::<u32>().max(1);
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return ["", "&event=started", "&event=completed", "&event=stopped"][i];
        }
        x -= w;
    }
    ""
}

/// One framed response: its total length, status and body.
type Response<'a> = (usize, u16, &'a [u8]);

/// One complete response at the start of `buf` (`None`: not complete yet;
/// `Err`: not an HTTP response).
fn parse_response(buf: &[u8]) -> Option<Result<Response<'_>, ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok();
    let Some(head) = head else {
        return Some(Err(()));
    };
    let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    let len = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let (Some(status), Some(len)) = (status, len) else {
        return Some(Err(()));
    };
    if buf.len() < end + len {
        return None;
    }
    Some(Ok((end + len, status, &buf[end..end + len])))
}

pub fn run(
    cfg: &RunConfig,
    w: &Workload,
    rng: &mut SmallRng,
    progress: &mut dyn Progress,
) -> io::Result<RunResult> {
    let n = w.config.sources as usize;
    let mut conns = Vec::with_capacity(n);
    let base = u32::from(cfg.first_source);
    for i in 0..n {
        let stream = bind_connect(Ipv4Addr::from(base + i as u32), cfg.target)?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        conns.push(Conn {
            stream,
            out: Vec::new(),
            written: 0,
            inbuf: Vec::new(),
            pending: VecDeque::new(),
            cursor: 0,
            dead: false,
        });
    }
    // SAFETY: plain syscalls; every fd registered is open for the whole run.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd, socket fd and event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
    }
    let depth = match cfg.mode {
        Mode::Closed { inflight } | Mode::Once { inflight } => inflight.div_ceil(n).max(1),
        Mode::Open { .. } => usize::MAX,
    };
    let start = Instant::now();
    let measure_from = cfg.warmup.as_nanos() as u64;
    let end = (cfg.warmup + cfg.duration).as_nanos() as u64;
    let timeout = cfg.timeout.as_nanos() as u64;
    let mut counts = Counts::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut scheduled = 0u64;
    let mut next = 0usize;
    let mut max_lag = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n.min(1024)];
    let mut last_tick = 0u64;
    let once = matches!(cfg.mode, Mode::Once { .. });
    let mut chunk = vec![0u8; 65536];
    loop {
        let now = start.elapsed().as_nanos() as u64;
        let once_done = once
            && conns
                .iter()
                .enumerate()
                .all(|(s, c)| c.cursor >= w.peers_of_source(s as u32));
        let sending = now < end && !once_done;
        let outstanding: usize = conns.iter().map(|c| c.pending.len()).sum();
        if !sending && (outstanding == 0 || now > end + 2 * timeout) {
            counts.lost += outstanding as u64;
            break;
        }
        // Queue requests.
        if sending {
            let mut budget = match cfg.mode {
                Mode::Open { rate } => {
                    let due = ((now as f64 / 1e9) * rate) as u64;
                    let behind = due.saturating_sub(scheduled);
                    if behind > 0 {
                        let intended = (scheduled as f64 / rate * 1e9) as u64;
                        max_lag = max_lag.max(now.saturating_sub(intended));
                    }
                    behind as usize
                }
                _ => usize::MAX,
            };
            let mut visited = 0;
            while budget > 0 && visited < n {
                let s = next;
                next = (next + 1) % n;
                visited += 1;
                let c = &mut conns[s];
                if c.dead {
                    continue;
                }
                while budget > 0 && c.pending.len() < depth {
                    let intended = match cfg.mode {
                        Mode::Open { rate } => {
                            let t = (scheduled as f64 / rate * 1e9) as u64;
                            scheduled += 1;
                            t
                        }
                        _ => now,
                    };
                    let kind = if once {
                        if c.cursor >= w.peers_of_source(s as u32) {
                            break;
                        }
                        let k = s as u32 + c.cursor * w.config.sources;
                        c.cursor += 1;
                        write_announce(w, &mut c.out, k, "&event=started");
                        Kind::Announce
                    } else {
                        match w.random_kind(rng) {
                            Kind::Scrape => {
                                write_scrape(w, &mut c.out, rng);
                                Kind::Scrape
                            }
                            _ => {
                                let k = w.random_peer_of_source(s as u32, rng);
                                let ev = random_event(rng, &w.config.events);
                                write_announce(w, &mut c.out, k, ev);
                                Kind::Announce
                            }
                        }
                    };
                    c.pending.push_back((kind, intended));
                    counts.sent += 1;
                    budget = budget.saturating_sub(1);
                }
                flush(c);
            }
        }
        // Replies.
        let wait = if sending {
            let now = start.elapsed().as_nanos() as u64;
            crate::driver::idle_ns(cfg, scheduled, now)
        } else {
            0
        };
        let ready = crate::driver::epoll_wait_ns(ep, &mut events, wait);
        for e in &events[..ready] {
            let s = e.u64 as usize;
            let c = &mut conns[s];
            flush(c);
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(m) => c.inbuf.extend_from_slice(&chunk[..m]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
            }
            let at = start.elapsed().as_nanos() as u64;
            let mut used = 0;
            while let Some(parsed) = parse_response(&c.inbuf[used..]) {
                let Ok((len, status, body)) = parsed else {
                    counts.invalid += 1;
                    c.dead = true;
                    break;
                };
                used += len;
                counts.replies_total += 1;
                let Some((kind, intended)) = c.pending.pop_front() else {
                    counts.invalid += 1;
                    continue;
                };
                let measured = intended >= measure_from && intended < end;
                let ok = status == 200
                    && match kind {
                        Kind::Scrape => body.starts_with(b"d5:files"),
                        _ => body.starts_with(b"d8:complete"),
                    };
                if status == 200 && body.starts_with(b"d14:failure reason") {
                    counts.errors += 1;
                } else if !ok {
                    counts.invalid += 1;
                } else if at >= measure_from && at < end {
                    counts.arrived += 1;
                }
                if ok && measured {
                    match kind {
                        Kind::Scrape => counts.scrapes += 1,
                        _ => counts.announces += 1,
                    }
                    let _ = hist.record((at.saturating_sub(intended) / 1000).max(1));
                }
            }
            c.inbuf.drain(..used);
            if c.dead {
                // The server closed (some close after every response, keep-
                // alive or not): what was still pending is lost; open a new
                // connection from the same source address and go on.
                counts.lost += c.pending.len() as u64;
                c.pending.clear();
                c.out.clear();
                c.written = 0;
                c.inbuf.clear();
                if sending
                    && let Ok(stream) = bind_connect(Ipv4Addr::from(base + s as u32), cfg.target)
                    && stream.set_nonblocking(true).is_ok()
                {
                    let _ = stream.set_nodelay(true);
                    let mut ev = libc::epoll_event {
                        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
                        u64: s as u64,
                    };
                    // SAFETY: valid epoll fd, socket fd and event.
                    unsafe {
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut ev)
                    };
                    c.stream = stream;
                    c.dead = false;
                    counts.reconnects += 1;
                }
            }
        }
        if now - last_tick > 100_000_000 {
            last_tick = now;
            progress.tick(Duration::from_nanos(now), counts.replies_total);
        }
    }
    // SAFETY: closing the epoll fd we created.
    unsafe { libc::close(ep) };
    let elapsed = start.elapsed().as_nanos() as u64;
    Ok(RunResult {
        counts,
        latency_us: hist,
        measured: Duration::from_nanos(elapsed.min(end) - elapsed.min(measure_from)),
        max_lag: Duration::from_nanos(max_lag),
    })
}

/// Write as much of the connection's queued requests as the socket takes.
fn flush(c: &mut Conn) {
    while c.written < c.out.len() {
        match c.stream.write(&c.out[c.written..]) {
            Ok(0) => break,
            Ok(m) => c.written += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                c.dead = true;
                break;
            }
        }
    }
    if c.written == c.out.len() {
        c.out.clear();
        c.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 X\r\ncontent-length: 0\r\n\r\n";
        let Some(Ok((len, status, body))) = parse_response(r) else {
            panic!()
        };
        assert_eq!((status, body), (200, &b"abc"[..]));
        let Some(Ok((_, status, body))) = parse_response(&r[len..]) else {
            panic!()
        };
        assert_eq!((status, body.len()), (404, 0));
        assert!(parse_response(&r[..20]).is_none());
        assert!(matches!(parse_response(b"junk\r\n\r\n"), Some(Err(()))));
    }

    #[test]
    fn info_hashes_are_percent_encoded() {
        let mut out = Vec::new();
        push_hex(&mut out, &[0x00, 0xab, 0x7f]);
        assert_eq!(out, b"%00%AB%7F");
    }
}
