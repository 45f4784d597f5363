//! A worker's outbox of swarm changes (cluster mode): a bounded
//! single-producer ring (`rtrb`) the worker pushes into without a lock or
//! an allocation, drained by the node's sync thread. A full outbox drops
//! the change and counts it: the answer to the client never waits.

use rtrb::{Consumer, Producer, RingBuffer};

use crate::stats::{Counter, WorkerStats};
use crate::tracker::change::SwarmChange;

/// Changes one worker's outbox holds: 65,536 × 41 bytes = 2.6 MiB, over
/// half a second of changes at a million a second between two flushes.
pub const OUTBOX_CAPACITY: usize = 1 << 16;

/// The worker's end (none without cluster mode).
#[derive(Default)]
pub struct Outbox {
    producer: Option<Producer<SwarmChange>>,
}

/// The sync thread's end of one worker's outbox.
pub type OutboxReader = Consumer<SwarmChange>;

impl Outbox {
    /// An outbox of `capacity` changes and the reader that drains it.
    pub fn new(capacity: usize) -> (Outbox, OutboxReader) {
        let (producer, consumer) = RingBuffer::new(capacity);
        (
            Outbox {
                producer: Some(producer),
            },
            consumer,
        )
    }

    /// Queue `change`, counted in `stats` as out or, when full, overflowed.
    pub fn push(&mut self, change: SwarmChange, stats: &WorkerStats) {
        let Some(p) = &mut self.producer else {
            return;
        };
        match p.push(change) {
            Ok(()) => stats.add(Counter::ClusterChanges, 1),
            Err(_) => stats.add(Counter::ClusterOutboxOverflow, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::InfoHash;
    use crate::tracker::change::ChangeKind;
    use crate::tracker::table::PeerAddr;

    #[test]
    fn a_full_outbox_drops_and_counts_and_never_blocks() {
        let stats = WorkerStats::default();
        let (mut outbox, mut reader) = Outbox::new(4);
        let change = |i: u8| SwarmChange {
            info_hash: InfoHash([i; 20]),
            addr: PeerAddr::V4([10, 0, 0, i, 0, 80]),
            kind: ChangeKind::Leecher,
            completed: false,
        };
        for i in 0..6 {
            outbox.push(change(i), &stats);
        }
        assert_eq!(stats.get(Counter::ClusterChanges), 4);
        assert_eq!(stats.get(Counter::ClusterOutboxOverflow), 2);
        let drained: Vec<u8> = std::iter::from_fn(|| reader.pop().ok())
            .map(|c| c.info_hash.0[0])
            .collect();
        assert_eq!(drained, [0, 1, 2, 3]);
        // Room again once drained; no outbox at all takes nothing.
        outbox.push(change(9), &stats);
        assert_eq!(reader.pop().unwrap().info_hash.0[0], 9);
        Outbox::default().push(change(1), &stats);
        assert_eq!(stats.get(Counter::ClusterChanges), 5);
    }
}
