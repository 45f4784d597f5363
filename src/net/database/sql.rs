//! The statements the database thread sends, and the rows it reads, as
//! plain values: nothing here talks to a server.

use mysql::Value;

use crate::tracker::ledger::Transfer;
use crate::tracker::site::{TorrentRow, UserRow};

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

pub const USER_COLUMNS: &str =
    "SELECT id, passkey, enabled, can_leech, download_factor, upload_factor FROM rt_users";
pub const TORRENT_COLUMNS: &str =
    "SELECT id, info_hash, enabled, download_factor, upload_factor FROM rt_torrents";

/// The two member tables, read alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Users,
    Torrents,
}

impl Table {
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

pub type UserTuple = (u64, Vec<u8>, bool, bool, f64, f64);
pub type TorrentTuple = (u64, Vec<u8>, bool, f64, f64);

pub fn user_row((id, passkey, enabled, can_leech, df, uf): UserTuple) -> UserRow {
    UserRow {
        id,
        passkey,
        enabled,
        can_leech,
        download_factor: df,
        upload_factor: uf,
    }
}

pub fn torrent_row((id, info_hash, enabled, df, uf): TorrentTuple) -> TorrentRow {
    TorrentRow {
        id,
        info_hash,
        enabled,
        download_factor: df,
        upload_factor: uf,
    }
}

/// Claims a batch number for this node; 0 rows affected: applied before.
pub const CLAIM_BATCH: &str =
    "INSERT IGNORE INTO rt_batches (node, batch, applied_at) VALUES (?, ?, NOW(6))";

/// The highest batch number this node has applied (0: none).
pub const LAST_BATCH: &str = "SELECT COALESCE(MAX(batch), 0) FROM rt_batches WHERE node = ?";

/// One statement adding `transfers` to `rt_credits`, with its parameters.
/// Credits without the site's ids (from a passkey file) are left out.
pub fn add_credits(transfers: &[Transfer]) -> Option<(String, Vec<Value>)> {
    let rows: Vec<&Transfer> = transfers
        .iter()
        .filter(|t| t.credit.user_id != 0 && t.credit.torrent_id != 0)
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut sql = String::from(
        "INSERT INTO rt_credits (user_id, torrent_id, uploaded, downloaded, raw_uploaded, \
         raw_downloaded, seed_seconds, completed, last_announce) VALUES ",
    );
    let mut params = Vec::with_capacity(rows.len() * 9);
    for (i, t) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,FROM_UNIXTIME(?))");
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
    }
    sql.push_str(
        " ON DUPLICATE KEY UPDATE uploaded = uploaded + VALUES(uploaded), \
         downloaded = downloaded + VALUES(downloaded), \
         raw_uploaded = raw_uploaded + VALUES(raw_uploaded), \
         raw_downloaded = raw_downloaded + VALUES(raw_downloaded), \
         seed_seconds = seed_seconds + VALUES(seed_seconds), \
         completed = completed + VALUES(completed), \
         last_announce = GREATEST(last_announce, VALUES(last_announce))",
    );
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
        assert!(add_credits(&[transfer(0, 3)]).is_none());
        let (sql, params) = add_credits(&[transfer(1, 3), transfer(0, 3), transfer(2, 4)]).unwrap();
        assert_eq!(sql.matches("FROM_UNIXTIME").count(), 2);
        assert_eq!(params.len(), 18);
        assert_eq!(params[9], Value::from(2u64));
        assert!(sql.contains("seed_seconds = seed_seconds + VALUES(seed_seconds)"));
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
