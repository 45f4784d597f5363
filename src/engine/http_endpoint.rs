//! What both HTTP backends decide about connections as a whole, sans I/O:
//! the slab of open connections (each an `HttpConn` with the backend's own
//! I/O state `T` beside it: an fd and its operation in flight for
//! io_uring, a socket and its registration for epoll), admission of an
//! accepted connection (the worker's connection cap, the per-address cap,
//! TLS by listener), which connections are past their deadline at a tick,
//! which have work left without a readiness event to say so, and what a
//! listener does after an accept fails.
//!
//! A failed accept (EMFILE, ENFILE, ENOBUFS, ...) leaves the connection in
//! the kernel's backlog, so trying again at once fails again: the io_uring
//! worker would re-arm its multishot accept in a loop and spin a core, and
//! the epoll worker, its readiness edge consumed, would never look at the
//! listener again. So a listener whose accept failed pauses until the
//! worker's next tick, is tried once then, and the state change (failing,
//! accepting again) is logged once, not per attempt.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use super::http_conn::HttpConn;
use crate::stats::{Counter, WorkerStats};
use crate::tracker::address_cap::{AddressCap, Held};

/// Why an accepted connection is closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The worker holds `max_connections` already.
    OverCap,
    /// The client's address holds its share already.
    OverAddressCap,
    /// rustls could not start a session.
    Tls,
    /// The backend could not set the connection up (a registration).
    Io,
}

/// An open connection: its state machine, its count against its address
/// (given back when it is removed), the generation of its slot (a
/// completion for a connection since replaced is told apart by it) and
/// the backend's I/O state.
pub struct Conn<T> {
    /// The connection's state machine.
    pub http: HttpConn,
    held: Option<Held>,
    /// The slot's generation (tells a stale completion apart).
    pub generation: u32,
    /// The backend's I/O state (fd and operation in flight, or socket).
    pub io: T,
}

/// TLS by listener: listeners from `first` on speak TLS with the
/// certificate in force when a connection is accepted.
pub struct TlsListeners {
    /// The first TLS listener's index.
    pub first: usize,
    /// The certificate in force (swapped on SIGHUP).
    pub config: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
}

/// A worker's HTTP connections beside each backend's I/O state `T`:
/// the slab, admission (caps, TLS by listener), idle deadlines, the
/// connections with work left and the listeners paused after a failed
/// accept.
pub struct HttpEndpoint<T> {
    conns: Vec<Option<Conn<T>>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    /// Connections that used their turns with work left (a backend whose
    /// readiness is edge-triggered serves them again without an event).
    unfinished: Vec<usize>,
    max_connections: usize,
    open: usize,
    address_cap: Arc<AddressCap>,
    idle_timeout: u32,
    tls: Option<TlsListeners>,
    /// Per listener: paused after a failed accept, until the next tick.
    paused: Vec<bool>,
    /// Accepting fails (logged once on the way in and once on the way out).
    failing: bool,
}

impl<T> HttpEndpoint<T> {
    /// An endpoint for `listeners` listeners holding at most
    /// `max_connections`, `address_cap` shared with the other workers.
    pub fn new(
        listeners: usize,
        max_connections: usize,
        address_cap: Arc<AddressCap>,
        idle_timeout: u32,
        tls: Option<TlsListeners>,
    ) -> HttpEndpoint<T> {
        HttpEndpoint {
            conns: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            unfinished: Vec::new(),
            max_connections,
            open: 0,
            address_cap,
            idle_timeout,
            tls,
            paused: vec![false; listeners],
            failing: false,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// A connection from `peer` was accepted on `listener` at tracker
    /// second `now`: let it in, with the I/O state `io` makes for its slot
    /// (asked only then; `None`: it could not be set up), and return the
    /// slot; or say why not (counted; the caller closes it).
    pub fn admit(
        &mut self,
        listener: usize,
        peer: SocketAddr,
        now: u32,
        stats: &WorkerStats,
        io: impl FnOnce(usize) -> Option<T>,
    ) -> Result<usize, Refused> {
        self.accepted(listener);
        if self.open >= self.max_connections {
            stats.add(Counter::HttpRefused, 1);
            return Err(Refused::OverCap);
        }
        let Ok(held) = self.address_cap.acquire(peer.ip()) else {
            stats.add(Counter::HttpRefusedAddress, 1);
            return Err(Refused::OverAddressCap);
        };
        let tls = match &self.tls {
            Some(t) if listener >= t.first => Some(t.config.load_full()),
            _ => None,
        };
        let release = |cap: &AddressCap| {
            if let Some(h) = held {
                cap.release(h);
            }
        };
        let Ok(http) = HttpConn::new(peer, now, tls) else {
            release(&self.address_cap);
            return Err(Refused::Tls);
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        let Some(io) = io(slot) else {
            release(&self.address_cap);
            self.free.push(slot);
            return Err(Refused::Io);
        };
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.conns[slot] = Some(Conn {
            http,
            held,
            generation: self.generations[slot],
            io,
        });
        stats.add(Counter::HttpConnections, 1);
        self.open += 1;
        Ok(slot)
    }

    /// The connection in `slot`, if one is open there.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Conn<T>> {
        self.conns.get_mut(slot)?.as_mut()
    }

    /// The connection in `slot` if it is still the one of `generation`
    /// (compared on its low 24 bits, as an io_uring tag carries it).
    pub fn get_current(&mut self, slot: usize, generation: u32) -> Option<&mut Conn<T>> {
        self.get_mut(slot)
            .filter(|c| c.generation & 0xff_ffff == generation)
    }

    /// Take the connection out of `slot` (its address count given back);
    /// its I/O state, for the backend to close.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let c = self.conns.get_mut(slot)?.take()?;
        if let Some(h) = c.held {
            self.address_cap.release(h);
        }
        self.free.push(slot);
        self.open -= 1;
        Some(c.io)
    }

    /// Slots that may hold a connection (0..this).
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    /// The connections idle (or with a request head incomplete) for longer
    /// than the idle timeout at tracker second `now`, counted as timeouts;
    /// the backend closes them.
    pub fn timed_out(&self, now: u32, stats: &WorkerStats) -> Vec<usize> {
        let expired: Vec<usize> = (0..self.conns.len())
            .filter(|&slot| {
                self.conns[slot]
                    .as_ref()
                    .is_some_and(|c| c.http.timed_out(now, self.idle_timeout))
            })
            .collect();
        stats.add(Counter::HttpTimeouts, expired.len() as u64);
        expired
    }

    /// `slot` used its turns with work left.
    pub fn unfinished(&mut self, slot: usize) {
        self.unfinished.push(slot);
    }

    /// Whether connections wait to be served again without an event.
    pub fn has_unfinished(&self) -> bool {
        !self.unfinished.is_empty()
    }

    /// The connections to serve again now (a slot since closed, or reused,
    /// is served harmlessly: a read that would block).
    pub fn take_unfinished(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.unfinished)
    }

    /// An accept on `listener` failed with `error`: the listener pauses
    /// until the next tick (`resume_due`). Counted; logged once per spell
    /// of failures.
    pub fn accept_failed(&mut self, listener: usize, error: &std::io::Error, stats: &WorkerStats) {
        stats.add(Counter::HttpAcceptPaused, 1);
        if let Some(p) = self.paused.get_mut(listener) {
            *p = true;
        }
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                "http: accepting connections fails ({error}); each listener tries again every tick until it works"
            );
        }
    }

    /// Whether `listener` is paused after a failed accept.
    pub fn paused(&self, listener: usize) -> bool {
        self.paused.get(listener).copied().unwrap_or(false)
    }

    /// At a tick: the paused listeners, unpaused, to be tried again.
    pub fn resume_due(&mut self) -> impl Iterator<Item = usize> + '_ {
        self.paused
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| std::mem::take(p).then_some(i))
    }

    /// An accept on `listener` worked.
    fn accepted(&mut self, _listener: usize) {
        if self.failing {
            self.failing = false;
            tracing::info!("http: accepting connections again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::peer_set::AddrHasher;

    fn endpoint(max: usize, per_address: u32) -> HttpEndpoint<u8> {
        let cap = AddressCap::new(per_address, Vec::new(), AddrHasher::new(1, 2));
        HttpEndpoint::new(2, max, Arc::new(cap), 30, None)
    }

    #[test]
    fn caps_refuse_and_removal_frees() {
        let stats = WorkerStats::default();
        let mut e = endpoint(2, 1);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let c: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let io = |_| Some(7u8);
        let first = e.admit(0, a, 0, &stats, io).unwrap();
        assert_eq!(e.admit(0, a, 0, &stats, io), Err(Refused::OverAddressCap));
        let second = e.admit(1, b, 0, &stats, io).unwrap();
        assert_eq!(e.admit(0, c, 0, &stats, io), Err(Refused::OverCap));
        let generation = e.get_mut(first).unwrap().generation;
        assert_eq!(e.remove(first), Some(7));
        assert_eq!(e.remove(first), None, "removed once");
        assert_eq!(e.open(), 1);
        // The slot is reused under a new generation.
        let again = e.admit(0, a, 0, &stats, io).unwrap();
        assert_eq!(again, first);
        assert!(e.get_current(again, generation).is_none());
        assert!(e.get_current(again, generation + 1).is_some());
        // A backend that cannot set the connection up gives the slot back.
        e.remove(second);
        assert_eq!(e.admit(0, c, 0, &stats, |_| None), Err(Refused::Io));
        assert_eq!(e.open(), 1);
        assert_eq!(stats.get(Counter::HttpRefused), 1);
        assert_eq!(stats.get(Counter::HttpRefusedAddress), 1);
        assert_eq!(stats.get(Counter::HttpConnections), 3);
    }

    #[test]
    fn idle_connections_time_out_at_a_tick() {
        let stats = WorkerStats::default();
        let mut e = endpoint(10, 0);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let slot = e.admit(0, peer, 100, &stats, |_| Some(0)).unwrap();
        assert!(e.timed_out(120, &stats).is_empty());
        assert_eq!(e.timed_out(131, &stats), vec![slot]);
        assert_eq!(stats.get(Counter::HttpTimeouts), 1);
    }

    #[test]
    fn a_failed_accept_pauses_its_listener_until_the_tick() {
        let stats = WorkerStats::default();
        let mut e = endpoint(10, 0);
        let emfile = std::io::Error::from_raw_os_error(24);
        e.accept_failed(1, &emfile, &stats);
        assert!(e.paused(1) && !e.paused(0));
        assert_eq!(e.resume_due().collect::<Vec<_>>(), vec![1]);
        assert!(!e.paused(1));
        assert_eq!(e.resume_due().count(), 0, "tried once per tick");
        e.accept_failed(1, &emfile, &stats);
        assert!(e.failing);
        e.resume_due().for_each(drop);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(e.admit(1, peer, 0, &stats, |_| Some(0)).is_ok());
        assert!(!e.failing, "a working accept ends the spell");
        assert_eq!(stats.get(Counter::HttpAcceptPaused), 2);
    }
}
