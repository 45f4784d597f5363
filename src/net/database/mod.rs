//! Private mode's database thread: keeps the `SiteDirectory` in step with
//! the site's `rt_users` and `rt_torrents` (`members.rs`), and writes the
//! ledger's credits to `rt_credits` in numbered batches, each applied once
//! (`credits.rs`, with `rt_batches` and the credit journal).
//!
//! It is the only thread that talks to the database, with the `mysql`
//! crate's blocking client and a deadline on every call: workers read the
//! directory and write the ledger, and never wait for it. While the
//! database is down the directory keeps what it last read and credits
//! wait in the ledger (spilling to the journal past a bound); the thread
//! reconnects with a growing backoff and logs once per change of state.

mod credits;
mod members;
mod row_batch;
pub mod rows_sql;
pub mod sql;
mod write_back;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql::{Conn, OptsBuilder};

pub use crate::stats::DatabaseStats;
use crate::storage::database_journal::{DatabaseJournal, Replay};
use crate::tracker::Tracker;
use crate::tracker::site::SiteDirectory;
use credits::CreditWriter;

/// Deadline of a connect and of every read and write on the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Rows applied to the directory at a time while a table streams in.
const ROW_CHUNK: usize = 10_000;

/// What the thread needs.
pub struct DatabaseSetup {
    /// `mysql://user:password@host:port/db` (checked by the config).
    pub url: String,
    /// Between reads of changed rows.
    pub sync_interval: Duration,
    /// Between flushes of credits.
    pub flush_interval: Duration,
    /// This tracker's name in `rt_batches`.
    pub node: String,
    /// The tracker whose ledger is flushed.
    pub tracker: Arc<Tracker>,
    /// The directory the reads fill.
    pub site: Arc<SiteDirectory>,
    /// The credit journal, replayed into the ledger, and what it held.
    pub journal: (DatabaseJournal, Replay),
    /// Credits (per user and torrent) kept while the database is down
    /// before they spill to the journal.
    pub max_pending: usize,
    /// Tracker time zero.
    pub started: Instant,
    /// Write `rt_peers`, `rt_torrent_stats` and history too.
    pub write_back: bool,
}

enum Command {
    /// SIGHUP: read every row again now.
    ReadAll,
    Stop,
}

/// Asks the thread to read every row again.
#[derive(Clone)]
pub struct ReadAll(mpsc::Sender<Command>);

impl ReadAll {
    /// Ask for a read of every row (SIGHUP).
    pub fn request(&self) {
        let _ = self.0.send(Command::ReadAll);
    }
}

/// The running thread.
pub struct SiteDatabase {
    commands: mpsc::Sender<Command>,
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<DatabaseStats>,
}

impl SiteDatabase {
    /// Start the database thread.
    pub fn spawn(setup: DatabaseSetup) -> io::Result<SiteDatabase> {
        let (commands, rx) = mpsc::channel();
        let stats = Arc::new(DatabaseStats::default());
        let (journal, replay) = setup.journal;
        let node = setup.node.clone();
        let mut worker = Worker {
            credits: CreditWriter::new(
                journal,
                replay,
                node,
                setup.max_pending,
                (setup.write_back, setup.flush_interval),
            ),
            setup: Settings {
                url: setup.url,
                sync_interval: setup.sync_interval,
                flush_interval: setup.flush_interval,
                tracker: setup.tracker,
                site: setup.site,
                started: setup.started,
            },
            stats: stats.clone(),
            conn: None,
            watermark: None,
            logged_up: None,
            read_failing: false,
            freeleech_missing: false,
            freeleech_read: false,
            stopping: false,
        };
        let handle = std::thread::Builder::new()
            .name("database".into())
            .spawn(move || worker.run(&rx))?;
        Ok(SiteDatabase {
            commands,
            handle: Some(handle),
            stats,
        })
    }

    /// What asks for a full read (SIGHUP), for the reload thread.
    pub fn read_all_handle(&self) -> ReadAll {
        ReadAll(self.commands.clone())
    }

    /// Flush what the ledger holds (one try) and end the thread.
    pub fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Settings {
    url: String,
    sync_interval: Duration,
    flush_interval: Duration,
    tracker: Arc<Tracker>,
    site: Arc<SiteDirectory>,
    started: Instant,
}

struct Worker {
    setup: Settings,
    credits: CreditWriter,
    stats: Arc<DatabaseStats>,
    conn: Option<Conn>,
    /// Where the next incremental read starts (None: read every row).
    watermark: Option<String>,
    /// The state last logged (up or down), so each change logs once.
    logged_up: Option<bool>,
    /// The last read of the member tables was refused (logged once).
    read_failing: bool,
    /// `rt_freeleech_tokens` was last refused (logged once per change).
    freeleech_missing: bool,
    /// It was read once (rows then stop standing over the API's grants).
    freeleech_read: bool,
    stopping: bool,
}

#[derive(Default)]
struct Step {
    synced: bool,
    flushed: bool,
}

impl Worker {
    fn run(&mut self, rx: &mpsc::Receiver<Command>) {
        let mut full_read = true;
        let mut backoff = BACKOFF_MIN;
        let now = Instant::now();
        let (mut next_sync, mut next_flush) = (now, now + self.setup.flush_interval);
        loop {
            let wait = next_sync
                .min(next_flush)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Command::ReadAll) => full_read = true,
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            match self.step(&mut full_read, now >= next_sync, now >= next_flush) {
                Ok(step) => {
                    backoff = BACKOFF_MIN;
                    if step.synced {
                        next_sync = now + self.setup.sync_interval;
                    }
                    if step.flushed {
                        next_flush = now + self.setup.flush_interval;
                    }
                }
                Err(e) => {
                    self.went_down(&e);
                    // What was due is tried again after the backoff; a
                    // flush interval still cuts (and maybe spills).
                    next_sync = next_sync.max(now + backoff);
                    next_flush = next_flush.max(now + backoff.max(self.setup.flush_interval));
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        // The workers are gone: one last cut and try for the credits
        // (what does not get through is in the journal).
        self.stopping = true;
        if let Err(e) = self.step(&mut false, false, true) {
            tracing::warn!("database: credits not written at stop, they wait in the journal: {e}");
        }
    }

    /// One pass: cut the ledger if a flush is due, connect if needed, read
    /// rows if due, apply the journaled batches if a flush is due.
    fn step(
        &mut self,
        full_read: &mut bool,
        sync_due: bool,
        flush_due: bool,
    ) -> Result<Step, mysql::Error> {
        let connected = self.connected().map(|_| ());
        if flush_due {
            let now = self.setup.started.elapsed().as_secs() as u32;
            let up = connected.is_ok();
            self.credits
                .cut(&self.setup.tracker, now, up, self.stopping, &self.stats);
        }
        connected?;
        let mut step = Step::default();
        if *full_read || sync_due {
            match self.read(*full_read) {
                Ok(()) => {
                    *full_read = false;
                    self.read_failed(None);
                }
                // The server refused the read (a view without a column, a
                // grant missing): the directory keeps what it has, credits
                // still flow, and the read is tried at the next sync.
                Err(mysql::Error::MySqlError(e)) => self.read_failed(Some(&e)),
                Err(e) => return Err(e),
            }
            step.synced = true;
        }
        if flush_due {
            self.connected()?;
            let conn = self.conn.as_mut().expect("connected above");
            self.credits.flush(conn, &self.stats)?;
            step.flushed = true;
        }
        Ok(step)
    }

    fn connected(&mut self) -> Result<&mut Conn, mysql::Error> {
        if self.conn.is_none() {
            let opts = mysql::Opts::from_url(&self.setup.url)?;
            let opts = OptsBuilder::from_opts(opts)
                .tcp_connect_timeout(Some(IO_TIMEOUT))
                .read_timeout(Some(IO_TIMEOUT))
                .write_timeout(Some(IO_TIMEOUT))
                .prefer_socket(false)
                // `updated_at` (TIMESTAMP) and the watermark both in UTC,
                // whatever the server's zone: no hour is seen twice or
                // skipped when daylight saving time ends.
                .init(vec!["SET time_zone = '+00:00'"]);
            self.conn = Some(Conn::new(opts)?);
            self.credits.reconnected();
            self.stats.up.store(true, Ordering::Relaxed);
            if self.logged_up != Some(true) {
                tracing::info!("database: connected");
                self.logged_up = Some(true);
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Log a read that fails, and one that works again, once each.
    fn read_failed(&mut self, e: Option<&mysql::error::MySqlError>) {
        match e {
            Some(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.read_failing, true) {
                    tracing::warn!(
                        "database: reading users and torrents fails ({e}); serving what was last read, credits go on"
                    );
                }
            }
            None if std::mem::take(&mut self.read_failing) => {
                tracing::info!("database: users and torrents read again");
            }
            None => {}
        }
    }

    fn went_down(&mut self, e: &mysql::Error) {
        self.conn = None;
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.up.store(false, Ordering::Relaxed);
        if self.logged_up != Some(false) {
            tracing::warn!(
                "database: unavailable ({e}); serving the users and torrents last read, credits wait"
            );
            self.logged_up = Some(false);
        }
    }
}
