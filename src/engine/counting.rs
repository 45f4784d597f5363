//! Which counter an outcome of the engine is: the engine's vocabulary
//! (replies, each frontend's errors and the refusals they carry, drops)
//! mapped onto `stats::Counter`, so the counters know nothing of the
//! engine.
#![forbid(unsafe_code)]

use super::http::HttpFailure;
use super::policy::Denied;
use super::udp::{ReplyKind, UdpDrop, UdpError};
use crate::protocol::client_software::CLIENTS;
use crate::protocol::udp::DropReason;
use crate::stats::{CLIENT_SLOTS, Counter, WorkerStats};
use crate::tracker::refusal::Refusal;

// Every client software has a counter slot.
const _: () = assert!(CLIENTS <= CLIENT_SLOTS);

/// A UDP reply, by kind (error replies by reason too; announces by client
/// software too).
pub fn count_reply(stats: &WorkerStats, kind: ReplyKind) {
    stats.add(
        match kind {
            ReplyKind::Connect => Counter::ReplyConnect,
            ReplyKind::Announce(client) => {
                stats.add_client(client.index());
                Counter::ReplyAnnounce
            }
            ReplyKind::Scrape => Counter::ReplyScrape,
            ReplyKind::Error(why) => {
                count_udp_error(stats, why);
                Counter::ReplyError
            }
        },
        1,
    );
}

/// A UDP error packet, by reason.
fn count_udp_error(stats: &WorkerStats, why: UdpError) {
    let counter = match why {
        UdpError::BadRequest => Counter::ErrorBadRequest,
        UdpError::Refused(r) => refused(r),
        UdpError::PrivateScrape => Counter::ErrorPrivateScrape,
    };
    stats.add(counter, 1);
}

/// An HTTP `failure reason`, by reason (counted alike with UDP's error
/// packets where the reason is the same).
pub fn count_http_failure(stats: &WorkerStats, why: HttpFailure) {
    let counter = match why {
        HttpFailure::BadRequest => Counter::ErrorBadRequest,
        HttpFailure::Denied(Denied::Refused(r)) => refused(r),
        HttpFailure::Denied(Denied::RateLimited) => Counter::ErrorRateLimited,
        HttpFailure::FullScrapeDisabled => Counter::ErrorFullScrapeDisabled,
    };
    stats.add(counter, 1);
}

/// The counter of a refusal, whichever frontend answered it.
fn refused(r: Refusal) -> Counter {
    match r {
        Refusal::TorrentNotAllowed => Counter::ErrorTorrentNotAllowed,
        Refusal::ClientNotAllowed => Counter::ErrorClientNotAllowed,
        Refusal::UnknownPasskey => Counter::ErrorUnknownPasskey,
        Refusal::UnregisteredTorrent => Counter::ErrorUnregisteredTorrent,
        Refusal::LeechingNotAllowed => Counter::ErrorLeechingNotAllowed,
        Refusal::PeerLimit => Counter::ErrorPeerLimit,
        Refusal::SiteUnavailable => Counter::ErrorSiteUnavailable,
    }
}

/// A datagram dropped without a reply, by why.
pub fn count_drop(stats: &WorkerStats, why: UdpDrop) {
    stats.add(
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
