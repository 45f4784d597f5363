//! The one announce / scrape path, shared by every frontend: frontends
//! parse their wire format into `AnnounceParams` (random picks included),
//! call `Tracker::announce` with the time, and encode the `AnnounceAnswer`
//! plus the peers it wrote into their reply buffer.

use std::net::IpAddr;

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::access::AccessRules;
use super::change::{ChangeKind, PublishPolicy, SwarmChange};
use super::connection_id::ConnectionIdIssuer;
use super::ledger::{Account, Report, TransferLedger};
use super::peer_set::{Origin, V4, V6};
use super::rate_limit::RateLimiter;
use super::refusal::Refusal;
use super::swarm::{PeerUpdate, Picks, Torrent};
use super::table::{Download, PeerAddr, PeerChange, SwarmTable};
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
    /// Each reply's interval is drawn from [interval × (1 − this),
    /// interval] (`reply_interval`), so clients that started together
    /// spread out.
    pub interval_jitter: f64,
    /// HTTP replies list peers of both families (`peers` and `peers6`,
    /// the asker's own first), so an IPv4 client meets IPv6 seeders it may
    /// well reach; the frontend asks for it (`AnnounceParams::
    /// both_families`), UDP never can (BEP 15 has no field for it).
    pub dual_stack_replies: bool,
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
            interval_jitter: 0.1,
            dual_stack_replies: true,
        }
    }
}

impl AnnouncePolicy {
    /// The interval a reply tells, for a random `draw`: uniform over
    /// [interval × (1 − interval_jitter), interval] in whole seconds (the
    /// draw scaled, not taken modulo: no value is favoured).
    pub fn reply_interval(&self, draw: u32) -> u32 {
        let span = (f64::from(self.interval) * self.interval_jitter) as u64;
        let below = (u64::from(draw) * (span + 1)) >> 32;
        self.interval - below as u32
    }

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

/// What `Tracker::prefetch_peers` needs to know of an announce ahead of
/// it: its torrent, where its peer sits, and which reply windows it reads.
#[derive(Debug, Clone, Copy)]
pub struct PeerPrefetch {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The address the peer is listed under.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// In the seeders' set (left = 0).
    pub seeder: bool,
    /// Peers wanted (which reply windows).
    pub numwant: i32,
    /// Where the reply's peers will be taken from.
    pub picks: Picks,
}

/// Everything the swarm logic needs from an announce, whatever the wire.
#[derive(Debug, Clone)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// For the client filter only: peers are identified by address.
    pub peer_id: PeerId,
    /// The peer's address: the packet's source unless policy allows `ip`.
    /// IPv4-mapped IPv6 addresses must already be turned into IPv4.
    pub ip: IpAddr,
    /// The port the peer listens on. 0 (sent by clients behind a proxy) is
    /// served but never stored: nobody could connect to it.
    pub port: u16,
    /// The announce's event.
    pub event: Event,
    /// Bytes left to download (0: a seeder).
    pub left: u64,
    /// Running totals of the client's session, for private mode's ledger.
    pub uploaded: u64,
    /// Downloaded total of the session (with `uploaded`).
    pub downloaded: u64,
    /// Peers wanted (-1 or absent: the policy's default).
    pub numwant: i32,
    /// Where the reply's peers are taken from (random, drawn by the
    /// frontend: `Picks::draw`).
    pub picks: Picks,
    /// Also list peers of the other family, after the asker's own, while
    /// fewer than numwant were found (HTTP's dual-stack replies; UDP
    /// never: BEP 15 has no field for them).
    pub both_families: bool,
}

impl AnnounceParams {
    /// What the ledger needs from this announce, made under `passkey` by
    /// a client whose User-Agent is `agent`, and credited to `account`.
    pub fn report<'a>(&self, passkey: &'a [u8], agent: &'a [u8], account: Account) -> Report<'a> {
        Report {
            passkey,
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            event: self.event,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: self.left,
            account,
            ip: self.ip,
            port: self.port,
            agent,
        }
    }
}

/// What an announce got: the torrent's counts and the peers written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceAnswer {
    /// Seeders of the torrent (both families).
    pub seeders: u32,
    /// Leechers of the torrent (both families).
    pub leechers: u32,
    /// Completed downloads of the torrent (scrape's `downloaded`).
    pub downloaded: u32,
    /// Peers of the announcer's family written to the output, each
    /// `peer_len` bytes.
    pub peers: usize,
    /// 6 for IPv4 peers, 18 for IPv6.
    pub peer_len: usize,
    /// Peers of the other family written after them (`both_families`
    /// only), each of that family's length.
    pub other_peers: usize,
    /// What cluster mode publishes of this announce (never without it).
    pub change: Option<SwarmChange>,
}

/// One torrent's counts, as a scrape reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeCounts {
    /// Seeders.
    pub seeders: u32,
    /// Completed downloads.
    pub completed: u32,
    /// Leechers.
    pub leechers: u32,
}

/// Whether the access rules serve this torrent to this client software.
pub fn check_access(rules: &AccessRules, p: &AnnounceParams) -> Result<(), Refusal> {
    if !rules.permits(&p.info_hash) {
        return Err(Refusal::TorrentNotAllowed);
    }
    if !rules.permits_client(&p.peer_id) {
        return Err(Refusal::ClientNotAllowed);
    }
    Ok(())
}

/// Private mode: whether a request carrying `passkey` is served.
pub fn check_passkey(rules: &AccessRules, passkey: Option<&[u8]>) -> Result<(), Refusal> {
    if rules.permits_passkey(passkey) {
        Ok(())
    } else {
        Err(Refusal::UnknownPasskey)
    }
}

/// Per-address request limits (none by default).
#[derive(Default)]
pub struct Limits {
    /// UDP connects per address, if limited.
    pub connects: Option<RateLimiter>,
    /// Announces per address (UDP and HTTP), if limited.
    pub announces: Option<RateLimiter>,
}

/// The shared state every worker serves: the swarm table, the rules and
/// keys that decide who is served, and private mode's ledger. Built once
/// (`app::compose`); read through its methods.
pub struct Tracker {
    policy: AnnouncePolicy,
    table: SwarmTable,
    connection_ids: ConnectionIdIssuer,
    limits: Limits,
    /// Private mode's credits per passkey and torrent.
    ledger: TransferLedger,
    /// Cluster mode: which local changes become `SwarmChange`s.
    publish: Option<PublishPolicy>,
    /// Swapped whole on reload: readers never wait.
    access: ArcSwap<AccessRules>,
}

impl Tracker {
    /// A tracker with `policy`, an empty `table` and `connection_ids`' key; no
    /// rate limits, ledger, cluster publishing or access rules until given.
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
            publish: None,
        }
    }

    /// The operator's announce policy (interval, numwant, timeouts).
    pub fn policy(&self) -> &AnnouncePolicy {
        &self.policy
    }

    /// The swarms.
    pub fn table(&self) -> &SwarmTable {
        &self.table
    }

    /// The key that issues and checks UDP connection ids.
    pub fn connection_ids(&self) -> &ConnectionIdIssuer {
        &self.connection_ids
    }

    /// Private mode's credits (empty otherwise).
    pub fn ledger(&self) -> &TransferLedger {
        &self.ledger
    }

    /// Turn on cluster mode's changes (`AnnounceAnswer::change`, the
    /// sweep's expiries).
    pub fn with_publish(mut self, publish: PublishPolicy) -> Self {
        self.publish = Some(publish);
        self
    }

    /// Take credits by these rules.
    pub fn with_ledger(mut self, ledger: TransferLedger) -> Self {
        self.ledger = ledger;
        self
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

    /// The access rules in force, for one request (or one UDP batch): load
    /// them once and pass them to the ban check and the policy chain.
    pub fn rules(&self) -> arc_swap::Guard<Arc<AccessRules>> {
        self.access.load()
    }

    /// Expire the next `count` shards: peers past the timeout, and swarms of
    /// torrents the access rules no longer permit. In cluster mode each
    /// local peer that expired is handed to `expired` (to publish).
    pub fn sweep(&self, count: usize, now: u32, mut expired: impl FnMut(SwarmChange)) -> usize {
        let rules = self.access.load();
        let publish = self.publish.is_some();
        self.table.sweep_next(
            count,
            now,
            self.policy.peer_timeout,
            |h| rules.permits(h),
            |hash, addr, origin| {
                if let (true, Origin::Local, Some(addr)) =
                    (publish, origin, PeerAddr::from_bytes(addr))
                {
                    expired(SwarmChange {
                        info_hash: *hash,
                        addr,
                        kind: ChangeKind::Expired,
                        completed: false,
                    });
                }
            },
        )
    }

    /// Tests: apply one announce at tracker time `now` under the access
    /// rules in force (no rate limit, passkey or ledger: production goes
    /// through `engine::policy::announce`), writing the peers for it into
    /// `out`.
    #[cfg(test)]
    pub(crate) fn announce(
        &self,
        p: &AnnounceParams,
        now: u32,
        out: &mut [u8],
    ) -> Result<AnnounceAnswer, Refusal> {
        check_access(&self.rules(), p)?;
        Ok(self.announce_admitted(p, now, out))
    }

    /// Ask for the cache lines `announce_admitted(p)` will touch in a big
    /// swarm (the peer's slot, each reply window), so that
    /// the batch pipeline overlaps them with other datagrams' work. Takes
    /// the shard's lock briefly; changes nothing.
    pub fn prefetch_peers(&self, p: &PeerPrefetch) {
        let shard = self.table.lock(&p.info_hash);
        let Some(torrent) = shard.get(&p.info_hash) else {
            return;
        };
        let (h, seeder) = (self.table.addr_hasher(), p.seeder);
        let numwant = self.policy.numwant(p.numwant);
        match PeerAddr::new(p.ip, p.port) {
            PeerAddr::V4(addr) => {
                torrent
                    .v4
                    .prefetch_announce(&addr, seeder, numwant, p.picks, h);
            }
            PeerAddr::V6(addr) => {
                if let Some(v6) = &torrent.v6 {
                    v6.prefetch_announce(&addr, seeder, numwant, p.picks, h);
                }
            }
        }
    }

    /// Apply an announce the policy chain let in (`engine::policy`, the
    /// only caller besides tests) and write the peers for it into `out`
    /// (compact layout of the peer's family; as many as fit), then, with
    /// `both_families`, the other family's after them.
    pub(crate) fn announce_admitted(
        &self,
        p: &AnnounceParams,
        now: u32,
        out: &mut [u8],
    ) -> AnnounceAnswer {
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
        let change = PeerChange {
            addr: PeerAddr::new(p.ip, p.port),
            update,
            now,
            // A plain re-announce before `min interval` is answered but
            // does not refresh the peer: it changes nothing and earns no
            // longer life. Announces with an event always apply.
            min_age: if p.event == Event::None {
                self.policy.min_interval
            } else {
                0
            },
            origin: Origin::Local,
            download: match p.event {
                Event::Completed if update == PeerUpdate::ReadOnly && is_seeder => Download::Always,
                Event::Completed => Download::IfBecameSeeder,
                _ => Download::Never,
            },
        };
        let h = *self.table.addr_hasher();
        let both = p.both_families;
        let select = |t: &Torrent| match change.addr {
            _ if numwant == 0 => (0, 0),
            PeerAddr::V4(a) => {
                let own = t.v4.select(is_seeder, out, numwant, &a, p.picks);
                let other = match &t.v6 {
                    Some(v6) if both && own < numwant => {
                        // The asker's own IPv6 address is unknown; no
                        // stored peer has port 0, so nothing is skipped.
                        let rest = &mut out[own * V4..];
                        v6.select(is_seeder, rest, numwant - own, &[0; V6], p.picks)
                    }
                    _ => 0,
                };
                (own, other)
            }
            PeerAddr::V6(a) => {
                let own =
                    t.v6.as_ref()
                        .map_or(0, |v6| v6.select(is_seeder, out, numwant, &a, p.picks));
                let other = if both && own < numwant {
                    let rest = &mut out[own * V6..];
                    t.v4.select(is_seeder, rest, numwant - own, &[0; V4], p.picks)
                } else {
                    0
                };
                (own, other)
            }
        };
        let (applied, (peers, other_peers)) =
            self.table
                .lock(&p.info_hash)
                .apply(&p.info_hash, &change, &h, select);
        let published = self.publish.and_then(|publish| {
            publish.local_change(
                &p.info_hash,
                change.addr,
                update,
                change.min_age,
                &applied,
                now,
            )
        });
        AnnounceAnswer {
            seeders: applied.seeders,
            leechers: applied.leechers,
            downloaded: applied.downloaded,
            peers,
            peer_len: if p.ip.is_ipv4() { V4 } else { V6 },
            other_peers,
            change: published,
        }
    }

    /// Counts for one info hash: a torrent without peers still has its
    /// completed count (while kept: `tracker.max_idle_torrents`); unknown
    /// torrents answer zeros.
    pub fn scrape(&self, info_hash: &InfoHash) -> ScrapeCounts {
        let shard = self.table.lock(info_hash);
        match shard.get(info_hash) {
            Some(t) => ScrapeCounts {
                seeders: t.seeders() as u32,
                completed: t.downloaded,
                leechers: t.leechers() as u32,
            },
            None => ScrapeCounts {
                completed: shard.idle_downloads(info_hash).unwrap_or(0),
                ..ScrapeCounts::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AnnouncePolicy;

    #[test]
    fn reply_intervals_spread_over_their_band() {
        let p = AnnouncePolicy {
            interval: 1800,
            interval_jitter: 0.1,
            ..AnnouncePolicy::default()
        };
        assert_eq!(
            (p.reply_interval(0), p.reply_interval(u32::MAX)),
            (1800, 1620)
        );
        let seen: std::collections::HashSet<u32> = (0..1000u32)
            .map(|i| p.reply_interval(i.wrapping_mul(0x9e37_79b9)))
            .collect();
        assert!(seen.iter().all(|i| (1620..=1800).contains(i)) && seen.len() > 150);
        let off = AnnouncePolicy {
            interval_jitter: 0.0,
            ..p
        };
        assert_eq!(off.reply_interval(u32::MAX), 1800);
    }
}
