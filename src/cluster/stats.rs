//! The sync thread's counters and gauges (one writer: the sync thread, and
//! the checkpoint thread for its own), read by `/metrics` and the stats
//! page.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the apply-lag histogram's buckets: a message's
/// creation at its node to its changes applied here.
pub const LAG_BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
];

/// Why something read from Redis was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a message of ours at all (another magic, another field).
    Foreign,
    /// Over the size bound.
    Oversized,
    /// Its tag does not check out under the cluster's key.
    Unauthenticated,
    /// Authenticated, but its bytes do not decode (a key holder's bug).
    Malformed,
    /// An authentic message read again (same run, a number already seen).
    Replayed,
    /// A checkpoint whose head or a part does not check out, or over a
    /// bound.
    Checkpoint,
}

impl Rejected {
    /// Every reason, in label order.
    pub const ALL: [Rejected; 6] = [
        Rejected::Foreign,
        Rejected::Oversized,
        Rejected::Unauthenticated,
        Rejected::Malformed,
        Rejected::Replayed,
        Rejected::Checkpoint,
    ];

    /// The `reason` label of `ringtracker_cluster_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::Foreign => "foreign",
            Rejected::Oversized => "oversized",
            Rejected::Unauthenticated => "unauthenticated",
            Rejected::Malformed => "malformed",
            Rejected::Replayed => "replayed",
            Rejected::Checkpoint => "checkpoint",
        }
    }
}

/// The sync thread's counters (relaxed atomics; the metrics listener reads
/// them).
#[derive(Default)]
pub struct ClusterStats {
    /// What was not applied, by `Rejected`.
    pub rejected: [AtomicU64; Rejected::ALL.len()],
    /// Messages appended to the stream.
    pub messages_out: AtomicU64,
    /// Swarm changes in those messages.
    pub changes_out: AtomicU64,
    /// Bytes of those messages.
    pub bytes_out: AtomicU64,
    /// Messages read from other nodes.
    pub messages_in: AtomicU64,
    /// Changes from other nodes that changed the table.
    pub changes_in: AtomicU64,
    /// Changes from other nodes that did not (a removal of a peer that
    /// moved here, a refused torrent).
    pub changes_ignored: AtomicU64,
    /// Bytes of those messages.
    pub bytes_in: AtomicU64,
    /// Stream entries that were not a message of ours (counted, skipped).
    pub skipped_messages: AtomicU64,
    /// Changes dropped because Redis was away and the buffer of
    /// unsent messages was full.
    pub unsent_dropped: AtomicU64,
    /// 1 while Redis answers.
    pub redis_up: AtomicU64,
    /// Times Redis came back after being unavailable.
    pub reconnects: AtomicU64,
    /// Times this node found it had missed stream entries (trimmed away
    /// or the stream started over) and caught up from checkpoints.
    pub resyncs: AtomicU64,
    /// Remote peers in the table, as of the last checkpoint walk.
    pub remote_peers: AtomicU64,
    /// Checkpoints of this node's local peers written.
    pub checkpoints_written: AtomicU64,
    /// Checkpoints of other nodes loaded.
    pub checkpoints_loaded: AtomicU64,
    /// Checkpoints that could not be written.
    pub checkpoint_failures: AtomicU64,
    lag_buckets: [AtomicU64; LAG_BUCKETS_MS.len() + 1],
    lag_sum_ms: AtomicU64,
}

impl ClusterStats {
    /// Add `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a rejected entry.
    pub fn reject(&self, why: Rejected) {
        Self::add(&self.rejected[why as usize], 1);
    }

    /// Read `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One message applied `lag_ms` after it was made.
    pub fn record_lag(&self, lag_ms: u64) {
        let i = LAG_BUCKETS_MS
            .iter()
            .position(|&b| lag_ms <= b)
            .unwrap_or(LAG_BUCKETS_MS.len());
        self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ms.fetch_add(lag_ms, Ordering::Relaxed);
    }

    /// Messages per lag bucket (the last: over the largest bound), and the
    /// sum of lags in ms.
    pub fn lag(&self) -> ([u64; LAG_BUCKETS_MS.len() + 1], u64) {
        let mut b = [0; LAG_BUCKETS_MS.len() + 1];
        for (out, c) in b.iter_mut().zip(&self.lag_buckets) {
            *out = c.load(Ordering::Relaxed);
        }
        (b, self.lag_sum_ms.load(Ordering::Relaxed))
    }

    /// The bucket bound below which `q` (0..1) of the messages' lags fall
    /// (None before any message; `u64::MAX` for the overflow bucket).
    pub fn lag_quantile(&self, q: f64) -> Option<u64> {
        let (b, _) = self.lag();
        let total: u64 = b.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in b.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(LAG_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles_come_from_the_buckets() {
        let s = ClusterStats::default();
        assert_eq!(s.lag_quantile(0.5), None);
        for lag in [0, 3, 3, 4, 40, 90, 150, 150, 150, 60_000] {
            s.record_lag(lag);
        }
        assert_eq!(s.lag_quantile(0.5), Some(50));
        assert_eq!(s.lag_quantile(0.9), Some(200));
        assert_eq!(s.lag_quantile(0.99), Some(u64::MAX));
        assert_eq!(s.lag().1, 60_590);
    }
}
