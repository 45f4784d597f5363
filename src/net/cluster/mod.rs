//! Cluster mode's sync thread: the only code that talks to the engine
//! (Redis streams). Every `flush_interval_ms` it drains the workers'
//! outboxes into messages and appends them to the one stream (`XADD`
//! with approximate `MAXLEN` trimming); between flushes it waits on the
//! stream (`XREAD BLOCK`) for other nodes' messages and applies them
//! (`cluster::apply`). Workers never wait on it: they push into their
//! outboxes and go on.
//!
//! The engine may be down, slow or restarted empty: the thread then keeps
//! draining the outboxes into a bounded buffer of unsent messages,
//! reconnects with backoff (logging once per state change), and on its
//! return sends what it kept, notices a stream that started over or
//! entries trimmed before it read them, and catches up from the
//! checkpoints (`checkpoint.rs`, written by a thread of their own).

pub mod checkpoint;
pub mod link;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use link::{Link, id_key};

use crate::cluster::apply::{RemoteOutcome, apply_remote};
use crate::cluster::mac::ClusterMac;
use crate::cluster::message::{Message, MessageBuilder, MessageError};
use crate::cluster::stats::{ClusterStats, Rejected};
use crate::config::ClusterConfig;
use crate::engine::outbox::OutboxReader;
use crate::storage::snapshotter::unix_now;
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
/// Unsent messages kept while the engine is away; beyond, changes are
/// dropped and counted (other nodes then learn them from the trickle of
/// refreshes and the next checkpoint).
const MAX_UNSENT_BYTES: usize = 64 << 20;
/// Entries read per XREAD.
const READ_COUNT: usize = 256;
/// How often the stream's ends are checked for a gap.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The least time between two catch-ups a gap asks for: a stream of
/// forged or replayed numbers must not make every message reload every
/// checkpoint.
const CATCH_UP_EVERY: Duration = Duration::from_secs(10);
/// Nodes whose checkpoints a catch-up reads at most.
pub(crate) const MAX_NODES: usize = 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the sync thread is built from.
pub struct SyncSetup {
    pub config: ClusterConfig,
    /// This node's name (the config's, or the host name).
    pub node: String,
    pub tracker: Arc<Tracker>,
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
    pub stats: Arc<ClusterStats>,
}

impl ClusterSync {
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
            ttl: u64::from(setup.tracker.policy.peer_timeout).max(600),
            mac: setup.mac.clone(),
        };
        let checkpoints = std::thread::Builder::new()
            .name("cluster-checkpoint".into())
            .spawn(move || {
                super::background::yield_cpu_to_workers();
                writer.run(pending)
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
    /// The last stream id read.
    position: String,
    /// `CHECKPOINT_EVERY`, or what the test hook
    /// `RINGTRACKER_TEST_CHECKPOINT_SECS` says.
    checkpoint_every: Duration,
    /// Per node: its entries up to this id are in the checkpoint loaded.
    loaded_to: HashMap<String, (u64, u64)>,
    /// Nodes seen on the stream (for the trimming length), bounded.
    nodes_seen: HashMap<String, Instant>,
    /// A moving average of the messages' sizes (for the trimming length).
    message_bytes: u64,
    /// This run's id and the next message's number (`cluster::message`).
    run: u64,
    next_seq: u64,
    /// Per node: the run and number of its last message read here.
    last_seq: HashMap<String, (u64, u64)>,
    caught_up: bool,
    /// A gap was seen: catch up once `next_catch_up` comes.
    catch_up_due: bool,
    next_catch_up: Instant,
    was_up: bool,
    down_since: Option<Instant>,
    backoff: Duration,
    next_connect: Instant,
    next_flush: Instant,
    next_check: Instant,
    next_checkpoint: Instant,
    skipped_logged: u64,
}

impl Sync {
    fn new(setup: SyncSetup, stats: Arc<ClusterStats>, checkpoints: SyncSender<String>) -> Sync {
        let now = Instant::now();
        let checkpoint_every = std::env::var("RINGTRACKER_TEST_CHECKPOINT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(CHECKPOINT_EVERY, Duration::from_secs);
        Sync {
            config: setup.config,
            node: setup.node,
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
            position: "0-0".into(),
            checkpoint_every,
            loaded_to: HashMap::new(),
            nodes_seen: HashMap::new(),
            message_bytes: 4096,
            run: rand::random(),
            next_seq: 0,
            last_seq: HashMap::new(),
            caught_up: false,
            catch_up_due: false,
            next_catch_up: now,
            was_up: false,
            down_since: Some(now),
            backoff: MIN_BACKOFF,
            next_connect: now,
            next_flush: now,
            next_check: now,
            next_checkpoint: now + checkpoint_every,
            skipped_logged: 0,
        }
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.config.flush_interval_ms)
    }

    fn tracker_now(&self) -> (u32, u64) {
        (self.started.elapsed().as_secs() as u32, unix_now())
    }

    fn run(mut self, stop: &AtomicBool) {
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let now = Instant::now();
            if now >= self.next_flush || stopping {
                self.flush();
                self.next_flush = now + self.flush_interval();
            }
            if stopping {
                if self.link.is_some() {
                    let _ = self.checkpoints.send(self.position.clone());
                }
                return;
            }
            if self.link.is_none() && now >= self.next_connect {
                self.connect();
            }
            if self.link.is_none() {
                let until = self.next_flush.min(self.next_connect);
                std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
                continue;
            }
            if now >= self.next_check {
                self.next_check = now + CHECK_EVERY;
                self.check_stream();
            }
            if now >= self.next_checkpoint {
                self.next_checkpoint = now + self.checkpoint_every;
                self.request_checkpoint();
            }
            if self.catch_up_due && now >= self.next_catch_up {
                self.catch_up(false);
            }
            let wait = self.next_flush.saturating_duration_since(Instant::now());
            self.read(wait.max(Duration::from_millis(1)));
        }
    }

    /// Drain every outbox into messages, then send every unsent message
    /// (if the engine is up).
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
        let by_time = per_node * (self.nodes_seen.len() as u64 + 1);
        by_time
            .min(STREAM_BUDGET / self.message_bytes.max(1))
            .max(16)
    }

    fn connect(&mut self) {
        let block = self.flush_interval() + Duration::from_millis(100);
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
        self.stats.engine_up.store(1, Ordering::Relaxed);
        self.backoff = MIN_BACKOFF;
        let away = self.down_since.take().map(|t| t.elapsed());
        if self.was_up {
            ClusterStats::add(&self.stats.reconnects, 1);
            tracing::info!(
                "cluster: engine back after {:.1} s; sending {} kept message(s)",
                away.unwrap_or_default().as_secs_f64(),
                self.unsent.len()
            );
        } else {
            tracing::info!("cluster: node {} connected to the engine", self.node);
        }
        self.was_up = true;
        if !self.caught_up {
            self.catch_up(true);
        }
        self.check_stream();
        // After an outage (or a start) other nodes may need ours now.
        self.request_checkpoint();
    }

    /// The engine failed: drop the connection, retry with backoff; log
    /// the change of state once.
    fn down(&mut self, e: &redis::RedisError) {
        self.link = None;
        self.stats.engine_up.store(0, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                "cluster: engine unavailable ({e}); serving local and last-known remote peers, retrying"
            );
        } else if !self.was_up && self.backoff == MIN_BACKOFF {
            tracing::warn!("cluster: engine unreachable ({e}); serving alone, retrying");
        }
        self.next_connect = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Wait up to `wait` for entries after `position` and apply them.
    fn read(&mut self, wait: Duration) {
        let Some(link) = &mut self.link else {
            return;
        };
        let entries = match link::xread(link, &self.position, READ_COUNT, wait) {
            Ok(entries) => entries,
            Err(e) => return self.down(&e),
        };
        for entry in entries {
            self.apply_entry(&entry);
            self.position = entry.id;
        }
    }

    fn apply_entry(&mut self, entry: &link::Entry) {
        let bytes = entry.message.as_deref().unwrap_or(&[]);
        let message = match Message::parse(bytes, &self.mac) {
            Ok(m) => m,
            Err(e) => return self.reject(entry, &e.to_string(), rejected(e)),
        };
        if message.node == self.node {
            return;
        }
        let seen = self.last_seq.get(message.node).copied();
        if seen.is_some_and(|(run, seq)| run == message.run && message.seq <= seq) {
            return self.reject(entry, "a message read before", Rejected::Replayed);
        }
        if self.last_seq.len() < MAX_NODES || seen.is_some() {
            self.last_seq
                .insert(message.node.to_string(), (message.run, message.seq));
        }
        let gap = seen.is_some_and(|(run, seq)| {
            run == message.run && Some(message.seq) != seq.checked_add(1)
        });
        if self.nodes_seen.len() < MAX_NODES || self.nodes_seen.contains_key(message.node) {
            self.nodes_seen
                .insert(message.node.to_string(), Instant::now());
        }
        if self
            .loaded_to
            .get(message.node)
            .is_some_and(|&upto| id_key(&entry.id) <= upto)
        {
            return;
        }
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
        if gap && !self.catch_up_due {
            ClusterStats::add(&self.stats.resyncs, 1);
            tracing::warn!(
                "cluster: missed messages of node {} (trimmed from the stream before they were read, or lost); catching up from checkpoints",
                message.node
            );
            // At most one catch-up per CATCH_UP_EVERY, however many gaps.
            self.catch_up_due = true;
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
    /// stream is then read from the oldest of them (or its beginning), so
    /// the entries after each node's checkpoint are applied once.
    fn catch_up(&mut self, start: bool) {
        let at = self.tracker_now();
        let Some(link) = &mut self.link else {
            return;
        };
        self.catch_up_due = false;
        self.next_catch_up = Instant::now() + CATCH_UP_EVERY;
        let loaded =
            checkpoint::load_all(link, &self.tracker, &self.node, at, &self.mac, &self.stats);
        let all = match loaded {
            Ok(all) => all,
            Err(e) => return self.down(&e),
        };
        self.caught_up = true;
        let (mut peers, mut oldest) = (0, None::<(u64, u64)>);
        for l in &all.loaded {
            peers += l.stats.peers;
            let upto = id_key(&l.stream_id);
            oldest = Some(oldest.map_or(upto, |o| o.min(upto)));
            if start {
                self.loaded_to.insert(l.node.clone(), upto);
            }
        }
        ClusterStats::add(&self.stats.checkpoints_loaded, all.loaded.len() as u64);
        if start {
            // A node without a checkpoint here (Redis restarted empty, its
            // checkpoint not yet written) is read from the stream's start:
            // what it wrote before the oldest checkpoint's id counts too.
            self.position = match oldest {
                Some((ms, seq)) if all.missing == 0 => format!("{ms}-{seq}"),
                _ => "0-0".into(),
            };
            // Its checkpoint may be on its way (written at its reconnect):
            // look once more, `CATCH_UP_EVERY` from now.
            self.catch_up_due = all.missing > 0;
        }
        tracing::info!(
            "cluster: loaded {} checkpoint(s), {peers} peers ({} node(s) without one); reading the stream from {}",
            all.loaded.len(),
            all.missing,
            self.position
        );
    }

    /// Notice a stream that started over (the engine restarted empty, or
    /// the key was deleted) and entries trimmed before this node read them.
    fn check_stream(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        let ends = match link::stream_ends(link) {
            Ok(ends) => ends,
            Err(e) => return self.down(&e),
        };
        let at = id_key(&self.position);
        match ends {
            None if at > (0, 0) => self.start_over("the stream is gone"),
            Some(e) if id_key(&e.last_generated) < at => self.start_over("the stream started over"),
            Some(e) if missed(&e, at) => {
                ClusterStats::add(&self.stats.resyncs, 1);
                tracing::warn!(
                    "cluster: stream entries after {} were trimmed before this node read them; catching up from checkpoints",
                    self.position
                );
                self.catch_up_due = true;
            }
            _ => {}
        }
    }

    fn start_over(&mut self, why: &str) {
        ClusterStats::add(&self.stats.resyncs, 1);
        tracing::warn!("cluster: {why}; reading it from the beginning");
        self.position = "0-0".into();
        self.loaded_to.clear();
    }

    fn request_checkpoint(&mut self) {
        match self.checkpoints.try_send(self.position.clone()) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The reason a parse error counts under.
fn rejected(e: MessageError) -> Rejected {
    match e {
        MessageError::Foreign => Rejected::Foreign,
        MessageError::Oversized => Rejected::Oversized,
        MessageError::Unauthenticated => Rejected::Unauthenticated,
        MessageError::Truncated | MessageError::BadChange(_) | MessageError::Trailing(_) => {
            Rejected::Malformed
        }
    }
}

/// Whether entries after `at` were deleted before they were read: the
/// largest deleted id is past it, or entries were added past it and none
/// is left, or the first one left is past it and some were trimmed (the
/// reader is behind by the whole retention, so it has most likely missed
/// some; a reload of the checkpoints is then cheap insurance).
fn missed(e: &link::StreamEnds, at: (u64, u64)) -> bool {
    let trimmed = e.entries_added > e.length;
    id_key(&e.max_deleted) > at
        || (e.length == 0 && trimmed && id_key(&e.last_generated) > at)
        || (e.length > 0 && trimmed && id_key(&e.first) > at)
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
