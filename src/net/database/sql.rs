//! The statements the database thread sends, and the rows it reads, as
//! plain values: nothing here talks to a server.

use std::fmt::Write;

use mysql::Value;

use crate::tracker::ledger::Transfer;
use crate::tracker::site::{Grant, NO_END, TorrentRow, UserRow};

/// How far before the previous read an incremental read starts: a site
/// transaction that took longer than this between setting `updated_at`
/// and committing is seen only by the next full read.
pub const LOOKBACK_SECONDS: u32 = 60;

/// Where the next incremental read starts, by the server's clock (the one
/// `updated_at` is set by): asked before the rows are read, so a row
/// changed during the read is read again next time. Rows a burst changed
/// are read again for `LOOKBACK_SECONDS` of wall time, then no more.
pub fn watermark_query() -> String {
    format!(
        "SELECT DATE_FORMAT(NOW(6) - INTERVAL {LOOKBACK_SECONDS} SECOND, '%Y-%m-%d %H:%i:%s.%f')"
    )
}

/// Rows a credit statement carries (9 placeholders each, far below the
/// protocol's 65,535).
pub const CREDIT_ROWS_PER_STATEMENT: usize = 500;

/// The columns read of `rt_users`.
pub const USER_COLUMNS: &str = "SELECT id, passkey, enabled, can_leech, download_factor, \
     upload_factor, UNIX_TIMESTAMP(updated_at) FROM rt_users";
/// The columns read of `rt_torrents`.
pub const TORRENT_COLUMNS: &str = "SELECT id, info_hash, enabled, download_factor, \
     upload_factor, UNIX_TIMESTAMP(updated_at) FROM rt_torrents";

/// Most `rt_freeleech_tokens` rows taken per read (the grants' bound).
pub const MAX_FREELEECH_ROWS: usize = crate::tracker::list_overlay::MAX_API_ENTRIES;

/// The freeleech grants in force: `until` in unix seconds, NULL for good;
/// one row past the bound tells that rows were left out.
pub fn freeleech_query() -> String {
    format!(
        "SELECT user_id, torrent_id, until FROM rt_freeleech_tokens \
         WHERE until IS NULL OR until > UNIX_TIMESTAMP() \
         ORDER BY user_id, torrent_id LIMIT {}",
        MAX_FREELEECH_ROWS + 1
    )
}

/// A row of `freeleech_query`: a user id, a torrent id (0: every torrent)
/// and NULL or unix seconds.
pub fn grant_row(values: &[Value]) -> Result<Grant, UndecodedRow> {
    let c = Columns::new(values)?;
    let until = match values.get(2) {
        Some(Value::NULL) => Some(NO_END),
        Some(v) => count(v),
        None => None,
    };
    Ok(Grant {
        user_id: c.id,
        torrent_id: c.get(1, "torrent_id", count)?,
        until: until.ok_or(UndecodedRow {
            id: Some(c.id),
            column: "until",
            updated: 0.0,
        })?,
    })
}

/// A non-negative integer.
fn count(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::UInt(u) => Some(*u),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The two member tables, read alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `rt_users`.
    Users,
    /// `rt_torrents`.
    Torrents,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "rt_users",
            Table::Torrents => "rt_torrents",
        }
    }

    /// Every enabled row (`since` None), or every row changed since the
    /// watermark, enabled or not.
    pub fn rows_query(self, since: Option<&str>) -> (String, Vec<Value>) {
        let columns = match self {
            Table::Users => USER_COLUMNS,
            Table::Torrents => TORRENT_COLUMNS,
        };
        match since {
            None => (format!("{columns} WHERE enabled = 1"), Vec::new()),
            Some(t) => (
                format!("{columns} WHERE updated_at >= ?"),
                vec![Value::from(t)],
            ),
        }
    }
}

/// A row that did not decode: its id where that much did (the key it
/// served before is then withdrawn), and the first column that did not.
#[derive(Debug, Clone, PartialEq)]
pub struct UndecodedRow {
    /// Its id, if that column decoded.
    pub id: Option<u64>,
    /// The first column that did not.
    pub column: &'static str,
    /// Its `updated_at` (the last column), unix seconds; 0 if that did not
    /// decode either (the withdrawal then yields to a change the
    /// management API made).
    pub updated: f64,
}

impl std::fmt::Display for UndecodedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(f, "row id {id}: column {} does not decode", self.column),
            None => write!(f, "a row whose id does not decode (a positive integer)"),
        }
    }
}

/// A row's columns, decoded one by one against the row's id: whatever
/// type a site's view gives a column, a value that means the right thing
/// is taken (an integer factor, a decimal, a string of digits).
struct Columns<'a> {
    values: &'a [Value],
    id: u64,
}

impl<'a> Columns<'a> {
    /// The row, if its first column is a positive id.
    fn new(values: &'a [Value]) -> Result<Self, UndecodedRow> {
        let id = values.first().and_then(id).ok_or(UndecodedRow {
            id: None,
            column: "id",
            updated: 0.0,
        })?;
        Ok(Columns { values, id })
    }

    /// `updated_at` in unix seconds; a view's NULL or junk reads as 0
    /// (older than any change the management API made), never a skip.
    fn updated(&self, i: usize) -> f64 {
        self.values.get(i).and_then(number).unwrap_or(0.0)
    }

    fn get<T>(
        &self,
        i: usize,
        column: &'static str,
        decode: fn(&Value) -> Option<T>,
    ) -> Result<T, UndecodedRow> {
        self.values.get(i).and_then(decode).ok_or(UndecodedRow {
            id: Some(self.id),
            column,
            updated: self.values.last().and_then(number).unwrap_or(0.0),
        })
    }
}

/// A row of `USER_COLUMNS`.
pub fn user_row(values: &[Value]) -> Result<UserRow, UndecodedRow> {
    let c = Columns::new(values)?;
    Ok(UserRow {
        id: c.id,
        passkey: c.get(1, "passkey", bytes)?,
        enabled: c.get(2, "enabled", flag)?,
        can_leech: c.get(3, "can_leech", flag)?,
        download_factor: c.get(4, "download_factor", number)?,
        upload_factor: c.get(5, "upload_factor", number)?,
        updated: c.updated(6),
    })
}

/// A row of `TORRENT_COLUMNS`.
pub fn torrent_row(values: &[Value]) -> Result<TorrentRow, UndecodedRow> {
    let c = Columns::new(values)?;
    Ok(TorrentRow {
        id: c.id,
        info_hash: c.get(1, "info_hash", bytes)?,
        enabled: c.get(2, "enabled", flag)?,
        download_factor: c.get(3, "download_factor", number)?,
        upload_factor: c.get(4, "upload_factor", number)?,
        updated: c.updated(5),
    })
}

/// A positive integer.
fn id(v: &Value) -> Option<u64> {
    let id = match v {
        Value::Int(i) => u64::try_from(*i).ok()?,
        Value::UInt(u) => *u,
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok()?,
        _ => return None,
    };
    (id > 0).then_some(id)
}

fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Int(0) | Value::UInt(0) => Some(false),
        Value::Int(1) | Value::UInt(1) => Some(true),
        Value::Bytes(b) if b.as_slice() == b"0" => Some(false),
        Value::Bytes(b) if b.as_slice() == b"1" => Some(true),
        _ => None,
    }
}

/// A finite number (the directory bounds factors further).
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Int(i) => *i as f64,
        Value::UInt(u) => *u as f64,
        Value::Float(f) => f64::from(*f),
        Value::Double(d) => *d,
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    }
}

/// Claims a batch number of this node's journal (its epoch); 0 rows
/// affected: applied before.
pub const CLAIM_BATCH: &str =
    "INSERT IGNORE INTO rt_batches (node, epoch, batch, applied_at) VALUES (?, ?, ?, NOW(6))";

/// The highest batch number this node's journal has applied (0: none).
pub const LAST_BATCH: &str =
    "SELECT COALESCE(MAX(batch), 0) FROM rt_batches WHERE node = ? AND epoch = ?";

/// MariaDB's and MySQL's "unknown column": an rt_batches without `epoch`.
pub const UNKNOWN_COLUMN: u16 = 1054;

/// The columns a credit adds to, and the most each holds.
const SUMMED: [(&str, u64); 6] = [
    ("uploaded", u64::MAX),
    ("downloaded", u64::MAX),
    ("raw_uploaded", u64::MAX),
    ("raw_downloaded", u64::MAX),
    ("seed_seconds", u64::MAX),
    ("completed", u32::MAX as u64),
];

/// Which batches of this node in a range it has applied.
pub const APPLIED_BATCHES: &str =
    "SELECT batch FROM rt_batches WHERE node = ? AND epoch = ? AND batch BETWEEN ? AND ?";

/// One statement adding `transfers` to `rt_credits`, with its parameters.
/// Credits without the site's ids (from a passkey file) are left out.
pub fn add_credits(transfers: &[Transfer], history: bool) -> Option<(String, Vec<Value>)> {
    let rows: Vec<&Transfer> = transfers
        .iter()
        .filter(|t| t.credit.user_id != 0 && t.credit.torrent_id != 0)
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut sql = String::from(
        "INSERT INTO rt_credits (user_id, torrent_id, uploaded, downloaded, raw_uploaded, \
         raw_downloaded, seed_seconds, completed, last_announce",
    );
    sql.push_str(if history {
        ", completed_at) VALUES "
    } else {
        ") VALUES "
    });
    let mut params = Vec::with_capacity(rows.len() * 10);
    for (i, t) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,FROM_UNIXTIME(?)");
        sql.push_str(if history { ",FROM_UNIXTIME(?))" } else { ")" });
        let c = &t.credit;
        params.extend([
            Value::from(c.user_id),
            Value::from(c.torrent_id),
            Value::from(c.uploaded),
            Value::from(c.downloaded),
            Value::from(c.raw_uploaded),
            Value::from(c.raw_downloaded),
            Value::from(c.seed_seconds),
            Value::from(c.completed),
            Value::from(c.last_announce),
        ]);
        if history {
            // The first completion's time; NULL leaves it as it was.
            let first = (c.completed > 0).then_some(c.last_announce);
            params.push(first.map_or(Value::NULL, Value::from));
        }
    }
    // Sums saturate at the column's top (BIGINT / INT UNSIGNED) instead of
    // failing the statement, and with it the batch.
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    for (column, top) in SUMMED {
        let _ = write!(
            sql,
            "{column} = {column} + LEAST(VALUES({column}), {top} - {column}), "
        );
    }
    sql.push_str("last_announce = GREATEST(last_announce, VALUES(last_announce))");
    if history {
        sql.push_str(", completed_at = COALESCE(completed_at, VALUES(completed_at))");
    }
    Some((sql, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::InfoHash;
    use crate::tracker::ledger::{Credit, Passkey};

    fn transfer(user_id: u64, torrent_id: u64) -> Transfer {
        Transfer {
            passkey: Passkey::try_from(&b"abcdef0123456789"[..]).unwrap(),
            info_hash: InfoHash([1; 20]),
            credit: Credit {
                user_id,
                torrent_id,
                uploaded: 5,
                completed: 1,
                last_announce: 1_700_000_000,
                ..Credit::default()
            },
        }
    }

    #[test]
    fn credits_become_one_statement_without_rows_lacking_ids() {
        assert!(add_credits(&[transfer(0, 3)], false).is_none());
        let three = [transfer(1, 3), transfer(0, 3), transfer(2, 4)];
        let (with_history, params) = add_credits(&three, true).unwrap();
        assert_eq!(params.len(), 20);
        assert!(
            with_history.ends_with("completed_at = COALESCE(completed_at, VALUES(completed_at))")
        );
        let (sql, params) = add_credits(&three, false).unwrap();
        assert_eq!(sql.matches("FROM_UNIXTIME").count(), 2);
        assert_eq!(params.len(), 18);
        assert_eq!(params[9], Value::from(2u64));
        assert!(sql.contains(
            "seed_seconds = seed_seconds + LEAST(VALUES(seed_seconds), 18446744073709551615 - seed_seconds)"
        ));
        assert!(sql.contains("LEAST(VALUES(completed), 4294967295 - completed)"));
    }

    #[test]
    fn rows_decode_column_by_column_whatever_a_view_types_them() {
        let row = |v: Vec<Value>| user_row(&v);
        let good = row(vec![
            Value::Int(7),
            Value::Bytes(b"abcdef0123456789".to_vec()),
            Value::Bytes(b"1".to_vec()),
            Value::UInt(0),
            Value::Int(2),
            Value::Bytes(b"0.5".to_vec()),
        ])
        .unwrap();
        assert_eq!((good.id, good.enabled, good.can_leech), (7, true, false));
        assert_eq!((good.download_factor, good.upload_factor), (2.0, 0.5));
        let null_factor = row(vec![
            Value::UInt(8),
            Value::Bytes(b"abcdef0123456789".to_vec()),
            Value::Int(1),
            Value::Int(1),
            Value::NULL,
            Value::Double(1.0),
            Value::Bytes(b"1733490000.250000".to_vec()),
        ]);
        assert_eq!(
            null_factor.unwrap_err(),
            UndecodedRow {
                id: Some(8),
                column: "download_factor",
                updated: 1_733_490_000.25,
            }
        );
        let negative = row(vec![Value::Int(-3)]);
        assert_eq!(negative.unwrap_err().id, None);
        let short = torrent_row(&[Value::UInt(4), Value::Bytes(vec![1; 20])]);
        assert_eq!(short.unwrap_err().column, "enabled");
    }

    #[test]
    fn reads_are_full_or_since_a_watermark() {
        let (all, p) = Table::Users.rows_query(None);
        assert!(all.ends_with("FROM rt_users WHERE enabled = 1") && p.is_empty());
        let (changed, p) = Table::Torrents.rows_query(Some("2026-01-01 00:00:00.000000"));
        assert!(changed.ends_with("FROM rt_torrents WHERE updated_at >= ?"));
        assert_eq!(p.len(), 1);
        assert!(watermark_query().contains("NOW(6) - INTERVAL 60 SECOND"));
    }
}
