//! The I/O side: sockets, io_uring rings and the threads that run them.
//! Only here (and in one audited prefetch helper) is `unsafe`, each block
//! stating the invariant it relies on.
//!
//! `net` assembles nothing: `app` binds the sockets (`listeners`), builds
//! the tracker and one `engine::EngineSetup` per worker, and hands them to
//! a `Server`, which starts the threads (`start_udp`, `start_http`) and
//! owns them until `shutdown`. Each worker has its own engine, its own ring
//! and its own SO_REUSEPORT socket per address; workers share one
//! `Tracker` (and so one swarm table); there is no channel between
//! receiving a packet and answering it.

pub mod admin;
pub mod background;
pub mod buf_ring;
pub mod cluster;
pub mod database;
pub mod http;
pub mod http_epoll;
pub mod limits;
pub mod listeners;
pub mod metrics;
pub mod mmsg;
pub mod msg;
pub mod operator_listener;
pub mod privileges;
pub mod ring;
pub mod signals;
pub mod socket;
pub mod tls;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cluster::stats::ClusterStats;
use crate::config::{HttpBackend, UdpBackend};
use crate::engine::EngineSetup;
use crate::stats::WorkerStats;
use crate::tracker::Tracker;

/// What a UDP worker thread is given: its sockets (one per listening
/// address), its engine, and the knobs of its buffers.
pub struct WorkerSetup {
    /// Its number (thread `udp-N`).
    pub index: usize,
    /// One SO_REUSEPORT socket per address.
    pub sockets: Vec<socket2::Socket>,
    /// Its engine.
    pub engine: EngineSetup,
    /// Set at shutdown.
    pub stop: Arc<AtomicBool>,
    /// Provided receive buffers.
    pub recv_buffers: u16,
    /// Reply slots.
    pub send_slots: usize,
    /// Tests only: fail as a broken ring would, right after set-up.
    pub forced_failure: bool,
}

/// The addresses a server answers on, with ephemeral ports resolved.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    /// UDP.
    pub udp: Vec<SocketAddr>,
    /// HTTP.
    pub http: Vec<SocketAddr>,
    /// HTTPS.
    pub https: Vec<SocketAddr>,
}

/// The running threads: the workers, and in private mode on a database or
/// in cluster mode the thread that talks to it. Dropping it stops the
/// workers.
pub struct Server {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addrs: Addresses,
    tls: Option<tls::TlsConfig>,
    stats: Arc<[WorkerStats]>,
    tracker: Arc<Tracker>,
    started: Instant,
    cluster: Option<cluster::ClusterSync>,
    database: Option<database::SiteDatabase>,
}

impl Server {
    /// A server with no thread yet: `tracker` served from tracker time
    /// zero `started`, the workers counting in `stats`.
    pub fn new(
        tracker: Arc<Tracker>,
        stats: Arc<[WorkerStats]>,
        started: Instant,
        addrs: Addresses,
        tls: Option<tls::TlsConfig>,
    ) -> Server {
        Server {
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            addrs,
            tls,
            stats,
            tracker,
            started,
            cluster: None,
            database: None,
        }
    }

    /// The flag every worker polls once a tick; set by `shutdown`.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Start a UDP worker on `backend` and wait until it serves.
    pub fn start_udp(&mut self, setup: WorkerSetup, backend: UdpBackend) -> io::Result<()> {
        self.spawn(format!("udp-{}", setup.index), move |ready| match backend {
            UdpBackend::IoUring | UdpBackend::Auto => udp::run(setup, ready),
            UdpBackend::Mmsg => mmsg::run(setup, ready),
        })
    }

    /// Start an HTTP worker on `backend` and wait until it serves.
    pub fn start_http(
        &mut self,
        setup: http::HttpWorkerSetup,
        backend: HttpBackend,
    ) -> io::Result<()> {
        self.spawn(
            format!("http-{}", setup.index),
            move |ready| match backend {
                HttpBackend::Epoll => http_epoll::run(setup, ready),
                HttpBackend::IoUring | HttpBackend::Auto => http::run(setup, ready),
            },
        )
    }

    /// The database thread, stopped after the workers (it sends their last
    /// credits).
    pub fn attach_database(&mut self, database: database::SiteDatabase) {
        self.database = Some(database);
    }

    /// The cluster sync thread, stopped after the workers (it sends what
    /// they left).
    pub fn attach_cluster(&mut self, sync: cluster::ClusterSync) {
        self.cluster = Some(sync);
    }

    /// Private mode's database counters (none without it).
    pub fn database_stats(&self) -> Option<Arc<database::DatabaseStats>> {
        self.database.as_ref().map(|d| d.stats.clone())
    }

    /// A handle that asks the database thread to read every row again.
    pub fn database_reader(&self) -> Option<database::ReadAll> {
        self.database
            .as_ref()
            .map(database::SiteDatabase::read_all_handle)
    }

    /// Cluster mode's counters (none without it).
    pub fn cluster_stats(&self) -> Option<Arc<ClusterStats>> {
        self.cluster.as_ref().map(|c| c.stats.clone())
    }

    /// The HTTPS certificate in force (none without HTTPS).
    pub fn tls(&self) -> Option<&tls::TlsConfig> {
        self.tls.as_ref()
    }

    /// The UDP addresses served, with ephemeral ports resolved.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.addrs.udp
    }

    /// The HTTP addresses served, with ephemeral ports resolved.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.addrs.http
    }

    /// The HTTPS addresses served, with ephemeral ports resolved.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.addrs.https
    }

    /// Start a worker thread and wait for it to report its set-up; on
    /// failure every worker started so far is stopped.
    fn spawn(
        &mut self,
        name: String,
        run: impl FnOnce(std::sync::mpsc::Sender<io::Result<()>>) + Send + 'static,
    ) -> io::Result<()> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(ready_tx))
            .and_then(|handle| {
                self.workers.push(handle);
                ready_rx
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("worker exited during set-up")))
            });
        if started.is_err() {
            self.stop_and_join();
        }
        started
    }

    /// Every worker's counters: UDP worker i in `[i]`, HTTP worker i in
    /// `[workers + i]`.
    pub fn stats(&self) -> &Arc<[WorkerStats]> {
        &self.stats
    }

    /// The tracker the workers serve.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Tracker time zero.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Tracker time (seconds since start), as the workers see it.
    pub fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// A worker whose thread ended although nobody asked it to stop (its
    /// ring failed): the server is then only partly serving.
    /// Named as its thread is: `udp-N` or `http-N`.
    pub fn stopped_worker(&self) -> Option<String> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let finished = self.workers.iter().find(|h| h.is_finished())?;
        Some(finished.thread().name().unwrap_or("unnamed").to_string())
    }

    /// Ask every worker to stop (each notices within one tick, 250 ms) and
    /// wait for them. Returns the tracker, for what is saved at stop.
    pub fn shutdown(mut self) -> Arc<Tracker> {
        self.stop_and_join();
        // The workers are gone: the sync thread sends what they left, the
        // database thread the last credits.
        if let Some(sync) = self.cluster.take() {
            sync.stop();
        }
        if let Some(database) = self.database.take() {
            database.stop();
        }
        Arc::clone(&self.tracker)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
