//! Which counter an outcome of the engine is: the engine's vocabulary
//! (replies, refusals, drops) mapped onto `stats::Counter`, so the
//! counters know nothing of the engine.
#![forbid(unsafe_code)]

use super::udp::{ReplyKind, UdpDrop};
use crate::protocol::udp::DropReason;
use crate::stats::{Counter, WorkerStats};
use crate::tracker::announce::ErrorReason;
use crate::tracker::refusal::Refusal;

/// A UDP reply, by kind (error replies by reason too).
pub fn count_reply(stats: &WorkerStats, kind: ReplyKind) {
    stats.add(
        match kind {
            ReplyKind::Connect => Counter::ReplyConnect,
            ReplyKind::Announce => Counter::ReplyAnnounce,
            ReplyKind::Scrape => Counter::ReplyScrape,
            ReplyKind::Error(why) => {
                count_error(stats, why);
                Counter::ReplyError
            }
        },
        1,
    );
}

/// An error reply (UDP error packet or HTTP failure reason) by reason.
pub fn count_error(stats: &WorkerStats, why: ErrorReason) {
    stats.add(
        match why {
            ErrorReason::BadRequest => Counter::ErrorBadRequest,
            ErrorReason::Refused(Refusal::TorrentNotAllowed) => Counter::ErrorTorrentNotAllowed,
            ErrorReason::Refused(Refusal::ClientNotAllowed) => Counter::ErrorClientNotAllowed,
            ErrorReason::Refused(Refusal::UnknownPasskey) => Counter::ErrorUnknownPasskey,
            ErrorReason::Refused(Refusal::UnregisteredTorrent) => Counter::ErrorUnregisteredTorrent,
            ErrorReason::Refused(Refusal::LeechingNotAllowed) => Counter::ErrorLeechingNotAllowed,
            ErrorReason::Refused(Refusal::PeerLimit) => Counter::ErrorPeerLimit,
            ErrorReason::Refused(Refusal::SiteUnavailable) => Counter::ErrorSiteUnavailable,
            ErrorReason::PrivateScrape => Counter::ErrorPrivateScrape,
            ErrorReason::RateLimited => Counter::ErrorRateLimited,
            ErrorReason::FullScrapeDisabled => Counter::ErrorFullScrapeDisabled,
        },
        1,
    );
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
