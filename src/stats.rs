//! Counters as plain data: per worker, every datagram and request counted
//! by what became of it (the engine says which counter an outcome is), and
//! the database thread's. Nothing here knows the engine, the tracker or
//! the metrics: they all depend on it, it on none of them.
//!
//! Each worker owns one `WorkerStats` and is its only writer, so a counter
//! is a relaxed load and store, not a locked read-modify-write; readers
//! (the periodic log line, later the metrics endpoint) sum across workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident => $label:literal,)*) => {
        /// One counter per variant; `label` names it in logs and metrics.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $(#[doc = concat!("`", $label, "`")] $name,)* }

        impl Counter {
            /// Every counter, in block order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            /// How many counters a worker's block holds.
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name in logs and metrics.
            pub fn label(self) -> &'static str {
                match self { $(Counter::$name => $label,)* }
            }
        }
    };
}

counters! {
    Received => "received",
    BytesIn => "bytes_in",
    Sent => "sent",
    BytesOut => "bytes_out",
    ReplyConnect => "connect",
    ReplyAnnounce => "announce",
    ReplyScrape => "scrape",
    ReplyError => "error_reply",
    ErrorBadRequest => "error_bad_request",
    ErrorTorrentNotAllowed => "error_torrent_not_allowed",
    ErrorClientNotAllowed => "error_client_not_allowed",
    ErrorUnknownPasskey => "error_unknown_passkey",
    ErrorUnregisteredTorrent => "error_unregistered_torrent",
    ErrorLeechingNotAllowed => "error_leeching_not_allowed",
    ErrorPeerLimit => "error_peer_limit",
    ErrorSiteUnavailable => "error_site_unavailable",
    ErrorPrivateScrape => "error_private_scrape",
    ErrorRateLimited => "error_rate_limited",
    ErrorFullScrapeDisabled => "error_full_scrape_disabled",
    DropTooShort => "drop_too_short",
    DropBadMagic => "drop_bad_magic",
    DropUnknownAction => "drop_unknown_action",
    DropShortAnnounce => "drop_short_announce",
    DropBadConnectionId => "drop_bad_connection_id",
    DropBanned => "drop_banned",
    DropRateLimited => "drop_rate_limited",
    DropOversized => "drop_oversized",
    DropNoAddress => "drop_no_address",
    DropNoSendSlot => "drop_no_send_slot",
    SendFailed => "send_failed",
    RecvEnobufs => "recv_enobufs",
    RecvRearm => "recv_rearm",
    RecvError => "recv_error",
    RingEnters => "ring_enters",
    RingSubmitted => "ring_submitted",
    SweptPeers => "expired_peers",
    InternalError => "internal_error",
    HttpConnections => "http_connections",
    HttpRequests => "http_requests",
    HttpAnnounce => "http_announce",
    HttpScrape => "http_scrape",
    HttpRejected => "http_rejected",
    HttpRefused => "http_refused_over_cap",
    HttpRefusedAddress => "http_refused_over_address_cap",
    HttpTimeouts => "http_timeouts",
    HttpAcceptPaused => "http_accept_paused",
    HttpGzip => "http_gzip",
    HttpGzipSaved => "http_gzip_bytes_saved",
    TlsFailed => "tls_failed",
    ClusterChanges => "cluster_changes_out",
    ClusterOutboxOverflow => "cluster_outbox_overflow",
}

/// Slots of the served-announces-by-client counters (the fixed table of
/// client software is shorter: `protocol::client_software::CLIENTS`).
pub const CLIENT_SLOTS: usize = 64;

/// One worker's counters, on a cache line pair of its own.
#[repr(align(128))]
pub struct WorkerStats {
    counts: [AtomicU64; Counter::COUNT],
    /// Served announces by client software slot.
    clients: [AtomicU64; CLIENT_SLOTS],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            clients: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl WorkerStats {
    /// Only the owning worker calls this (single writer).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let a = &self.counts[c as usize];
        a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// The value of counter `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// A served announce of the client in `slot` (single writer; a slot
    /// past the table is not counted).
    #[inline]
    pub fn add_client(&self, slot: usize) {
        if let Some(a) = self.clients.get(slot) {
            a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }
}

/// Served announces by client slot, summed over every worker.
pub fn client_totals(workers: &[WorkerStats]) -> [u64; CLIENT_SLOTS] {
    let mut t = [0u64; CLIENT_SLOTS];
    for w in workers {
        for (sum, a) in t.iter_mut().zip(&w.clients) {
            *sum = sum.wrapping_add(a.load(Ordering::Relaxed));
        }
    }
    t
}

/// Private mode's database thread's counters (the thread writes them,
/// the metrics read them).
#[derive(Default)]
pub struct DatabaseStats {
    /// The connection works.
    pub up: AtomicBool,
    /// Unix seconds of the last read of changed rows (0: none yet).
    pub last_sync: AtomicU64,
    /// Unix seconds of the last flush that got through (0: none yet).
    pub last_flush: AtomicU64,
    /// Flushes that got through.
    pub flushes: AtomicU64,
    /// Time spent in them, in microseconds.
    pub flush_micros: AtomicU64,
    /// Batches of credits applied.
    pub batches_applied: AtomicU64,
    /// Batches the database already had (a commit whose answer was lost,
    /// or a restart): not applied twice.
    pub batches_skipped: AtomicU64,
    /// Journaled batches waiting for the database.
    pub queued_batches: AtomicU64,
    /// Batches kept only in the journal (read back when their turn comes):
    /// cut while the database was down, past `max_pending_credits`, or
    /// queued past the 1M credits kept in memory.
    pub spilled_batches: AtomicU64,
    /// Appends to the credit journal that failed.
    pub journal_failures: AtomicU64,
    /// Batches the database refused (set aside, retried on a new
    /// connection), and how many are aside now.
    pub batches_refused: AtomicU64,
    /// Batches set aside now.
    pub refused_batches: AtomicU64,
    /// Queries that failed (connection lost, server error).
    pub failures: AtomicU64,
    /// Site rows skipped as undecodable or invalid.
    pub bad_rows: AtomicU64,
    /// Write-back rows sent (rt_peers upserts and deletes, history, counts).
    pub write_back_rows: AtomicU64,
    /// Write-back transactions whose rows the database refused (dropped).
    pub write_back_refused: AtomicU64,
    /// Times the write-back rows waiting outgrew their bound.
    pub write_back_overflows: AtomicU64,
    /// Write-back entries waiting (peers, history, counts), after the
    /// last collect or write.
    pub write_back_waiting: AtomicU64,
}

/// Sum of every worker's counters.
pub fn totals(workers: &[WorkerStats]) -> [u64; Counter::COUNT] {
    let mut t = [0u64; Counter::COUNT];
    for w in workers {
        for c in Counter::ALL {
            t[*c as usize] += w.get(*c);
        }
    }
    t
}

/// `name=value` pairs of the non-zero counters, for a log line.
pub fn summary(totals: &[u64; Counter::COUNT]) -> String {
    let mut s = String::new();
    for c in Counter::ALL {
        let v = totals[*c as usize];
        if v != 0 {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(c.label());
            s.push('=');
            s.push_str(&v.to_string());
        }
    }
    if s.is_empty() {
        s.push_str("idle");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn the_architecture_names_every_counter_and_no_other() {
        let doc = include_str!("../docs/ARCHITECTURE.md");
        let section = doc
            .split("## Counters")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Counters section");
        for c in Counter::ALL {
            let quoted = format!("`{}`", c.label());
            assert!(section.contains(&quoted), "{quoted} is not documented");
        }
        let words = section.split('`').skip(1).step_by(2);
        for named in words.filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_')) {
            let known = Counter::ALL.iter().any(|c| c.label() == named);
            let other = ["workers", "stats_interval", "handle_request"].contains(&named);
            assert!(known || other, "`{named}` is documented but no counter");
        }
    }
}
