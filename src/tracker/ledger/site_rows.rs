//! What private mode on a database tells the site about its peers
//! (write-back): one `rt_peers` row per live session, the per user ×
//! torrent history columns of `rt_credits` (active, seeding, left, first
//! announce), and which torrents' counts may have moved (for
//! `rt_torrent_stats`).
//!
//! The ledger already follows every session of a registered passkey (its
//! running totals), so a session also keeps what its row needs: the ids,
//! the address it is listed under, the client's User-Agent (interned: a
//! few hundred distinct strings serve millions of sessions) and when it
//! began. `TransferLedger::site_rows` takes, like `cut`, what changed
//! since it was last asked, and rows are state, not sums: written twice
//! they say the same thing, so they need no batch numbers.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use hashbrown::{DefaultHashBuilder, HashMap};

use super::{Session, SessionKey, Shard, TransferLedger};
use crate::protocol::{InfoHash, PeerId};

/// A client's User-Agent as `rt_peers.agent` holds it: at most 64 bytes,
/// printable ASCII (anything else became `?`), so no site charset refuses
/// it.
pub type Agent = ArrayVec<u8, 64>;

/// An interned agent: index into `Agents`; 0 is the empty agent (UDP, or
/// none sent, or the table was full).
pub type AgentId = u16;

/// Distinct agents remembered; a further one is stored as empty and
/// counted (`Agents::refused`): a client can send anything as its agent.
pub const MAX_AGENTS: usize = 4096;

/// The agents seen, interned.
pub struct Agents {
    ids: RwLock<HashMap<Agent, AgentId, DefaultHashBuilder>>,
    names: RwLock<Vec<Agent>>,
    /// Set once `MAX_AGENTS` are kept: a new agent then costs no write
    /// lock.
    full: AtomicBool,
    /// Agents not remembered because the table was full.
    pub refused: AtomicU64,
}

impl Default for Agents {
    fn default() -> Self {
        Agents {
            ids: RwLock::default(),
            names: RwLock::new(vec![Agent::new()]),
            full: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }
}

impl Agents {
    /// The id of `raw` (cleaned as `Agent` says), added if new and there
    /// is room.
    pub fn intern(&self, raw: &[u8]) -> AgentId {
        if raw.is_empty() {
            return 0;
        }
        let agent = clean_agent(raw);
        let ids = self.ids.read().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = ids.get(&agent) {
            return id;
        }
        drop(ids);
        if self.full.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut ids = self.ids.write().unwrap_or_else(|e| e.into_inner());
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = ids.get(&agent) {
            return id;
        }
        if names.len() >= MAX_AGENTS {
            self.full.store(true, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let id = names.len() as AgentId;
        names.push(agent.clone());
        ids.insert(agent, id);
        id
    }

    /// Distinct agents kept (with the empty one).
    pub fn count(&self) -> usize {
        self.names.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The agent of `id` (empty if unknown).
    pub fn name(&self, id: AgentId) -> Agent {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.get(usize::from(id)).cloned().unwrap_or_default()
    }
}

/// The first 64 bytes of `raw`, each byte outside printable ASCII as `?`.
fn clean_agent(raw: &[u8]) -> Agent {
    raw.iter()
        .take(64)
        .map(|&b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .collect()
}

/// What a session's `rt_peers` row says beyond its running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerDetail {
    /// The site's user id (0: not known, the session came from a snapshot
    /// or the journal and has not announced since; it has no row).
    pub user_id: u64,
    /// The site's torrent id.
    pub torrent_id: u64,
    /// The address the peer is listed under.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its client's User-Agent.
    pub agent: AgentId,
    /// Bytes left, as last reported.
    pub left: u64,
    /// Tracker seconds of the session's first announce.
    pub since: u32,
}

impl PeerDetail {
    /// A session restored without its details.
    pub const UNKNOWN: PeerDetail = PeerDetail {
        user_id: 0,
        torrent_id: 0,
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        agent: 0,
        left: 0,
        since: 0,
    };

    pub(super) fn known(&self) -> bool {
        self.user_id != 0 && self.torrent_id != 0
    }
}

/// `rt_peers`'s primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRowKey {
    /// The site's torrent id.
    pub torrent_id: u64,
    /// The site's user id.
    pub user_id: u64,
    /// The client's peer id.
    pub peer_id: PeerId,
}

/// One `rt_peers` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    /// Which peer.
    pub key: PeerRowKey,
    /// Listed under.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its client's User-Agent.
    pub agent: Agent,
    /// Running upload total of the session, as last reported.
    pub uploaded: u64,
    /// Running download total, as last reported.
    pub downloaded: u64,
    /// Bytes left, as last reported.
    pub left: u64,
    /// `left` was 0.
    pub seeder: bool,
    /// Unix seconds of the session's first announce.
    pub created_at: u64,
    /// Unix seconds of its last.
    pub updated_at: u64,
}

/// The history columns of one user's `rt_credits` row on one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRow {
    /// The site's user id.
    pub user_id: u64,
    /// The site's torrent id.
    pub torrent_id: u64,
    /// Unix seconds of the earliest first announce of its live sessions
    /// (the database keeps the earliest ever).
    pub first_announce: Option<u64>,
    /// The user has a live peer in the torrent.
    pub active: bool,
    /// One of them is a seeder.
    pub seeding: bool,
    /// Bytes left as its latest announce said (None: no live peer, the
    /// last value stands).
    pub left: Option<u64>,
}

/// A session that ended, for its row's delete and its pair's history.
#[derive(Debug, Clone)]
pub(super) struct GoneRow {
    pub(super) info_hash: InfoHash,
    pub(super) key: PeerRowKey,
}

/// What changed since the last `site_rows` (everything with `all`).
#[derive(Debug, Default)]
pub struct SiteRows {
    /// Rows of sessions that announced.
    pub peers: Vec<PeerRow>,
    /// Rows of sessions that ended (stopped, expired, or their user or
    /// torrent withdrawn).
    pub gone: Vec<PeerRowKey>,
    /// History of every user × torrent where a session began or ended or
    /// its bytes left moved (a seeder's re-announce changes none).
    pub history: Vec<HistoryRow>,
    /// Torrents whose counts may have moved, likewise: info hash and site
    /// id.
    pub torrents: Vec<(InfoHash, u64)>,
}

impl TransferLedger {
    /// The rows that changed since the last call (every live session's
    /// with `all`), shard by shard. Only with `LedgerRules::write_back`.
    pub fn site_rows(&self, all: bool) -> SiteRows {
        let mut rows = SiteRows::default();
        if !self.rules.write_back {
            return rows;
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            self.shard_rows(&mut shard, all, &mut rows);
        }
        rows
    }

    /// `site_rows` of one shard (every session of a torrent is in one).
    fn shard_rows(&self, shard: &mut Shard, all: bool, rows: &mut SiteRows) {
        let unix = |t: u32| self.rules.unix_start.saturating_add(u64::from(t));
        // Per (user, torrent) whose history may have moved.
        let mut touched: HashMap<(u64, u64), (HistoryRow, InfoHash), DefaultHashBuilder> =
            HashMap::default();
        let gone: Vec<GoneRow> = shard.gone.drain(..).collect();
        for g in &gone {
            let pair = (g.key.user_id, g.key.torrent_id);
            touched.insert(pair, (idle(g.key), g.info_hash));
        }
        for (k, s) in shard.sessions.iter_mut() {
            let pair_changed = std::mem::take(&mut s.pair_changed) || all;
            if !std::mem::take(&mut s.row_changed) && !all || !s.detail.known() {
                continue;
            }
            // Port 0 is served but never listed (nobody could connect).
            if s.detail.port != 0 {
                let mut row = peer_row(k, s, unix);
                row.agent = self.agents.name(s.detail.agent);
                rows.peers.push(row);
            }
            if pair_changed {
                let pair = (s.detail.user_id, s.detail.torrent_id);
                touched.insert(pair, (idle(row_key(k, s)), k.info_hash));
            }
        }
        if touched.is_empty() {
            return;
        }
        let live = count_live(shard, &mut touched, unix);
        // A row key a live session still has (the user's other passkey,
        // same peer id) is not deleted.
        rows.gone
            .extend(gone.iter().map(|g| g.key).filter(|k| !live.contains(k)));
        let mut torrents = HashSet::new();
        for (h, info_hash) in touched.into_values() {
            if torrents.insert(h.torrent_id) {
                rows.torrents.push((info_hash, h.torrent_id));
            }
            rows.history.push(h);
        }
    }
}

/// Every live session of a touched (user, torrent) counts toward its
/// history, changed or not; returns the row keys of those sessions.
fn count_live(
    shard: &Shard,
    touched: &mut HashMap<(u64, u64), (HistoryRow, InfoHash), DefaultHashBuilder>,
    unix: impl Fn(u32) -> u64,
) -> HashSet<PeerRowKey> {
    let mut latest: HashMap<(u64, u64), u32, DefaultHashBuilder> = HashMap::default();
    let mut live = HashSet::new();
    for (k, s) in shard.sessions.iter().filter(|(_, s)| s.detail.known()) {
        let pair = (s.detail.user_id, s.detail.torrent_id);
        let Some((h, _)) = touched.get_mut(&pair) else {
            continue;
        };
        live.insert(row_key(k, s));
        let first = unix(s.detail.since);
        h.first_announce = Some(h.first_announce.map_or(first, |f| f.min(first)));
        h.active = true;
        h.seeding |= s.seeder;
        let newest = latest.entry(pair).or_insert(s.last_seen);
        if s.last_seen >= *newest {
            *newest = s.last_seen;
            h.left = Some(s.detail.left);
        }
    }
    live
}

/// A pair's history before its live sessions are counted: no peer.
fn idle(key: PeerRowKey) -> HistoryRow {
    HistoryRow {
        user_id: key.user_id,
        torrent_id: key.torrent_id,
        first_announce: None,
        active: false,
        seeding: false,
        left: None,
    }
}

pub(super) fn row_key(k: &SessionKey, s: &Session) -> PeerRowKey {
    PeerRowKey {
        torrent_id: s.detail.torrent_id,
        user_id: s.detail.user_id,
        peer_id: k.peer_id,
    }
}

fn peer_row(k: &SessionKey, s: &Session, unix: impl Fn(u32) -> u64) -> PeerRow {
    PeerRow {
        key: row_key(k, s),
        ip: s.detail.ip,
        port: s.detail.port,
        agent: Agent::new(),
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        left: s.detail.left,
        seeder: s.seeder,
        created_at: unix(s.detail.since),
        updated_at: unix(s.last_seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;
    use crate::tracker::ledger::{Account, LedgerRules, Report};

    fn report(peer: u8, event: Event, left: u64, agent: &'static [u8]) -> Report<'static> {
        Report {
            passkey: b"abcdef0123456789",
            info_hash: InfoHash([4; 20]),
            peer_id: PeerId([peer; 20]),
            event,
            uploaded: 0,
            downloaded: 0,
            left,
            account: Account {
                user_id: 7,
                torrent_id: 9,
                ..Account::UNIT
            },
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)),
            port: 6000 + u16::from(peer),
            agent,
        }
    }

    #[test]
    fn rows_say_what_changed_and_history_counts_every_live_session_of_the_pair() {
        let l = TransferLedger::new(LedgerRules {
            write_back: true,
            unix_start: 1_000_000,
            ..LedgerRules::default()
        });
        l.record(&report(1, Event::Started, 50, b"Deluge/2.1"), 10)
            .unwrap();
        l.record(&report(2, Event::Started, 0, b""), 20).unwrap();
        let rows = l.site_rows(false);
        assert_eq!(rows.peers.len(), 2);
        let leecher = rows.peers.iter().find(|r| r.port == 6001).unwrap();
        assert_eq!(&leecher.agent[..], b"Deluge/2.1");
        assert_eq!((leecher.created_at, leecher.seeder), (1_000_010, false));
        assert_eq!(rows.torrents, [(InfoHash([4; 20]), 9)]);
        let h = rows.history[0];
        assert_eq!((h.active, h.seeding, h.left), (true, true, Some(0)));
        assert_eq!(h.first_announce, Some(1_000_010));
        // Nothing changed since: nothing to say.
        let quiet = l.site_rows(false);
        assert!(quiet.peers.is_empty() && quiet.history.is_empty());
        // A seeder's re-announce: its row, but no history or counts moved.
        l.record(&report(2, Event::None, 0, b""), 25).unwrap();
        let again = l.site_rows(false);
        assert_eq!(again.peers.len(), 1);
        assert!(again.history.is_empty() && again.torrents.is_empty());
        // One stops: its row goes; the pair is still active through the
        // other, which last said 50 left.
        l.record(&report(2, Event::Stopped, 0, b""), 30).unwrap();
        let rows = l.site_rows(false);
        assert_eq!(rows.gone.len(), 1);
        assert_eq!(rows.gone[0].peer_id, PeerId([2; 20]));
        let h = rows.history[0];
        assert_eq!((h.active, h.seeding, h.left), (true, false, Some(50)));
        // The last one times out: inactive, `left` as it was.
        assert_eq!(l.expire(10_000, 100), 1);
        let rows = l.site_rows(false);
        let h = rows.history[0];
        assert_eq!((h.active, h.seeding, h.left), (false, false, None));
        assert_eq!(l.site_rows(true).peers.len(), 0);
    }

    #[test]
    fn agents_are_cleaned_interned_and_capped() {
        let a = Agents::default();
        let id = a.intern(b"Transmission/4.0\n\xff");
        assert_eq!(&a.name(id)[..], b"Transmission/4.0??");
        assert_eq!(a.intern(b"Transmission/4.0\n\xff"), id);
        assert_eq!(a.intern(&[b'x'; 100]), id + 1);
        assert_eq!(a.name(id + 1).len(), 64);
        for i in 0..MAX_AGENTS {
            a.intern(format!("junk/{i}").as_bytes());
        }
        assert_eq!(a.count(), MAX_AGENTS);
        assert_eq!(a.intern(b"one more"), 0);
        assert!(a.refused.load(Ordering::Relaxed) > 0);
    }
}
