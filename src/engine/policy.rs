//! The one policy chain an announce goes through, whatever its wire:
//! ban → rate limit → passkey (and in database mode the site's torrent
//! and leech right) → ip → access list and client filter → ledger (peer
//! cap, credits) → swarm.
//!
//! The ban comes first and is the frontend's own call (`AccessRules::
//! banned`, before it even parses: a banned address gets nothing at all,
//! not even an error for a malformed request). Everything after it is
//! here, once: each frontend turns its request into an `Announcer` and
//! `AnnounceParams` and says the outcome on its wire (UDP drops a
//! rate-limited request and answers a refusal with an error packet; HTTP
//! answers both with a `failure reason` and BEP 31 `retry in`).

use std::net::IpAddr;

use crate::tracker::access::AccessRules;
use crate::tracker::announce::{AnnounceAnswer, AnnounceParams, Tracker, check_access};
use crate::tracker::refusal::Refusal;

/// Who makes an announce, as the frontend saw them.
#[derive(Debug, Clone, Copy)]
pub struct Announcer<'a> {
    /// The address the request came from: the UDP source, or the HTTP
    /// client after trusted-proxy resolution (canonical: IPv4-mapped IPv6
    /// is IPv4). Rate limits and `external ip` go by it.
    pub seen: IpAddr,
    /// The passkey the request carried (private mode: the path of the
    /// tracker URL, from HTTP's path or UDP's BEP 41 URLData).
    pub passkey: Option<&'a [u8]>,
    /// The address the client asked to be listed under (the `ip` field or
    /// parameter): used only with `tracker.allow_ip_param`.
    pub claimed: Option<IpAddr>,
    /// Its HTTP User-Agent (empty over UDP): private mode's `rt_peers`.
    pub agent: &'a [u8],
}

/// Why an announce was not served: the one vocabulary of "no" the chain
/// speaks, whatever the wire. Each frontend says it its own way: UDP drops
/// a rate-limited announce (`UdpDrop`) and answers a refusal with an error
/// packet (`UdpError`); HTTP answers both with a `failure reason`
/// (`HttpFailure`) and BEP 31 `retry in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Over the address's announce rate (temporary).
    RateLimited,
    /// Refused by the access rules or private mode (permanent).
    Refused(Refusal),
}

/// The address a peer is stored and listed under.
pub fn peer_ip(tracker: &Tracker, who: &Announcer<'_>) -> IpAddr {
    match who.claimed {
        Some(ip) if tracker.policy().allow_ip_param => ip.to_canonical(),
        _ => who.seen,
    }
}

/// Run `params` through the chain under `rules` (loaded once for the
/// request) at tracker time `now`: the peers for the reply go into `out`.
/// `params.ip` is the address the peer is listed under, `peer_ip(who)`:
/// the frontend sizes its reply by that address's family.
pub fn announce(
    tracker: &Tracker,
    rules: &AccessRules,
    who: &Announcer<'_>,
    params: &AnnounceParams,
    now: u32,
    out: &mut [u8],
) -> Result<AnnounceAnswer, Denied> {
    if !tracker.announce_allowed(who.seen, now) {
        return Err(Denied::RateLimited);
    }
    let account = rules
        .admit(
            who.passkey,
            &params.info_hash,
            params.left,
            params.event,
            tracker.ledger().unix_at(now),
        )
        .map_err(Denied::Refused)?;
    debug_assert_eq!(params.ip, peer_ip(tracker, who));
    check_access(rules, params).map_err(Denied::Refused)?;
    // The ledger comes last before the swarm: the peer cap may still
    // refuse, and credits are taken only for announces that are served.
    if let (Some(key), Some(account)) = (who.passkey, account) {
        let report = params.report(key, who.agent, account);
        tracker
            .ledger()
            .record(&report, now)
            .map_err(Denied::Refused)?;
    }
    Ok(tracker.announce_admitted(params, now, out))
}
