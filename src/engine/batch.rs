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

use super::udp::{UdpOutcome, handle_datagram};
use super::{Engine, contain};

/// A batch of received datagrams, as a backend holds them: each with its
/// source address and a reply buffer of at least
/// `udp::REPLY_BUFFER_LEN` bytes set aside for it.
pub trait UdpBatch {
    fn len(&self) -> usize;

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
    /// Answer every datagram of `batch`, received by `now`.
    pub fn handle_udp_batch(&mut self, now: Instant, batch: &mut impl UdpBatch) {
        let secs = self.tracker_secs(now);
        let stats = &self.stats[self.stats_index];
        // One load of the access rules for the whole batch.
        let rules = self.tracker.rules();
        for i in 0..batch.len() {
            let (tracker, rng) = (&self.tracker, &mut self.rng);
            let (payload, src, out) = batch.exchange(i);
            let outcome = contain(stats, || {
                handle_datagram(tracker, &rules, payload, src, secs, rng, out)
            });
            let reply = match outcome {
                Some(UdpOutcome::Reply { len, kind }) => {
                    stats.count_reply(kind);
                    Some(len)
                }
                Some(UdpOutcome::Drop(why)) => {
                    stats.count_drop(why);
                    None
                }
                None => None,
            };
            batch.complete(i, reply);
        }
    }
}
