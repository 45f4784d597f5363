//! Write-back's rows as one transaction carries them (`RowBatch`, at most
//! `ENTRIES_PER_TRANSACTION` entries, taken from what waits), and the
//! chunked clearing of a node's rows before a rewrite. Every transaction
//! is bounded so that it fits well inside the connection's deadline on a
//! busy server, whatever the tracker holds: a rewrite of two million
//! peers is hundreds of transactions, spread over flushes, not one that
//! never ends.

use mysql::prelude::Queryable;
use mysql::{Conn, Transaction, TxOpts};

use super::rows_sql;
use crate::protocol::InfoHash;
use crate::tracker::ledger::{HistoryRow, PeerRow, PeerRowKey};

/// Entries (peer rows, deletes, history rows, counts) one transaction
/// carries at most: 10,000 took ~0.3 s of a loaded MariaDB here.
pub const ENTRIES_PER_TRANSACTION: usize = 10_000;

/// Rows of a node cleared per transaction before a rewrite.
const CLEARED_PER_TRANSACTION: usize = 5_000;

/// Rows for one transaction.
#[derive(Debug, Default)]
pub struct RowBatch {
    /// Peers that announced.
    pub upserts: Vec<PeerRow>,
    /// Peers that ended.
    pub deletes: Vec<PeerRowKey>,
    /// Users' history on torrents.
    pub history: Vec<HistoryRow>,
    /// Torrents' counts: id, info hash, (seeders, leechers).
    pub counts: Vec<(u64, InfoHash, (u32, u32))>,
}

impl RowBatch {
    /// Entries it carries.
    pub(super) fn len(&self) -> usize {
        self.upserts.len() + self.deletes.len() + self.history.len() + self.counts.len()
    }

    /// Send it in `tx` as this node (`node`): one multi-row statement per
    /// table per `rows_sql::ROWS_PER_STATEMENT` rows.
    pub fn send(&self, tx: &mut Transaction<'_>, node: &str) -> Result<(), mysql::Error> {
        let n = rows_sql::ROWS_PER_STATEMENT;
        let counts: Vec<(u64, u32, u32)> = (self.counts.iter())
            .map(|&(id, _, (s, l))| (id, s, l))
            .collect();
        let deletes = self.deletes.chunks(n);
        let upserts = self.upserts.chunks(n);
        let statements = (deletes.filter_map(|c| rows_sql::delete_peers(c, node)))
            .chain(upserts.filter_map(|c| rows_sql::upsert_peers(c, node)))
            .chain(self.history.chunks(n).filter_map(rows_sql::upsert_history))
            .chain(counts.chunks(n).filter_map(rows_sql::upsert_counts));
        for (sql, params) in statements {
            tx.exec_drop(sql, params)?;
        }
        Ok(())
    }
}

/// Before a rewrite: take back what a chunk of this node's `rt_peers` rows
/// said (its users' `active`/`seeding`, its torrents' counts) and delete
/// the node's rows of those users × torrents, in one bounded transaction.
/// False once none is left. Rows are read as values: a row whose ids do
/// not decode (a site's altered column) is deleted without being read,
/// so it cannot hold the clear in a loop.
pub fn clear_chunk(conn: &mut Conn, node: &str) -> Result<bool, mysql::Error> {
    let rows: Vec<mysql::Row> =
        conn.exec(rows_sql::NODE_ROWS, (node, CLEARED_PER_TRANSACTION as u64))?;
    if rows.is_empty() {
        return Ok(false);
    }
    let pairs: Vec<(u64, u64)> = rows
        .into_iter()
        .filter_map(|r| mysql::from_row_opt::<(u64, u64)>(r).ok())
        .collect();
    let mut tx = conn.start_transaction(TxOpts::default())?;
    if pairs.is_empty() {
        tx.exec_drop(
            rows_sql::FORGET_UNREADABLE_NODE_ROWS,
            (node, CLEARED_PER_TRANSACTION as u64),
        )?;
    }
    for chunk in pairs.chunks(rows_sql::ROWS_PER_STATEMENT) {
        for (sql, params) in rows_sql::forget_node_pairs(chunk, node) {
            tx.exec_drop(sql, params)?;
        }
    }
    tx.commit()?;
    Ok(true)
}
