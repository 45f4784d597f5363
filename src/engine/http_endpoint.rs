//! What both HTTP backends decide about connections as a whole, sans I/O:
//! admission of an accepted connection (the worker's connection cap, the
//! per-address cap, TLS by listener) and what a listener does after an
//! accept fails.
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
}

/// A connection let in: its state machine and its count against its
/// address (given back by `HttpEndpoint::release`).
pub struct Admitted {
    pub http: HttpConn,
    pub held: Option<Held>,
}

/// TLS by listener: listeners from `first` on speak TLS with the
/// certificate in force when a connection is accepted.
pub struct TlsListeners {
    pub first: usize,
    pub config: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
}

pub struct HttpEndpoint {
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

impl HttpEndpoint {
    pub fn new(
        listeners: usize,
        max_connections: usize,
        address_cap: Arc<AddressCap>,
        idle_timeout: u32,
        tls: Option<TlsListeners>,
    ) -> HttpEndpoint {
        HttpEndpoint {
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
    /// second `now`: let it in (counted open until `release`) or say why
    /// not (counted; the caller closes it).
    pub fn admit(
        &mut self,
        listener: usize,
        peer: SocketAddr,
        now: u32,
        stats: &WorkerStats,
    ) -> Result<Admitted, Refused> {
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
        let Ok(http) = HttpConn::new(peer, now, tls) else {
            if let Some(h) = held {
                self.address_cap.release(h);
            }
            return Err(Refused::Tls);
        };
        stats.add(Counter::HttpConnections, 1);
        self.open += 1;
        Ok(Admitted { http, held })
    }

    /// A connection let in by `admit` is gone.
    pub fn release(&mut self, held: Option<Held>) {
        if let Some(h) = held {
            self.address_cap.release(h);
        }
        self.open -= 1;
    }

    /// Whether a connection has been idle (or its request head
    /// incomplete) for longer than the idle timeout at tracker second `now`.
    pub fn timed_out(&self, http: &HttpConn, now: u32) -> bool {
        http.timed_out(now, self.idle_timeout)
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

    fn endpoint(max: usize, per_address: u32) -> HttpEndpoint {
        let cap = AddressCap::new(per_address, Vec::new(), AddrHasher::new(1, 2));
        HttpEndpoint::new(2, max, Arc::new(cap), 30, None)
    }

    #[test]
    fn caps_refuse_and_release_frees() {
        let stats = WorkerStats::default();
        let mut e = endpoint(2, 1);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let c: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let first = e.admit(0, a, 0, &stats).ok().unwrap();
        assert_eq!(
            e.admit(0, a, 0, &stats).err(),
            Some(Refused::OverAddressCap)
        );
        let _second = e.admit(1, b, 0, &stats).ok().unwrap();
        assert_eq!(e.admit(0, c, 0, &stats).err(), Some(Refused::OverCap));
        e.release(first.held);
        assert_eq!(e.open(), 1);
        assert!(e.admit(0, a, 0, &stats).is_ok());
        assert_eq!(stats.get(Counter::HttpRefused), 1);
        assert_eq!(stats.get(Counter::HttpRefusedAddress), 1);
        assert_eq!(stats.get(Counter::HttpConnections), 3);
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
        assert!(e.admit(1, peer, 0, &stats).is_ok());
        assert!(!e.failing, "a working accept ends the spell");
        assert_eq!(stats.get(Counter::HttpAcceptPaused), 2);
    }
}
