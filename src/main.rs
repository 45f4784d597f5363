//! The `ringtracker` command: flags, config file, start, wait for a signal.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;

use ringtracker::config::Config;
use ringtracker::metrics::{MetricsState, history};
use ringtracker::net::privileges::Dropped;
use ringtracker::net::{self, Server, signals};
use ringtracker::stats;
use ringtracker::storage::ledger_journal::LedgerJournal;
use ringtracker::storage::snapshot::{self, Snapshot};
use ringtracker::storage::snapshotter::{Snapshotter, unix_now};
use ringtracker::tracker::Tracker;
use ringtracker::tracker::ledger::TransferLedger;

/// A UDP-first BitTorrent tracker on Linux io_uring.
#[derive(Parser, Debug)]
#[command(version, about)]
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
    /// Start with an empty swarm table if the snapshot cannot be read; the
    /// unreadable file is kept as PATH.bad.
    #[arg(long)]
    discard_bad_snapshot: bool,
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
/// (it is never overwritten) unless told to discard it.
fn read_snapshot(config: &Config, discard_bad: bool) -> Result<Option<Snapshot>, String> {
    let Some(path) = &config.storage.snapshot else {
        return Ok(None);
    };
    match Snapshot::read(path) {
        Ok(s) => Ok(s),
        Err(e) if discard_bad => {
            let bad = snapshot::sibling(path, "bad");
            std::fs::rename(path, &bad)
                .map_err(|r| format!("{e}; and it cannot be moved to {}: {r}", bad.display()))?;
            tracing::warn!("{e}; starting empty (the file is now {})", bad.display());
            Ok(None)
        }
        Err(e) => Err(format!(
            "{e}; not starting, so as not to overwrite it: repair or remove it, or start with \
             --discard-bad-snapshot (keeps it as {})",
            snapshot::sibling(path, "bad").display()
        )),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", Config::default_toml());
        return ExitCode::SUCCESS;
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
    let server = match Server::start_with(&config, restore) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(snapshot);
    let journal = (config.private.enabled)
        .then(|| config.private.ledger.as_ref().map(LedgerJournal::new))
        .flatten();
    let snapshotter = config.storage.snapshot.clone().map(|path| {
        let stall = std::env::var("RINGTRACKER_TEST_STALL_SNAPSHOT")
            .ok()
            .and_then(|n| n.parse().ok());
        Snapshotter::new(
            path,
            Duration::from_secs(config.storage.snapshot_interval),
            stall,
            journal.clone(),
        )
    });
    let metrics = Arc::new(MetricsState::new(
        Arc::clone(server.stats()),
        config.worker_count(),
        Arc::clone(server.tracker()),
        snapshotter.as_ref().map(|s| Arc::clone(&s.status)),
        unix_now(),
    ));
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

    let every = match config.server.stats_interval {
        0 => Duration::from_secs(3600),
        s => Duration::from_secs(s),
    };
    let mut next_log = Instant::now() + every;
    let ledger_every = Duration::from_secs(config.private.ledger_interval);
    let mut next_ledger = Instant::now() + ledger_every;
    let mut snapshotter = snapshotter;
    let history_every = Duration::from_secs(history::STEP);
    let mut next_sample = Instant::now();
    let mut failed = false;
    loop {
        // Wake at least every second to check that every worker still runs.
        let next_snapshot = snapshotter.as_ref().map(|s| s.next_due());
        let wait = next_log
            .min(next_ledger)
            .min(next_snapshot.unwrap_or(next_log))
            .min(next_sample)
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        match signals::wait_for_signal(wait) {
            Some(signals::SIGHUP) => {
                // Build the new rules aside; the old stay in force on error.
                match server.reload_access(&config) {
                    Ok(n) => tracing::info!("access list reloaded ({n} info hashes)"),
                    Err(e) => tracing::error!("access list not reloaded, the old one stays: {e}"),
                }
                match server.reload_tls(&config) {
                    Ok(false) => {}
                    Ok(true) => tracing::info!("tls certificate reloaded"),
                    Err(e) => {
                        tracing::error!("tls certificate not reloaded, the old one stays: {e}")
                    }
                }
                continue;
            }
            Some(sig) => {
                tracing::info!("signal {sig} received, stopping");
                break;
            }
            None => {}
        }
        if Instant::now() >= next_sample {
            next_sample += history_every;
            metrics.record(unix_now());
        }
        if let Some(index) = server.stopped_worker() {
            metrics.healthy.store(false, Ordering::Relaxed);
            // Better to exit (and be restarted by a supervisor) than to keep
            // a port where some clients are never answered.
            tracing::error!("udp worker {index} stopped unexpectedly; shutting down");
            failed = true;
            break;
        }
        if let Some(s) = &mut snapshotter {
            s.tick(server.tracker(), server.now());
        }
        if config.private.enabled && Instant::now() >= next_ledger {
            next_ledger += ledger_every;
            let tracker = server.tracker();
            match (&journal, &snapshotter) {
                // With snapshots, credits go to the journal right after
                // each snapshot (exactly once across crashes).
                (Some(_), Some(_)) => {}
                (Some(journal), None) => flush_ledger(tracker, journal),
                // Nobody exports the credits: keep only the per-passkey
                // totals, so memory stays bounded.
                (None, _) => drop(tracker.ledger.take_pending()),
            }
            tracker
                .ledger
                .expire(server.now(), tracker.policy.peer_timeout);
        }
        if Instant::now() < next_log {
            continue;
        }
        next_log += every;
        if config.server.stats_interval > 0 {
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
