//! The I/O side: sockets, io_uring rings and worker threads. This is the
//! only module with `unsafe`, each block stating the invariant it relies on.
//!
//! `Server::start` checks io_uring, binds every socket (so a bad address
//! fails before anything runs), builds the tracker (`compose`), then starts
//! one worker thread per core, each with its own engine (`engine::Engine`),
//! its own ring and its own SO_REUSEPORT socket per address. Workers share
//! one `Tracker` (and so one swarm table); there is no channel between
//! receiving a packet and answering it.

pub mod background;
pub mod buf_ring;
pub mod cluster;
pub mod database;
pub mod http;
pub mod http_epoll;
pub mod limits;
pub mod metrics;
pub mod mmsg;
pub mod msg;
pub mod privileges;
pub mod ring;
pub mod signals;
pub mod socket;
pub mod tls;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::stats::ClusterStats;
use crate::compose::{self, OperatorFiles};
use crate::config::{Config, HttpBackend, UdpBackend};
use crate::engine::EngineSetup;
use crate::engine::http::HttpPolicy;
use crate::engine::outbox::{OUTBOX_CAPACITY, Outbox};
use crate::stats::WorkerStats;
use crate::storage::credit_journal::CreditJournal;
use crate::tracker::Tracker;

/// What a UDP worker thread is given: its sockets (one per listening
/// address), its engine, and the knobs of its buffers.
pub struct WorkerSetup {
    pub index: usize,
    pub sockets: Vec<socket2::Socket>,
    pub engine: EngineSetup,
    pub stop: Arc<AtomicBool>,
    pub recv_buffers: u16,
    pub send_slots: usize,
    /// Tests only: fail as a broken ring would, right after set-up.
    pub forced_failure: bool,
}

/// Which worker fails on purpose right after its ring is set up, to test
/// that the error path drains the ring: `RINGTRACKER_TEST_RING_FAILURE`
/// set to `udp` or `http` (worker 0 of that kind).
fn forced_failure(kind: &str, index: usize) -> bool {
    index == 0 && std::env::var("RINGTRACKER_TEST_RING_FAILURE").is_ok_and(|v| v == kind)
}

/// The oldest kernel with everything the UDP path uses (multishot
/// RecvMsg arrived in 6.0; provided-buffer rings in 5.19).
pub const MIN_KERNEL: (u32, u32) = (6, 0);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "io_uring is not available ({source}) and {user}: check /proc/sys/kernel/io_uring_disabled \
         (it must be 0) and the kernel version (ringtracker needs Linux {}.{} or newer, this is \
         {kernel}); containers may block io_uring in their seccomp profile",
        MIN_KERNEL.0, MIN_KERNEL.1
    )]
    IoUringUnavailable {
        source: io::Error,
        kernel: String,
        /// Who needs it, and the way around if there is one.
        user: &'static str,
    },
    #[error(
        "Linux {kernel} is too old: ringtracker needs {}.{} or newer for multishot receives \
         (or run without io_uring: udp.backend = \"mmsg\")",
        MIN_KERNEL.0, MIN_KERNEL.1
    )]
    KernelTooOld { kernel: String },
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("udp worker {index} could not start: {source}")]
    Worker { index: usize, source: io::Error },
    #[error("http worker {index} could not start: {source}")]
    HttpWorker { index: usize, source: io::Error },
    #[error("database thread could not start: {0}")]
    DatabaseThread(io::Error),
    #[error("credit journal {path}: {source} (private.ledger)")]
    CreditJournal { path: PathBuf, source: io::Error },
    #[error("cluster sync thread could not start: {0}")]
    ClusterThread(io::Error),
    #[error("{0}")]
    FdLimit(#[from] limits::FdLimitError),
    #[error("no udp or http address to listen on")]
    NothingToServe,
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

pub struct Server {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    udp_addrs: Vec<SocketAddr>,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    tls: Option<tls::TlsConfig>,
    stats: Arc<[WorkerStats]>,
    tracker: Arc<Tracker>,
    started: Instant,
    cluster: Option<cluster::ClusterSync>,
    database: Option<database::SiteDatabase>,
}

/// The UDP and HTTP backends to run. `auto` takes io_uring where the probe
/// succeeds (for UDP also on Linux 6.0+) and the portable backend
/// otherwise (mmsg, epoll), with one WARN line saying why; a forced
/// io_uring that does not work stops the start.
fn backends(
    udp: UdpBackend,
    http: HttpBackend,
    serves_udp: bool,
    serves_http: bool,
) -> Result<(UdpBackend, HttpBackend), StartError> {
    let udp_may = serves_udp && udp != UdpBackend::Mmsg;
    let http_may = serves_http && http != HttpBackend::Epoll;
    if !udp_may && !http_may {
        return Ok((udp, http));
    }
    let kernel = kernel_release();
    let probe = udp::probe();
    let too_old = !kernel_at_least(&kernel, MIN_KERNEL);
    if let Err(source) = &probe {
        let forced = if udp_may && udp == UdpBackend::IoUring {
            Some("udp.backend = \"io_uring\" needs it (or leave udp.backend at \"auto\")")
        } else if http_may && http == HttpBackend::IoUring {
            Some("http.backend = \"io_uring\" needs it (or leave http.backend at \"auto\")")
        } else {
            None
        };
        if let Some(user) = forced {
            return Err(StartError::IoUringUnavailable {
                source: io::Error::new(source.kind(), source.to_string()),
                kernel,
                user,
            });
        }
    }
    // Why io_uring will not carry UDP here, if it will not.
    let udp_blocked = match &probe {
        Err(e) => Some(format!("io_uring_setup failed: {e}")),
        Ok(()) if too_old => Some(format!(
            "Linux {kernel} is older than {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        Ok(()) => None,
    };
    let udp = match (udp, udp_blocked) {
        (UdpBackend::IoUring, Some(_)) if serves_udp => {
            return Err(StartError::KernelTooOld { kernel });
        }
        (UdpBackend::Auto, Some(why)) if serves_udp => {
            warn_fallback(&why, "UDP on the mmsg backend (poll + recvmmsg/sendmmsg)");
            UdpBackend::Mmsg
        }
        (UdpBackend::Auto, _) => UdpBackend::IoUring,
        (chosen, _) => chosen,
    };
    let http = match (http, &probe) {
        (HttpBackend::Auto, Err(e)) if serves_http => {
            let why = format!("io_uring_setup failed: {e}");
            warn_fallback(&why, "HTTP on the epoll backend");
            HttpBackend::Epoll
        }
        (HttpBackend::Auto, _) => HttpBackend::IoUring,
        (chosen, _) => chosen,
    };
    Ok((udp, http))
}

/// One WARN line: a frontend falls back from io_uring, and why.
fn warn_fallback(why: &str, instead: &str) {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map_or_else(|_| "absent".into(), |s| s.trim().to_string());
    tracing::warn!(
        "io_uring unavailable ({why}; kernel.io_uring_disabled = {disabled}; Linux {}): {instead}",
        kernel_release()
    );
}

/// `uname -r`, as the kernel reports it.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        // Unparseable: let io_uring itself say no.
        _ => true,
    }
}

/// The parts of a running server a SIGHUP replaces: the access rules and
/// the certificate. Each is built aside and swapped in whole; on error the
/// old one stays.
#[derive(Clone)]
pub struct Reloader {
    tracker: Arc<Tracker>,
    tls: Option<tls::TlsConfig>,
    database: Option<database::ReadAll>,
}

impl Reloader {
    /// Read the lists again and put the new rules in force (keeping the
    /// site directory); returns how many info hashes the list holds. In
    /// database mode the database thread reads every row again too.
    pub fn reload_access(&self, config: &Config) -> Result<usize, crate::config::ConfigError> {
        if let Some(database) = &self.database {
            database.request();
        }
        let site = self.tracker.access().site().cloned();
        let rules = config.access_rules()?.with_site(site);
        let n = rules.len();
        self.tracker.set_access(rules);
        Ok(n)
    }

    /// Read the certificate and key again and use them for new HTTPS
    /// connections (open ones keep theirs). `Ok(false)`: no HTTPS.
    pub fn reload_tls(&self, config: &Config) -> Result<bool, tls::TlsError> {
        let (Some(current), Some(cert), Some(key)) = (&self.tls, &config.tls.cert, &config.tls.key)
        else {
            return Ok(false);
        };
        current.store(Arc::new(tls::load(cert, key)?));
        Ok(true)
    }
}

impl Server {
    /// Build the tracker from `config`, bind everything and start serving.
    pub fn start(config: &Config) -> Result<Server, StartError> {
        Self::start_with(config, OperatorFiles::read(config)?, |_| {})
    }

    /// `start` with the operator's files (access rules, the cluster secret)
    /// already read (main reads them while a SIGTERM still stops it),
    /// calling `prepare` with the tracker after the sockets are bound and
    /// before any worker serves (a snapshot is loaded there).
    pub fn start_with(
        config: &Config,
        files: OperatorFiles,
        prepare: impl FnOnce(&Tracker),
    ) -> Result<Server, StartError> {
        let serves_http = !config.http.listen.is_empty() || !config.tls.listen.is_empty();
        let (backend, http_backend) = backends(
            config.udp.backend,
            config.http.backend,
            !config.udp.listen.is_empty(),
            serves_http,
        )?;
        if config.udp.listen.is_empty()
            && config.http.listen.is_empty()
            && config.tls.listen.is_empty()
        {
            return Err(StartError::NothingToServe);
        }
        let workers = config.worker_count();
        let max_connections = if !serves_http {
            0
        } else if std::env::var_os("RINGTRACKER_TEST_NOFILE_UNCHECKED").is_some() {
            // Tests only: run short of descriptors on purpose.
            config.http.max_connections as usize
        } else {
            let default = Config::default().http.max_connections;
            let wanted = config.http.max_connections;
            limits::ensure_fd_limit(wanted.into(), workers as u64, wanted == default)? as usize
        };
        let (udp_addrs, udp_sockets) = bind_all(&config.udp.listen, workers, Proto::Udp, |a| {
            socket::bind_udp(a, config.udp.socket_recv_buffer)
        })?;
        let (http_addrs, mut http_sockets) =
            bind_all(&config.http.listen, workers, Proto::Tcp, socket::bind_tcp)?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) if !config.tls.listen.is_empty() => Some(Arc::new(
                arc_swap::ArcSwap::from_pointee(tls::load(cert, key)?),
            )),
            _ => None,
        };
        let (https_addrs, https_sockets) =
            bind_all(&config.tls.listen, workers, Proto::Tcp, socket::bind_tcp)?;
        // Each HTTP worker serves its HTTPS sockets too, after its HTTP ones.
        let tls_from: Vec<usize> = http_sockets.iter().map(Vec::len).collect();
        for (mine, more) in http_sockets.iter_mut().zip(https_sockets) {
            mine.extend(more);
        }

        // Tracker time zero, and the unix time it stands for (cluster
        // mode's connection ids count from it).
        let started = Instant::now();
        let unix_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cluster_mac = files.cluster_keys.as_ref().map(|k| k.mac.clone());
        let tracker = Arc::new(compose::build_tracker(config, files, unix_start));
        prepare(&tracker);
        // UDP worker i counts in stats[i], HTTP worker i in stats[workers + i].
        let stats: Arc<[WorkerStats]> = (0..2 * workers).map(|_| WorkerStats::default()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        // A full pass over the table every ~30 s (120 ticks of 250 ms),
        // shared by every worker that runs: UDP and HTTP workers sweep alike.
        let shards = config.tracker.shards as usize;
        let serving = |sockets: &[Vec<socket2::Socket>]| sockets.iter().any(|s| !s.is_empty());
        let sweepers =
            workers * (usize::from(serving(&udp_sockets)) + usize::from(serving(&http_sockets)));
        let sweep_per_tick = shards.div_ceil(120 * sweepers.max(1)).max(1);

        let mut server = Server {
            workers: Vec::new(),
            stop: stop.clone(),
            udp_addrs,
            http_addrs,
            https_addrs,
            tls: tls.clone(),
            stats: stats.clone(),
            tracker: tracker.clone(),
            started,
            cluster: None,
            database: None,
        };
        server.database = start_database(config, &tracker, started)?;
        let udp_workers = if udp_sockets.iter().all(|s| s.is_empty()) {
            Vec::new()
        } else {
            udp_sockets
        };
        let policy = HttpPolicy {
            full_scrape: config.http.full_scrape,
            trusted_proxies: config.http.trusted_proxies.clone(),
        };
        // Cluster mode: every worker gets an outbox; the sync thread the
        // other ends.
        let mut outboxes = Vec::new();
        let mut engine = |stats_index| EngineSetup {
            tracker: tracker.clone(),
            stats: stats.clone(),
            stats_index,
            started,
            sweep_per_tick,
            http: policy.clone(),
            seed: compose::worker_seed(),
            outbox: if config.cluster.enabled {
                let (outbox, reader) = Outbox::new(OUTBOX_CAPACITY);
                outboxes.push(reader);
                outbox
            } else {
                Outbox::default()
            },
        };
        for (index, worker_sockets) in udp_workers.into_iter().enumerate() {
            let setup = WorkerSetup {
                index,
                sockets: worker_sockets,
                engine: engine(index),
                stop: stop.clone(),
                recv_buffers: config.udp.recv_buffers as u16,
                send_slots: config.udp.send_slots as usize,
                forced_failure: forced_failure("udp", index),
            };
            let started = server.spawn(format!("udp-{index}"), move |ready| match backend {
                UdpBackend::IoUring | UdpBackend::Auto => udp::run(setup, ready),
                UdpBackend::Mmsg => mmsg::run(setup, ready),
            });
            started.map_err(|source| StartError::Worker { index, source })?;
        }
        let address_cap = Arc::new(compose::build_address_cap(config));
        for (index, listeners) in http_sockets.into_iter().enumerate() {
            if listeners.is_empty() {
                continue;
            }
            let setup = http::HttpWorkerSetup {
                index,
                listeners,
                engine: engine(workers + index),
                stop: stop.clone(),
                max_connections,
                forced_failure: forced_failure("http", index),
                address_cap: address_cap.clone(),
                idle_timeout: config.http.idle_timeout,
                tls: tls.clone().map(|t| (tls_from[index], t)),
            };
            let started = server.spawn(format!("http-{index}"), move |ready| match http_backend {
                HttpBackend::Epoll => http_epoll::run(setup, ready),
                HttpBackend::IoUring | HttpBackend::Auto => http::run(setup, ready),
            });
            started.map_err(|source| StartError::HttpWorker { index, source })?;
        }
        if config.cluster.enabled
            && let Some(mac) = cluster_mac
        {
            let setup = cluster::SyncSetup {
                config: config.cluster.clone(),
                node: cluster::node_name(&config.cluster),
                tracker: tracker.clone(),
                outboxes,
                started,
                mac,
            };
            let sync = cluster::ClusterSync::spawn(setup);
            server.cluster = Some(sync.map_err(StartError::ClusterThread)?);
        }
        Ok(server)
    }

    /// Private mode's database counters (none without it).
    pub fn database_stats(&self) -> Option<Arc<database::DatabaseStats>> {
        self.database.as_ref().map(|d| d.stats.clone())
    }

    /// Cluster mode's counters (none without it).
    pub fn cluster_stats(&self) -> Option<Arc<ClusterStats>> {
        self.cluster.as_ref().map(|c| c.stats.clone())
    }

    /// The HTTP addresses served, with ephemeral ports resolved.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
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

    /// The UDP addresses served, with ephemeral ports resolved.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    pub fn stats(&self) -> &Arc<[WorkerStats]> {
        &self.stats
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Tracker time (seconds since start), as the workers see it.
    pub fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// Re-read the access list `config` names and put it in force; on error
    /// the rules in force stay. Returns the number of listed hashes.
    /// The HTTPS addresses served, with ephemeral ports resolved.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// What a SIGHUP reloads, to run on a thread of its own.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            tracker: Arc::clone(&self.tracker),
            tls: self.tls.clone(),
            database: self.database.as_ref().map(|d| d.read_all_handle()),
        }
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

/// Private mode on a database: start its thread, and give it a few seconds
/// to read the site's users and torrents before the workers serve (they
/// answer "try again shortly" until it has).
fn start_database(
    config: &Config,
    tracker: &Arc<Tracker>,
    started: Instant,
) -> Result<Option<database::SiteDatabase>, StartError> {
    let (p, site) = (&config.private, tracker.access().site().cloned());
    let (Some(url), Some(site), true) = (&p.database, site, p.enabled) else {
        return Ok(None);
    };
    // The credit journal holds the ledger on a database: it replaces what
    // a snapshot may have brought.
    let path = p
        .ledger
        .clone()
        .expect("the config requires private.ledger");
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = started.elapsed().as_secs() as u32;
    let (journal, replay) =
        CreditJournal::open(&path, &tracker.ledger, now, unix).map_err(|source| {
            StartError::CreditJournal {
                path: path.clone(),
                source,
            }
        })?;
    if replay.cut_off > 0 {
        tracing::warn!(
            "credit journal {}: {} bytes of a record being written at the stop were cut off",
            path.display(),
            replay.cut_off
        );
    }
    tracing::info!(
        "credit journal {}: {} sessions, {} batches to check against the database",
        path.display(),
        replay.sessions,
        replay.batches.len()
    );
    let setup = database::DatabaseSetup {
        url: url.clone(),
        sync_interval: Duration::from_secs(p.sync_interval),
        flush_interval: Duration::from_secs(p.flush_interval),
        node: cluster::named_or_host(&p.node),
        tracker: tracker.clone(),
        site: site.clone(),
        journal: (journal, replay),
        max_pending: p.max_pending_credits as usize,
        started,
    };
    let database = database::SiteDatabase::spawn(setup).map_err(StartError::DatabaseThread)?;
    let deadline = Instant::now() + FIRST_READ_WAIT;
    while !site.loaded() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !site.loaded() {
        tracing::warn!(
            "database: users and torrents not read within {} s; announces are told to retry until they are",
            FIRST_READ_WAIT.as_secs()
        );
    }
    Ok(Some(database))
}

/// How long a start waits for the site's users and torrents.
const FIRST_READ_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum Proto {
    Udp,
    Tcp,
}

/// Bind `workers` sockets on every address: after checking that nobody
/// holds it yet, each worker gets its own SO_REUSEPORT socket; port 0 is
/// resolved by the first bind and the other workers join that port.
/// Returns the resolved addresses and, per worker, its sockets.
#[allow(clippy::type_complexity)]
fn bind_all(
    wanted: &[SocketAddr],
    workers: usize,
    proto: Proto,
    bind: impl Fn(SocketAddr) -> io::Result<socket2::Socket>,
) -> Result<(Vec<SocketAddr>, Vec<Vec<socket2::Socket>>), StartError> {
    let name = match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "http",
    };
    let mut addrs = Vec::new();
    let mut sockets: Vec<Vec<socket2::Socket>> = (0..workers).map(|_| Vec::new()).collect();
    for &first in wanted {
        let err = |addr, source| StartError::Bind {
            proto: name,
            addr,
            source,
        };
        if first.port() != 0 {
            limits::retry_in_use(first, || match proto {
                Proto::Udp => socket::check_udp_free(first),
                Proto::Tcp => socket::check_tcp_free(first),
            })
            .map_err(|e| err(first, e))?;
        }
        let mut addr = first;
        for worker_sockets in sockets.iter_mut() {
            let s = limits::retry_in_use(addr, || bind(addr)).map_err(|e| err(addr, e))?;
            if addr.port() == 0 {
                addr = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .ok_or_else(|| err(addr, io::Error::other("no local address after bind")))?;
            }
            worker_sockets.push(s);
        }
        addrs.push(addr);
    }
    Ok((addrs, sockets))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.44-fc-v669", (6, 0)));
        assert!(kernel_at_least("6.0.0", (6, 0)));
        assert!(!kernel_at_least("5.19.17-generic", (6, 0)));
        assert!(kernel_at_least("garbage", (6, 0)));
    }
}
