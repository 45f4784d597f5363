//! Following the stream, sans I/O: where this node has read to, which
//! entries it applies, skips or refuses, when it must catch up from the
//! checkpoints and from where it reads after they load. The sync thread
//! (`net::cluster`) moves the bytes (XREAD, XINFO, the checkpoints) and
//! hands each result here with the time; every fault (a gap, a replay, a
//! forged entry, a stream that started over, entries trimmed unread, a
//! node without a checkpoint) is a sequence of calls a unit test makes.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::mac::ClusterMac;
use super::message::{Message, MessageError};
use super::stats::Rejected;

/// The least time between two catch-ups a gap asks for: a stream of
/// forged or replayed numbers must not make every message reload every
/// checkpoint.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(10);
/// Nodes remembered (message numbers, the trimming length) and whose
/// checkpoints a catch-up reads, at most.
pub const MAX_NODES: usize = 1024;
/// A message made longer ago than this (ms) is refused as a replay: the
/// stream keeps three minutes of messages, node clocks may differ by one.
pub const MAX_MESSAGE_AGE_MS: u64 = 10 * 60 * 1000;

/// A stream entry id: (milliseconds, sequence), ordered as Redis orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64, pub u64);

impl StreamId {
    /// `ms-seq` as Redis writes it; anything else reads as 0-0.
    pub fn parse(id: &str) -> StreamId {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        StreamId(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// What `XINFO STREAM` says about the stream's ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnds {
    /// The last id ever generated (0-0 for a new stream).
    pub last_generated: StreamId,
    /// The largest id deleted away (0-0: none; Redis 7.0 leaves it at 0-0
    /// when trimming).
    pub max_deleted: StreamId,
    /// Entries in the stream now, and ever added.
    pub length: u64,
    /// Entries ever added (a smaller number than seen before: it restarted).
    pub entries_added: u64,
    /// The id of the first entry in the stream (0-0 when empty).
    pub first: StreamId,
}

/// What to do with one stream entry.
#[derive(Debug)]
pub enum EntryOutcome<'a> {
    /// Another node's changes, to apply.
    Apply(Message<'a>),
    /// This node's own, or already in a checkpoint loaded.
    Skip,
    /// Not applied: counted by reason, logged (the `String` says why).
    Rejected(Rejected, String),
}

/// What the stream's ends say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsOutcome {
    /// Nothing missed.
    InStep,
    /// The stream is gone or started over (Redis restarted empty): read
    /// from its beginning.
    StartedOver(&'static str),
    /// Entries after the position were deleted unread: catch up.
    Trimmed,
}

/// Where this node reads the stream: what it has applied, what it skips or
/// refuses, and when it must catch up from checkpoints (sans I/O: the sync
/// thread executes what it decides).
pub struct StreamFollower {
    node: String,
    position: StreamId,
    /// Per node: its entries up to this id are in the checkpoint loaded.
    loaded_to: HashMap<String, StreamId>,
    /// Per node: the run and number of its last message read here.
    last_seq: HashMap<String, (u64, u64)>,
    /// Nodes seen on the stream, and when (for the trimming length).
    nodes_seen: HashMap<String, Instant>,
    caught_up: bool,
    catch_up_due: bool,
    next_catch_up: Instant,
}

impl StreamFollower {
    /// A follower for node `node`, starting at `now`.
    pub fn new(node: String, now: Instant) -> StreamFollower {
        StreamFollower {
            node,
            position: StreamId::default(),
            loaded_to: HashMap::new(),
            last_seq: HashMap::new(),
            nodes_seen: HashMap::new(),
            caught_up: false,
            catch_up_due: false,
            next_catch_up: now,
        }
    }

    /// The last entry read (entries after it are read next).
    pub fn position(&self) -> StreamId {
        self.position
    }

    /// Nodes seen on the stream (this one not counted).
    pub fn nodes_seen(&self) -> usize {
        self.nodes_seen.len()
    }

    /// Whether the first catch-up (at connect) is done.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether a catch-up is asked for and may run at `now`.
    pub fn catch_up_due(&self, now: Instant) -> bool {
        self.catch_up_due && now >= self.next_catch_up
    }

    /// Stream entry `id` read at `now` (`unix_ms` by the wall clock), its
    /// `m` field `bytes`: applied, skipped or refused. Moves the position
    /// past it whatever it is. An authentic message is refused as a replay
    /// if it is older than `MAX_MESSAGE_AGE_MS`, from a run of its node
    /// older than one read already (runs are ordered: they start with the
    /// node's start time), or numbered at or below the last one read of
    /// its run.
    pub fn entry<'a>(
        &mut self,
        id: StreamId,
        bytes: &'a [u8],
        mac: &ClusterMac,
        (now, unix_ms): (Instant, u64),
    ) -> EntryOutcome<'a> {
        self.position = self.position.max(id);
        let message = match Message::parse(bytes, mac) {
            Ok(m) => m,
            Err(e) => return EntryOutcome::Rejected(rejected(e), e.to_string()),
        };
        if message.node == self.node {
            return EntryOutcome::Skip;
        }
        if message.created_ms.saturating_add(MAX_MESSAGE_AGE_MS) < unix_ms {
            return EntryOutcome::Rejected(Rejected::Replayed, "a message too old".into());
        }
        let seen = self.last_seq.get(message.node).copied();
        let replayed = seen.is_some_and(|(run, seq)| {
            message.run < run || (run == message.run && message.seq <= seq)
        });
        if replayed {
            return EntryOutcome::Rejected(Rejected::Replayed, "a message read before".into());
        }
        if self.last_seq.len() < MAX_NODES || seen.is_some() {
            self.last_seq
                .insert(message.node.to_string(), (message.run, message.seq));
        }
        if self.nodes_seen.len() < MAX_NODES || self.nodes_seen.contains_key(message.node) {
            self.nodes_seen.insert(message.node.to_string(), now);
        }
        let gap = seen.is_some_and(|(run, seq)| {
            run == message.run && Some(message.seq) != seq.checked_add(1)
        });
        if gap {
            // At most one catch-up per CATCH_UP_EVERY, however many gaps.
            self.catch_up_due = true;
        }
        if self
            .loaded_to
            .get(message.node)
            .is_some_and(|&upto| id <= upto)
        {
            return EntryOutcome::Skip;
        }
        EntryOutcome::Apply(message)
    }

    /// Whether the last entry applied revealed a gap (the sync thread
    /// counts and logs it once while a catch-up is due).
    pub fn gap_pending(&self) -> bool {
        self.catch_up_due
    }

    /// What the stream's ends (`None`: no stream) say of the position.
    pub fn ends(&mut self, ends: Option<&StreamEnds>) -> EndsOutcome {
        let at = self.position;
        let outcome = match ends {
            None if at > StreamId::default() => EndsOutcome::StartedOver("the stream is gone"),
            Some(e) if e.last_generated < at => EndsOutcome::StartedOver("the stream started over"),
            Some(e) if missed(e, at) => EndsOutcome::Trimmed,
            _ => EndsOutcome::InStep,
        };
        match outcome {
            EndsOutcome::StartedOver(_) => {
                self.position = StreamId::default();
                self.loaded_to.clear();
            }
            EndsOutcome::Trimmed => self.catch_up_due = true,
            EndsOutcome::InStep => {}
        }
        outcome
    }

    /// A catch-up is starting at `now` (rate-limited from here).
    pub fn catching_up(&mut self, now: Instant) {
        self.catch_up_due = false;
        self.next_catch_up = now + CATCH_UP_EVERY;
    }

    /// A catch-up loaded `loaded` (each node's checkpoint and the stream
    /// id it is current to); `missing` other nodes had no checkpoint
    /// to load. At the first one (`start`) the stream is read from the
    /// oldest checkpoint's id, each node's entries up to its checkpoint
    /// skipped; if a node had none (Redis restarted empty and its
    /// checkpoint is not rewritten yet) from the stream's start, and the
    /// checkpoints are looked at once more `CATCH_UP_EVERY` later.
    pub fn loaded(&mut self, start: bool, loaded: &[(&str, StreamId)], missing: usize) {
        self.caught_up = true;
        if !start {
            return;
        }
        for &(node, upto) in loaded {
            self.loaded_to.insert(node.to_string(), upto);
        }
        let oldest = loaded.iter().map(|&(_, upto)| upto).min();
        self.position = match oldest {
            Some(id) if missing == 0 => id,
            _ => StreamId::default(),
        };
        self.catch_up_due = missing > 0;
    }
}

/// Whether entries after `at` were deleted before they were read: the
/// largest deleted id is past it, or entries were added past it and none
/// is left, or the first one left is past it and some were trimmed (the
/// reader is behind by the whole retention, so it has most likely missed
/// some; a reload of the checkpoints is then cheap insurance).
fn missed(e: &StreamEnds, at: StreamId) -> bool {
    let trimmed = e.entries_added > e.length;
    e.max_deleted > at
        || (e.length == 0 && trimmed && e.last_generated > at)
        || (e.length > 0 && trimmed && e.first > at)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::MessageBuilder;
    use crate::protocol::InfoHash;
    use crate::tracker::change::{ChangeKind, SwarmChange};
    use crate::tracker::table::PeerAddr;

    fn key() -> ClusterMac {
        ClusterMac::from_secret(&[7; 32])
    }

    fn message(node: &str, run: u64, seq: u64) -> Vec<u8> {
        let mut b = MessageBuilder::new();
        b.start(node, (run, seq), 0);
        b.push(&SwarmChange {
            info_hash: InfoHash([1; 20]),
            addr: PeerAddr::V4([10, 0, 0, 1, 0, 80]),
            kind: ChangeKind::Seeder,
            completed: false,
        });
        b.finish(&key()).to_vec()
    }

    /// The wall clock of the tests' messages (made at 0).
    const NOW_MS: u64 = 1000;

    fn applies(f: &mut StreamFollower, id: u64, bytes: &[u8], now: Instant) -> bool {
        matches!(
            f.entry(StreamId(id, 0), bytes, &key(), (now, NOW_MS)),
            EntryOutcome::Apply(_)
        )
    }

    #[test]
    fn ids_order_numerically_and_print_as_redis_writes_them() {
        assert!(StreamId::parse("1700000000000-10") > StreamId::parse("1700000000000-9"));
        assert!(StreamId::parse("1700000000001-0") > StreamId::parse("1700000000000-99"));
        assert_eq!(StreamId::parse("$"), StreamId(0, 0));
        assert_eq!(StreamId(5, 7).to_string(), "5-7");
    }

    #[test]
    fn own_forged_and_replayed_entries_are_not_applied_and_the_position_moves() {
        let t = Instant::now();
        let mut f = StreamFollower::new("me".into(), t);
        assert!(matches!(
            f.entry(StreamId(1, 0), &message("me", 1, 0), &key(), (t, NOW_MS)),
            EntryOutcome::Skip
        ));
        let forged = {
            let mut b = MessageBuilder::new();
            b.start("evil", (1, 0), 0);
            b.finish(&ClusterMac::from_secret(&[9; 32])).to_vec()
        };
        assert!(matches!(
            f.entry(StreamId(2, 0), &forged, &key(), (t, NOW_MS)),
            EntryOutcome::Rejected(Rejected::Unauthenticated, _)
        ));
        assert!(applies(&mut f, 3, &message("a", 1, 0), t));
        let replayed = |f: &mut StreamFollower, id, bytes: &[u8], unix_ms| {
            matches!(
                f.entry(StreamId(id, 0), bytes, &key(), (t, unix_ms)),
                EntryOutcome::Rejected(Rejected::Replayed, _)
            )
        };
        assert!(replayed(&mut f, 4, &message("a", 1, 0), NOW_MS));
        // A new run of the node starts its numbers again; an older run's
        // messages are replays then, and so is any message too old.
        assert!(applies(&mut f, 5, &message("a", 2, 0), t));
        assert!(replayed(&mut f, 6, &message("a", 1, 7), NOW_MS));
        assert!(replayed(
            &mut f,
            7,
            &message("b", 1, 0),
            MAX_MESSAGE_AGE_MS + 1
        ));
        assert_eq!(f.position(), StreamId(7, 0));
        assert!(!f.gap_pending());
    }

    #[test]
    fn gaps_ask_for_one_catch_up_at_a_time() {
        let t = Instant::now();
        let mut f = StreamFollower::new("me".into(), t);
        assert!(applies(&mut f, 1, &message("a", 1, 0), t));
        assert!(
            applies(&mut f, 2, &message("a", 1, 5), t),
            "applied all the same"
        );
        assert!(f.catch_up_due(t));
        f.catching_up(t);
        assert!(applies(&mut f, 3, &message("a", 1, 9), t));
        assert!(f.gap_pending() && !f.catch_up_due(t + Duration::from_secs(1)));
        assert!(f.catch_up_due(t + CATCH_UP_EVERY));
    }

    #[test]
    fn the_first_catch_up_reads_from_the_oldest_checkpoint_or_the_start() {
        let t = Instant::now();
        let mut f = StreamFollower::new("me".into(), t);
        let loaded = [("a", StreamId(50, 0)), ("b", StreamId(40, 0))];
        f.loaded(true, &loaded, 0);
        assert_eq!(f.position(), StreamId(40, 0));
        assert!(!f.catch_up_due(t + CATCH_UP_EVERY));
        // A's entries its checkpoint holds are skipped, later ones applied.
        assert!(!applies(&mut f, 45, &message("a", 1, 0), t));
        assert!(applies(&mut f, 51, &message("a", 1, 1), t));
        // Another start where a node of the set has no checkpoint.
        let mut g = StreamFollower::new("me".into(), t);
        g.loaded(true, &loaded, 1);
        assert_eq!(g.position(), StreamId(0, 0));
        assert!(g.catch_up_due(t + CATCH_UP_EVERY));
    }

    #[test]
    fn a_stream_that_started_over_or_lost_entries_unread_is_noticed() {
        let t = Instant::now();
        let mut f = StreamFollower::new("me".into(), t);
        assert!(applies(&mut f, 100, &message("a", 1, 0), t));
        let ends = |last, deleted, length, added, first| StreamEnds {
            last_generated: StreamId(last, 0),
            max_deleted: StreamId(deleted, 0),
            length,
            entries_added: added,
            first: StreamId(first, 0),
        };
        assert_eq!(f.ends(Some(&ends(100, 0, 1, 1, 100))), EndsOutcome::InStep);
        assert_eq!(
            f.ends(Some(&ends(300, 200, 1, 3, 300))),
            EndsOutcome::Trimmed
        );
        assert!(f.catch_up_due(t));
        assert_eq!(f.ends(Some(&ends(300, 0, 5, 9, 200))), EndsOutcome::Trimmed);
        assert!(matches!(
            f.ends(Some(&ends(20, 0, 1, 1, 20))),
            EndsOutcome::StartedOver(_)
        ));
        assert_eq!(f.position(), StreamId(0, 0));
        assert!(applies(&mut f, 30, &message("a", 1, 1), t));
        assert!(matches!(f.ends(None), EndsOutcome::StartedOver(_)));
    }
}
