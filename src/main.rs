//! The `ringtracker` command: flags, config file, start, wait for a signal.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

use ringtracker::config::Config;
use ringtracker::net::{Server, signals};
use ringtracker::stats;
use ringtracker::storage::ledger_journal::LedgerJournal;
use ringtracker::tracker::Tracker;

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
    /// Announce interval sent to clients, in seconds.
    #[arg(long, value_name = "SECS")]
    interval: Option<u32>,
    /// Print the full default configuration (with comments) and exit.
    #[arg(long)]
    print_config: bool,
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

fn flush_ledger(tracker: &Tracker, journal: &LedgerJournal) {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match journal.flush(&tracker.ledger, unix_time) {
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::from(2);
        }
    };
    signals::block_termination_signals();
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringtracker: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let journal = (config.private.enabled)
        .then(|| config.private.ledger.as_ref().map(LedgerJournal::new))
        .flatten();
    let ledger_every = Duration::from_secs(config.private.ledger_interval);
    let mut next_ledger = Instant::now() + ledger_every;
    let mut failed = false;
    loop {
        // Wake at least every second to check that every worker still runs.
        let wait = next_log
            .min(next_ledger)
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        match signals::wait_for_signal(wait) {
            Some(signals::SIGHUP) => {
                // Build the new rules aside; the old stay in force on error.
                match server.reload_access(&config) {
                    Ok(n) => tracing::info!("access list reloaded ({n} info hashes)"),
                    Err(e) => tracing::error!("access list not reloaded, the old one stays: {e}"),
                }
                continue;
            }
            Some(sig) => {
                tracing::info!("signal {sig} received, stopping");
                break;
            }
            None => {}
        }
        if let Some(index) = server.stopped_worker() {
            // Better to exit (and be restarted by a supervisor) than to keep
            // a port where some clients are never answered.
            tracing::error!("udp worker {index} stopped unexpectedly; shutting down");
            failed = true;
            break;
        }
        if config.private.enabled && Instant::now() >= next_ledger {
            next_ledger += ledger_every;
            let tracker = server.tracker();
            match &journal {
                Some(journal) => flush_ledger(tracker, journal),
                // Nobody exports the credits: keep only the per-passkey
                // totals, so memory stays bounded.
                None => drop(tracker.ledger.take_pending()),
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
    let tracker = server.shutdown();
    if let Some(journal) = &journal {
        // The workers are gone: this takes the last credits.
        flush_ledger(&tracker, journal);
    }
    tracing::info!("stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
