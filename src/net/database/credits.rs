//! The database thread's half that writes: every flush interval it cuts
//! the ledger into a numbered batch, journals the batch with its session
//! baselines (`storage/database_journal.rs`), and applies the batches not yet
//! in the database, oldest first, each in one transaction with its
//! `rt_batches` row.
//!
//! While the database is down nothing is cut: credits aggregate in the
//! ledger per user and torrent. Past `max_pending_credits` of them they are
//! cut anyway and spilled to the journal (the batch is then kept on disk
//! only, and read back when its turn comes).
//!
//! A batch the database refuses (a server error about the data, such as a
//! column out of range, as opposed to a lost connection or a deadlock) is
//! set aside: it stays in the journal (compaction keeps it), is counted,
//! and is tried again on the next connection, while the batches after it
//! flow. One line is logged when batches start being refused and one when
//! they are taken again, never one per retry.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use super::write_back::WriteBack;
use super::{DatabaseStats, rows_sql, sql};
use crate::clock::unix_now;
use crate::storage::database_journal::{DatabaseJournal, JournaledBatch, Replay};
use crate::tracker::Tracker;
use crate::tracker::ledger::Batch;

/// Credits kept in memory in journaled batches not yet applied; further
/// batches are read back from the journal.
const MAX_QUEUED_IN_MEMORY: usize = 1 << 20;

/// A journaled batch waiting for the database.
struct Queued {
    at: JournaledBatch,
    /// None: spilled, read back from the journal.
    batch: Option<Batch>,
    credits: usize,
}

pub struct CreditWriter {
    journal: DatabaseJournal,
    queue: VecDeque<Queued>,
    /// Batches the database refused, kept for the next connection.
    refused: Vec<Queued>,
    /// The last batch tried was refused (logged once until one applies).
    refusing: bool,
    /// rt_batches lacks the epoch column (logged once until migrated).
    schema_outdated: bool,
    in_memory: usize,
    next_batch: u64,
    /// Whether this connection learnt which batches the database has.
    reconciled: bool,
    /// A cut failed to reach the journal: the next takes every session.
    full_cut_next: bool,
    node: String,
    max_pending: usize,
    /// Test hook: lose the answer to the first commit that got through.
    lose_commit: bool,
    /// Peers, counts and history for the site (`private.write_back`).
    write_back: WriteBack,
    /// How long a flush goes on writing write-back's rows (the flush
    /// interval).
    flush_budget: Duration,
}

impl CreditWriter {
    pub fn new(
        journal: DatabaseJournal,
        replay: Replay,
        node: String,
        max_pending: usize,
        (write_back, flush_budget): (bool, Duration),
    ) -> Self {
        let queue = replay
            .batches
            .iter()
            .map(|&at| Queued {
                at,
                batch: None,
                credits: 0,
            })
            .collect();
        CreditWriter {
            journal,
            queue,
            refused: Vec::new(),
            refusing: false,
            schema_outdated: false,
            in_memory: 0,
            next_batch: replay.next_batch,
            reconciled: false,
            full_cut_next: false,
            node,
            max_pending,
            lose_commit: std::env::var_os("RINGTRACKER_TEST_LOSE_COMMIT").is_some(),
            write_back: WriteBack::new(write_back, max_pending),
            flush_budget,
        }
    }

    /// A new connection: learn again which batches the database has.
    pub fn reconnected(&mut self) {
        self.reconciled = false;
        self.write_back.reconnected();
    }

    /// Cut the ledger into a journaled batch: always while the database
    /// answers (`up`) and at a stop, else only past `max_pending` credits
    /// (a spill).
    pub fn cut(
        &mut self,
        tracker: &Tracker,
        now: u32,
        up: bool,
        stopping: bool,
        stats: &DatabaseStats,
    ) {
        self.write_back.collect(tracker, stats);
        let pending = tracker.ledger().pending_len();
        if !up && !stopping && pending <= self.max_pending {
            return;
        }
        let compact = self.journal.wants_compaction() && self.queue.is_empty();
        let kept: Vec<JournaledBatch> = self.refused.iter().map(|q| q.at).collect();
        let mut cut = tracker.ledger().cut(now, compact || self.full_cut_next);
        // The credits move into the batch (the journal writes the batch and
        // the cut's sessions): a cut can hold millions.
        let transfers = std::mem::take(&mut cut.transfers);
        let batch = (!transfers.is_empty()).then(|| Batch {
            id: self.next_batch,
            transfers,
        });
        if batch.is_none() && cut.sessions.is_empty() && cut.removed.is_empty() {
            return;
        }
        let unix = unix_now();
        let written = if compact {
            let next = self.next_batch.saturating_add(u64::from(batch.is_some()));
            self.journal
                .compact(unix, next, &cut, &kept, batch.as_ref())
                .map(|at| {
                    // The refused batches come first, then this cut's.
                    for (q, moved) in self.refused.iter_mut().zip(&at) {
                        q.at = *moved;
                    }
                    at.get(kept.len()).map(|b| b.offset)
                })
        } else {
            self.journal.append(unix, batch.as_ref(), &cut).map(Some)
        };
        let offset = match written {
            Ok(offset) => offset,
            Err(e) => {
                // Nothing of this cut is on disk: its credits go back, and
                // the next cut writes every baseline again.
                tracing::error!("credit journal not written, credits kept: {e}");
                stats.journal_failures.fetch_add(1, Ordering::Relaxed);
                tracker
                    .ledger()
                    .restore(batch.map(|b| b.transfers).unwrap_or_default());
                self.full_cut_next = true;
                return;
            }
        };
        self.full_cut_next = false;
        let (Some(batch), Some(offset)) = (batch, offset) else {
            return;
        };
        self.next_batch = self.next_batch.saturating_add(1);
        let credits = batch.transfers.len();
        let keep = up && self.in_memory + credits <= MAX_QUEUED_IN_MEMORY;
        if !keep {
            stats.spilled_batches.fetch_add(1, Ordering::Relaxed);
        }
        if keep {
            self.in_memory += credits;
        }
        self.queue.push_back(Queued {
            at: JournaledBatch {
                id: batch.id,
                offset,
            },
            batch: keep.then_some(batch),
            credits,
        });
        stats
            .queued_batches
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// Apply every queued batch, oldest first. A batch the database
    /// refuses is set aside; an error of the connection ends the flush.
    pub fn flush(&mut self, conn: &mut Conn, stats: &DatabaseStats) -> Result<(), mysql::Error> {
        let started = Instant::now();
        if !self.reconciled && !self.reconcile(conn, stats)? {
            return Ok(());
        }
        // Asked first: whether the batches carry write-back's columns
        // depends on the tables the probe finds.
        let rows_due = self.write_back.prepare(conn)?;
        let history = self.write_back.history_columns();
        while let Some(front) = self.queue.front() {
            // The rows go in the last batch's transaction.
            let last = self.queue.len() == 1;
            let rows = (rows_due && last).then_some(&mut self.write_back);
            let journal = (self.node.as_str(), self.journal.epoch());
            let with = Extra {
                history,
                rows,
                stats,
            };
            let applied = match &front.batch {
                Some(b) => apply(conn, journal, b, with),
                None => match self.journal.read_batch(front.at.offset) {
                    Ok(spilled) => apply(conn, journal, &spilled, with),
                    Err(e) => Err(mysql::Error::IoError(e)),
                },
            };
            if matches!(applied, Ok(true)) {
                self.write_back.committed();
            } else {
                self.write_back.put_back();
            }
            if std::mem::take(&mut self.lose_commit) && applied.is_ok() {
                return Err(mysql::Error::IoError(std::io::Error::other(
                    "the answer to a commit was lost (test hook)",
                )));
            }
            match applied {
                Ok(applied) => {
                    let counter = if applied {
                        &stats.batches_applied
                    } else {
                        &stats.batches_skipped
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if applied && std::mem::take(&mut self.refusing) {
                        tracing::info!(
                            "database: credit batches are taken again ({} set aside, retried on the next connection)",
                            self.refused.len()
                        );
                    }
                    self.pop();
                }
                Err(e) if refused(&e) => self.set_aside(&e, stats),
                Err(e) => return Err(e),
            }
        }
        // Write-back's rest for as long as a flush interval, so a large
        // rewrite never holds the next batches of credits back for long.
        let deadline = started + self.flush_budget;
        self.write_back
            .write_rest(conn, &self.node, stats, deadline)?;
        stats.queued_batches.store(0, Ordering::Relaxed);
        stats.last_flush.store(unix_now(), Ordering::Relaxed);
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .flush_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// A new connection: the batches set aside are tried again, in order
    /// with the rest, and those the database has applied before (their
    /// commit got through but its answer did not, or the tracker
    /// restarted) are not sent again; new ones are numbered after them.
    /// Every question is of this journal's epoch: another journal's batch
    /// numbers are never taken for ours. False: rt_batches has no epoch
    /// column yet (credits wait).
    fn reconcile(&mut self, conn: &mut Conn, stats: &DatabaseStats) -> Result<bool, mysql::Error> {
        let epoch = self.journal.epoch();
        let last: u64 = match conn.exec_first(sql::LAST_BATCH, (self.node.as_str(), epoch)) {
            Ok(last) => last.unwrap_or(0),
            Err(mysql::Error::MySqlError(e)) if e.code == sql::UNKNOWN_COLUMN => {
                // Credits wait in the journal until the table is migrated.
                if !std::mem::replace(&mut self.schema_outdated, true) {
                    tracing::error!(
                        "database: rt_batches has no epoch column ({e}); run contrib/schema/mysql-epoch.sql \
                         once. Credits wait in the journal until then"
                    );
                }
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        // Asked before anything moves: a failure here leaves every batch
        // where it was.
        let ids = self.refused.iter().chain(&self.queue).map(|q| q.at.id);
        let (first, end) = (ids.clone().min(), ids.max());
        let applied: std::collections::HashSet<u64> = match (first, end) {
            (Some(first), Some(end)) => conn
                .exec(
                    sql::APPLIED_BATCHES,
                    (self.node.as_str(), epoch, first, end.min(last)),
                )?
                .into_iter()
                .collect(),
            _ => Default::default(),
        };
        // The batches set aside are queued again, in order with the rest
        // (and counted again if they are refused again).
        let mut queue: Vec<Queued> = self.refused.drain(..).chain(self.queue.drain(..)).collect();
        stats.refused_batches.store(0, Ordering::Relaxed);
        queue.sort_by_key(|q| q.at.id);
        for q in queue {
            if applied.contains(&q.at.id) {
                stats.batches_skipped.fetch_add(1, Ordering::Relaxed);
                if q.batch.is_some() {
                    self.in_memory -= q.credits;
                }
            } else {
                self.queue.push_back(q);
            }
        }
        self.next_batch = self.next_batch.max(last.saturating_add(1));
        self.reconciled = true;
        if std::mem::take(&mut self.schema_outdated) {
            tracing::info!("database: rt_batches has its epoch column; credits flow");
        }
        Ok(true)
    }

    /// The front batch was refused: keep it aside, in the journal.
    fn set_aside(&mut self, e: &mysql::Error, stats: &DatabaseStats) {
        let Some(q) = self.queue.pop_front() else {
            return;
        };
        stats.batches_refused.fetch_add(1, Ordering::Relaxed);
        if !std::mem::replace(&mut self.refusing, true) {
            tracing::warn!(
                "database: credit batch {} refused ({e}); set aside in the journal and retried on the next connection, later batches go on",
                q.at.id
            );
        }
        self.refused.push(q);
        stats
            .refused_batches
            .store(self.refused.len() as u64, Ordering::Relaxed);
    }

    fn pop(&mut self) {
        if let Some(q) = self.queue.pop_front()
            && q.batch.is_some()
        {
            self.in_memory -= q.credits;
        }
    }
}

/// Whether the server refused a statement for what it carries (kept
/// aside), rather than for a passing state of its own (a deadlock, a lock
/// wait, a read-only moment: tried again after the backoff).
pub(super) fn refused(e: &mysql::Error) -> bool {
    // Lock wait timeout, deadlock, read-only, read-only mode, and the
    // server going down or killing the query/connection.
    const PASSING: [u16; 7] = [1205, 1213, 1290, 1836, 1053, 1317, 1927];
    matches!(e, mysql::Error::MySqlError(e) if !PASSING.contains(&e.code))
}

/// What a batch's transaction carries besides its credits.
struct Extra<'a> {
    /// `completed_at` and `times_completed` (write-back's columns exist).
    history: bool,
    /// Write-back's rows, in this transaction.
    rows: Option<&'a mut WriteBack>,
    stats: &'a DatabaseStats,
}

/// One batch of a journal (`node`, its epoch) in one transaction, with
/// `extra`. False: `rt_batches` already had it.
fn apply(
    conn: &mut Conn,
    (node, epoch): (&str, u64),
    batch: &Batch,
    extra: Extra<'_>,
) -> Result<bool, mysql::Error> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    tx.exec_drop(sql::CLAIM_BATCH, (node, epoch, batch.id))?;
    if tx.affected_rows() == 0 {
        tx.rollback()?;
        return Ok(false);
    }
    for chunk in batch.transfers.chunks(sql::CREDIT_ROWS_PER_STATEMENT) {
        // A user's first completion of a torrent counts toward its
        // `times_completed` once: asked before this chunk sets
        // `completed_at`.
        if extra.history
            && let Some((query, params)) = rows_sql::completed_before(chunk)
        {
            // Read as values: a row of a site's view that does not decode
            // counts as not completed before, never as a panic.
            let rows: Vec<mysql::Row> = tx.exec(query, params)?;
            let done: Vec<(u64, u64)> = (rows.into_iter())
                .filter_map(|r| mysql::from_row_opt(r).ok())
                .collect();
            if let Some((statement, params)) = rows_sql::add_first_completions(chunk, &done) {
                tx.exec_drop(statement, params)?;
            }
        }
        if let Some((statement, params)) = sql::add_credits(chunk, extra.history) {
            tx.exec_drop(statement, params)?;
        }
    }
    if let Some(rows) = extra.rows {
        rows.write(&mut tx, node, extra.stats)?;
    }
    tx.commit()?;
    Ok(true)
}
