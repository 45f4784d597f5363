//! Private mode's transfer ledger: the bytes each passkey's announces
//! report as uploaded and downloaded, per torrent, for a private site to
//! credit its users.
//!
//! Clients report running totals for their current session of a torrent
//! (they start at 0 with `started`), so the ledger keeps the last report of
//! every session — a (passkey, torrent, peer id) triple — and credits the
//! difference. Credits pile up per (passkey, torrent) as *pending* until an
//! exporter takes them (`take_pending`); one that fails to store them puts
//! them back (`restore`), so nothing is lost between the tracker and a
//! database. Cumulative totals per passkey stay for the process lifetime
//! (and in snapshots).
//!
//! Decisions, each the conservative one for a site that pays in ratio:
//! - A session's first report counts in full only with `started`; without
//!   it (the tracker restarted, or the session expired) it only sets the
//!   baseline, since part of it may already have been credited.
//! - A report below the last one means the client restarted its counters
//!   without saying so: the report itself is the delta.
//! - `stopped` credits the last difference and ends the session.
//! - No session moves faster than `max_rate` bytes a second each way
//!   (`private.max_rate`, 1 GiB/s by default): an increase is credited up
//!   to the seconds since the session's last report (at least one) times
//!   the rate; a first report with `started` counts as one second. The
//!   rest is not credited, only counted (`implausible_bytes`) and logged
//!   once per passkey: a total of 2^64-1, or a jump of a petabyte, earns
//!   what a fast client could have moved and no more. The same rate bounds
//!   a passkey over all its sessions (`PasskeyBudget`): new sessions (a
//!   fresh peer id, `started` with a made-up total, `stopped`, again) or
//!   many torrents at once do not multiply it.
//!
//! Memory: sessions exist only for registered passkeys and are forgotten
//! after the peer timeout (`expire`, run with the swarm sweep).
//!
//! Exactly once, across crashes: pending credits are sealed into numbered
//! batches (`seal`); a batch stays until the exporter confirms it is stored
//! (`confirm`). A snapshot holds the sessions' baselines together with the
//! pending credits and the unconfirmed batches, so after a restart nothing
//! credited since the snapshot is counted twice (its baselines are the
//! snapshot's) and nothing sealed before it is lost (the exporter skips
//! batches the journal already has, by number).

mod live_sessions;
mod site_rows;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use hashbrown::{DefaultHashBuilder, HashMap};

use super::refusal::Refusal;
use crate::protocol::{Event, InfoHash, PeerId};
pub use live_sessions::{LiveSession, MAX_LISTED, PendingBytes};
use site_rows::GoneRow;
pub use site_rows::{
    Agent, AgentId, Agents, HistoryRow, MAX_AGENTS, PeerDetail, PeerRow, PeerRowKey, SiteRows,
};

/// A passkey as registered: 16 to 64 letters and digits.
pub type Passkey = ArrayVec<u8, 64>;

/// What one passkey earned on one torrent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credit {
    /// The site's ids (database mode; 0 with a passkey file).
    pub user_id: u64,
    /// The site's torrent id (0 with a passkey file).
    pub torrent_id: u64,
    /// Credited bytes: reported bytes × the torrent's factor × the user's.
    pub uploaded: u64,
    /// Credited download.
    pub downloaded: u64,
    /// Reported bytes.
    pub raw_uploaded: u64,
    /// Reported download.
    pub raw_downloaded: u64,
    /// Seconds a peer of the user seeded the torrent.
    pub seed_seconds: u64,
    /// Snatches: `completed` announces that made a peer a seeder.
    pub completed: u32,
    /// Unix seconds of the latest announce credited.
    pub last_announce: u64,
}

impl Credit {
    /// Add `other` (the newer) to these credits.
    pub fn add(&mut self, other: &Credit) {
        (self.user_id, self.torrent_id) = (other.user_id, other.torrent_id);
        self.uploaded = self.uploaded.saturating_add(other.uploaded);
        self.downloaded = self.downloaded.saturating_add(other.downloaded);
        self.raw_uploaded = self.raw_uploaded.saturating_add(other.raw_uploaded);
        self.raw_downloaded = self.raw_downloaded.saturating_add(other.raw_downloaded);
        self.seed_seconds = self.seed_seconds.saturating_add(other.seed_seconds);
        self.completed = self.completed.saturating_add(other.completed);
        self.last_announce = self.last_announce.max(other.last_announce);
    }

    fn is_empty(&self) -> bool {
        self.raw_uploaded == 0
            && self.raw_downloaded == 0
            && self.seed_seconds == 0
            && self.completed == 0
    }
}

/// Credits of one passkey on one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Whose credit.
    pub passkey: Passkey,
    /// On which torrent.
    pub info_hash: InfoHash,
    /// What was earned.
    pub credit: Credit,
}

/// Bytes credited to one passkey, over all torrents, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Credited upload.
    pub uploaded: u64,
    /// Credited download.
    pub downloaded: u64,
}

impl Totals {
    fn add(&mut self, uploaded: u64, downloaded: u64) {
        self.uploaded = self.uploaded.saturating_add(uploaded);
        self.downloaded = self.downloaded.saturating_add(downloaded);
    }
}

/// Who an announce credits, and at what rate: the site's user and torrent
/// ids and the product of their factors (freeleech: download factor 0;
/// double upload: upload factor 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Account {
    /// The site's user id (0 with a passkey file).
    pub user_id: u64,
    /// The site's torrent id (0 with a passkey file).
    pub torrent_id: u64,
    /// Upload multiplier (user's × torrent's; 2: double upload).
    pub upload_factor: f64,
    /// Download multiplier (user's × torrent's; 0: freeleech).
    pub download_factor: f64,
}

impl Account {
    /// A passkey file's account: no ids, bytes count as reported.
    pub const UNIT: Account = Account {
        user_id: 0,
        torrent_id: 0,
        upload_factor: 1.0,
        download_factor: 1.0,
    };
}

/// What one announce reports, for the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The passkey the announce carried.
    pub passkey: &'a [u8],
    /// The torrent.
    pub info_hash: InfoHash,
    /// The client's peer id (a session is a passkey, torrent and peer id).
    pub peer_id: PeerId,
    /// The announce's event.
    pub event: Event,
    /// The client's running upload total for this session.
    pub uploaded: u64,
    /// The client's running download total for this session.
    pub downloaded: u64,
    /// Bytes left to download (0: a seeder).
    pub left: u64,
    /// Whom it credits and at what rate.
    pub account: Account,
    /// The address the peer is listed under.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its HTTP User-Agent (empty over UDP).
    pub agent: &'a [u8],
}

/// One client session as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// Whose session.
    pub passkey: Passkey,
    /// On which torrent.
    pub info_hash: InfoHash,
    /// Of which client.
    pub peer_id: PeerId,
    /// The last upload total credited against.
    pub uploaded: u64,
    /// The last download total credited against.
    pub downloaded: u64,
    /// Seconds since its last announce.
    pub age: u32,
    /// Whether its last announce was a seeder's.
    pub seeder: bool,
}

/// The whole ledger, for a snapshot.
#[derive(Debug, Default)]
pub struct LedgerState {
    /// Every live session.
    pub sessions: Vec<SessionState>,
    /// Credits not yet sealed into a batch.
    pub pending: Vec<Transfer>,
    /// Credited bytes per passkey since the start.
    pub totals: Vec<(Passkey, Totals)>,
    /// Sealed batches not yet confirmed stored.
    pub batches: Vec<Batch>,
    /// The number the next batch gets.
    pub next_batch: u64,
}

/// One client session: a peer id of a passkey in a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// Whose session.
    pub passkey: Passkey,
    /// On which torrent.
    pub info_hash: InfoHash,
    /// Of which client.
    pub peer_id: PeerId,
}

/// The last running totals a session reported.
#[derive(Clone, Copy)]
struct Session {
    uploaded: u64,
    downloaded: u64,
    last_seen: u32,
    seeder: bool,
    /// Reported since the last `cut` (the credit journal writes it then).
    changed: bool,
    /// Reported since the last `site_rows` (write-back).
    row_changed: bool,
    /// Began, or its seeder flag or bytes left moved, since the last
    /// `site_rows`: its user × torrent's history and its torrent's counts
    /// may have changed (a seeder's re-announce changes neither).
    pair_changed: bool,
    /// What its `rt_peers` row says besides the totals.
    detail: PeerDetail,
}

impl Session {
    /// As a snapshot or the credit journal keeps it, its age at `now`.
    fn state(&self, k: &SessionKey, now: u32) -> SessionState {
        SessionState {
            passkey: k.passkey.clone(),
            info_hash: k.info_hash,
            peer_id: k.peer_id,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            age: now.saturating_sub(self.last_seen),
            seeder: self.seeder,
        }
    }
}

/// What `cut` takes from the ledger at one instant: every credit pending,
/// and the session baselines they were measured against — those changed
/// since the last cut (or all of them), and those that ended.
#[derive(Debug, Default)]
pub struct Cut {
    /// The credits pending at the cut.
    pub transfers: Vec<Transfer>,
    /// The baselines they were measured against.
    pub sessions: Vec<SessionState>,
    /// Sessions that ended since the last cut.
    pub removed: Vec<SessionKey>,
}

#[derive(Default)]
struct Shard {
    sessions: HashMap<SessionKey, Session, DefaultHashBuilder>,
    /// Sessions per (passkey, torrent), for the peer cap.
    peers: HashMap<(Passkey, InfoHash), u32, DefaultHashBuilder>,
    pending: HashMap<(Passkey, InfoHash), Credit, DefaultHashBuilder>,
    totals: HashMap<Passkey, Totals, DefaultHashBuilder>,
    /// Sessions ended since the last cut (only with `LedgerRules::cuts`).
    removed: Vec<SessionKey>,
    /// Rows of sessions ended since the last `site_rows` (only with
    /// `LedgerRules::write_back`).
    gone: Vec<GoneRow>,
}

impl Shard {
    fn insert_session(&mut self, key: SessionKey, session: Session) {
        let pair = (key.passkey.clone(), key.info_hash);
        if self.sessions.insert(key, session).is_none() {
            *self.peers.entry(pair).or_default() += 1;
        }
    }

    /// Every pending credit, leaving none.
    fn drain_pending(&mut self) -> impl Iterator<Item = Transfer> + '_ {
        self.pending
            .drain()
            .map(|((passkey, info_hash), credit)| Transfer {
                passkey,
                info_hash,
                credit,
            })
    }

    fn remove_session(&mut self, key: &SessionKey, rules: &LedgerRules) {
        if let Some(s) = self.sessions.remove(key) {
            forget_peer(&mut self.peers, key);
            if rules.cuts {
                self.removed.push(key.clone());
            }
            gone_row(&mut self.gone, key, &s, rules);
        }
    }
}

/// With write-back, remember the row of an ended session `s` for its
/// delete.
fn gone_row(gone: &mut Vec<GoneRow>, key: &SessionKey, s: &Session, rules: &LedgerRules) {
    if rules.write_back && s.detail.user_id != 0 && s.detail.torrent_id != 0 {
        gone.push(GoneRow {
            info_hash: key.info_hash,
            key: site_rows::row_key(key, s),
        });
    }
}

fn forget_peer(
    peers: &mut HashMap<(Passkey, InfoHash), u32, DefaultHashBuilder>,
    key: &SessionKey,
) {
    let pair = (key.passkey.clone(), key.info_hash);
    if let Some(n) = peers.get_mut(&pair) {
        *n -= 1;
        if *n == 0 {
            peers.remove(&pair);
        }
    }
}

/// Shards by info hash, so workers announcing different torrents rarely
/// wait for each other.
const SHARDS: usize = 64;

/// The rules credits are taken by (from `[private]` and `[tracker]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRules {
    /// Most sessions (peer ids) of one passkey in one torrent; 0: no cap.
    pub max_peers: u32,
    /// The longest gap between two announces of a seeder that counts as
    /// seeding: the peer timeout, as long as the swarm listed it.
    pub seed_gap_cap: u32,
    /// The unix second tracker time 0 stands for.
    pub unix_start: u64,
    /// Whether ended sessions are kept for the next `cut` (private mode
    /// on a database, whose credit journal records them).
    pub cuts: bool,
    /// Bytes a second a session may plausibly move each way.
    pub max_rate: u64,
    /// Whether sessions' rows are kept for the site's `rt_peers`
    /// (`private.write_back`, on a database).
    pub write_back: bool,
}

/// The default `max_rate`: 1 GiB/s (past a 10 Gbit/s link).
pub const DEFAULT_MAX_RATE: u64 = 1 << 30;

/// Passkeys remembered as already logged for implausible reports; past
/// this many, further ones are counted only.
const WARNED_PASSKEYS: usize = 65_536;

impl Default for LedgerRules {
    fn default() -> Self {
        LedgerRules {
            max_peers: 0,
            seed_gap_cap: 3600,
            unix_start: 0,
            cuts: false,
            max_rate: DEFAULT_MAX_RATE,
            write_back: false,
        }
    }
}

/// Shards of the per-passkey budgets.
const BUDGET_SHARDS: usize = 16;

/// What one passkey may still be credited each way: the rate's allowance
/// since it was last credited, at most the rate times the longest gap a
/// seeder's announces may have (what a client announcing that seldom
/// moved at the rate); a passkey first credited starts with one second's.
#[derive(Debug, Clone, Copy)]
struct PasskeyBudget {
    at: u32,
    up: u64,
    down: u64,
}

/// Reports whose increase was more than a session could have moved.
#[derive(Default)]
pub struct Implausible {
    /// Reported bytes not credited, both directions.
    pub bytes: AtomicU64,
    /// Reports not fully credited.
    pub reports: AtomicU64,
    warned: Mutex<HashSet<Passkey>>,
}

/// Private mode's credits: per passkey and torrent what its sessions'
/// reports earned, sealed into numbered batches for export (a journal file
/// or the site's database), with the per-session and per-passkey rate caps.
pub struct TransferLedger {
    rules: LedgerRules,
    shards: Box<[Mutex<Shard>]>,
    outbox: Mutex<Outbox>,
    /// Per passkey, over all its sessions (taken inside a ledger shard's
    /// lock, never the other way round).
    budgets: Box<[Mutex<HashMap<Passkey, PasskeyBudget, DefaultHashBuilder>>]>,
    /// What was refused as more than a session could have moved.
    pub implausible: Implausible,
    /// The User-Agents of sessions (write-back).
    pub agents: Agents,
}

/// Credits sealed for export, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Its number, from 1 (exported exactly once by it).
    pub id: u64,
    /// Its credits.
    pub transfers: Vec<Transfer>,
}

#[derive(Debug)]
struct Outbox {
    next_id: u64,
    /// Sealed, not yet confirmed stored; oldest first.
    unconfirmed: Vec<Batch>,
}

impl Default for TransferLedger {
    fn default() -> Self {
        TransferLedger::new(LedgerRules::default())
    }
}

impl TransferLedger {
    /// A ledger that credits by `rules`.
    pub fn new(rules: LedgerRules) -> Self {
        TransferLedger {
            rules,
            outbox: Mutex::new(Outbox {
                next_id: 1,
                unconfirmed: Vec::new(),
            }),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            budgets: (0..BUDGET_SHARDS).map(|_| Mutex::default()).collect(),
            implausible: Implausible::default(),
            agents: Agents::default(),
        }
    }

    fn shard(&self, info_hash: &InfoHash) -> std::sync::MutexGuard<'_, Shard> {
        let i = usize::from(info_hash.0[0]) % SHARDS;
        // A panic while holding a shard leaves consistent maps (every update
        // is a single insert), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The unix second tracker second `now` stands for.
    pub fn unix_at(&self, now: u32) -> u64 {
        self.rules.unix_start.saturating_add(u64::from(now))
    }

    /// Credit one announce at tracker time `now`, before the swarm sees
    /// it: a new session beyond the peer cap is refused (and changes
    /// nothing). A passkey that is not 16–64 bytes never passed the
    /// passkey check; it is ignored.
    pub fn record(&self, r: &Report<'_>, now: u32) -> Result<(), Refusal> {
        let Ok(passkey) = Passkey::try_from(r.passkey) else {
            return Ok(());
        };
        let key = SessionKey {
            passkey,
            info_hash: r.info_hash,
            peer_id: r.peer_id,
        };
        let mut shard = self.shard(&r.info_hash);
        let last = shard.sessions.get(&key).copied();
        if last.is_none() && r.event != Event::Stopped && self.rules.max_peers > 0 {
            let pair = (key.passkey.clone(), key.info_hash);
            if shard.peers.get(&pair).copied().unwrap_or(0) >= self.rules.max_peers {
                return Err(Refusal::PeerLimit);
            }
        }
        let credit = self.credit(r, last, now);
        if r.event == Event::Stopped {
            shard.remove_session(&key, &self.rules);
        } else {
            let session = Session {
                uploaded: r.uploaded,
                downloaded: r.downloaded,
                last_seen: now,
                seeder: r.left == 0,
                changed: true,
                row_changed: true,
                pair_changed: last
                    .is_none_or(|l| l.pair_changed || l.detail.left != r.left || !l.detail.known()),
                detail: self.detail(r, last, now),
            };
            shard.insert_session(key.clone(), session);
        }
        if credit.is_empty() {
            return Ok(());
        }
        shard
            .pending
            .entry((key.passkey.clone(), key.info_hash))
            .or_default()
            .add(&credit);
        shard
            .totals
            .entry(key.passkey)
            .or_default()
            .add(credit.uploaded, credit.downloaded);
        Ok(())
    }

    /// What the session's row says after `r` (write-back writes it; the
    /// management API shows where its peer is listed).
    fn detail(&self, r: &Report<'_>, last: Option<Session>, now: u32) -> PeerDetail {
        let since = match last {
            Some(l) if l.detail.known() => l.detail.since,
            _ => now,
        };
        PeerDetail {
            user_id: r.account.user_id,
            torrent_id: r.account.torrent_id,
            ip: r.ip,
            port: r.port,
            // Only write-back shows agents: without it none is interned.
            agent: if self.rules.write_back {
                self.agents.intern(r.agent)
            } else {
                0
            },
            left: r.left,
            since,
        }
    }

    /// What a report earns after the session's `last` one.
    fn credit(&self, r: &Report<'_>, last: Option<Session>, now: u32) -> Credit {
        let (up, down) = match last {
            Some(last) => (
                delta(last.uploaded, r.uploaded),
                delta(last.downloaded, r.downloaded),
            ),
            None if r.event == Event::Started => (r.uploaded, r.downloaded),
            None => (0, 0),
        };
        let seconds = last.map_or(1, |l| now.saturating_sub(l.last_seen).max(1));
        let reported = (up, down);
        let (up, down) = self.plausible(up, down, seconds);
        let (up, down) = self.within_budget(r.passkey, up, down, now);
        if (up, down) != reported {
            self.count_implausible(r.passkey, reported, (up, down));
        }
        let seed_seconds = match last {
            Some(last) if last.seeder => now
                .saturating_sub(last.last_seen)
                .min(self.rules.seed_gap_cap),
            _ => 0,
        };
        // A retransmitted `completed` finds its session a seeder already.
        let snatch = r.event == Event::Completed && r.left == 0 && last.is_none_or(|s| !s.seeder);
        let a = &r.account;
        Credit {
            user_id: a.user_id,
            torrent_id: a.torrent_id,
            uploaded: scaled(up, a.upload_factor),
            downloaded: scaled(down, a.download_factor),
            raw_uploaded: up,
            raw_downloaded: down,
            seed_seconds: u64::from(seed_seconds),
            completed: u32::from(snatch),
            last_announce: self.rules.unix_start.saturating_add(u64::from(now)),
        }
    }

    /// `up` and `down` as far as `seconds` at `max_rate` could have moved
    /// them.
    fn plausible(&self, up: u64, down: u64, seconds: u32) -> (u64, u64) {
        let most = self.rules.max_rate.saturating_mul(u64::from(seconds));
        (up.min(most), down.min(most))
    }

    /// `up` and `down` as far as the passkey's budget over all its
    /// sessions allows at tracker second `now`.
    fn within_budget(&self, passkey: &[u8], up: u64, down: u64, now: u32) -> (u64, u64) {
        if up == 0 && down == 0 {
            return (0, 0);
        }
        let Ok(key) = Passkey::try_from(passkey) else {
            return (0, 0);
        };
        let rate = self.rules.max_rate;
        let full = rate.saturating_mul(u64::from(self.rules.seed_gap_cap.max(1)));
        let mut shard = self.budgets[budget_shard(&key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let b = shard.entry(key).or_insert(PasskeyBudget {
            at: now,
            up: rate,
            down: rate,
        });
        let refill = rate.saturating_mul(u64::from(now.saturating_sub(b.at)));
        b.at = b.at.max(now);
        b.up = b.up.saturating_add(refill).min(full);
        b.down = b.down.saturating_add(refill).min(full);
        let credited = (up.min(b.up), down.min(b.down));
        b.up -= credited.0;
        b.down -= credited.1;
        credited
    }

    /// A report of `reported` bytes credited only `credited`: counted, and
    /// logged once per passkey.
    fn count_implausible(&self, passkey: &[u8], reported: (u64, u64), credited: (u64, u64)) {
        let dropped = (reported.0 - credited.0).saturating_add(reported.1 - credited.1);
        let counts = &self.implausible;
        // Saturating: one report may claim nearly 2^64 bytes.
        let _ = counts
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(dropped))
            });
        counts.reports.fetch_add(1, Ordering::Relaxed);
        let mut warned = counts.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() < WARNED_PASSKEYS
            && let Ok(key) = Passkey::try_from(passkey)
            && warned.insert(key)
        {
            tracing::warn!(
                "private: passkey {} reported {} bytes up and {} down, more than private.max_rate allows; \
                 credited {} and {}; further reports of it are counted only",
                String::from_utf8_lossy(passkey),
                reported.0,
                reported.1,
                credited.0,
                credited.1
            );
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seal the pending credits into a new batch (if there are any) and
    /// return every batch not yet confirmed, oldest first.
    pub fn seal(&self) -> Vec<Batch> {
        let transfers = self.take_pending();
        let mut outbox = self.outbox();
        if !transfers.is_empty() {
            let id = outbox.next_id;
            outbox.next_id = id.saturating_add(1);
            outbox.unconfirmed.push(Batch { id, transfers });
        }
        outbox.unconfirmed.clone()
    }

    /// Batches up to `id` are stored: forget them.
    pub fn confirm(&self, id: u64) {
        let mut outbox = self.outbox();
        outbox.unconfirmed.retain(|b| b.id > id);
        // Numbers never go back, whatever the store says it holds.
        outbox.next_id = outbox.next_id.max(id.saturating_add(1));
    }

    /// The sealed batches not yet confirmed and the next batch number.
    pub fn batches(&self) -> (Vec<Batch>, u64) {
        let outbox = self.outbox();
        (outbox.unconfirmed.clone(), outbox.next_id)
    }

    /// Take back sealed batches and the next number from a snapshot.
    pub fn import_batches(&self, batches: Vec<Batch>, next_id: u64) {
        let mut outbox = self.outbox();
        outbox.next_id = outbox.next_id.max(next_id);
        for b in batches {
            outbox.next_id = outbox.next_id.max(b.id.saturating_add(1));
            outbox.unconfirmed.push(b);
        }
        outbox.unconfirmed.sort_by_key(|b| b.id);
    }

    /// Take every credit not yet sealed, leaving none pending.
    pub fn take_pending(&self) -> Vec<Transfer> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(
                shard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain_pending(),
            );
        }
        out
    }

    /// Put back credits an exporter could not store (they add to any
    /// credited since).
    pub fn restore(&self, transfers: Vec<Transfer>) {
        for t in transfers {
            self.shard(&t.info_hash)
                .pending
                .entry((t.passkey, t.info_hash))
                .or_default()
                .add(&t.credit);
        }
    }

    /// Cumulative credits per passkey since the start.
    pub fn totals(&self) -> HashMap<Passkey, Totals, DefaultHashBuilder> {
        let mut all: HashMap<Passkey, Totals, DefaultHashBuilder> = HashMap::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (k, t) in &shard.totals {
                all.entry(k.clone())
                    .or_default()
                    .add(t.uploaded, t.downloaded);
            }
        }
        all
    }

    /// Forget sessions not seen for more than `timeout` seconds (their
    /// peers are gone from the swarms too). Returns how many went.
    pub fn expire(&self, now: u32, timeout: u32) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let Shard {
                sessions,
                peers,
                removed,
                gone: gone_rows,
                ..
            } = &mut *shard;
            sessions.retain(|k, s| {
                let keep = now.saturating_sub(s.last_seen) <= timeout;
                if !keep {
                    forget_peer(peers, k);
                    if self.rules.cuts {
                        removed.push(k.clone());
                    }
                    gone_row(gone_rows, k, s, &self.rules);
                    gone += 1;
                }
                keep
            });
        }
        // A budget idle for the whole gap is full: forgetting it only makes
        // the passkey start again from one second's worth.
        for budgets in self.budgets.iter() {
            budgets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, b| now.saturating_sub(b.at) <= self.rules.seed_gap_cap);
        }
        gone
    }

    /// Everything the ledger holds, for a snapshot: sessions (with their
    /// age at `now`), pending credits and totals. Copied shard by shard.
    pub fn export(&self, now: u32) -> LedgerState {
        let mut state = LedgerState::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            state
                .sessions
                .extend(shard.sessions.iter().map(|(k, s)| s.state(k, now)));
            state
                .pending
                .extend(shard.pending.iter().map(|((k, h), c)| Transfer {
                    passkey: k.clone(),
                    info_hash: *h,
                    credit: *c,
                }));
            state
                .totals
                .extend(shard.totals.iter().map(|(k, t)| (k.clone(), *t)));
        }
        (state.batches, state.next_batch) = self.batches();
        state
    }

    /// Take back a session from a snapshot, `age` seconds old at `now`.
    pub fn import_session(&self, s: SessionState, now: u32) {
        let key = SessionKey {
            passkey: s.passkey,
            info_hash: s.info_hash,
            peer_id: s.peer_id,
        };
        let session = Session {
            uploaded: s.uploaded,
            downloaded: s.downloaded,
            last_seen: now.saturating_sub(s.age),
            seeder: s.seeder,
            changed: false,
            row_changed: false,
            pair_changed: false,
            detail: PeerDetail::UNKNOWN,
        };
        self.shard(&s.info_hash).insert_session(key, session);
    }

    /// Forget a session that ended (replaying the credit journal).
    pub fn forget_session(&self, key: &SessionKey) {
        let rules = LedgerRules {
            cuts: false,
            write_back: false,
            ..self.rules
        };
        self.shard(&key.info_hash).remove_session(key, &rules);
    }

    /// Forget every session and credit (before the credit journal, which
    /// holds them on a database, is replayed over a snapshot's).
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            *shard.lock().unwrap_or_else(|e| e.into_inner()) = Shard::default();
        }
        let mut outbox = self.outbox();
        outbox.unconfirmed.clear();
    }

    /// Take every pending credit and, at the same instant per shard, the
    /// baselines they were measured against: the sessions changed since
    /// the last cut (all of them with `all`) and those that ended. Ages
    /// are at `now`.
    pub fn cut(&self, now: u32, all: bool) -> Cut {
        let mut cut = Cut::default();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let shard = &mut *shard;
            cut.transfers.extend(shard.drain_pending());
            cut.removed.append(&mut shard.removed);
            for (k, s) in shard.sessions.iter_mut().filter(|(_, s)| all || s.changed) {
                s.changed = false;
                cut.sessions.push(s.state(k, now));
            }
        }
        cut
    }

    /// Take back one passkey's totals from a snapshot.
    pub fn import_totals(&self, passkey: Passkey, totals: Totals) {
        // Totals live in any one shard; queries sum them.
        let mut shard = self.shards[0].lock().unwrap_or_else(|e| e.into_inner());
        shard
            .totals
            .entry(passkey)
            .or_default()
            .add(totals.uploaded, totals.downloaded);
    }

    /// Credits not yet stored: pending ones (per passkey and torrent) and
    /// those in sealed, unconfirmed batches.
    pub fn pending_credits(&self) -> usize {
        let sealed: usize = self
            .outbox()
            .unconfirmed
            .iter()
            .map(|b| b.transfers.len())
            .sum();
        let pending: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).pending.len())
            .sum();
        pending + sealed
    }

    /// Pending credits, not yet sealed or cut, and ended sessions kept
    /// for the next cut: what a cut takes out of memory, so what the spill
    /// bound (`max_pending_credits`) counts.
    pub fn pending_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.pending.len() + s.removed.len()
            })
            .sum()
    }

    /// Sessions being followed.
    pub fn sessions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).sessions.len())
            .sum()
    }
}

/// Which budget shard a passkey's is in.
fn budget_shard(key: &[u8]) -> usize {
    key.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % BUDGET_SHARDS
}

/// Credited bytes: `bytes` × `factor` (bounded by the site directory).
fn scaled(bytes: u64, factor: f64) -> u64 {
    if factor == 1.0 {
        bytes
    } else {
        // A float cast saturates; a factor is finite and at least 0.
        (bytes as f64 * factor) as u64
    }
}

/// Bytes between two running totals; a smaller one restarted from 0.
fn delta(last: u64, now: u64) -> u64 {
    if now >= last { now - last } else { now }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"abcdef0123456789";

    fn report(event: Event, uploaded: u64, downloaded: u64) -> Report<'static> {
        Report {
            passkey: KEY,
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId([1; 20]),
            event,
            uploaded,
            downloaded,
            left: 100,
            account: Account::UNIT,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 6881,
            agent: b"",
        }
    }

    /// Record a report that must be taken.
    trait Take {
        fn take(&self, r: &Report<'_>, now: u32);
    }

    impl Take for TransferLedger {
        fn take(&self, r: &Report<'_>, now: u32) {
            self.record(r, now).expect("under the peer cap");
        }
    }

    fn pending_credit(ledger: &TransferLedger) -> Credit {
        let t = ledger.take_pending();
        assert!(t.len() <= 1, "{t:?}");
        t.first().map_or_else(Credit::default, |t| t.credit)
    }

    fn pending_for(ledger: &TransferLedger) -> (u64, u64) {
        let c = pending_credit(ledger);
        (c.uploaded, c.downloaded)
    }

    #[test]
    fn credits_differences_between_announces() {
        let l = TransferLedger::default();
        l.take(&report(Event::Started, 0, 0), 0);
        l.take(&report(Event::None, 100, 40), 1800);
        l.take(&report(Event::None, 250, 40), 3600);
        assert_eq!(pending_for(&l), (250, 40));
        l.take(&report(Event::Stopped, 300, 50), 3700);
        assert_eq!(pending_for(&l), (50, 10));
        assert_eq!(l.sessions(), 0);
        let totals = l.totals();
        let t = totals[&Passkey::try_from(KEY).unwrap()];
        assert_eq!((t.uploaded, t.downloaded), (300, 50));
    }

    #[test]
    fn increases_past_the_rate_earn_what_the_rate_allows() {
        let l = TransferLedger::new(LedgerRules {
            max_rate: 1000,
            ..LedgerRules::default()
        });
        // A session that starts at 2^64-1: one second's worth.
        l.take(&report(Event::Started, u64::MAX, 0), 10);
        assert_eq!(pending_for(&l), (1000, 0));
        // Once more, ten seconds on: nothing more was reported.
        l.take(&report(Event::Started, u64::MAX, 0), 20);
        assert_eq!(pending_for(&l), (0, 0));
        // A petabyte jump after 30 s earns 30 s at the rate.
        l.take(&report(Event::None, 5, 1 << 50), 50);
        assert_eq!(pending_for(&l), (5, 30_000));
        // In the same second: one second's worth.
        l.take(&report(Event::None, 5, (1 << 50) + 4000), 50);
        assert_eq!(pending_for(&l), (0, 1000));
        assert_eq!(l.implausible.reports.load(Ordering::Relaxed), 3);
        // The count saturates: the first report alone claimed ~2^64.
        assert_eq!(l.implausible.bytes.load(Ordering::Relaxed), u64::MAX);
        // A plausible client is untouched.
        l.take(&report(Event::None, 2005, (1 << 50) + 4000), 60);
        assert_eq!(pending_for(&l), (2000, 0));
    }

    #[test]
    fn new_sessions_and_torrents_do_not_multiply_a_passkeys_rate() {
        let l = TransferLedger::new(LedgerRules {
            max_rate: 1000,
            ..LedgerRules::default()
        });
        // Session after session (a fresh peer id, `started` with a made-up
        // total, `stopped`), on two torrents, all in one second.
        for i in 0..10u8 {
            let mut r = report(Event::Started, 1 << 40, 0);
            r.peer_id = PeerId([i; 20]);
            r.info_hash = InfoHash([i % 2; 20]);
            l.take(&r, 100);
            l.take(
                &Report {
                    event: Event::Stopped,
                    ..r
                },
                100,
            );
        }
        let credited: u64 = l.take_pending().iter().map(|t| t.credit.uploaded).sum();
        assert_eq!(credited, 1000, "one second's worth in all");
        // Ten seconds later, ten seconds' worth more.
        let mut r = report(Event::Started, 1 << 40, 0);
        r.peer_id = PeerId([99; 20]);
        l.take(&r, 110);
        assert_eq!(
            pending_for(&l),
            (1000, 0),
            "a session's first report: one second"
        );
        let next = Report {
            event: Event::None,
            uploaded: (1 << 40) + 50_000,
            ..r
        };
        l.take(&next, 120);
        assert_eq!(pending_for(&l), (10_000, 0));
    }

    #[test]
    fn ended_sessions_count_toward_what_a_cut_takes() {
        let l = TransferLedger::new(LedgerRules {
            cuts: true,
            ..LedgerRules::default()
        });
        l.take(&report(Event::Started, 0, 0), 0);
        l.take(&report(Event::Stopped, 0, 0), 1);
        // No credit moved, but the ended session waits for the next cut.
        assert_eq!((l.pending_len(), l.pending_credits()), (1, 0));
        let cut = l.cut(2, false);
        assert_eq!(cut.removed.len(), 1);
        assert_eq!(l.pending_len(), 0);
    }

    #[test]
    fn a_first_report_without_started_only_sets_the_baseline() {
        let l = TransferLedger::default();
        l.take(&report(Event::None, 5000, 5000), 0);
        assert_eq!(pending_for(&l), (0, 0));
        l.take(&report(Event::None, 5100, 5000), 10);
        assert_eq!(pending_for(&l), (100, 0));
        // A started session counts from its first report.
        let l = TransferLedger::default();
        l.take(&report(Event::Started, 10, 20), 0);
        assert_eq!(pending_for(&l), (10, 20));
    }

    #[test]
    fn counters_that_went_backwards_restarted() {
        let l = TransferLedger::default();
        l.take(&report(Event::Started, 0, 0), 0);
        l.take(&report(Event::None, 1000, 0), 10);
        l.take(&report(Event::None, 30, 0), 20);
        assert_eq!(pending_for(&l), (1030, 0));
    }

    #[test]
    fn sessions_are_apart_per_peer_id_and_torrent() {
        let l = TransferLedger::default();
        let mut other_client = report(Event::Started, 0, 0);
        other_client.peer_id = PeerId([2; 20]);
        l.take(&report(Event::Started, 0, 0), 0);
        l.take(&other_client, 0);
        l.take(&report(Event::None, 100, 0), 10);
        other_client.event = Event::None;
        other_client.uploaded = 50;
        l.take(&other_client, 10);
        assert_eq!(pending_for(&l), (150, 0));
        let mut other_torrent = report(Event::Started, 7, 0);
        other_torrent.info_hash = InfoHash([8; 20]);
        l.take(&other_torrent, 10);
        l.take(&report(Event::None, 101, 0), 11);
        let mut t = l.take_pending();
        t.sort_by_key(|t| t.info_hash);
        assert_eq!(
            t.iter().map(|t| t.credit.uploaded).collect::<Vec<_>>(),
            vec![1, 7]
        );
    }

    #[test]
    fn batches_are_numbered_kept_until_confirmed_and_survive_a_snapshot() {
        let l = TransferLedger::default();
        assert!(l.seal().is_empty(), "nothing pending, no batch");
        l.take(&report(Event::Started, 10, 0), 0);
        let first = l.seal();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, 1);
        l.take(&report(Event::None, 15, 0), 1);
        // Unconfirmed batches come back with the new one, oldest first.
        let both = l.seal();
        assert_eq!(both.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 2]);
        l.confirm(1);
        assert_eq!(l.batches().0.len(), 1);
        // A snapshot's batches and numbering carry over to a new ledger.
        let state = l.export(1);
        let m = TransferLedger::default();
        m.import_batches(state.batches, state.next_batch);
        let (batches, next) = m.batches();
        assert_eq!(
            (batches[0].id, batches[0].transfers[0].credit.uploaded, next),
            (2, 5, 3)
        );
        // A store that already holds batch 2 confirms it; numbers go on.
        m.confirm(2);
        m.take(&report(Event::Started, 1, 0), 0);
        assert_eq!(m.seal()[0].id, 3);
    }

    #[test]
    fn restored_credits_add_to_new_ones() {
        let l = TransferLedger::default();
        l.take(&report(Event::Started, 10, 0), 0);
        let taken = l.take_pending();
        l.take(&report(Event::None, 15, 0), 1);
        l.restore(taken);
        assert_eq!(pending_for(&l), (15, 0));
    }

    #[test]
    fn idle_sessions_expire_and_bad_passkeys_are_ignored() {
        let l = TransferLedger::default();
        l.take(&report(Event::Started, 0, 0), 0);
        assert_eq!(l.expire(100, 100), 0);
        assert_eq!(l.expire(101, 100), 1);
        let mut long = report(Event::Started, 1, 1);
        let key = [b'a'; 65];
        long.passkey = &key;
        l.take(&long, 0);
        assert_eq!(l.sessions(), 0);
        assert!(l.take_pending().is_empty());
    }

    #[test]
    fn a_fourth_session_of_one_passkey_in_one_torrent_is_refused() {
        let l = TransferLedger::new(LedgerRules {
            max_peers: 3,
            ..LedgerRules::default()
        });
        let peer = |n: u8, event| {
            let mut r = report(event, 0, 0);
            r.peer_id = PeerId([n; 20]);
            r
        };
        for n in 1..=3 {
            l.take(&peer(n, Event::Started), 0);
        }
        assert_eq!(
            l.record(&peer(4, Event::Started), 0),
            Err(Refusal::PeerLimit)
        );
        // Known sessions go on; a stop of the unknown one is no harm.
        l.take(&peer(2, Event::None), 10);
        l.take(&peer(4, Event::Stopped), 10);
        // One stops: there is room again. Another torrent has its own cap.
        l.take(&peer(1, Event::Stopped), 20);
        l.take(&peer(4, Event::Started), 20);
        let mut elsewhere = peer(5, Event::Started);
        elsewhere.info_hash = InfoHash([9; 20]);
        l.take(&elsewhere, 20);
        // Expired sessions free their place too.
        l.take(&peer(2, Event::None), 3000);
        assert_eq!(l.expire(3700, 3600), 3);
        for n in 6..=7 {
            l.take(&peer(n, Event::Started), 3700);
        }
        assert_eq!(
            l.record(&peer(8, Event::Started), 0),
            Err(Refusal::PeerLimit)
        );
    }

    #[test]
    fn seed_time_counts_gaps_of_a_seeder_up_to_the_cap() {
        let l = TransferLedger::new(LedgerRules {
            seed_gap_cap: 3600,
            ..LedgerRules::default()
        });
        let mut r = report(Event::Started, 0, 0);
        l.take(&r, 0);
        r.event = Event::None;
        l.take(&r, 1800);
        assert_eq!(
            pending_credit(&l).seed_seconds,
            0,
            "a leecher seeds nothing"
        );
        r.left = 0;
        l.take(&r, 2000);
        l.take(&r, 3800);
        assert_eq!(pending_credit(&l).seed_seconds, 1800);
        // Gone for half a day: only the cap counts.
        l.take(&r, 3800 + 43_200);
        assert_eq!(pending_credit(&l).seed_seconds, 3600);
        r.event = Event::Stopped;
        l.take(&r, 3800 + 43_200 + 60);
        assert_eq!(pending_credit(&l).seed_seconds, 60);
    }

    #[test]
    fn a_snatch_counts_once_and_factors_scale_the_bytes() {
        let l = TransferLedger::new(LedgerRules {
            unix_start: 1_700_000_000,
            ..LedgerRules::default()
        });
        let mut r = report(Event::Started, 0, 0);
        r.account = Account {
            user_id: 4,
            torrent_id: 9,
            upload_factor: 2.0,
            download_factor: 0.0,
        };
        l.take(&r, 0);
        (r.event, r.left, r.uploaded, r.downloaded) = (Event::Completed, 0, 300, 1000);
        l.take(&r, 10);
        l.take(&r, 11);
        let c = pending_credit(&l);
        assert_eq!((c.user_id, c.torrent_id, c.completed), (4, 9, 1));
        assert_eq!((c.uploaded, c.downloaded), (600, 0));
        assert_eq!((c.raw_uploaded, c.raw_downloaded), (300, 1000));
        assert_eq!(c.last_announce, 1_700_000_011);
        assert_eq!(l.totals()[&Passkey::try_from(KEY).unwrap()].uploaded, 600);
    }
}
