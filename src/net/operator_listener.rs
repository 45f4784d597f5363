//! The operator's listeners (metrics, the management API): one thread
//! serves up to `Service::MAX_CLIENTS` connections at once with `poll(2)` on
//! non-blocking sockets, one request per connection, and each connection
//! has `DEADLINE` from accept to its last byte written, however it
//! trickles. When every slot is taken the oldest connection makes room, so
//! a load balancer's health check or a site's hook never waits behind a
//! slow client. What a request gets is the `Service`'s business: this
//! only moves bytes (`conn`), at most `Service::MAX_REQUEST` of
//! them in, over TLS when given a certificate (a handshake that trickles
//! is bounded by the same deadline).
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

mod conn;

use conn::Conn;

/// What a service says to a request's bytes.
pub enum Answer {
    /// The whole response.
    Done(Vec<u8>),
    /// Ask again once the request holds this many bytes (its body).
    Wait(usize),
}

/// What a listener answers.
pub trait Service: Send + 'static {
    /// The thread's name, and the log's.
    const NAME: &'static str;
    /// The most a request's head may be.
    const MAX_HEAD: usize;
    /// The most a request may be, head and body.
    const MAX_REQUEST: usize;
    /// Connections served at once.
    const MAX_CLIENTS: usize;
    /// The answer to `request`, asked once its head has ended (or
    /// `MAX_HEAD` bytes came without an end, or the client closed), then
    /// again once it holds the bytes a `Wait` asked for.
    fn answer(&self, request: &[u8]) -> Answer;
}

/// From accept to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Bind `addr` and serve `service` on a thread of its own, over TLS with
/// `tls`; returns the bound address (port 0 resolved).
pub fn spawn<S: Service>(
    addr: SocketAddr,
    service: S,
    tls: Option<Arc<ServerConfig>>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(S::NAME.into())
        .spawn(move || serve(&listener, &service, tls.as_ref()))?;
    Ok(bound)
}

fn serve<S: Service>(listener: &TcpListener, service: &S, tls: Option<&Arc<ServerConfig>>) {
    let mut clients: Vec<Conn> = Vec::with_capacity(S::MAX_CLIENTS);
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
            fds.push(pollfd(c.fd(), c.interest()));
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
            fds[i].revents == 0 || c.step(service)
        });
        if fds[0].revents != 0 && !accept::<S>(listener, &mut clients, tls) {
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
fn accept<S: Service>(
    listener: &TcpListener,
    clients: &mut Vec<Conn>,
    tls: Option<&Arc<ServerConfig>>,
) -> bool {
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
        let tls = match tls.map(|config| ServerConnection::new(Arc::clone(config))) {
            Some(Ok(mut conn)) => {
                // The answer is bounded by the service (10,000 peers at
                // most), and goes to rustls whole.
                conn.set_buffer_limit(None);
                Some(Box::new(conn))
            }
            Some(Err(_)) => continue,
            None => None,
        };
        let client = Conn::new(stream, tls, Instant::now() + DEADLINE);
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
