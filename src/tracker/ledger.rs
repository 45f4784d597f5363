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

use std::sync::Mutex;

use arrayvec::ArrayVec;
use hashbrown::{DefaultHashBuilder, HashMap};

use crate::protocol::{Event, InfoHash, PeerId};

/// A passkey as registered: 16 to 64 letters and digits.
pub type Passkey = ArrayVec<u8, 64>;

/// Bytes credited to one passkey on one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub passkey: Passkey,
    pub info_hash: InfoHash,
    pub uploaded: u64,
    pub downloaded: u64,
}

/// Bytes credited to one passkey, over all torrents, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub uploaded: u64,
    pub downloaded: u64,
}

impl Totals {
    fn add(&mut self, uploaded: u64, downloaded: u64) {
        self.uploaded = self.uploaded.saturating_add(uploaded);
        self.downloaded = self.downloaded.saturating_add(downloaded);
    }
}

/// What one announce reports, for the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub passkey: &'a [u8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub event: Event,
    pub uploaded: u64,
    pub downloaded: u64,
}

/// One client session as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub passkey: Passkey,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Seconds since its last announce.
    pub age: u32,
}

/// The whole ledger, for a snapshot.
#[derive(Debug, Default)]
pub struct LedgerState {
    pub sessions: Vec<SessionState>,
    pub pending: Vec<Transfer>,
    pub totals: Vec<(Passkey, Totals)>,
    pub batches: Vec<Batch>,
    pub next_batch: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    passkey: Passkey,
    info_hash: InfoHash,
    peer_id: PeerId,
}

/// The last running totals a session reported.
#[derive(Clone, Copy)]
struct Session {
    uploaded: u64,
    downloaded: u64,
    last_seen: u32,
}

#[derive(Default)]
struct Shard {
    sessions: HashMap<SessionKey, Session, DefaultHashBuilder>,
    pending: HashMap<(Passkey, InfoHash), Totals, DefaultHashBuilder>,
    totals: HashMap<Passkey, Totals, DefaultHashBuilder>,
}

/// Shards by info hash, so workers announcing different torrents rarely
/// wait for each other.
const SHARDS: usize = 64;

pub struct TransferLedger {
    shards: Box<[Mutex<Shard>]>,
    outbox: Mutex<Outbox>,
}

/// Credits sealed for export, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: u64,
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
        TransferLedger {
            outbox: Mutex::new(Outbox {
                next_id: 1,
                unconfirmed: Vec::new(),
            }),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl TransferLedger {
    fn shard(&self, info_hash: &InfoHash) -> std::sync::MutexGuard<'_, Shard> {
        let i = usize::from(info_hash.0[0]) % SHARDS;
        // A panic while holding a shard leaves consistent maps (every update
        // is a single insert), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Credit one served announce at tracker time `now`. A passkey that is
    /// not 16–64 bytes never passed the passkey check; it is ignored.
    pub fn record(&self, r: &Report<'_>, now: u32) {
        let Ok(passkey) = Passkey::try_from(r.passkey) else {
            return;
        };
        let key = SessionKey {
            passkey,
            info_hash: r.info_hash,
            peer_id: r.peer_id,
        };
        let mut shard = self.shard(&r.info_hash);
        let reported = Session {
            uploaded: r.uploaded,
            downloaded: r.downloaded,
            last_seen: now,
        };
        let (up, down) = match shard.sessions.get(&key) {
            Some(last) => (
                delta(last.uploaded, r.uploaded),
                delta(last.downloaded, r.downloaded),
            ),
            None if r.event == Event::Started => (r.uploaded, r.downloaded),
            None => (0, 0),
        };
        if r.event == Event::Stopped {
            shard.sessions.remove(&key);
        } else {
            shard.sessions.insert(key.clone(), reported);
        }
        if up == 0 && down == 0 {
            return;
        }
        shard
            .pending
            .entry((key.passkey.clone(), key.info_hash))
            .or_default()
            .add(up, down);
        shard.totals.entry(key.passkey).or_default().add(up, down);
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
            outbox.next_id += 1;
            outbox.unconfirmed.push(Batch { id, transfers });
        }
        outbox.unconfirmed.clone()
    }

    /// Batches up to `id` are stored: forget them.
    pub fn confirm(&self, id: u64) {
        let mut outbox = self.outbox();
        outbox.unconfirmed.retain(|b| b.id > id);
        // Numbers never go back, whatever the store says it holds.
        outbox.next_id = outbox.next_id.max(id + 1);
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
            outbox.next_id = outbox.next_id.max(b.id + 1);
            outbox.unconfirmed.push(b);
        }
        outbox.unconfirmed.sort_by_key(|b| b.id);
    }

    /// Take every credit not yet sealed, leaving none pending.
    pub fn take_pending(&self) -> Vec<Transfer> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(
                shard
                    .pending
                    .drain()
                    .map(|((passkey, info_hash), t)| Transfer {
                        passkey,
                        info_hash,
                        uploaded: t.uploaded,
                        downloaded: t.downloaded,
                    }),
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
                .add(t.uploaded, t.downloaded);
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
            let before = shard.sessions.len();
            shard
                .sessions
                .retain(|_, s| now.saturating_sub(s.last_seen) <= timeout);
            gone += before - shard.sessions.len();
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
                .extend(shard.sessions.iter().map(|(k, s)| SessionState {
                    passkey: k.passkey.clone(),
                    info_hash: k.info_hash,
                    peer_id: k.peer_id,
                    uploaded: s.uploaded,
                    downloaded: s.downloaded,
                    age: now.saturating_sub(s.last_seen),
                }));
            state
                .pending
                .extend(shard.pending.iter().map(|((k, h), t)| Transfer {
                    passkey: k.clone(),
                    info_hash: *h,
                    uploaded: t.uploaded,
                    downloaded: t.downloaded,
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
        };
        self.shard(&s.info_hash).sessions.insert(key, session);
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

    /// Sessions being followed.
    pub fn sessions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).sessions.len())
            .sum()
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
        }
    }

    fn pending_for(ledger: &TransferLedger) -> (u64, u64) {
        let t = ledger.take_pending();
        assert!(t.len() <= 1, "{t:?}");
        t.first().map_or((0, 0), |t| (t.uploaded, t.downloaded))
    }

    #[test]
    fn credits_differences_between_announces() {
        let l = TransferLedger::default();
        l.record(&report(Event::Started, 0, 0), 0);
        l.record(&report(Event::None, 100, 40), 1800);
        l.record(&report(Event::None, 250, 40), 3600);
        assert_eq!(pending_for(&l), (250, 40));
        l.record(&report(Event::Stopped, 300, 50), 3700);
        assert_eq!(pending_for(&l), (50, 10));
        assert_eq!(l.sessions(), 0);
        let totals = l.totals();
        let t = totals[&Passkey::try_from(KEY).unwrap()];
        assert_eq!((t.uploaded, t.downloaded), (300, 50));
    }

    #[test]
    fn a_first_report_without_started_only_sets_the_baseline() {
        let l = TransferLedger::default();
        l.record(&report(Event::None, 5000, 5000), 0);
        assert_eq!(pending_for(&l), (0, 0));
        l.record(&report(Event::None, 5100, 5000), 10);
        assert_eq!(pending_for(&l), (100, 0));
        // A started session counts from its first report.
        let l = TransferLedger::default();
        l.record(&report(Event::Started, 10, 20), 0);
        assert_eq!(pending_for(&l), (10, 20));
    }

    #[test]
    fn counters_that_went_backwards_restarted() {
        let l = TransferLedger::default();
        l.record(&report(Event::Started, 0, 0), 0);
        l.record(&report(Event::None, 1000, 0), 10);
        l.record(&report(Event::None, 30, 0), 20);
        assert_eq!(pending_for(&l), (1030, 0));
    }

    #[test]
    fn sessions_are_apart_per_peer_id_and_torrent() {
        let l = TransferLedger::default();
        let mut other_client = report(Event::Started, 0, 0);
        other_client.peer_id = PeerId([2; 20]);
        l.record(&report(Event::Started, 0, 0), 0);
        l.record(&other_client, 0);
        l.record(&report(Event::None, 100, 0), 10);
        other_client.event = Event::None;
        other_client.uploaded = 50;
        l.record(&other_client, 10);
        assert_eq!(pending_for(&l), (150, 0));
        let mut other_torrent = report(Event::Started, 7, 0);
        other_torrent.info_hash = InfoHash([8; 20]);
        l.record(&other_torrent, 10);
        l.record(&report(Event::None, 101, 0), 11);
        let mut t = l.take_pending();
        t.sort_by_key(|t| t.info_hash);
        assert_eq!(t.iter().map(|t| t.uploaded).collect::<Vec<_>>(), vec![1, 7]);
    }

    #[test]
    fn batches_are_numbered_kept_until_confirmed_and_survive_a_snapshot() {
        let l = TransferLedger::default();
        assert!(l.seal().is_empty(), "nothing pending, no batch");
        l.record(&report(Event::Started, 10, 0), 0);
        let first = l.seal();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, 1);
        l.record(&report(Event::None, 15, 0), 1);
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
            (batches[0].id, batches[0].transfers[0].uploaded, next),
            (2, 5, 3)
        );
        // A store that already holds batch 2 confirms it; numbers go on.
        m.confirm(2);
        m.record(&report(Event::Started, 1, 0), 0);
        assert_eq!(m.seal()[0].id, 3);
    }

    #[test]
    fn restored_credits_add_to_new_ones() {
        let l = TransferLedger::default();
        l.record(&report(Event::Started, 10, 0), 0);
        let taken = l.take_pending();
        l.record(&report(Event::None, 15, 0), 1);
        l.restore(taken);
        assert_eq!(pending_for(&l), (15, 0));
    }

    #[test]
    fn idle_sessions_expire_and_bad_passkeys_are_ignored() {
        let l = TransferLedger::default();
        l.record(&report(Event::Started, 0, 0), 0);
        assert_eq!(l.expire(100, 100), 0);
        assert_eq!(l.expire(101, 100), 1);
        let mut long = report(Event::Started, 1, 1);
        let key = [b'a'; 65];
        long.passkey = &key;
        l.record(&long, 0);
        assert_eq!(l.sessions(), 0);
        assert!(l.take_pending().is_empty());
    }
}
