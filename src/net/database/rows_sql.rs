//! Write-back's statements (`rt_peers`, `rt_torrent_stats`, the history
//! columns of `rt_credits`) as plain values: nothing here talks to a
//! server. Each builder takes one chunk and makes one multi-row statement.

use std::net::IpAddr;

use mysql::Value;

use crate::tracker::ledger::{HistoryRow, PeerRow, PeerRowKey, Transfer};

/// Rows one write-back statement carries (13 placeholders each at most:
/// 6,500, far below the protocol's 65,535).
pub const ROWS_PER_STATEMENT: usize = 500;

/// Asked on each new connection (and each flush while one fails): the
/// write-back tables and columns exist and the tracker may write them.
/// The statements change nothing (`WHERE FALSE`), but the server checks
/// tables, columns and grants first, and says which is missing.
pub const PROBES: [&str; 6] = [
    "SELECT torrent_id, user_id, peer_id, ip, port, agent, uploaded, downloaded, `left`, seeder, \
     created_at, updated_at, node FROM rt_peers LIMIT 0",
    "SELECT torrent_id, seeders, leechers, times_completed, updated_at FROM rt_torrent_stats LIMIT 0",
    "SELECT first_announce, completed_at, active, seeding, `left` FROM rt_credits LIMIT 0",
    "INSERT INTO rt_peers (torrent_id, user_id, peer_id, ip, port) SELECT 0, 0, '', '', 0 FROM DUAL WHERE FALSE",
    "DELETE FROM rt_peers WHERE FALSE",
    "INSERT INTO rt_torrent_stats (torrent_id) SELECT 0 FROM DUAL WHERE FALSE \
     ON DUPLICATE KEY UPDATE times_completed = times_completed",
];

/// A chunk of this node's `rt_peers` users × torrents, for a rewrite to
/// clear (the node index).
pub const NODE_ROWS: &str = "SELECT user_id, torrent_id FROM rt_peers WHERE node = ? LIMIT ?";

/// A chunk of this node's rows none of whose ids decode: deleted unread.
pub const FORGET_UNREADABLE_NODE_ROWS: &str = "DELETE FROM rt_peers WHERE node = ? LIMIT ?";

/// A rewrite (at start, or after the rows waiting outgrew their bound)
/// first takes back what this node's rows of these users × torrents said —
/// the users' `active` and `seeding`, the torrents' counts (the rewrite
/// says them again for those still live) — and deletes those rows.
pub fn forget_node_pairs(pairs: &[(u64, u64)], node: &str) -> Vec<(String, Vec<Value>)> {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable();
    pairs.dedup();
    if pairs.is_empty() {
        return Vec::new();
    }
    let mut torrents: Vec<u64> = pairs.iter().map(|&(_, t)| t).collect();
    torrents.sort_unstable();
    torrents.dedup();
    let pair_values = || {
        pairs
            .iter()
            .flat_map(|&(u, t)| [Value::from(u), Value::from(t)])
    };
    let in_pairs = tuples("(?,?)", pairs.len());
    let active = (
        format!(
            "UPDATE rt_credits SET active = 0, seeding = 0 WHERE (user_id, torrent_id) IN ({in_pairs})"
        ),
        pair_values().collect(),
    );
    let counts = (
        format!(
            "UPDATE rt_torrent_stats SET seeders = 0, leechers = 0 WHERE torrent_id IN ({})",
            tuples("?", torrents.len())
        ),
        torrents.iter().map(|&t| Value::from(t)).collect(),
    );
    let delete = (
        format!("DELETE FROM rt_peers WHERE node = ? AND (user_id, torrent_id) IN ({in_pairs})"),
        std::iter::once(Value::from(node))
            .chain(pair_values())
            .collect(),
    );
    vec![active, counts, delete]
}

/// An address as `rt_peers.ip` keeps it: 4 or 16 bytes.
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Placeholders of `rows` rows of `row`, comma-separated.
fn tuples(row: &str, rows: usize) -> String {
    let mut s = String::with_capacity((row.len() + 1) * rows);
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str(row);
    }
    s
}

/// Upsert the rows of peers that announced (`node`: this tracker; a peer
/// that moved to it from another is its now).
pub fn upsert_peers(rows: &[PeerRow], node: &str) -> Option<(String, Vec<Value>)> {
    if rows.is_empty() {
        return None;
    }
    let sql = format!(
        "INSERT INTO rt_peers (torrent_id, user_id, peer_id, ip, port, agent, uploaded, downloaded, \
         `left`, seeder, created_at, updated_at, node) VALUES {} ON DUPLICATE KEY UPDATE \
         ip = VALUES(ip), port = VALUES(port), agent = VALUES(agent), uploaded = VALUES(uploaded), \
         downloaded = VALUES(downloaded), `left` = VALUES(`left`), seeder = VALUES(seeder), \
         updated_at = VALUES(updated_at), node = VALUES(node)",
        tuples(
            "(?,?,?,?,?,?,?,?,?,?,FROM_UNIXTIME(?),FROM_UNIXTIME(?),?)",
            rows.len()
        )
    );
    let mut params = Vec::with_capacity(rows.len() * 13);
    for r in rows {
        params.extend([
            Value::from(r.key.torrent_id),
            Value::from(r.key.user_id),
            Value::from(r.key.peer_id.0.to_vec()),
            Value::from(ip_bytes(r.ip)),
            Value::from(r.port),
            Value::from(r.agent.to_vec()),
            Value::from(r.uploaded),
            Value::from(r.downloaded),
            Value::from(r.left),
            Value::from(r.seeder),
            Value::from(r.created_at),
            Value::from(r.updated_at),
            Value::from(node),
        ]);
    }
    Some((sql, params))
}

/// Delete the rows of peers that ended, if they are still this node's.
pub fn delete_peers(keys: &[PeerRowKey], node: &str) -> Option<(String, Vec<Value>)> {
    if keys.is_empty() {
        return None;
    }
    let sql = format!(
        "DELETE FROM rt_peers WHERE node = ? AND (torrent_id, user_id, peer_id) IN ({})",
        tuples("(?,?,?)", keys.len())
    );
    let mut params = Vec::with_capacity(1 + keys.len() * 3);
    params.push(Value::from(node));
    for k in keys {
        params.extend([
            Value::from(k.torrent_id),
            Value::from(k.user_id),
            Value::from(k.peer_id.0.to_vec()),
        ]);
    }
    Some((sql, params))
}

/// Set the history columns of users' `rt_credits` rows (made if they are
/// not there yet: a user is active before a byte moves). The earliest
/// first announce stays; `left` stays when no peer is live.
pub fn upsert_history(rows: &[HistoryRow]) -> Option<(String, Vec<Value>)> {
    if rows.is_empty() {
        return None;
    }
    let sql = format!(
        "INSERT INTO rt_credits (user_id, torrent_id, first_announce, active, seeding, `left`) \
         VALUES {} ON DUPLICATE KEY UPDATE \
         first_announce = COALESCE(LEAST(first_announce, VALUES(first_announce)), first_announce, \
         VALUES(first_announce)), active = VALUES(active), seeding = VALUES(seeding), \
         `left` = COALESCE(VALUES(`left`), `left`)",
        tuples("(?,?,FROM_UNIXTIME(?),?,?,?)", rows.len())
    );
    let mut params = Vec::with_capacity(rows.len() * 6);
    for h in rows {
        params.extend([
            Value::from(h.user_id),
            Value::from(h.torrent_id),
            h.first_announce.map_or(Value::NULL, Value::from),
            Value::from(h.active),
            Value::from(h.seeding),
            h.left.map_or(Value::NULL, Value::from),
        ]);
    }
    Some((sql, params))
}

/// Seeders and leechers of torrents whose counts moved: (torrent id,
/// seeders, leechers).
pub fn upsert_counts(rows: &[(u64, u32, u32)]) -> Option<(String, Vec<Value>)> {
    if rows.is_empty() {
        return None;
    }
    let sql = format!(
        "INSERT INTO rt_torrent_stats (torrent_id, seeders, leechers) VALUES {} \
         ON DUPLICATE KEY UPDATE seeders = VALUES(seeders), leechers = VALUES(leechers)",
        tuples("(?,?,?)", rows.len())
    );
    let params = rows
        .iter()
        .flat_map(|&(id, s, l)| [Value::from(id), Value::from(s), Value::from(l)])
        .collect();
    Some((sql, params))
}

/// The (user, torrent) pairs with a snatch in `transfers`.
fn snatches(transfers: &[Transfer]) -> Vec<(u64, u64)> {
    let mut pairs: Vec<(u64, u64)> = transfers
        .iter()
        .filter(|t| t.credit.completed > 0 && t.credit.user_id != 0 && t.credit.torrent_id != 0)
        .map(|t| (t.credit.user_id, t.credit.torrent_id))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Which of the chunk's snatching users had completed the torrent before
/// (`completed_at` set): their snatch is not a new one for the torrent.
pub fn completed_before(transfers: &[Transfer]) -> Option<(String, Vec<Value>)> {
    let pairs = snatches(transfers);
    if pairs.is_empty() {
        return None;
    }
    let sql = format!(
        "SELECT user_id, torrent_id FROM rt_credits WHERE completed_at IS NOT NULL \
         AND (user_id, torrent_id) IN ({})",
        tuples("(?,?)", pairs.len())
    );
    let params = pairs
        .iter()
        .flat_map(|&(u, t)| [Value::from(u), Value::from(t)])
        .collect();
    Some((sql, params))
}

/// Add each user's first completion in the chunk (pairs not in `done`) to
/// `rt_torrent_stats.times_completed`, in the batch's transaction, so
/// once: a client looping started → completed → stopped under fresh peer
/// ids counts one snatch for the torrent, however often it loops.
pub fn add_first_completions(
    transfers: &[Transfer],
    done: &[(u64, u64)],
) -> Option<(String, Vec<Value>)> {
    let mut per_torrent: Vec<(u64, u64)> = Vec::new();
    for (_, torrent) in snatches(transfers)
        .into_iter()
        .filter(|p| !done.contains(p))
    {
        match per_torrent.iter_mut().find(|(t, _)| *t == torrent) {
            Some((_, n)) => *n += 1,
            None => per_torrent.push((torrent, 1)),
        }
    }
    if per_torrent.is_empty() {
        return None;
    }
    let sql = format!(
        "INSERT INTO rt_torrent_stats (torrent_id, times_completed) VALUES {} \
         ON DUPLICATE KEY UPDATE times_completed = times_completed + \
         LEAST(VALUES(times_completed), 4294967295 - times_completed)",
        tuples("(?,?)", per_torrent.len())
    );
    let params = per_torrent
        .iter()
        .flat_map(|&(id, n)| [Value::from(id), Value::from(n)])
        .collect();
    Some((sql, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{InfoHash, PeerId};
    use crate::tracker::ledger::{Agent, Credit, Passkey};

    fn row(user_id: u64, ip: IpAddr) -> PeerRow {
        PeerRow {
            key: PeerRowKey {
                torrent_id: 9,
                user_id,
                peer_id: PeerId([b'x'; 20]),
            },
            ip,
            port: 6881,
            agent: Agent::try_from(&b"qBittorrent/5.0"[..]).unwrap(),
            uploaded: 1,
            downloaded: 2,
            left: 0,
            seeder: true,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_100,
        }
    }

    #[test]
    fn peers_are_upserted_and_deleted_as_this_node_s_in_one_statement_per_chunk() {
        assert!(upsert_peers(&[], "n").is_none() && delete_peers(&[], "n").is_none());
        let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let rows = [row(1, IpAddr::V4([10, 0, 0, 1].into())), row(2, v6)];
        let (sql, params) = upsert_peers(&rows, "node-a").unwrap();
        assert_eq!(
            sql.matches("FROM_UNIXTIME(?),FROM_UNIXTIME(?),?)").count(),
            2
        );
        assert_eq!(params.len(), 26);
        assert_eq!(params[3], Value::from(vec![10u8, 0, 0, 1]));
        assert_eq!(params[16], Value::from(v6_bytes()));
        assert_eq!(params[12], Value::from("node-a"));
        assert!(!sql.contains("created_at = "), "a row keeps when it began");
        let (sql, params) = delete_peers(&[rows[0].key, rows[1].key], "node-a").unwrap();
        assert!(sql.ends_with("IN ((?,?,?),(?,?,?))"));
        assert_eq!((params.len(), &params[0]), (7, &Value::from("node-a")));
    }

    fn v6_bytes() -> Vec<u8> {
        std::net::Ipv6Addr::LOCALHOST.octets().to_vec()
    }

    #[test]
    fn a_rewrite_clears_what_a_chunk_of_this_node_s_rows_said_then_deletes_them() {
        assert!(forget_node_pairs(&[], "n").is_empty());
        let out = forget_node_pairs(&[(2, 9), (1, 9), (2, 9)], "node-a");
        assert_eq!(out.len(), 3);
        assert!(out[0].0.ends_with("(user_id, torrent_id) IN ((?,?),(?,?))"));
        assert_eq!(out[0].1, [1u64, 9, 2, 9].map(Value::from).to_vec());
        assert!(out[1].0.ends_with("torrent_id IN (?)"));
        assert!(out[2].0.starts_with("DELETE FROM rt_peers WHERE node = ?"));
        assert_eq!(out[2].1.len(), 1 + 2 * 2);
        assert_eq!(out[2].1[0], Value::from("node-a"));
    }

    #[test]
    fn history_keeps_the_first_announce_and_the_last_left_of_an_idle_user() {
        let idle = HistoryRow {
            user_id: 1,
            torrent_id: 2,
            first_announce: None,
            active: false,
            seeding: false,
            left: None,
        };
        let (sql, params) = upsert_history(&[idle]).unwrap();
        assert_eq!(params[2], Value::NULL);
        assert_eq!(params[5], Value::NULL);
        assert!(sql.contains("`left` = COALESCE(VALUES(`left`), `left`)"));
        assert!(sql.contains("LEAST(first_announce, VALUES(first_announce))"));
    }

    #[test]
    fn a_user_s_first_completion_counts_once_for_the_torrent() {
        let t = |user_id, torrent_id, completed| Transfer {
            passkey: Passkey::try_from(&b"abcdef0123456789"[..]).unwrap(),
            info_hash: InfoHash([1; 20]),
            credit: Credit {
                user_id,
                torrent_id,
                completed,
                ..Credit::default()
            },
        };
        assert!(completed_before(&[t(3, 4, 0)]).is_none());
        // User 3 twice on torrent 4 (two passkeys), user 5 on 4 and 6.
        let chunk = [t(3, 4, 2), t(3, 4, 1), t(5, 4, 1), t(5, 6, 1), t(5, 7, 0)];
        let (sql, params) = completed_before(&chunk).unwrap();
        assert!(sql.ends_with("IN ((?,?),(?,?),(?,?))"));
        assert_eq!(params, [3u64, 4, 5, 4, 5, 6].map(Value::from).to_vec());
        let (sql, params) = add_first_completions(&chunk, &[]).unwrap();
        assert!(sql.contains("VALUES (?,?),(?,?) "));
        assert_eq!(params, [4u64, 2, 6, 1].map(Value::from).to_vec());
        // User 5 had completed torrent 6 before.
        let (_, params) = add_first_completions(&chunk, &[(5, 6)]).unwrap();
        assert_eq!(params, [4u64, 2].map(Value::from).to_vec());
        assert!(add_first_completions(&chunk, &[(3, 4), (5, 4), (5, 6)]).is_none());
        let (_, params) = upsert_counts(&[(4, 1, 2)]).unwrap();
        assert_eq!(params.len(), 3);
    }
}
