//! The `ringtracker` command: flags, config file, start, wait for a signal.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;

use ringtracker::compose::OperatorFiles;
use ringtracker::config::Config;
use ringtracker::engine::timers::{MainSchedule, MainTimer};
use ringtracker::metrics::{MetricsState, history};
use ringtracker::net::privileges::Dropped;
use ringtracker::net::{self, Reloader, Server, signals};
use ringtracker::stats;
use ringtracker::storage::ledger_journal::LedgerJournal;
use ringtracker::storage::snapshot::{self, Snapshot};
use ringtracker::storage::snapshotter::{Snapshotter, unix_now};
use ringtracker::tracker::Tracker;
use ringtracker::tracker::ledger::TransferLedger;

/// A UDP-first BitTorrent tracker on Linux io_uring.
#[derive(Parser, Debug)]
#[command(
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("RINGTRACKER_GIT_REV"), ")"),
    about
)]
struct Cli {
    /// TOML config file (see --print-config); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to serve (repeatable; replaces the configured list).
    #[arg(long, value_name = "ADDR")]
    udp: Vec<SocketAddr>,
    /// HTTP address to serve (repeatable; replaces the configured list).
    #[arg(long, value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// Worker threads (0: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// HTTPS address to serve (repeatable; replaces the configured list;
    /// needs [tls] cert and key).
    #[arg(long, value_name = "ADDR")]
    https: Vec<SocketAddr>,
    /// Address of the metrics listener (/metrics, /health, stats page).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Announce interval sent to clients, in seconds.
    #[arg(long, value_name = "SECS")]
    interval: Option<u32>,
    /// Log lines as text for people or JSON objects for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Print the full default configuration (with comments) and exit.
    #[arg(long)]
    print_config: bool,
    /// If the snapshot cannot be read, keep it as PATH.bad.<time> and load
    /// the previous one (PATH.prev), or start with an empty swarm table.
    #[arg(long)]
    discard_bad_snapshot: bool,
    /// Print the man page (roff, from these options) and exit.
    #[arg(long)]
    print_man: bool,
    /// Print a completion script for SHELL and exit.
    #[arg(long, value_name = "SHELL")]
    print_completions: Option<clap_complete::Shell>,
}

/// `--print-man`, `--print-completions SHELL`: generated from the clap
/// definition, so they never disagree with `--help` (the Debian package
/// installs them).
fn print_docs(cli: &Cli) -> ExitCode {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    let written = match cli.print_completions {
        Some(shell) => {
            clap_complete::generate(shell, &mut command, "ringtracker", &mut out);
            Ok(())
        }
        None => clap_mangen::Man::new(command).render(&mut out),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Stderr for logs, where a failed write (the reader went away) loses the
/// line instead of ending the process: tracing-subscriber reports a failed
/// write with `eprintln!`, which panics on a closed pipe.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Read the configured snapshot, if any. An unreadable one stops the start
/// (it is never overwritten) unless told to discard it: then it is kept
/// aside (`PATH.bad.<time>`, never over an earlier one) and the previous
/// snapshot, `PATH.prev`, is tried before starting empty.
fn read_snapshot(config: &Config, discard_bad: bool) -> Result<Option<Snapshot>, String> {
    let Some(path) = &config.storage.snapshot else {
        return Ok(None);
    };
    let e = match Snapshot::read(path) {
        Ok(s) => return Ok(s),
        Err(e) if !discard_bad => {
            return Err(format!(
                "{e}; not starting, so as not to overwrite it: repair or remove it, or start \
                 with --discard-bad-snapshot (keeps it as {}, then tries {})",
                snapshot::sibling(path, "bad.<time>").display(),
                snapshot::sibling(path, "prev").display()
            ));
        }
        Err(e) => e,
    };
    let discard = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        let bad = snapshot::keep_aside(path, unix_now())
            .map_err(|r| format!("{e}; and it cannot be moved aside: {r}"))?;
        tracing::warn!("{e}; the file is kept as {}", bad.display());
        Ok::<_, String>(())
    };
    discard(path, &e)?;
    let prev = snapshot::sibling(path, "prev");
    match Snapshot::read(&prev) {
        Ok(Some(s)) => {
            tracing::warn!("loading the previous snapshot, {}, instead", prev.display());
            Ok(Some(s))
        }
        Ok(None) => {
            tracing::warn!("no previous snapshot ({}): starting empty", prev.display());
            Ok(None)
        }
        Err(e) => {
            discard(&prev, &e)?;
            tracing::warn!("starting empty");
            Ok(None)
        }
    }
}

fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !cli.udp.is_empty() {
        config.udp.listen = cli.udp.clone();
    }
    if !cli.http.is_empty() {
        config.http.listen = cli.http.clone();
    }
    if !cli.https.is_empty() {
        config.tls.listen = cli.https.clone();
    }
    if let Some(addr) = cli.metrics {
        config.metrics.enabled = true;
        config.metrics.listen = addr;
    }
    if let Some(n) = cli.workers {
        config.server.workers = n;
    }
    if let Some(secs) = cli.interval {
        config.tracker.interval = secs;
        // Keep the default timeout consistent with a longer interval.
        if config.tracker.peer_timeout < secs {
            config.tracker.peer_timeout = secs.saturating_mul(2);
        }
    }
    config
        .validate()
        .map_err(|e| format!("command line: {e}"))?;
    Ok(config)
}

/// Append the ledger's sealed batches, logging the outcome.
fn deliver_ledger(ledger: &TransferLedger, journal: &LedgerJournal) {
    match journal.deliver(ledger, unix_now()) {
        Ok(0) => {}
        Ok(n) => tracing::debug!("ledger: {n} line(s) appended"),
        Err(e) => tracing::error!(
            "ledger journal {} not written, credits kept for the next try: {e}",
            journal.path().display()
        ),
    }
}

fn flush_ledger(tracker: &Tracker, journal: &LedgerJournal) {
    match journal.flush(&tracker.ledger, unix_now()) {
        Ok(0) => {}
        Ok(n) => tracing::debug!("ledger: {n} line(s) appended"),
        Err(e) => tracing::error!(
            "ledger journal {} not written, credits kept for the next try: {e}",
            journal.path().display()
        ),
    }
}

/// Which of main's periodic jobs run, and how often: a timer is armed
/// exactly when its feature is on.
fn main_schedule(config: &Config) -> MainSchedule {
    let secs = Duration::from_secs;
    MainSchedule {
        // Check every second that every worker still runs.
        health: secs(1),
        history: config.metrics.enabled.then_some(secs(history::STEP)),
        stats_log: (config.server.stats_interval > 0).then(|| secs(config.server.stats_interval)),
        ledger: config
            .private
            .enabled
            .then(|| secs(config.private.ledger_interval)),
        snapshot: config
            .storage
            .snapshot
            .as_ref()
            .map(|_| secs(config.storage.snapshot_interval)),
    }
}

/// What main does between signals: the periodic jobs.
struct Jobs<'a> {
    server: &'a Server,
    metrics: &'a MetricsState,
    journal: Option<&'a LedgerJournal>,
    /// Private mode on a database: its thread takes the credits.
    database: bool,
}

impl Jobs<'_> {
    /// Run the job of `timer`; false when the tracker must stop.
    fn run(&self, timer: MainTimer, snapshotter: &mut Option<Snapshotter>) -> bool {
        let server = self.server;
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
                if let Some(s) = snapshotter {
                    s.start(server.tracker(), server.now());
                }
            }
            MainTimer::Ledger => {
                let tracker = server.tracker();
                match (self.journal, snapshotter.is_some()) {
                    _ if self.database => {}
                    // With snapshots, credits go to the journal right after
                    // each snapshot (exactly once across crashes).
                    (Some(_), true) => {}
                    (Some(journal), false) => flush_ledger(tracker, journal),
                    // Nobody exports the credits: keep only the per-passkey
                    // totals, so memory stays bounded.
                    (None, _) => drop(tracker.ledger.take_pending()),
                }
                tracker
                    .ledger
                    .expire(server.now(), tracker.policy.peer_timeout);
            }
            MainTimer::StatsLog => {
                let totals = server.tracker().table.totals();
                tracing::info!(
                    "stats: {} torrents={} seeders={} leechers={}",
                    stats::summary(&stats::totals(server.stats())),
                    totals.torrents,
                    totals.seeders,
                    totals.leechers
                );
            }
        }
        true
    }
}

/// SIGHUP's work, on a thread of its own: main keeps answering SIGTERM and
/// running its timers while a large list is read. A SIGHUP that arrives
/// during a reload runs once that one has ended.
struct Reloads {
    reloader: Reloader,
    config: Config,
    running: Option<std::thread::JoinHandle<()>>,
    pending: bool,
}

impl Reloads {
    fn request(&mut self) {
        self.pending = true;
        self.poll();
    }

    /// Start the pending reload if none is running.
    fn poll(&mut self) {
        if self.running.as_ref().is_some_and(|r| !r.is_finished()) || !self.pending {
            return;
        }
        self.pending = false;
        let (reloader, config) = (self.reloader.clone(), self.config.clone());
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                net::background::yield_cpu_to_workers();
                reload(&reloader, &config)
            });
        match spawned {
            Ok(handle) => self.running = Some(handle),
            Err(e) => tracing::error!("reload not started: {e}"),
        }
    }
}

/// Build the new rules and certificate aside; the old stay in force on
/// error.
fn reload(reloader: &Reloader, config: &Config) {
    match reloader.reload_access(config) {
        Ok(n) => tracing::info!("access list reloaded ({n} info hashes)"),
        Err(e) => tracing::error!("access list not reloaded, the old one stays: {e}"),
    }
    match reloader.reload_tls(config) {
        Ok(false) => {}
        Ok(true) => tracing::info!("tls certificate reloaded"),
        Err(e) => tracing::error!("tls certificate not reloaded, the old one stays: {e}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", Config::default_toml());
        return ExitCode::SUCCESS;
    }
    if cli.print_man || cli.print_completions.is_some() {
        return print_docs(&cli);
    }
    let logs = tracing_subscriber::fmt()
        .with_writer(|| LossyStderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::from(2);
        }
    };
    let snapshot = match read_snapshot(&config, cli.discard_bad_snapshot) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Read while SIGTERM still stops the process at once: a list can be
    // large, and an operator who gives up on the start must not wait.
    let files = match OperatorFiles::read(&config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::FAILURE;
        }
    };
    signals::block_termination_signals();
    let restore = |tracker: &Tracker| {
        if let (Some(s), Some(path)) = (&snapshot, &config.storage.snapshot) {
            let r = s.restore(tracker, 0, unix_now());
            tracing::info!(
                "snapshot loaded from {}: {} torrents, {} peers ({} expired while down) in {:.1} ms",
                path.display(),
                r.torrents,
                r.peers,
                r.expired,
                r.micros as f64 / 1000.0
            );
        }
    };
    let server = match Server::start_with(&config, files, restore) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(snapshot);
    // On a database, the credits go there (its thread), not to a journal.
    let database = config.private.database.is_some();
    let journal = (config.private.enabled && !database)
        .then(|| config.private.ledger.as_ref().map(LedgerJournal::new))
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
    let metrics = Arc::new(metrics);
    if config.metrics.enabled {
        match net::metrics::spawn(config.metrics.listen, Arc::clone(&metrics)) {
            Ok(addr) => tracing::info!("metrics on http://{addr}/ (/metrics, /health)"),
            Err(e) => {
                eprintln!(
                    "ringtracker: cannot bind metrics {}: {e} (set [metrics] listen, or --metrics ADDR)",
                    config.metrics.listen
                );
                server.shutdown();
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(user) = &config.process.user {
        match net::privileges::drop_to(user) {
            Ok(Dropped::To { uid, gid }) => {
                tracing::info!("running as user {user} (uid {uid}, gid {gid})")
            }
            Ok(Dropped::NotRoot { uid }) => {
                tracing::warn!("process.user = {user:?} ignored: not started as root (uid {uid})")
            }
            Err(e) => {
                eprintln!("ringtracker: {e}");
                server.shutdown();
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(journal) = &journal {
        // As the user that writes it from now on: batches a snapshot
        // carried that the journal already holds are dropped, the rest are
        // appended now.
        let ledger = &server.tracker().ledger;
        match journal.reconcile(ledger) {
            Ok(_) => deliver_ledger(ledger, journal),
            Err(e) => tracing::error!(
                "ledger journal {} unreadable, batches kept: {e}",
                journal.path().display()
            ),
        }
    }
    for addr in server.https_addrs() {
        tracing::info!("listening on https {addr}");
    }
    for addr in server.udp_addrs() {
        tracing::info!("listening on udp {addr}");
    }
    for addr in server.http_addrs() {
        tracing::info!("listening on http {addr}");
    }
    tracing::info!("{} worker(s) started", config.worker_count());

    let mut timers = main_schedule(&config).timers(Instant::now());
    let mut snapshotter = snapshotter;
    let jobs = Jobs {
        server: &server,
        metrics: &metrics,
        journal: journal.as_ref(),
        database,
    };
    let mut reloads = Reloads {
        reloader: server.reloader(),
        config: config.clone(),
        running: None,
        pending: false,
    };
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
            if !jobs.run(timer, &mut snapshotter) {
                failed = true;
                break 'serving;
            }
        }
    }
    let now = server.now();
    let tracker = server.shutdown();
    match (snapshotter, &journal) {
        // The workers are gone: this is the final state (and the last
        // credits, delivered after it).
        (Some(s), _) => failed |= !s.finish(&tracker, now),
        (None, Some(journal)) => flush_ledger(&tracker, journal),
        (None, None) => {}
    }
    tracing::info!("stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
