//! The metrics listener (`--metrics ADDR`): `/metrics`, `/health`, the
//! stats page and its data. An operator's endpoint, not a client one, but a
//! load balancer's health check must not wait behind a slow client: one
//! thread serves up to `MAX_CLIENTS` connections at once with `poll(2)` on
//! non-blocking sockets, one request per connection, and each connection
//! has `DEADLINE` from accept to its last byte written, however it
//! trickles. When every slot is taken the oldest connection makes room.
//! Nothing here touches the workers' path; it only reads counters and the
//! table.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::unix_now;
use crate::metrics::{MetricsState, respond};

const MAX_HEAD: usize = 8 * 1024;

/// Connections served at once.
pub const MAX_CLIENTS: usize = 64;

/// From accept to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

struct Client {
    stream: TcpStream,
    head: Vec<u8>,
    /// The answer, once the head is complete.
    out: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// Bind `addr` and serve it on a thread of its own; returns the bound
/// address (port 0 resolved).
pub fn spawn(addr: SocketAddr, state: Arc<MetricsState>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(&listener, &state))?;
    Ok(bound)
}

fn serve(listener: &TcpListener, state: &MetricsState) {
    let mut clients: Vec<Client> = Vec::with_capacity(MAX_CLIENTS);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(MAX_CLIENTS + 1);
    // After a failed accept (EMFILE) the listener stays readable: it is
    // left out of the poll for a while instead of failing in a loop.
    let mut paused_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        clients.retain(|c| c.deadline > now);
        paused_until = paused_until.filter(|t| *t > now);
        fds.clear();
        let listening = if paused_until.is_some() {
            0
        } else {
            libc::POLLIN
        };
        fds.push(pollfd(listener.as_raw_fd(), listening));
        for c in &clients {
            let wants = if c.out.is_empty() {
                libc::POLLIN
            } else {
                libc::POLLOUT
            };
            fds.push(pollfd(c.stream.as_raw_fd(), wants));
        }
        let next = clients.iter().map(|c| c.deadline).chain(paused_until).min();
        let wait = next.map_or(1000, |d| d.saturating_duration_since(now).as_millis() + 1);
        // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd
        // entries, each naming an fd owned by `listener` or `clients`.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, wait.min(1000) as i32) };
        if ready <= 0 {
            continue;
        }
        let mut i = 0;
        clients.retain_mut(|c| {
            i += 1;
            fds[i].revents == 0 || step(c, state)
        });
        if fds[0].revents != 0 && !accept(listener, &mut clients) {
            paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// How long the listener rests after an accept failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// Take every waiting connection; at `MAX_CLIENTS` the oldest one goes.
/// False if an accept failed (not for want of connections).
fn accept(listener: &TcpListener, clients: &mut Vec<Client>) -> bool {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => match super::socket::accept_error(&e) {
                super::socket::AcceptError::Drained => return true,
                super::socket::AcceptError::Retry => continue,
                super::socket::AcceptError::Failed => return false,
            },
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let client = Client {
            stream,
            head: Vec::new(),
            out: Vec::new(),
            sent: 0,
            deadline: Instant::now() + DEADLINE,
        };
        if admit(clients, client, MAX_CLIENTS) {
            tracing::debug!("metrics: {MAX_CLIENTS} connections open, the oldest closed");
        }
    }
}

/// Add `new` to `list`, which holds at most `cap`: the oldest goes to make
/// room (dropped, so a connection is closed). Returns whether one went.
fn admit<T>(list: &mut Vec<T>, new: T, cap: usize) -> bool {
    let full = list.len() >= cap;
    if full {
        list.remove(0);
    }
    list.push(new);
    full
}

/// Move what the socket allows; false once the connection is done (the
/// answer written, the peer gone, or an error).
fn step(c: &mut Client, state: &MetricsState) -> bool {
    if c.out.is_empty() {
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let room = MAX_HEAD.saturating_sub(c.head.len());
                    c.head.extend_from_slice(&buf[..n.min(room)]);
                    if c.head.len() == MAX_HEAD {
                        break; // enough to answer (or refuse)
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        match answer(&c.head, state) {
            Some(out) => c.out = out,
            None => return true,
        }
    }
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    false
}

/// The whole answer to the request head in `head`, or `None` while it is
/// incomplete (and shorter than `MAX_HEAD`).
fn answer(head: &[u8], state: &MetricsState) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("/");
            (
                req.method.unwrap_or(""),
                path.split('?').next().unwrap_or("/"),
            )
        }
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => return None,
        _ => {
            let bad = response(400, "Bad Request", "text/plain", b"bad request\n", true);
            return Some(bad);
        }
    };
    Some(match method {
        "GET" | "HEAD" => {
            let r = respond(state, path, unix_now());
            response(r.status, r.reason, r.content_type, &r.body, method == "GET")
        }
        _ => response(405, "Method Not Allowed", "text/plain", b"GET only\n", true),
    })
}

/// The whole response; a HEAD gets the head a GET would (its length too).
fn response(status: u16, reason: &str, content_type: &str, body: &[u8], with: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::admit;

    #[test]
    fn at_its_cap_the_oldest_connection_makes_room() {
        let mut list = Vec::new();
        for i in 0..3 {
            assert!(!admit(&mut list, i, 3));
        }
        assert!(admit(&mut list, 3, 3));
        assert!(admit(&mut list, 4, 3));
        assert_eq!(list, [2, 3, 4]);
    }
}
