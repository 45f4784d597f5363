//! The operator's listeners (metrics, the management API): one thread
//! serves up to `Service::MAX_CLIENTS` connections at once with `poll(2)` on
//! non-blocking sockets, one request per connection, and each connection
//! has `DEADLINE` from accept to its last byte written, however it
//! trickles. When every slot is taken the oldest connection makes room, so
//! a load balancer's health check or a site's hook never waits behind a
//! slow client. What a request gets is the `Service`'s business: this
//! only moves bytes, at most `Service::MAX_REQUEST` of them in.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What a listener answers.
pub trait Service: Send + 'static {
    /// The thread's name, and the log's.
    const NAME: &'static str;
    /// The most a request may be (head and body); a service answers (or
    /// refuses) a request that reached it.
    const MAX_REQUEST: usize;
    /// Connections served at once.
    const MAX_CLIENTS: usize;
    /// The whole answer to `request`, or `None` while it is incomplete
    /// (and shorter than `MAX_REQUEST`).
    fn answer(&self, request: &[u8]) -> Option<Vec<u8>>;
}

/// From accept to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

struct Client {
    stream: TcpStream,
    head: Vec<u8>,
    /// The answer, once the request is complete.
    out: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// Bind `addr` and serve `service` on a thread of its own; returns the
/// bound address (port 0 resolved).
pub fn spawn<S: Service>(addr: SocketAddr, service: S) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(S::NAME.into())
        .spawn(move || serve(&listener, &service))?;
    Ok(bound)
}

fn serve<S: Service>(listener: &TcpListener, service: &S) {
    let mut clients: Vec<Client> = Vec::with_capacity(S::MAX_CLIENTS);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(S::MAX_CLIENTS + 1);
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
            fds[i].revents == 0 || step(c, service)
        });
        if fds[0].revents != 0 && !accept::<S>(listener, &mut clients) {
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

/// Take every waiting connection; at `S::MAX_CLIENTS` the oldest one goes.
/// False if an accept failed (not for want of connections).
fn accept<S: Service>(listener: &TcpListener, clients: &mut Vec<Client>) -> bool {
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
        if admit(clients, client, S::MAX_CLIENTS) {
            tracing::debug!(
                "{}: {} connections open, the oldest closed",
                S::NAME,
                S::MAX_CLIENTS
            );
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
fn step<S: Service>(c: &mut Client, service: &S) -> bool {
    if c.out.is_empty() {
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let room = S::MAX_REQUEST.saturating_sub(c.head.len());
                    c.head.extend_from_slice(&buf[..n.min(room)]);
                    if c.head.len() == S::MAX_REQUEST {
                        break; // enough to answer (or refuse)
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        match service.answer(&c.head) {
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
