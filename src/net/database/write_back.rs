//! Write-back: the database thread's half that keeps `rt_peers`,
//! `rt_torrent_stats` and the history columns of `rt_credits` in step with
//! the tracker (`private.write_back`).
//!
//! Every flush interval `collect` takes the rows that changed from the
//! ledger (`TransferLedger::site_rows`) and the counts of the torrents
//! they touched from the swarm table, and merges them into what waits:
//! one entry per peer, user × torrent and torrent, newest wins, so what
//! waits is bounded by what changed, however long the database is away.
//! `write` sends it in the flush's transaction (the last credit batch's,
//! or one of its own), one multi-row statement per table per chunk.
//!
//! Rows are state: written twice they say the same thing, so a lost
//! commit only means they are sent again. The first write of a process
//! (and the one after what waited outgrew `max_pending_credits`) is a
//! rewrite: this node's `rt_peers` rows are deleted and every live one
//! written, in one transaction, so rows of peers that left while the
//! tracker was down, or whose delete was dropped, do not outlive it.
//!
//! Until the tables exist (an older schema), nothing is written, credits
//! flow, and one ERROR names the migration; a statement the server refuses
//! for its data rolls back to the savepoint before the rows (the credits
//! in the same transaction still commit): that transaction's rows are
//! dropped, counted and logged once, and the rest go on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hashbrown::HashMap;
use mysql::prelude::Queryable;
use mysql::{Conn, Transaction, TxOpts};

use super::row_batch::{self, ENTRIES_PER_TRANSACTION, RowBatch};
use super::{DatabaseStats, rows_sql};
use crate::protocol::InfoHash;
use crate::tracker::Tracker;
use crate::tracker::ledger::{HistoryRow, PeerRow, PeerRowKey, SiteRows};

/// Torrents whose counts were written, asked again per collect (a
/// million such torrents are all asked within 100 flushes).
const RECHECK_PER_COLLECT: usize = 10_000;

/// Whether the server has write-back's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Not asked on this connection yet.
    Unknown,
    Ready,
    /// A table or column is missing (logged once; asked again at every
    /// flush).
    Missing,
}

/// What waits for the next write.
pub struct WriteBack {
    /// Per peer: its row, or None for a delete.
    peers: HashMap<PeerRowKey, Option<PeerRow>>,
    /// Per (user, torrent).
    history: HashMap<(u64, u64), HistoryRow>,
    /// Per torrent id: its info hash, seeders and leechers to write.
    counts: HashMap<u64, (InfoHash, (u32, u32))>,
    /// Counts last written, so unchanged ones are not written again
    /// (torrents with peers only), rechecked in rotation.
    written: HashMap<u64, (InfoHash, (u32, u32))>,
    /// Where the rotating recheck of `written` goes on.
    recheck_at: usize,
    /// The torrents the last collect touched (asked once more).
    touched_last: Vec<(InfoHash, u64)>,
    /// The next `collect` takes every live session's rows.
    need_all: bool,
    /// The next write replaces this node's rows.
    rewrite: bool,
    schema: Schema,
    /// The last write was refused (logged once until one gets through).
    refusing: bool,
    /// Entries that may wait beyond three per live session (its row, its
    /// user × torrent's history, its torrent's counts); past it
    /// they are dropped for a rewrite.
    bound: usize,
    on: bool,
    /// The rows of the transaction `write` wrote into, until it commits
    /// (`committed`) or not (`put_back`).
    in_flight: Option<RowBatch>,
    /// What waited was dropped (logged once until a write gets through).
    overflowing: bool,
}

impl WriteBack {
    /// `on`: `private.write_back`; `bound` entries may wait beyond the
    /// live sessions'.
    pub fn new(on: bool, bound: usize) -> Self {
        WriteBack {
            peers: HashMap::new(),
            history: HashMap::new(),
            counts: HashMap::new(),
            written: HashMap::new(),
            recheck_at: 0,
            touched_last: Vec::new(),
            need_all: true,
            rewrite: true,
            schema: Schema::Unknown,
            refusing: false,
            bound: bound.max(1),
            on,
            in_flight: None,
            overflowing: false,
        }
    }

    /// Whether credit batches carry `completed_at` and snatch counts:
    /// write-back is on and its tables are there.
    pub fn history_columns(&self) -> bool {
        self.on && self.schema == Schema::Ready
    }

    /// A new connection: ask for the tables again before writing.
    pub fn reconnected(&mut self) {
        if self.schema == Schema::Ready {
            self.schema = Schema::Unknown;
        }
    }

    /// Take what changed from the tracker into what waits.
    pub fn collect(&mut self, tracker: &Tracker, stats: &DatabaseStats) {
        if !self.on {
            return;
        }
        let all = self.schema != Schema::Missing && std::mem::take(&mut self.need_all);
        let rows = tracker.ledger().site_rows(all);
        if self.schema == Schema::Missing {
            // Drained (the ledger's marks and ended rows) but not kept: the
            // first write once the tables are there rewrites everything.
            return;
        }
        let torrents = self.merge(rows);
        self.recheck_counts(tracker, torrents);
        // Live sessions' rows (a rewrite holds them all) are bounded by
        // the ledger; the bound is on what piles up beyond them while the
        // database is away (rows of peers that left).
        let live = tracker.ledger().sessions();
        if self.waiting() > self.bound.saturating_add(live.saturating_mul(3)) {
            // Too much to keep: forget it all and rewrite from the live
            // sessions once the database takes writes again.
            stats.write_back_overflows.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.overflowing, true) {
                tracing::warn!(
                    "database: more than {} write-back rows waiting beyond the live peers'; dropped, the next write \
                     rewrites this node's rows",
                    self.bound
                );
            }
            self.clear();
            (self.need_all, self.rewrite) = (true, true);
        }
        stats
            .write_back_waiting
            .store(self.waiting() as u64, Ordering::Relaxed);
    }

    /// Merge one `site_rows` into what waits (newest wins per key);
    /// returns the torrents it touched.
    fn merge(&mut self, rows: SiteRows) -> Vec<(InfoHash, u64)> {
        let SiteRows {
            peers,
            gone,
            history,
            torrents,
        } = rows;
        for key in gone {
            self.peers.insert(key, None);
        }
        for row in peers {
            self.peers.insert(row.key, Some(row));
        }
        for h in history {
            let entry = self.history.entry((h.user_id, h.torrent_id)).or_insert(h);
            let first = match (entry.first_announce, h.first_announce) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let left = h.left.or(entry.left);
            *entry = HistoryRow {
                first_announce: first,
                left,
                ..h
            };
        }
        torrents
    }

    /// Read the counts of the torrents touched (now and at the last
    /// collect) and of a rotating slice of those written before (a
    /// torrent whose peers left through the sweep, or arrived at another
    /// cluster node, with no session of this node moving), and keep those
    /// that differ from what was written.
    fn recheck_counts(&mut self, tracker: &Tracker, fresh: Vec<(InfoHash, u64)>) {
        // Asked now, and once more at the next collect: an announce is
        // taken by the ledger just before its swarm sees it, and the
        // ledger's expiry and the swarm's sweep run apart.
        let again = std::mem::replace(&mut self.touched_last, fresh.clone());
        let slice: Vec<(InfoHash, u64)> = self
            .written
            .iter()
            .skip(self.recheck_at)
            .take(RECHECK_PER_COLLECT)
            .map(|(&id, &(h, _))| (h, id))
            .collect();
        self.recheck_at = if slice.len() < RECHECK_PER_COLLECT {
            0
        } else {
            self.recheck_at + slice.len()
        };
        for (info_hash, id) in fresh.into_iter().chain(again).chain(slice) {
            let c = tracker.scrape(&info_hash);
            let now = (c.seeders, c.leechers);
            let was = self.written.get(&id).map_or((0, 0), |&(_, c)| c);
            if was != now || self.rewrite {
                self.counts.insert(id, (info_hash, now));
            }
        }
    }

    fn waiting(&self) -> usize {
        self.peers.len() + self.history.len() + self.counts.len()
    }

    fn clear(&mut self) {
        self.peers.clear();
        self.history.clear();
        self.counts.clear();
        self.written.clear();
        self.in_flight = None;
    }

    /// Ask for the tables on `conn` (once per connection, and at every
    /// flush while they fail). Whether rows may ride in a credit batch's
    /// transaction now (they wait, and no rewrite is under way).
    pub fn prepare(&mut self, conn: &mut Conn) -> Result<bool, mysql::Error> {
        if !self.on {
            return Ok(false);
        }
        if self.schema != Schema::Ready {
            self.probe(conn)?;
        }
        Ok(self.pending())
    }

    /// Rows the batches did not carry, until none waits or `deadline`
    /// passes (the rest waits for the next flush): a rewrite's clearing
    /// of this node's rows first, then bounded transactions of rows.
    pub fn write_rest(
        &mut self,
        conn: &mut Conn,
        node: &str,
        stats: &DatabaseStats,
        deadline: Instant,
    ) -> Result<(), mysql::Error> {
        let ready = self.on && self.schema == Schema::Ready && !self.need_all;
        while ready && self.rewrite && Instant::now() < deadline {
            self.rewrite = row_batch::clear_chunk(conn, node)?;
        }
        while self.pending() && Instant::now() < deadline {
            let written = conn
                .start_transaction(TxOpts::default())
                .and_then(|mut tx| {
                    self.write(&mut tx, node, stats)?;
                    tx.commit()
                });
            if let Err(e) = written {
                self.put_back();
                return Err(e);
            }
            self.committed();
        }
        stats
            .write_back_waiting
            .store(self.waiting() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn probe(&mut self, conn: &mut Conn) -> Result<(), mysql::Error> {
        for probe in rows_sql::PROBES {
            match conn.query_drop(probe) {
                Ok(()) => {}
                // A table or column missing, or a grant: the server
                // answered for the schema, not for a passing state of its
                // own (those end the flush like any lost connection).
                Err(e @ mysql::Error::MySqlError(_)) if super::credits::refused(&e) => {
                    if self.schema != Schema::Missing {
                        tracing::error!(
                            "database: write-back needs rt_peers, rt_torrent_stats and the history columns of \
                             rt_credits, and their grants ({e}); run contrib/schema/mysql-writeback.sql once \
                             (docs/PRIVATE.md), or set private.write_back = false. Credits flow meanwhile"
                        );
                        // Nothing is kept for tables that are not there.
                        self.clear();
                    }
                    self.schema = Schema::Missing;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if self.schema == Schema::Missing {
            tracing::info!("database: write-back's tables are there; peers and counts are written");
            // The first write rewrites everything, once the next collect
            // has taken every live session.
            (self.need_all, self.rewrite) = (true, true);
        }
        self.schema = Schema::Ready;
        Ok(())
    }

    /// Take the rows of one transaction out of what waits.
    fn take(&mut self) -> RowBatch {
        let mut left = ENTRIES_PER_TRANSACTION;
        let mut batch = RowBatch::default();
        let keys: Vec<PeerRowKey> = self.peers.keys().take(left).copied().collect();
        for key in keys {
            match self.peers.remove(&key).flatten() {
                Some(row) => batch.upserts.push(row),
                None => batch.deletes.push(key),
            }
        }
        left -= batch.len();
        let pairs: Vec<(u64, u64)> = self.history.keys().take(left).copied().collect();
        batch
            .history
            .extend(pairs.iter().filter_map(|p| self.history.remove(p)));
        left -= batch.history.len();
        let ids: Vec<u64> = self.counts.keys().take(left).copied().collect();
        for id in ids {
            if let Some((h, c)) = self.counts.remove(&id) {
                batch.counts.push((id, h, c));
            }
        }
        batch
    }

    /// Put back a batch whose transaction did not commit (nothing newer
    /// came meanwhile: collects run on this thread, between flushes).
    pub fn put_back(&mut self) {
        let Some(batch) = self.in_flight.take() else {
            return;
        };
        for row in batch.upserts {
            self.peers.entry(row.key).or_insert(Some(row));
        }
        for key in batch.deletes {
            self.peers.entry(key).or_insert(None);
        }
        for h in batch.history {
            self.history.entry((h.user_id, h.torrent_id)).or_insert(h);
        }
        for (id, h, c) in batch.counts {
            self.counts.entry(id).or_insert((h, c));
        }
    }

    /// Write one transaction's rows in `tx` (this node: `node`), after a
    /// savepoint: a refusal rolls back to it and leaves the rest of `tx`
    /// to commit. Then `committed` once `tx` commits, or `put_back`.
    pub fn write(
        &mut self,
        tx: &mut Transaction<'_>,
        node: &str,
        stats: &DatabaseStats,
    ) -> Result<(), mysql::Error> {
        self.put_back();
        let batch = self.take();
        tx.query_drop("SAVEPOINT write_back")?;
        match batch.send(tx, node) {
            Ok(()) => {
                stats
                    .write_back_rows
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.in_flight = Some(batch);
                if std::mem::take(&mut self.refusing) {
                    tracing::info!("database: write-back rows are taken again");
                }
                Ok(())
            }
            Err(e) if super::credits::refused(&e) => {
                // If the server rolled the whole transaction back, the
                // savepoint is gone: a passing error, so the credits in it
                // are tried again, not set aside.
                tx.query_drop("ROLLBACK TO SAVEPOINT write_back")
                    .map_err(|r| mysql::Error::IoError(std::io::Error::other(r.to_string())))?;
                // This transaction's rows are dropped, not retried: one
                // row the server will never take (a site's trigger, say)
                // must not hold back or re-send the others. A peer's next
                // announce writes its row again.
                stats.write_back_refused.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.refusing, true) {
                    tracing::warn!(
                        "database: write-back rows refused ({e}); those of this transaction dropped, later ones go on"
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.in_flight = Some(batch);
                Err(e)
            }
        }
    }

    /// Whether rows wait and may be written (the tables are there, a
    /// rewrite has every live session and has cleared the node's rows).
    fn pending(&self) -> bool {
        self.on
            && self.schema == Schema::Ready
            && !self.need_all
            && !self.rewrite
            && self.waiting() > 0
    }

    /// The transaction `write` wrote into committed.
    pub fn committed(&mut self) {
        let Some(batch) = self.in_flight.take() else {
            return;
        };
        for &(id, h, c) in &batch.counts {
            if c == (0, 0) {
                self.written.remove(&id);
            } else {
                self.written.insert(id, (h, c));
            }
        }
        if self.waiting() == 0 {
            self.overflowing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::protocol::{Event, PeerId};
    use crate::tracker::announce::AnnouncePolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::ledger::{Account, LedgerRules, Report, TransferLedger};
    use crate::tracker::table::SwarmTable;

    fn tracker() -> Tracker {
        let ledger = TransferLedger::new(LedgerRules {
            write_back: true,
            ..LedgerRules::default()
        });
        Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(16, [1, 2]),
            ConnectionIdIssuer::new([3; 16]),
        )
        .with_ledger(ledger)
    }

    fn session(t: &Tracker, peer: u8, event: Event) {
        let report = Report {
            passkey: b"abcdef0123456789",
            info_hash: InfoHash([peer; 20]),
            peer_id: PeerId([peer; 20]),
            event,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            account: Account {
                user_id: 1,
                torrent_id: u64::from(peer) + 1,
                ..Account::UNIT
            },
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 6881,
            agent: b"",
        };
        t.ledger().record(&report, 10).unwrap();
    }

    #[test]
    fn rows_of_peers_that_left_past_the_bound_are_dropped_for_a_rewrite() {
        let (t, stats) = (tracker(), DatabaseStats::default());
        let mut w = WriteBack::new(true, 10);
        w.schema = Schema::Ready;
        // Live sessions' rows never count against the bound.
        for peer in 0..20 {
            session(&t, peer, Event::Started);
        }
        w.collect(&t, &stats);
        assert_eq!(w.peers.len(), 20);
        assert_eq!(stats.write_back_waiting.load(Ordering::Relaxed), 60);
        assert_eq!(stats.write_back_overflows.load(Ordering::Relaxed), 0);
        w.need_all = false;
        // While the database is away, the peers leave: 20 deletes and 20
        // histories wait beyond the live sessions' (none) and the bound.
        for peer in 0..20 {
            session(&t, peer, Event::Stopped);
        }
        w.collect(&t, &stats);
        assert_eq!(stats.write_back_overflows.load(Ordering::Relaxed), 1);
        assert_eq!(w.waiting(), 0);
        assert!(w.need_all && w.rewrite, "rewritten from the live sessions");
        assert_eq!(stats.write_back_waiting.load(Ordering::Relaxed), 0);
    }
}
