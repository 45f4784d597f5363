//! The per-worker engine, sans I/O: what every backend drives.
//!
//! One `Engine` per worker thread owns what every backend would otherwise
//! write again: the worker's RNG, its counters, the clock (tracker seconds from
//! the `Instant`s the backend passes in; the engine never reads a clock),
//! its timers (`poll_timeout` / `handle_timeout`, as quinn-proto), the
//! request handling, and in cluster mode the worker's outbox of swarm
//! changes. A UDP backend hands it a whole completion batch
//! (`handle_udp_batch`, the prefetching pipeline in `batch.rs`); the HTTP
//! backend drives one `http_conn::HttpConn` per connection, which hands it
//! one parsed request head at a time (`handle_http_request`). Backends
//! (io_uring, recvmmsg/sendmmsg) only move bytes in and out of it.
//!
//! - `udp.rs`, `http.rs`: each frontend's wire decisions (what a datagram
//!   or a request head becomes).
//! - `http_conn.rs`: one HTTP connection's state machine (framing,
//!   pipelining, the output bound, timeouts, TLS).
//! - `http_endpoint.rs`: admission of HTTP connections (caps, TLS by
//!   listener) and listeners paused after a failed accept.
//! - `policy.rs`: the one chain an announce goes through for both.
//! - `batch.rs`: the UDP batch pipeline.
//! - `outbox.rs`: cluster mode's bounded ring of the worker's changes.
//! - `timers.rs`: periodic deadlines as data (the process's and the
//!   workers').
#![forbid(unsafe_code)]

pub mod batch;
pub mod counting;
pub mod http;
pub mod http_conn;
pub mod http_endpoint;
pub mod outbox;
pub mod policy;
pub mod timers;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::protocol::http::{HeadError, RequestHead};
use crate::protocol::udp::AnnouncePeek;
use crate::stats::{Counter, WorkerStats};
use crate::tracker::{self, Tracker};
use http::{Buffers, HttpPolicy, RequestKind};
use outbox::Outbox;
use timers::{TimerKind, TimerTable};

/// A worker's tick: the longest it sleeps without a look at its stop flag
/// (and, for HTTP, at connection deadlines), and the period of its sweep of
/// the swarm table (with each worker taking `sweep_per_tick` shards, a
/// full pass takes about 30 s). Every backend wakes by it.
pub const TICK: Duration = Duration::from_millis(250);

/// A worker's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerTimer {
    /// Expire the next few shards of the swarm table.
    Sweep,
}

impl TimerKind for WorkerTimer {
    const ALL: &'static [Self] = &[WorkerTimer::Sweep];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a worker's engine is built from.
pub struct EngineSetup {
    /// The shared tracker.
    pub tracker: Arc<Tracker>,
    /// Every worker's counters.
    pub stats: Arc<[WorkerStats]>,
    /// This worker's block in `stats` (it is the only writer).
    pub stats_index: usize,
    /// Tracker time zero (shared by every worker and main).
    pub started: Instant,
    /// Swarm-table shards this worker expires per sweep.
    pub sweep_per_tick: usize,
    /// The HTTP frontend's settings (unused by UDP workers).
    pub http: HttpPolicy,
    /// Seed of the worker's RNG (peer selection): drawn by the caller, so
    /// the engine never asks the OS.
    pub seed: [u8; 32],
    /// Cluster mode: where this worker's swarm changes go.
    pub outbox: Outbox,
}

/// One worker's engine: its RNG, counters, clock, timers, the request
/// handling every backend drives and in cluster mode its outbox.
pub struct Engine {
    tracker: Arc<Tracker>,
    stats: Arc<[WorkerStats]>,
    stats_index: usize,
    rng: SmallRng,
    started: Instant,
    sweep_per_tick: usize,
    timers: TimerTable<WorkerTimer, 1>,
    http_policy: HttpPolicy,
    http_buffers: Buffers,
    /// The batch pipeline's peek and picks, one per datagram (reused: it
    /// only grows to the largest batch).
    ahead: Vec<(Option<AnnouncePeek>, tracker::swarm::Picks)>,
    outbox: Outbox,
}

impl Engine {
    /// The engine of a worker starting at `now`.
    pub fn new(setup: EngineSetup, now: Instant) -> Engine {
        let mut timers = TimerTable::default();
        timers.arm(WorkerTimer::Sweep, now, TICK);
        Engine {
            tracker: setup.tracker,
            stats: setup.stats,
            stats_index: setup.stats_index,
            rng: SmallRng::from_seed(setup.seed),
            started: setup.started,
            sweep_per_tick: setup.sweep_per_tick,
            timers,
            http_policy: setup.http,
            http_buffers: Buffers::default(),
            ahead: Vec::new(),
            outbox: setup.outbox,
        }
    }

    /// This worker's counters (the backend counts its I/O events here).
    pub fn stats(&self) -> &WorkerStats {
        &self.stats[self.stats_index]
    }

    /// Tracker time at `now`: whole seconds since start.
    pub fn tracker_secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.started).as_secs() as u32
    }

    /// When the engine next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// Run whatever timers are due at `now` (the expiry sweep).
    pub fn handle_timeout(&mut self, now: Instant) {
        let secs = self.tracker_secs(now);
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                WorkerTimer::Sweep => {
                    let (stats, outbox) = (&self.stats[self.stats_index], &mut self.outbox);
                    let dropped = self
                        .tracker
                        .sweep(self.sweep_per_tick, secs, |c| outbox.push(c, stats));
                    stats.add(Counter::SweptPeers, dropped as u64);
                }
            }
        }
    }

    /// Answer one HTTP request head from `peer` at `now`, appending the
    /// response to `out`. A panic in the core (a bug) is contained: the
    /// client gets a 400 and the connection closes; the worker goes on.
    pub fn handle_http_request(
        &mut self,
        now: Instant,
        head: &RequestHead<'_>,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> HttpReply {
        let secs = self.tracker_secs(now);
        let stats = &self.stats[self.stats_index];
        stats.add(Counter::HttpRequests, 1);
        let (tracker, policy, rng, buffers) = (
            &self.tracker,
            &self.http_policy,
            &mut self.rng,
            &mut self.http_buffers,
        );
        let outcome = contain(stats, || {
            http::handle_request(tracker, policy, head, peer, secs, rng, buffers, out)
        });
        let Some(outcome) = outcome else {
            http::reject(out, HeadError::NotHttp);
            return HttpReply::default();
        };
        if let Some(change) = outcome.published {
            self.outbox.push(change, stats);
        }
        match outcome.kind {
            RequestKind::Announce => stats.add(Counter::HttpAnnounce, 1),
            RequestKind::Scrape => stats.add(Counter::HttpScrape, 1),
            RequestKind::Other => {}
        }
        if let Some(why) = outcome.failure {
            counting::count_http_failure(stats, why);
        }
        if let Some(client) = outcome.client {
            stats.add_client(client.index());
        }
        if let Some((plain, gzipped)) = outcome.gzipped {
            stats.add(Counter::HttpGzip, 1);
            stats.add(Counter::HttpGzipSaved, plain.saturating_sub(gzipped) as u64);
        }
        HttpReply {
            keep_alive: outcome.keep_alive,
            tail: outcome.tail,
        }
    }

    /// Answer a request that could not be parsed (and close after it).
    pub fn reject_http(&mut self, error: HeadError, out: &mut Vec<u8>) {
        self.stats().add(Counter::HttpRejected, 1);
        http::reject(out, error);
    }
}

/// What a connection does after `handle_http_request`.
#[must_use]
#[derive(Debug, Default)]
pub struct HttpReply {
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// The shared body to send after the head appended to `out` (a full
    /// scrape).
    pub tail: Option<Arc<[u8]>>,
}

/// Run the core on one request; a panic (a bug) costs that request, is
/// counted as `internal_error` and logged by the panic hook, and the worker
/// goes on serving: a dead worker would leave its SO_REUSEPORT socket
/// bound and silently drop every client the kernel hashes to it.
pub fn contain<T>(stats: &WorkerStats, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            stats.add(Counter::InternalError, 1);
            None
        }
    }
}

/// A lone worker's engine over `tracker`, started at `now`, with its
/// counters (tests).
#[cfg(test)]
pub(crate) fn test_engine(tracker: &Arc<Tracker>, now: Instant) -> (Engine, Arc<[WorkerStats]>) {
    let stats: Arc<[WorkerStats]> = (0..1).map(|_| WorkerStats::default()).collect();
    let setup = EngineSetup {
        tracker: tracker.clone(),
        stats: stats.clone(),
        stats_index: 0,
        started: now,
        sweep_per_tick: 1,
        http: HttpPolicy::default(),
        seed: [7; 32],
        outbox: Outbox::default(),
    };
    (Engine::new(setup, now), stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::announce::{AnnounceParams, AnnouncePolicy};
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::SwarmTable;

    /// The worker's sweep is a timer of the engine: due every
    /// `TICK` from the engine's start, it expires the next shards
    /// when the backend hands the time in, and never before.
    #[test]
    fn the_sweep_runs_when_its_timer_is_due() {
        let tracker = Arc::new(Tracker::new(
            AnnouncePolicy {
                peer_timeout: 1800,
                min_interval: 0,
                ..AnnouncePolicy::default()
            },
            SwarmTable::new(1, [1, 2]),
            ConnectionIdIssuer::new([3; 16]),
        ));
        let t0 = Instant::now();
        let (mut engine, stats) = test_engine(&tracker, t0);
        assert_eq!(engine.poll_timeout(), Some(t0 + TICK));
        let p = AnnounceParams {
            info_hash: crate::protocol::InfoHash([7; 20]),
            peer_id: crate::protocol::PeerId([1; 20]),
            ip: "192.0.2.1".parse().unwrap(),
            port: 6881,
            event: crate::protocol::Event::Started,
            left: 0,
            uploaded: 0,
            downloaded: 0,
            numwant: 0,
            picks: Default::default(),
            both_families: false,
        };
        tracker.announce(&p, 0, &mut [0; 64]).unwrap();
        // Past the peer timeout, but the timer is not due: nothing swept.
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(engine.tracker_secs(late), 3600);
        // (Re-armed so that it is next due a period after `late`.)
        engine.timers.arm(WorkerTimer::Sweep, late, TICK);
        engine.handle_timeout(late);
        assert_eq!(stats[0].get(Counter::SweptPeers), 0);
        // Due: the one shard is swept and the stale peer goes.
        engine.handle_timeout(late + TICK);
        assert_eq!(stats[0].get(Counter::SweptPeers), 1);
        assert!(engine.poll_timeout().unwrap() > late + TICK);
    }
}
