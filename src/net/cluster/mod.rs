//! Cluster mode's sync thread: the only code that talks to Redis
//! (Redis streams). Every `flush_interval_ms` it drains the workers'
//! outboxes into messages and appends them to the one stream (`XADD`
//! with approximate `MAXLEN` trimming); between flushes it waits on the
//! stream (`XREAD BLOCK`) for other nodes' messages and applies them
//! (`cluster::apply`). Workers never wait on it: they push into their
//! outboxes and go on.
//!
//! Redis may be down, slow or restarted empty: the thread then keeps
//! draining the outboxes into a bounded buffer of unsent messages,
//! reconnects with backoff (logging once per state change), and on its
//! return sends what it kept, notices a stream that started over or
//! entries trimmed before it read them, and catches up from the
//! checkpoints (`checkpoint.rs`, written by a thread of their own).
//!
//! It only moves bytes: when to do what is `cluster::schedule`'s
//! `SyncSchedule` (flushes, connects and their backoff, what follows a
//! connect, the periodic checks), and what the stream's entries and ends
//! mean is `cluster::follow`'s `StreamFollower`; both are sans I/O and
//! unit-tested sequence by sequence.

pub mod checkpoint;
pub mod link;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use link::Link;

use crate::clock::{unix_ms, unix_now};
use crate::cluster::apply::{RemoteOutcome, apply_remote};
use crate::cluster::follow::{EndsOutcome, EntryOutcome, StreamFollower, StreamId};
use crate::cluster::mac::ClusterMac;
use crate::cluster::message::MessageBuilder;
use crate::cluster::schedule::{DownLog, SyncCommand, SyncSchedule};
use crate::cluster::stats::{ClusterStats, Rejected};
use crate::config::ClusterConfig;
use crate::engine::outbox::OutboxReader;
use crate::tracker::Tracker;

/// Seconds between checkpoints of this node's local peers.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// How long the stream keeps entries: three checkpoint intervals, so a
/// node loading a checkpoint finds the entries after it ...
const RETENTION: Duration = Duration::from_secs(180);
/// ... unless that is more than this many bytes (a flash crowd): the
/// stream is then trimmed sooner, and a node that finds entries trimmed
/// before it read them catches up from the checkpoints.
const STREAM_BUDGET: u64 = 256 << 20;
/// Unsent messages kept while Redis is away; beyond, changes are
/// dropped and counted (other nodes then learn them from the trickle of
/// refreshes and the next checkpoint).
const MAX_UNSENT_BYTES: usize = 64 << 20;
/// Entries read per XREAD.
const READ_COUNT: usize = 256;
pub(crate) use crate::cluster::follow::MAX_NODES;

/// What the sync thread is built from.
pub struct SyncSetup {
    /// `[cluster]`.
    pub config: ClusterConfig,
    /// This node's name (the config's, or the host name).
    pub node: String,
    /// The tracker remote changes are applied to.
    pub tracker: Arc<Tracker>,
    /// The workers' outboxes (one per worker).
    pub outboxes: Vec<OutboxReader>,
    /// Tracker time zero.
    pub started: Instant,
    /// The key messages and checkpoints are authenticated with.
    pub mac: ClusterMac,
}

/// The running sync and checkpoint threads.
pub struct ClusterSync {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<ClusterStats>,
}

impl ClusterSync {
    /// Start the sync thread (and the checkpoint writer).
    pub fn spawn(setup: SyncSetup) -> io::Result<ClusterSync> {
        let stats = Arc::new(ClusterStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, pending) = std::sync::mpsc::sync_channel(1);
        let writer = checkpoint::CheckpointWriter {
            config: setup.config.clone(),
            node: setup.node.clone(),
            tracker: setup.tracker.clone(),
            started: setup.started,
            stats: stats.clone(),
            ttl: u64::from(setup.tracker.policy().peer_timeout).max(600),
            mac: setup.mac.clone(),
        };
        let checkpoints = std::thread::Builder::new()
            .name("cluster-checkpoint".into())
            .spawn(move || {
                super::background::yield_cpu_to_workers();
                writer.run(pending);
            })?;
        let sync = Sync::new(setup, stats.clone(), requests);
        let flag = stop.clone();
        let syncing = std::thread::Builder::new()
            .name("cluster-sync".into())
            .spawn(move || sync.run(&flag))?;
        Ok(ClusterSync {
            stop,
            threads: vec![syncing, checkpoints],
            stats,
        })
    }

    /// Flush what the (stopped) workers left, write a last checkpoint and
    /// stop both threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The sync thread's state.
struct Sync {
    config: ClusterConfig,
    node: String,
    tracker: Arc<Tracker>,
    outboxes: Vec<OutboxReader>,
    started: Instant,
    stats: Arc<ClusterStats>,
    checkpoints: SyncSender<String>,
    link: Option<Link>,
    mac: ClusterMac,
    builder: MessageBuilder,
    unsent: VecDeque<(Vec<u8>, u32)>,
    unsent_bytes: usize,
    /// Where the stream is read to, and what is applied (sans I/O).
    follower: StreamFollower,
    /// What to do when (sans I/O).
    schedule: SyncSchedule,
    /// A moving average of the messages' sizes (for the trimming length).
    message_bytes: u64,
    /// This run's id and the next message's number (`cluster::message`).
    run: u64,
    next_seq: u64,
    skipped_logged: u64,
}

impl Sync {
    fn new(setup: SyncSetup, stats: Arc<ClusterStats>, checkpoints: SyncSender<String>) -> Sync {
        let now = Instant::now();
        // CHECKPOINT_EVERY, or what the test hook says.
        let checkpoint_every = std::env::var("RINGTRACKER_TEST_CHECKPOINT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(CHECKPOINT_EVERY, Duration::from_secs);
        let flush_every = Duration::from_millis(setup.config.flush_interval_ms);
        Sync {
            config: setup.config,
            node: setup.node.clone(),
            tracker: setup.tracker,
            outboxes: setup.outboxes,
            started: setup.started,
            stats,
            checkpoints,
            link: None,
            mac: setup.mac,
            builder: MessageBuilder::new(),
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            follower: StreamFollower::new(setup.node.clone(), now),
            schedule: SyncSchedule::new(now, flush_every, checkpoint_every),
            message_bytes: 4096,
            // Ordered by start time (a replay of an older run is told
            // apart), random below the millisecond.
            run: (unix_ms() << 12) | (rand::random::<u64>() & 0xfff),
            next_seq: 0,
            skipped_logged: 0,
        }
    }

    fn tracker_now(&self) -> (u32, u64) {
        (self.started.elapsed().as_secs() as u32, unix_now())
    }

    fn run(mut self, stop: &AtomicBool) {
        loop {
            if stop.load(Ordering::Relaxed) {
                self.flush();
                if self.link.is_some() {
                    let _ = self.checkpoints.send(self.follower.position().to_string());
                }
                return;
            }
            let now = Instant::now();
            let due = self.follower.catch_up_due(now);
            match self.schedule.poll_command(now, due) {
                SyncCommand::Flush => self.flush(),
                SyncCommand::Connect => self.connect(),
                SyncCommand::CatchUp { start } => self.catch_up(start),
                SyncCommand::CheckStream => self.check_stream(),
                SyncCommand::Checkpoint => self.request_checkpoint(),
                SyncCommand::Read(wait) => self.read(wait),
                SyncCommand::Sleep(wait) => std::thread::park_timeout(wait),
            }
        }
    }

    /// Drain every outbox into messages, then send every unsent message
    /// (if Redis is up).
    fn flush(&mut self) {
        let created = unix_ms();
        self.builder
            .start(&self.node, (self.run, self.next_seq), created);
        for i in 0..self.outboxes.len() {
            while let Ok(change) = self.outboxes[i].pop() {
                if self.builder.is_full() {
                    self.seal();
                    self.builder
                        .start(&self.node, (self.run, self.next_seq), created);
                }
                self.builder.push(&change);
            }
        }
        if self.builder.count() > 0 {
            self.seal();
        }
        let keep = self.stream_length();
        while let Some((msg, count)) = self.unsent.front() {
            let Some(link) = &mut self.link else {
                return;
            };
            match link::xadd(link, msg, keep) {
                Ok(_) => {
                    self.message_bytes = (self.message_bytes * 7 + msg.len() as u64) / 8;
                    ClusterStats::add(&self.stats.messages_out, 1);
                    ClusterStats::add(&self.stats.changes_out, u64::from(*count));
                    ClusterStats::add(&self.stats.bytes_out, msg.len() as u64);
                    self.unsent_bytes -= msg.len();
                    self.unsent.pop_front();
                }
                Err(e) => return self.down(&e),
            }
        }
    }

    /// Keep the finished message for sending (or drop it, counted, when
    /// the unsent buffer is full).
    fn seal(&mut self) {
        // A dropped message keeps its number: readers see the gap.
        self.next_seq += 1;
        let count = self.builder.count();
        let msg = self.builder.finish(&self.mac);
        if self.unsent_bytes + msg.len() > MAX_UNSENT_BYTES {
            ClusterStats::add(&self.stats.unsent_dropped, u64::from(count));
            return;
        }
        self.unsent_bytes += msg.len();
        self.unsent.push_back((msg.to_vec(), count));
    }

    /// Entries the stream keeps: `RETENTION` of messages from every node
    /// seen, at one per flush each, within `STREAM_BUDGET` bytes of
    /// messages the size of ours.
    fn stream_length(&self) -> u64 {
        let per_node = RETENTION.as_millis() as u64 / self.config.flush_interval_ms.max(1);
        let by_time = per_node * (self.follower.nodes_seen() as u64 + 1);
        by_time
            .min(STREAM_BUDGET / self.message_bytes.max(1))
            .max(16)
    }

    fn connect(&mut self) {
        let block = Duration::from_millis(self.config.flush_interval_ms + 100);
        let linked = Link::connect(&self.config, block).and_then(|mut link| {
            let mut register = redis::cmd("SADD");
            register.arg(link::NODES).arg(&self.node);
            link.query(&register)?;
            Ok(link)
        });
        let link = match linked {
            Ok(link) => link,
            Err(e) => return self.down(&e),
        };
        self.link = Some(link);
        self.stats.redis_up.store(1, Ordering::Relaxed);
        match self
            .schedule
            .connected(Instant::now(), self.follower.caught_up())
        {
            Some(away) => {
                ClusterStats::add(&self.stats.reconnects, 1);
                tracing::info!(
                    "cluster: Redis back after {:.1} s; sending {} kept message(s)",
                    away.as_secs_f64(),
                    self.unsent.len()
                );
            }
            None => tracing::info!("cluster: node {} connected to Redis", self.node),
        }
    }

    /// Redis failed: drop the connection, retry with backoff; log
    /// the change of state once.
    fn down(&mut self, e: &redis::RedisError) {
        self.link = None;
        self.stats.redis_up.store(0, Ordering::Relaxed);
        match self.schedule.down(Instant::now()) {
            DownLog::WentAway => tracing::warn!(
                "cluster: Redis unavailable ({e}); serving local and last-known remote peers, retrying"
            ),
            DownLog::Unreachable => {
                tracing::warn!("cluster: Redis unreachable ({e}); serving alone, retrying");
            }
            DownLog::Quiet => {}
        }
    }

    /// Wait up to `wait` for entries after the position and apply them.
    fn read(&mut self, wait: Duration) {
        let Some(link) = &mut self.link else {
            return;
        };
        let after = self.follower.position();
        let entries = match link::xread(link, after, READ_COUNT, wait) {
            Ok(entries) => entries,
            Err(e) => return self.down(&e),
        };
        for entry in entries {
            self.apply_entry(&entry);
        }
    }

    fn apply_entry(&mut self, entry: &link::Entry) {
        let bytes = entry.message.as_deref().unwrap_or(&[]);
        let gap_before = self.follower.gap_pending();
        let at = (Instant::now(), unix_ms());
        let message = match self.follower.entry(entry.id, bytes, &self.mac, at) {
            EntryOutcome::Apply(m) => m,
            EntryOutcome::Skip => return,
            EntryOutcome::Rejected(reason, why) => return self.reject(entry, &why, reason),
        };
        let (now, _) = self.tracker_now();
        let (mut applied, mut ignored) = (0, 0);
        for change in message.changes() {
            match apply_remote(&self.tracker, &change, now) {
                RemoteOutcome::Applied => applied += 1,
                RemoteOutcome::Ignored => ignored += 1,
            }
        }
        let s = &self.stats;
        ClusterStats::add(&s.messages_in, 1);
        ClusterStats::add(&s.changes_in, applied);
        ClusterStats::add(&s.changes_ignored, ignored);
        ClusterStats::add(&s.bytes_in, bytes.len() as u64);
        s.record_lag(unix_ms().saturating_sub(message.created_ms));
        if !gap_before && self.follower.gap_pending() {
            ClusterStats::add(&self.stats.resyncs, 1);
            tracing::warn!(
                "cluster: missed messages of node {} (trimmed from the stream before they were read, or lost); catching up from checkpoints",
                message.node
            );
        }
    }

    /// A stream entry not applied: counted by reason; the first, then one
    /// in a thousand, logged (a flood of junk must not flood the log).
    fn reject(&mut self, entry: &link::Entry, why: &str, reason: Rejected) {
        ClusterStats::add(&self.stats.skipped_messages, 1);
        self.stats.reject(reason);
        if self.skipped_logged.is_multiple_of(1000) {
            tracing::warn!("cluster: stream entry {} skipped: {why}", entry.id);
        }
        self.skipped_logged += 1;
    }

    /// Load every node's checkpoint; at the first catch-up (`start`) the
    /// stream is then read from where the follower says.
    fn catch_up(&mut self, start: bool) {
        let at = self.tracker_now();
        let Some(link) = &mut self.link else {
            return;
        };
        self.follower.catching_up(Instant::now());
        let loaded =
            checkpoint::load_all(link, &self.tracker, &self.node, at, &self.mac, &self.stats);
        let all = match loaded {
            Ok(all) => all,
            Err(e) => return self.down(&e),
        };
        let loaded: Vec<(&str, StreamId)> = all
            .loaded
            .iter()
            .map(|l| (l.node.as_str(), l.stream_id))
            .collect();
        self.follower.loaded(start, &loaded, all.missing);
        let peers: u64 = all.loaded.iter().map(|l| l.stats.peers).sum();
        ClusterStats::add(&self.stats.checkpoints_loaded, all.loaded.len() as u64);
        tracing::info!(
            "cluster: loaded {} checkpoint(s), {peers} peers ({} node(s) without one); reading the stream from {}",
            all.loaded.len(),
            all.missing,
            self.follower.position()
        );
    }

    /// Notice a stream that started over (Redis restarted empty, or
    /// the key was deleted) and entries trimmed before this node read them.
    fn check_stream(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        let ends = match link::stream_ends(link) {
            Ok(ends) => ends,
            Err(e) => return self.down(&e),
        };
        let at = self.follower.position();
        match self.follower.ends(ends.as_ref()) {
            EndsOutcome::InStep => {}
            EndsOutcome::StartedOver(why) => {
                ClusterStats::add(&self.stats.resyncs, 1);
                tracing::warn!("cluster: {why}; reading it from the beginning");
            }
            EndsOutcome::Trimmed => {
                ClusterStats::add(&self.stats.resyncs, 1);
                tracing::warn!(
                    "cluster: stream entries after {at} were trimmed before this node read them; catching up from checkpoints"
                );
            }
        }
    }

    fn request_checkpoint(&mut self) {
        match self
            .checkpoints
            .try_send(self.follower.position().to_string())
        {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// This node's name: the config's, or the host name.
pub fn node_name(config: &ClusterConfig) -> String {
    named_or_host(&config.node)
}

/// `name`, or when empty this host's name (letters, digits, `-_.`; at most
/// 64 bytes): how a node calls itself in Redis and in `rt_batches`.
pub fn named_or_host(name: &str) -> String {
    if !name.is_empty() {
        return name.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    if host.is_empty() {
        "ringtracker".into()
    } else {
        host
    }
}
