//! The running process: started from the command line, serving until a
//! signal, then stopped with its state saved.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::cli::Cli;
use super::compose::OperatorFiles;
use super::reload::{Reloader, Reloads};
use super::restore::{read_snapshot, restore};
use super::schedule::{self, MainTimer};
use super::start::start_with;
use crate::admin::AdminApi;
use crate::clock::unix_now;
use crate::config::{AdminToken, Config};
use crate::metrics::MetricsState;
use crate::net::privileges::Dropped;
use crate::net::{self, Server, signals};
use crate::stats;
use crate::storage::passkey_journal::PasskeyJournal;
use crate::storage::snapshotter::Snapshotter;
use crate::tracker::ledger::TransferLedger;

/// Run the `ringtracker` command: its exit code (2 for a bad command line
/// or config, 1 for a start or a stop that failed).
pub fn run(cli: &Cli) -> ExitCode {
    if let Some(code) = cli.print_only() {
        return code;
    }
    cli.init_logs();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::from(2);
        }
    };
    match Process::start(config, cli.discard_bad_snapshot) {
        Ok(process) => process.serve(),
        Err(e) => {
            eprintln!("ringtracker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What runs between the start and the stop.
struct Process {
    config: Config,
    server: Server,
    metrics: Arc<MetricsState>,
    /// Private mode on a journal file: where the credits go.
    journal: Option<PasskeyJournal>,
    snapshotter: Option<Snapshotter>,
    /// The management API's token and certificate (`[admin]`), read
    /// before the start.
    admin_token: Option<AdminToken>,
    admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// Idle completed counts evicted as of the last stats line, and
    /// whether the last interval evicted any (logged when that changes).
    idle_evicted: (u64, bool),
}

impl Process {
    /// Everything up to serving: the snapshot and the operator's files are
    /// read while SIGTERM still stops the process at once (a list can be
    /// large, and an operator who gives up on the start must not wait).
    fn start(config: Config, discard_bad_snapshot: bool) -> Result<Process, String> {
        let snapshot = read_snapshot(&config, discard_bad_snapshot)?;
        let files = OperatorFiles::read(&config).map_err(|e| e.to_string())?;
        let admin_token = config.admin.token().map_err(|e| e.to_string())?;
        let admin_tls = match (&config.admin.tls_cert, &config.admin.tls_key) {
            (Some(cert), Some(key)) if admin_token.is_some() => {
                let names = ("admin.tls_cert", "admin.tls_key");
                let tls = net::tls::load_as(cert, key, names).map_err(|e| e.to_string())?;
                Some(Arc::new(tls))
            }
            _ => None,
        };
        signals::block_termination_signals();
        let server = start_with(&config, files, |tracker| {
            if let (Some(s), Some(path)) = (&snapshot, &config.storage.snapshot) {
                restore(s, path, tracker);
            }
        })
        .map_err(|e| e.to_string())?;
        drop(snapshot);
        // On a database, the credits go there (its thread), not to a journal.
        let journal = (config.private.enabled && config.private.database.is_none())
            .then(|| config.private.ledger.as_ref().map(PasskeyJournal::new))
            .flatten();
        let snapshotter = config.storage.snapshot.clone().map(|path| {
            let stall = std::env::var("RINGTRACKER_TEST_STALL_SNAPSHOT")
                .ok()
                .and_then(|n| n.parse().ok());
            Snapshotter::new(
                path,
                stall,
                journal.clone(),
                net::background::yield_cpu_to_workers,
            )
        });
        let mut metrics = MetricsState::new(
            Arc::clone(server.stats()),
            config.worker_count(),
            Arc::clone(server.tracker()),
            snapshotter.as_ref().map(|s| Arc::clone(&s.status)),
            unix_now(),
        );
        metrics.cluster = server.cluster_stats();
        metrics.database = server.database_stats();
        let process = Process {
            config,
            server,
            metrics: Arc::new(metrics),
            journal,
            snapshotter,
            admin_token,
            admin_tls,
            idle_evicted: (0, false),
        };
        if let Err(e) = process.open_doors() {
            process.server.shutdown();
            return Err(e);
        }
        Ok(process)
    }

    /// The last steps of a start: the metrics listener, the user to run
    /// as, the credits a snapshot carried, and the log of what is served.
    fn open_doors(&self) -> Result<(), String> {
        let config = &self.config;
        if config.metrics.enabled {
            let addr = net::metrics::spawn(config.metrics.listen, Arc::clone(&self.metrics))
                .map_err(|e| {
                    format!(
                        "cannot bind metrics {}: {e} (set [metrics] listen, or --metrics ADDR)",
                        config.metrics.listen
                    )
                })?;
            tracing::info!("metrics on http://{addr}/ (/metrics, /health)");
        }
        if let (Some(listen), Some(token)) = (config.admin.listen, &self.admin_token) {
            let api = AdminApi::new(Arc::clone(self.server.tracker()), token.clone());
            let tls = self.admin_tls.clone();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let addr = net::admin::spawn(listen, api, self.server.started(), tls)
                .map_err(|e| format!("cannot bind admin {listen}: {e} (set [admin] listen)"))?;
            tracing::info!("management API on {scheme}://{addr}/api/");
        }
        if let Some(user) = &config.process.user {
            match net::privileges::drop_to(user).map_err(|e| e.to_string())? {
                Dropped::To { uid, gid } => {
                    tracing::info!("running as user {user} (uid {uid}, gid {gid})");
                }
                Dropped::NotRoot { uid } => tracing::warn!(
                    "process.user = {user:?} ignored: not started as root (uid {uid})"
                ),
            }
        }
        if let Some(journal) = &self.journal {
            // As the user that writes it from now on: batches a snapshot
            // carried that the journal already holds are dropped, the rest
            // are appended now.
            let ledger = &self.server.tracker().ledger();
            match journal.reconcile(ledger) {
                Ok(_) => deliver_ledger(ledger, journal),
                Err(e) => tracing::error!(
                    "ledger journal {} unreadable, batches kept: {e}",
                    journal.path().display()
                ),
            }
        }
        for addr in self.server.https_addrs() {
            tracing::info!("listening on https {addr}");
        }
        for addr in self.server.udp_addrs() {
            tracing::info!("listening on udp {addr}");
        }
        for addr in self.server.http_addrs() {
            tracing::info!("listening on http {addr}");
        }
        tracing::info!("{} worker(s) started", config.worker_count());
        Ok(())
    }

    /// Serve until a signal (or a worker's death), then stop.
    fn serve(mut self) -> ExitCode {
        let mut timers = schedule::schedule(&self.config).timers(Instant::now());
        let mut reloads = Reloads::new(Reloader::new(&self.server), self.config.clone());
        let mut failed = false;
        'serving: loop {
            let wait = timers.poll_timeout().map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            });
            match signals::wait_for_signal(wait) {
                Some(signals::SIGHUP) => reloads.request(),
                Some(sig) => {
                    tracing::info!("signal {sig} received, stopping");
                    break;
                }
                None => {}
            }
            reloads.poll();
            let now = Instant::now();
            while let Some(timer) = timers.pop_expired(now) {
                if !self.run_job(timer) {
                    failed = true;
                    break 'serving;
                }
            }
        }
        failed |= !self.stop();
        tracing::info!("stopped");
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    /// Stop the workers, then save the final state (and deliver the last
    /// credits after it). False when the last snapshot failed.
    fn stop(self) -> bool {
        let now = self.server.now();
        let tracker = self.server.shutdown();
        match (self.snapshotter, &self.journal) {
            (Some(s), _) => s.finish(&tracker, now),
            (None, Some(journal)) => {
                deliver_ledger_now(tracker.ledger(), journal);
                true
            }
            (None, None) => true,
        }
    }

    /// Run the job of `timer`; false when the tracker must stop.
    fn run_job(&mut self, timer: MainTimer) -> bool {
        let server = &self.server;
        match timer {
            MainTimer::Health => {
                if let Some(worker) = server.stopped_worker() {
                    self.metrics.healthy.store(false, Ordering::Relaxed);
                    // Better to exit (and be restarted by a supervisor) than
                    // to keep a port where some clients are never answered.
                    tracing::error!("worker {worker} stopped unexpectedly; shutting down");
                    return false;
                }
            }
            MainTimer::History => self.metrics.record(unix_now()),
            MainTimer::Snapshot => {
                if let Some(s) = &mut self.snapshotter {
                    s.start(server.tracker(), server.now());
                }
            }
            MainTimer::Ledger => {
                let tracker = server.tracker();
                let database = self.config.private.database.is_some();
                match (&self.journal, self.snapshotter.is_some()) {
                    _ if database => {}
                    // With snapshots, credits go to the journal right after
                    // each snapshot (exactly once across crashes).
                    (Some(_), true) => {}
                    (Some(journal), false) => deliver_ledger_now(tracker.ledger(), journal),
                    // Nobody exports the credits: keep only the per-passkey
                    // totals, so memory stays bounded.
                    (None, _) => drop(tracker.ledger().take_pending()),
                }
                tracker
                    .ledger()
                    .expire(server.now(), tracker.policy().peer_timeout);
            }
            MainTimer::StatsLog => {
                let totals = server.tracker().table().totals();
                tracing::info!(
                    "stats: {} torrents={} seeders={} leechers={}",
                    stats::summary(&stats::totals(server.stats())),
                    totals.torrents,
                    totals.seeders,
                    totals.leechers
                );
                self.log_idle_evictions();
            }
        }
        true
    }
}

impl Process {
    /// Say when the idle torrents' completed counts start or stop being
    /// evicted for want of room (once per change, not per interval).
    fn log_idle_evictions(&mut self) {
        let now = self.server.tracker().table().idle_evicted();
        let (before, was_evicting) = self.idle_evicted;
        let evicting = now > before;
        if evicting && !was_evicting {
            tracing::warn!(
                "tracker.max_idle_torrents = {} is full: the smallest completed counts of torrents without peers are being dropped",
                self.config.tracker.max_idle_torrents
            );
        } else if was_evicting && !evicting {
            tracing::info!(
                "idle torrents' completed counts fit again ({} dropped so far)",
                now
            );
        }
        self.idle_evicted = (now, evicting);
    }
}

/// Append the ledger's sealed batches, logging the outcome.
fn deliver_ledger(ledger: &TransferLedger, journal: &PasskeyJournal) {
    log_delivery(journal, journal.deliver(ledger, unix_now()));
}

/// Seal the ledger's pending credits into a batch and append it.
fn deliver_ledger_now(ledger: &TransferLedger, journal: &PasskeyJournal) {
    log_delivery(journal, journal.flush(ledger, unix_now()));
}

fn log_delivery(journal: &PasskeyJournal, appended: std::io::Result<usize>) {
    match appended {
        Ok(0) => {}
        Ok(n) => tracing::debug!("ledger: {n} line(s) appended"),
        Err(e) => tracing::error!(
            "ledger journal {} not written, credits kept for the next try: {e}",
            journal.path().display()
        ),
    }
}
