//! The command line: flags, the config file they override, the docs
//! generated from them (`--print-man`, `--print-completions`) and where
//! log lines go.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

/// A UDP-first BitTorrent tracker on Linux io_uring.
#[derive(clap::Parser, Debug)]
#[command(
    name = "ringtracker",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("RINGTRACKER_GIT_REV"), ")"),
    about
)]
pub struct Cli {
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
    pub(super) discard_bad_snapshot: bool,
    /// Print the man page (roff, from these options) and exit.
    #[arg(long)]
    print_man: bool,
    /// Print a completion script for SHELL and exit.
    #[arg(long, value_name = "SHELL")]
    print_completions: Option<clap_complete::Shell>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

impl Cli {
    /// The flags that print something and exit (`--print-config`,
    /// `--print-man`, `--print-completions`): their exit code, or `None`
    /// when the tracker is to run.
    pub(super) fn print_only(&self) -> Option<ExitCode> {
        if self.print_config {
            print!("{}", Config::default_toml());
            return Some(ExitCode::SUCCESS);
        }
        (self.print_man || self.print_completions.is_some()).then(|| self.print_docs())
    }

    /// `--print-man`, `--print-completions SHELL`: generated from the clap
    /// definition, so they never disagree with `--help` (the Debian package
    /// installs them).
    fn print_docs(&self) -> ExitCode {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let mut out = std::io::stdout().lock();
        let written = match self.print_completions {
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

    /// Send log lines to stderr in the chosen format.
    pub(super) fn init_logs(&self) {
        let logs = tracing_subscriber::fmt()
            .with_writer(|| LossyStderr)
            .with_target(false);
        match self.log_format {
            LogFormat::Human => logs
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init(),
            LogFormat::Json => logs.json().with_ansi(false).init(),
        }
    }

    /// The config file (or the defaults) with the flags applied, checked.
    pub(super) fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        if !self.udp.is_empty() {
            config.udp.listen.clone_from(&self.udp);
        }
        if !self.http.is_empty() {
            config.http.listen.clone_from(&self.http);
        }
        if !self.https.is_empty() {
            config.tls.listen.clone_from(&self.https);
        }
        if let Some(addr) = self.metrics {
            config.metrics.enabled = true;
            config.metrics.listen = addr;
        }
        if let Some(n) = self.workers {
            config.server.workers = n;
        }
        if let Some(secs) = self.interval {
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
