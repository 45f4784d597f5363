//! The one announce / scrape path, shared by every frontend: frontends
//! parse their wire format into `AnnounceParams` (random picks included),
//! call `Tracker::announce` with the time, and encode the `AnnounceAnswer`
//! plus the peers it wrote into their reply buffer.

use std::net::IpAddr;

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::access::AccessRules;
use super::connection_id::ConnectionIdIssuer;
use super::ledger::{Report, TransferLedger};
use super::peer_set::{V4, V6};
use super::rate_limit::RateLimiter;
use super::swarm::{PeerUpdate, Picks, Swarm};
use super::table::SwarmTable;
use crate::protocol::{Event, InfoHash, PeerId};

/// The operator's announce policy (from `[tracker]` in the config).
#[derive(Debug, Clone)]
pub struct AnnouncePolicy {
    /// Seconds clients are told to wait between announces.
    pub interval: u32,
    /// Seconds clients must wait at least (sent over HTTP).
    pub min_interval: u32,
    /// Seconds after its last announce that a peer is forgotten.
    pub peer_timeout: u32,
    /// Peers sent when the client asks for 0 or a negative number.
    pub default_numwant: usize,
    /// The most peers sent in one reply.
    pub max_numwant: usize,
    /// Honour the client-supplied `ip` field / parameter.
    pub allow_ip_param: bool,
}

/// The defaults of `[tracker]` (`Config::default` takes them from here).
impl Default for AnnouncePolicy {
    fn default() -> Self {
        AnnouncePolicy {
            interval: 1800,
            min_interval: 900,
            peer_timeout: 3600,
            default_numwant: 50,
            max_numwant: 200,
            allow_ip_param: false,
        }
    }
}

impl AnnouncePolicy {
    /// How many peers to send for a request's `numwant` (before the room in
    /// the reply caps it further).
    pub fn numwant(&self, requested: i32) -> usize {
        if requested <= 0 {
            self.default_numwant.min(self.max_numwant)
        } else {
            (requested as usize).min(self.max_numwant)
        }
    }
}

/// Everything the swarm logic needs from an announce, whatever the wire.
#[derive(Debug, Clone)]
pub struct AnnounceParams {
    pub info_hash: InfoHash,
    /// For the client filter only: peers are identified by address.
    pub peer_id: PeerId,
    /// The peer's address: the packet's source unless policy allows `ip`.
    /// IPv4-mapped IPv6 addresses must already be turned into IPv4.
    pub ip: IpAddr,
    /// The port the peer listens on. 0 (sent by clients behind a proxy) is
    /// served but never stored: nobody could connect to it.
    pub port: u16,
    pub event: Event,
    pub left: u64,
    /// Running totals of the client's session, for private mode's ledger.
    pub uploaded: u64,
    pub downloaded: u64,
    pub numwant: i32,
    /// Where the reply's peers are taken from (random, drawn by the
    /// frontend: `Picks::draw`).
    pub picks: Picks,
}

impl AnnounceParams {
    /// What the ledger needs from this announce, made under `passkey`.
    pub fn report<'a>(&self, passkey: &'a [u8]) -> Report<'a> {
        Report {
            passkey,
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            event: self.event,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceAnswer {
    pub seeders: u32,
    pub leechers: u32,
    /// Completed downloads of the torrent (scrape's `downloaded`).
    pub downloaded: u32,
    /// Peers written to the output, each `peer_len` bytes.
    pub peers: usize,
    /// 6 for IPv4 peers, 18 for IPv6.
    pub peer_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeCounts {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// Why an announce was refused. Each frontend says so on its wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The access list does not let this torrent in (permanent).
    TorrentNotAllowed,
    /// The client filter does not let this client software in (permanent).
    ClientNotAllowed,
    /// Private mode and no registered passkey (permanent).
    UnknownPasskey,
}

/// Why a client got an error reply (UDP error packet, HTTP failure
/// reason), for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// A request the client can fix (bad event, malformed query, scrape
    /// without hashes).
    BadRequest,
    /// A refusal by the access rules.
    Refused(Refusal),
    /// A UDP scrape to a private tracker.
    PrivateScrape,
    /// Over the address's announce rate (HTTP; UDP drops instead).
    RateLimited,
    /// An HTTP scrape without info_hash while full scrape is off.
    FullScrapeDisabled,
}

/// Private mode: whether a request carrying `passkey` is served.
pub fn check_passkey(rules: &AccessRules, passkey: Option<&[u8]>) -> Result<(), Refusal> {
    if rules.permits_passkey(passkey) {
        Ok(())
    } else {
        Err(Refusal::UnknownPasskey)
    }
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TorrentNotAllowed => "torrent not allowed on this tracker",
            Refusal::ClientNotAllowed => "client software not allowed on this tracker",
            Refusal::UnknownPasskey => "unknown passkey",
        }
    }
}

/// Per-address request limits (none by default).
#[derive(Default)]
pub struct Limits {
    pub connects: Option<RateLimiter>,
    pub announces: Option<RateLimiter>,
}

pub struct Tracker {
    pub policy: AnnouncePolicy,
    pub table: SwarmTable,
    pub connection_ids: ConnectionIdIssuer,
    pub limits: Limits,
    /// Private mode's uploaded/downloaded credits per passkey.
    pub ledger: TransferLedger,
    /// Swapped whole on reload: readers never wait.
    access: ArcSwap<AccessRules>,
}

impl Tracker {
    pub fn new(
        policy: AnnouncePolicy,
        table: SwarmTable,
        connection_ids: ConnectionIdIssuer,
    ) -> Self {
        Tracker {
            policy,
            table,
            connection_ids,
            access: ArcSwap::from_pointee(AccessRules::default()),
            limits: Limits::default(),
            ledger: TransferLedger::default(),
        }
    }

    /// Put per-address rate limits in force.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Take an announce token for `ip` (always granted without a limit).
    pub fn announce_allowed(&self, ip: std::net::IpAddr, now: u32) -> bool {
        self.limits
            .announces
            .as_ref()
            .is_none_or(|l| l.allow(ip, now))
    }

    /// Take a connect token for `ip` (always granted without a limit).
    pub fn connect_allowed(&self, ip: std::net::IpAddr, now: u32) -> bool {
        self.limits
            .connects
            .as_ref()
            .is_none_or(|l| l.allow(ip, now))
    }

    /// Put new access rules in force (atomically; in-flight announces finish
    /// under the old ones).
    pub fn set_access(&self, rules: AccessRules) {
        self.access.store(Arc::new(rules));
    }

    /// The access rules in force.
    pub fn access(&self) -> Arc<AccessRules> {
        self.access.load_full()
    }

    /// The access rules in force, for one request: load them once and pass
    /// them to `announce_with`, the ban and passkey checks.
    pub fn rules(&self) -> arc_swap::Guard<Arc<AccessRules>> {
        self.access.load()
    }

    /// Expire the next `count` shards: peers past the timeout, and swarms of
    /// torrents the access rules no longer permit.
    pub fn sweep(&self, count: usize, now: u32) -> usize {
        let rules = self.access.load();
        self.table
            .sweep_next(count, now, self.policy.peer_timeout, |h| rules.permits(h))
    }

    /// Apply one announce at tracker time `now` and write the peers for it
    /// into `out` (compact layout of the peer's family; as many as fit).
    pub fn announce(
        &self,
        p: &AnnounceParams,
        now: u32,
        out: &mut [u8],
    ) -> Result<AnnounceAnswer, Refusal> {
        self.announce_with(&self.rules(), p, now, out)
    }

    /// Ask for the cache lines `announce_with(p)` will touch in a big
    /// swarm (the peer's slot, each reply window), so that
    /// the batch pipeline overlaps them with other datagrams' work. Takes
    /// the shard's lock briefly; changes nothing.
    pub fn prefetch_peers(&self, p: &AnnounceParams) {
        let shard = self.table.lock(&p.info_hash);
        let Some(torrent) = shard.get(&p.info_hash) else {
            return;
        };
        let (h, seeder) = (self.table.addr_hasher(), p.left == 0);
        let numwant = self.policy.numwant(p.numwant);
        match p.ip {
            IpAddr::V4(ip) => {
                let addr = v4_record(ip, p.port);
                torrent
                    .v4
                    .prefetch_announce(&addr, seeder, numwant, p.picks, h);
            }
            IpAddr::V6(ip) => {
                if let Some(v6) = &torrent.v6 {
                    let addr = v6_record(ip, p.port);
                    v6.prefetch_announce(&addr, seeder, numwant, p.picks, h);
                }
            }
        }
    }

    /// `announce` under rules the caller already loaded.
    pub fn announce_with(
        &self,
        rules: &AccessRules,
        p: &AnnounceParams,
        now: u32,
        out: &mut [u8],
    ) -> Result<AnnounceAnswer, Refusal> {
        if !rules.permits(&p.info_hash) {
            return Err(Refusal::TorrentNotAllowed);
        }
        if !rules.permits_client(&p.peer_id) {
            return Err(Refusal::ClientNotAllowed);
        }
        let update = match p.event {
            Event::Stopped => PeerUpdate::Remove,
            _ if p.port == 0 => PeerUpdate::ReadOnly,
            _ if p.left == 0 => PeerUpdate::Seeder,
            _ => PeerUpdate::Leecher,
        };
        let is_seeder = p.left == 0;
        let numwant = if update == PeerUpdate::Remove {
            0
        } else {
            self.policy.numwant(p.numwant)
        };
        let peer_len = if p.ip.is_ipv4() { V4 } else { V6 };
        let mut shard = self.table.lock(&p.info_hash);
        let creates = matches!(update, PeerUpdate::Seeder | PeerUpdate::Leecher);
        let torrent = if creates {
            shard.get_or_insert(p.info_hash)
        } else {
            match shard.get_mut(&p.info_hash) {
                Some(t) => t,
                None => {
                    return Ok(AnnounceAnswer {
                        seeders: 0,
                        leechers: 0,
                        downloaded: 0,
                        peers: 0,
                        peer_len,
                    });
                }
            }
        };
        let h = *self.table.addr_hasher();
        let step = Step {
            update,
            is_seeder,
            numwant,
            picks: p.picks,
            now,
            // A plain re-announce before `min interval` is answered but
            // does not refresh the peer: it changes nothing and earns no
            // longer life. Announces with an event always apply.
            min_age: if p.event == Event::None {
                self.policy.min_interval
            } else {
                0
            },
        };
        let (became_seeder, peers) = match p.ip {
            IpAddr::V4(ip) => step.apply(&mut torrent.v4, v4_record(ip, p.port), &h, out),
            IpAddr::V6(ip) => {
                let addr = v6_record(ip, p.port);
                if creates {
                    step.apply(torrent.v6_mut(), addr, &h, out)
                } else if let Some(v6) = &mut torrent.v6 {
                    step.apply(v6, addr, &h, out)
                } else {
                    (false, 0)
                }
            }
        };
        let unstored_completion = update == PeerUpdate::ReadOnly && is_seeder;
        if p.event == Event::Completed && (became_seeder || unstored_completion) {
            torrent.downloaded = torrent.downloaded.saturating_add(1);
        }
        let answer = AnnounceAnswer {
            seeders: torrent.seeders() as u32,
            leechers: torrent.leechers() as u32,
            downloaded: torrent.downloaded,
            peers,
            peer_len,
        };
        if update == PeerUpdate::Remove {
            shard.remove_if_empty(&p.info_hash);
        }
        Ok(answer)
    }

    /// Counts for one info hash; unknown torrents answer zeros.
    pub fn scrape(&self, info_hash: &InfoHash) -> ScrapeCounts {
        let shard = self.table.lock(info_hash);
        shard
            .get(info_hash)
            .map_or_else(ScrapeCounts::default, |t| ScrapeCounts {
                seeders: t.seeders() as u32,
                completed: t.downloaded,
                leechers: t.leechers() as u32,
            })
    }
}

/// A peer's compact IPv4 record: address then port, big-endian.
fn v4_record(ip: std::net::Ipv4Addr, port: u16) -> [u8; V4] {
    let mut addr = [0u8; V4];
    addr[..4].copy_from_slice(&ip.octets());
    addr[4..].copy_from_slice(&port.to_be_bytes());
    addr
}

/// A peer's compact IPv6 record.
fn v6_record(ip: std::net::Ipv6Addr, port: u16) -> [u8; V6] {
    let mut addr = [0u8; V6];
    addr[..16].copy_from_slice(&ip.octets());
    addr[16..].copy_from_slice(&port.to_be_bytes());
    addr
}

/// The family-independent part of one announce.
struct Step {
    update: PeerUpdate,
    is_seeder: bool,
    numwant: usize,
    picks: Picks,
    now: u32,
    min_age: u32,
}

impl Step {
    /// Returns (became a seeder, peers written).
    fn apply<const N: usize>(
        &self,
        swarm: &mut Swarm<N>,
        addr: [u8; N],
        h: &super::peer_set::AddrHasher,
        out: &mut [u8],
    ) -> (bool, usize) {
        let became_seeder = swarm.update_with(addr, self.update, self.now, self.min_age, h);
        let peers = if self.numwant == 0 {
            0
        } else {
            swarm.select(self.is_seeder, out, self.numwant, &addr, self.picks)
        };
        (became_seeder, peers)
    }
}
