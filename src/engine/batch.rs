//! The UDP batch pipeline: a backend hands the engine every datagram one
//! wake-up brought (an io_uring completion batch, a recvmmsg batch), and
//! the engine answers them all into the backend's reply buffers.
//!
//! Taking the batch whole is what lets the engine overlap the cache misses
//! of different datagrams: at a few million torrents the torrent entry an
//! announce needs is almost never cached, and one datagram at a time the
//! CPU meets those misses one after another.

use std::net::SocketAddr;
use std::time::Instant;

use super::udp::{UdpOutcome, handle_datagram, prefetch_peers};
use super::{Engine, contain};
use crate::protocol::udp;
use crate::tracker::swarm::Picks;

/// A batch of received datagrams, as a backend holds them: each with its
/// source address and a reply buffer of at least
/// `udp::REPLY_BUFFER_LEN` bytes set aside for it.
pub trait UdpBatch {
    /// How many datagrams.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Datagram `i`'s payload.
    fn payload(&self, i: usize) -> &[u8];

    /// Datagram `i`'s payload, its source, and its reply buffer.
    fn exchange(&mut self, i: usize) -> (&[u8], SocketAddr, &mut [u8]);

    /// What became of datagram `i`: `Some(len)`, send the first `len`
    /// bytes of its reply buffer back to its source (from the address it
    /// came to); `None`, nothing.
    fn complete(&mut self, i: usize, reply: Option<usize>);
}

impl Engine {
    /// Answer every datagram of `batch`, received by `now`, in three passes
    /// over the batch:
    /// 1. peek at each announce's fixed fields (`udp::peek_announce`), ask
    ///    for its torrent entry (`SwarmTable::prefetch`, no lock) and draw
    ///    the random picks of its reply;
    /// 2. for each announce, under its shard's lock (now a cache hit), ask
    ///    for the lines of its big swarm that it will touch: its own slot
    ///    and each reply window (`Tracker::prefetch_peers`);
    /// 3. answer each datagram with those picks, in order.
    ///
    /// Each pass gives the loads it asked for the time the others take, so
    /// the misses of a whole batch overlap. A batch of one costs a second
    /// short lock of one shard.
    pub fn handle_udp_batch(&mut self, now: Instant, batch: &mut impl UdpBatch) {
        let secs = self.tracker_secs(now);
        let stats = &self.stats[self.stats_index];
        // One load of the access rules for the whole batch.
        let rules = self.tracker.rules();
        let tracker = &*self.tracker;
        // Each datagram is peeked once (here) and parsed once (pass 3).
        self.ahead.clear();
        for i in 0..batch.len() {
            let peek = udp::peek_announce(batch.payload(i));
            if let Some(peek) = &peek {
                tracker.table().prefetch(&peek.info_hash);
            }
            self.ahead.push((peek, Picks::draw(&mut self.rng)));
        }
        for (i, (peek, picks)) in self.ahead.iter().enumerate() {
            if let Some(peek) = peek {
                let (_, src, _) = batch.exchange(i);
                contain(stats, || prefetch_peers(tracker, peek, src, *picks));
            }
        }
        for (i, &(_, picks)) in self.ahead.iter().enumerate() {
            let (payload, src, out) = batch.exchange(i);
            let outcome = contain(stats, || {
                handle_datagram(tracker, &rules, payload, src, secs, picks, out)
            });
            let reply = match outcome {
                Some(UdpOutcome::Reply {
                    len,
                    kind,
                    published,
                }) => {
                    if let Some(change) = published {
                        self.outbox.push(change, stats);
                    }
                    super::counting::count_reply(stats, kind);
                    Some(len)
                }
                Some(UdpOutcome::Drop(why)) => {
                    super::counting::count_drop(stats, why);
                    None
                }
                None => None,
            };
            batch.complete(i, reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::udp::REPLY_BUFFER_LEN;
    use crate::protocol::InfoHash;
    use crate::protocol::udp::PROTOCOL_ID;
    use crate::stats::{Counter, WorkerStats};
    use crate::tracker::Tracker;
    use crate::tracker::announce::AnnouncePolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::SwarmTable;
    use std::sync::Arc;

    /// A backend's batch held in vectors.
    struct VecBatch {
        datagrams: Vec<(Vec<u8>, SocketAddr)>,
        replies: Vec<Vec<u8>>,
        outcomes: Vec<Option<usize>>,
    }

    impl VecBatch {
        fn new(datagrams: Vec<(Vec<u8>, SocketAddr)>) -> Self {
            let n = datagrams.len();
            VecBatch {
                datagrams,
                replies: vec![vec![0; REPLY_BUFFER_LEN]; n],
                outcomes: vec![None; n],
            }
        }

        fn reply(&self, i: usize) -> Option<&[u8]> {
            self.outcomes[i].map(|len| &self.replies[i][..len])
        }
    }

    impl UdpBatch for VecBatch {
        fn len(&self) -> usize {
            self.datagrams.len()
        }

        fn payload(&self, i: usize) -> &[u8] {
            &self.datagrams[i].0
        }

        fn exchange(&mut self, i: usize) -> (&[u8], SocketAddr, &mut [u8]) {
            let (p, src) = &self.datagrams[i];
            (p, *src, &mut self.replies[i])
        }

        fn complete(&mut self, i: usize, reply: Option<usize>) {
            self.outcomes[i] = reply;
        }
    }

    fn engine() -> (Engine, Arc<Tracker>, Arc<[WorkerStats]>) {
        let tracker = Arc::new(Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(8, [3, 4]),
            ConnectionIdIssuer::new([5; 16]),
        ));
        let (engine, stats) = crate::engine::test_engine(&tracker, Instant::now());
        (engine, tracker, stats)
    }

    fn source(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, (i % 200) as u8], 10_000 + i))
    }

    fn connect(tid: u32) -> Vec<u8> {
        [
            &PROTOCOL_ID.to_be_bytes()[..],
            &0u32.to_be_bytes(),
            &tid.to_be_bytes(),
        ]
        .concat()
    }

    fn announce(cid: u64, hash: InfoHash, left: u64, port: u16) -> Vec<u8> {
        let mut p = [
            &cid.to_be_bytes()[..],
            &1u32.to_be_bytes(),
            &7u32.to_be_bytes(),
        ]
        .concat();
        p.extend_from_slice(&hash.0);
        p.extend_from_slice(&[2; 20]); // peer id
        p.extend_from_slice(&[0; 8]); // downloaded
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&[0; 8]); // uploaded
        p.extend_from_slice(&0u32.to_be_bytes()); // event none
        p.extend_from_slice(&[0; 8]); // ip, key
        p.extend_from_slice(&(-1i32).to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p
    }

    /// Whole batches through the three passes: every datagram is answered
    /// as it would be alone (connects, announces into one big swarm and
    /// many small ones, garbage dropped and counted), and replies never
    /// list the asker or anyone twice.
    #[test]
    fn a_batch_is_answered_datagram_by_datagram() {
        let (mut engine, tracker, stats) = engine();
        let now = Instant::now();
        let n = 120u16;
        let mut connects =
            VecBatch::new((0..n).map(|i| (connect(u32::from(i)), source(i))).collect());
        engine.handle_udp_batch(now, &mut connects);
        let cids: Vec<u64> = (0..usize::from(n))
            .map(|i| {
                let r = connects.reply(i).expect("connect answered");
                u64::from_be_bytes(r[8..16].try_into().unwrap())
            })
            .collect();
        let big = InfoHash([0xb1; 20]);
        for round in 0..3 {
            let mut datagrams: Vec<(Vec<u8>, SocketAddr)> = (0..n)
                .map(|i| {
                    let cid = cids[usize::from(i)];
                    // Two in three into the big swarm, the rest alone.
                    let hash = if i % 3 == 0 {
                        InfoHash([i as u8; 20])
                    } else {
                        big
                    };
                    let left = if i % 4 == 0 { 0 } else { 100 };
                    (announce(cid, hash, left, source(i).port()), source(i))
                })
                .collect();
            datagrams.push((vec![1, 2, 3], source(0)));
            let mut batch = VecBatch::new(datagrams);
            engine.handle_udp_batch(now, &mut batch);
            assert_eq!(batch.reply(usize::from(n)), None, "garbage gets nothing");
            for i in 0..usize::from(n) {
                let r = batch
                    .reply(i)
                    .unwrap_or_else(|| panic!("round {round}: {i} answered"));
                assert_eq!(r[..4], 1u32.to_be_bytes(), "an announce reply");
                let peers: std::collections::HashSet<&[u8]> = r[20..].chunks(6).collect();
                assert_eq!(peers.len() * 6, r.len() - 20, "no peer twice");
                let me = [
                    &[127, 0, 1, i as u8][..],
                    &source(i as u16).port().to_be_bytes(),
                ]
                .concat();
                assert!(!peers.contains(&me[..]), "never the asker");
            }
        }
        let big_peers = usize::from(n) - usize::from(n).div_ceil(3);
        let counts = tracker.scrape(&big);
        assert_eq!((counts.seeders + counts.leechers) as usize, big_peers);
        let s = &stats[0];
        assert_eq!(s.get(Counter::ReplyAnnounce), 3 * u64::from(n));
        assert_eq!(s.get(Counter::DropTooShort), 3);
        assert_eq!(s.get(Counter::ReplyConnect), u64::from(n));
    }
}
