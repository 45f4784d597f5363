//! Starting the process's threads: the checks that stop a start early,
//! the sockets, the tracker, one engine setup per worker, and the database
//! and cluster threads, handed to `net::Server` to run.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backends;
use super::compose::{self, OperatorFiles};
use crate::clock::unix_now;
use crate::config::{Config, HttpBackend, UdpBackend};
use crate::engine::EngineSetup;
use crate::engine::http::HttpPolicy;
use crate::engine::outbox::{OUTBOX_CAPACITY, Outbox, OutboxReader};
use crate::net::http::HttpWorkerSetup;
use crate::net::listeners::{BindError, Listeners};
use crate::net::{Server, WorkerSetup, cluster, database, limits, tls};
use crate::stats::WorkerStats;
use crate::storage::database_journal::DatabaseJournal;
use crate::tracker::Tracker;

/// Why a start failed: one line for the operator, naming what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// io_uring was forced and cannot run here.
    #[error("{0}")]
    Backend(#[from] backends::BackendError),
    /// An address cannot be bound.
    #[error("{0}")]
    Bind(#[from] BindError),
    /// A UDP worker failed its set-up.
    #[error("udp worker {index} could not start: {source}")]
    Worker {
        /// Which worker.
        index: usize,
        /// Why.
        source: io::Error,
    },
    /// An HTTP worker failed its set-up.
    #[error("http worker {index} could not start: {source}")]
    HttpWorker {
        /// Which worker.
        index: usize,
        /// Why.
        source: io::Error,
    },
    /// The database thread did not start.
    #[error("database thread could not start: {0}")]
    DatabaseThread(io::Error),
    /// The credit journal of database mode cannot be opened.
    #[error("credit journal {path}: {source} (private.ledger, or storage.state_dir)")]
    DatabaseJournal {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The cluster sync thread did not start.
    #[error("cluster sync thread could not start: {0}")]
    ClusterThread(io::Error),
    /// The open-file limit cannot carry `http.max_connections`.
    #[error("{0}")]
    FdLimit(#[from] limits::FdLimitError),
    /// No address to serve.
    #[error("no udp or http address to listen on")]
    NothingToServe,
    /// A file the config names is unusable.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The HTTPS certificate or key cannot be loaded.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

/// Build the tracker from `config`, bind everything and start serving.
pub fn start(config: &Config) -> Result<Server, StartError> {
    start_with(config, OperatorFiles::read(config)?, |_| {})
}

/// `start` with the operator's files (access rules, the cluster secret)
/// already read (the process reads them while a SIGTERM still stops it),
/// calling `prepare` with the tracker after the sockets are bound and
/// before any worker serves (a snapshot is loaded there).
pub fn start_with(
    config: &Config,
    files: OperatorFiles,
    prepare: impl FnOnce(&Tracker),
) -> Result<Server, StartError> {
    let (udp_backend, http_backend) = backends::choose(config)?;
    if config.udp.listen.is_empty() && config.http.listen.is_empty() && config.tls.listen.is_empty()
    {
        return Err(StartError::NothingToServe);
    }
    let workers = config.worker_count();
    let max_connections = http_connection_cap(config, workers)?;
    let mut listeners = Listeners::bind(config, workers)?;
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) if !config.tls.listen.is_empty() => Some(Arc::new(
            arc_swap::ArcSwap::from_pointee(tls::load(cert, key)?),
        )),
        _ => None,
    };
    // Tracker time zero, and the unix time it stands for (cluster mode's
    // connection ids count from it).
    let started = Instant::now();
    let cluster_mac = files.cluster_keys.as_ref().map(|k| k.mac.clone());
    let tracker = Arc::new(compose::build_tracker(config, files, unix_now()));
    prepare(&tracker);
    let stats: Arc<[WorkerStats]> = (0..2 * workers).map(|_| WorkerStats::default()).collect();
    let addrs = std::mem::take(&mut listeners.addrs);
    let mut server = Server::new(tracker.clone(), stats.clone(), started, addrs, tls.clone());
    if let Some(database) = start_database(config, &tracker, started)? {
        server.attach_database(database);
    }
    let mut engines = Engines::new(config, &listeners, tracker.clone(), stats, started);
    let backends = (udp_backend, http_backend);
    start_workers(
        config,
        &mut server,
        listeners,
        &mut engines,
        backends,
        max_connections,
        tls,
    )?;
    if config.cluster.enabled
        && let Some(mac) = cluster_mac
    {
        let setup = cluster::SyncSetup {
            config: config.cluster.clone(),
            node: cluster::node_name(&config.cluster),
            tracker,
            outboxes: engines.outboxes,
            started,
            mac,
        };
        server
            .attach_cluster(cluster::ClusterSync::spawn(setup).map_err(StartError::ClusterThread)?);
    }
    Ok(server)
}

/// Start every worker on its sockets, each with its engine setup: UDP
/// worker i counts in `stats[i]`, HTTP worker i in `stats[workers + i]`.
fn start_workers(
    config: &Config,
    server: &mut Server,
    listeners: Listeners,
    engines: &mut Engines,
    (udp_backend, http_backend): (UdpBackend, HttpBackend),
    max_connections: usize,
    tls: Option<tls::TlsConfig>,
) -> Result<(), StartError> {
    let (workers, stop) = (config.worker_count(), server.stop_flag());
    for (index, sockets) in listeners.udp_sockets.into_iter().enumerate() {
        let setup = WorkerSetup {
            index,
            sockets,
            engine: engines.next(index),
            stop: stop.clone(),
            recv_buffers: config.udp.recv_buffers as u16,
            send_slots: config.udp.send_slots as usize,
            forced_failure: forced_failure("udp", index),
        };
        (server.start_udp(setup, udp_backend))
            .map_err(|source| StartError::Worker { index, source })?;
    }
    let address_cap = Arc::new(compose::build_address_cap(config));
    for (index, listeners_of) in listeners.http_sockets.into_iter().enumerate() {
        if listeners_of.is_empty() {
            continue;
        }
        let setup = HttpWorkerSetup {
            index,
            listeners: listeners_of,
            engine: engines.next(workers + index),
            stop: stop.clone(),
            max_connections,
            forced_failure: forced_failure("http", index),
            address_cap: address_cap.clone(),
            idle_timeout: config.http.idle_timeout,
            tls: tls.clone().map(|t| (listeners.tls_from[index], t)),
        };
        (server.start_http(setup, http_backend))
            .map_err(|source| StartError::HttpWorker { index, source })?;
    }
    Ok(())
}

/// How many HTTP connections each worker may hold: the configured cap,
/// with the descriptor limit raised to fit it (or the start refused).
fn http_connection_cap(config: &Config, workers: usize) -> Result<usize, StartError> {
    if config.http.listen.is_empty() && config.tls.listen.is_empty() {
        return Ok(0);
    }
    if std::env::var_os("RINGTRACKER_TEST_NOFILE_UNCHECKED").is_some() {
        // Tests only: run short of descriptors on purpose.
        return Ok(config.http.max_connections as usize);
    }
    let default = Config::default().http.max_connections;
    let wanted = config.http.max_connections;
    Ok(limits::ensure_fd_limit(wanted.into(), workers as u64, wanted == default)? as usize)
}

/// Each worker's engine setup: what every worker shares, its share of the
/// table sweep, its own RNG seed, and in cluster mode its outbox (the sync
/// thread reads the other ends).
struct Engines {
    tracker: Arc<Tracker>,
    stats: Arc<[WorkerStats]>,
    started: Instant,
    sweep_per_tick: usize,
    http: HttpPolicy,
    cluster: bool,
    outboxes: Vec<OutboxReader>,
}

impl Engines {
    fn new(
        config: &Config,
        listeners: &Listeners,
        tracker: Arc<Tracker>,
        stats: Arc<[WorkerStats]>,
        started: Instant,
    ) -> Engines {
        // A full pass over the table every ~30 s (120 ticks of 250 ms),
        // shared by every worker that runs: UDP and HTTP workers sweep alike.
        let (udp, http) = listeners.serving();
        let shards = config.tracker.shards as usize;
        Engines {
            tracker,
            stats,
            started,
            sweep_per_tick: shards.div_ceil(120 * (udp + http).max(1)).max(1),
            http: HttpPolicy {
                full_scrape: config.http.full_scrape,
                trusted_proxies: config.http.trusted_proxies.clone(),
                gzip_min_bytes: (config.http.gzip).then_some(config.http.gzip_min_bytes as usize),
            },
            cluster: config.cluster.enabled,
            outboxes: Vec::new(),
        }
    }

    /// The setup of the worker counting in `stats[stats_index]`.
    fn next(&mut self, stats_index: usize) -> EngineSetup {
        let outbox = if self.cluster {
            let (outbox, reader) = Outbox::new(OUTBOX_CAPACITY);
            self.outboxes.push(reader);
            outbox
        } else {
            Outbox::default()
        };
        EngineSetup {
            tracker: self.tracker.clone(),
            stats: self.stats.clone(),
            stats_index,
            started: self.started,
            sweep_per_tick: self.sweep_per_tick,
            http: self.http.clone(),
            seed: compose::worker_seed(),
            outbox,
        }
    }
}

/// Which worker fails on purpose right after its ring is set up, to test
/// that the error path drains the ring: `RINGTRACKER_TEST_RING_FAILURE`
/// set to `udp` or `http` (worker 0 of that kind).
fn forced_failure(kind: &str, index: usize) -> bool {
    index == 0 && std::env::var("RINGTRACKER_TEST_RING_FAILURE").is_ok_and(|v| v == kind)
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
    let path = config
        .credit_journal()
        .expect("the config requires private.ledger or storage.state_dir");
    let unix = unix_now();
    let now = started.elapsed().as_secs() as u32;
    let (journal, replay) =
        DatabaseJournal::open(&path, tracker.ledger(), now, unix).map_err(|source| {
            StartError::DatabaseJournal {
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
        write_back: p.write_back,
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
