//! Per-worker counters: every datagram is counted, by what became of it.
//!
//! Each worker owns one `WorkerStats` and is its only writer, so a counter
//! is a relaxed load and store, not a locked read-modify-write; readers
//! (the periodic log line, later the metrics endpoint) sum across workers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::udp::{ReplyKind, UdpDrop};
use crate::protocol::udp::DropReason;
use crate::tracker::announce::ErrorReason;
use crate::tracker::refusal::Refusal;

macro_rules! counters {
    ($($name:ident => $label:literal,)*) => {
        /// One counter per variant; `label` names it in logs and metrics.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $($name,)* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            pub const COUNT: usize = Self::ALL.len();

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
    TlsFailed => "tls_failed",
    ClusterChanges => "cluster_changes_out",
    ClusterOutboxOverflow => "cluster_outbox_overflow",
}

/// One worker's counters, on a cache line pair of its own.
#[repr(align(128))]
pub struct WorkerStats {
    counts: [AtomicU64; Counter::COUNT],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
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

    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    pub fn count_reply(&self, kind: ReplyKind) {
        self.add(
            match kind {
                ReplyKind::Connect => Counter::ReplyConnect,
                ReplyKind::Announce => Counter::ReplyAnnounce,
                ReplyKind::Scrape => Counter::ReplyScrape,
                ReplyKind::Error(why) => {
                    self.count_error(why);
                    Counter::ReplyError
                }
            },
            1,
        );
    }

    /// An error reply (UDP error packet or HTTP failure reason) by reason.
    pub fn count_error(&self, why: ErrorReason) {
        self.add(
            match why {
                ErrorReason::BadRequest => Counter::ErrorBadRequest,
                ErrorReason::Refused(Refusal::TorrentNotAllowed) => Counter::ErrorTorrentNotAllowed,
                ErrorReason::Refused(Refusal::ClientNotAllowed) => Counter::ErrorClientNotAllowed,
                ErrorReason::Refused(Refusal::UnknownPasskey) => Counter::ErrorUnknownPasskey,
                ErrorReason::Refused(Refusal::UnregisteredTorrent) => {
                    Counter::ErrorUnregisteredTorrent
                }
                ErrorReason::Refused(Refusal::LeechingNotAllowed) => {
                    Counter::ErrorLeechingNotAllowed
                }
                ErrorReason::Refused(Refusal::PeerLimit) => Counter::ErrorPeerLimit,
                ErrorReason::Refused(Refusal::SiteUnavailable) => Counter::ErrorSiteUnavailable,
                ErrorReason::PrivateScrape => Counter::ErrorPrivateScrape,
                ErrorReason::RateLimited => Counter::ErrorRateLimited,
                ErrorReason::FullScrapeDisabled => Counter::ErrorFullScrapeDisabled,
            },
            1,
        );
    }

    pub fn count_drop(&self, why: UdpDrop) {
        self.add(
            match why {
                UdpDrop::Malformed(DropReason::TooShort) => Counter::DropTooShort,
                UdpDrop::Malformed(DropReason::BadMagic) => Counter::DropBadMagic,
                UdpDrop::Malformed(DropReason::UnknownAction) => Counter::DropUnknownAction,
                UdpDrop::Malformed(DropReason::ShortAnnounce) => Counter::DropShortAnnounce,
                UdpDrop::BadConnectionId => Counter::DropBadConnectionId,
                UdpDrop::Banned => Counter::DropBanned,
                UdpDrop::RateLimited => Counter::DropRateLimited,
                UdpDrop::Oversized => Counter::DropOversized,
            },
            1,
        );
    }
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
