//! The API's reads: a torrent's counts and peers, the busiest torrents,
//! a user's live peers and pending credits. Each answer is bounded
//! (`MAX_LISTED` peers, 1,000 torrents) and each walk locks one shard at
//! a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use serde_json::{Value, json};

use super::body::{self, hex};
use super::{AdminApi, Clock, Reply, path_id};
use crate::protocol::InfoHash;
use crate::tracker::ledger::{LiveSession, MAX_LISTED};
use crate::tracker::swarm::Torrent;

/// A torrent as the top list ranks it: peers, info hash, seeders,
/// completed.
type Ranked = (usize, [u8; 20], usize, u32);

/// The most `GET /api/torrents?top=N` lists.
pub const MAX_TOP: usize = 1000;

/// A compact peer address (6 or 18 bytes) as address and port.
fn split_addr(b: &[u8]) -> (IpAddr, u16) {
    let (ip, port) = b.split_at(b.len() - 2);
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or([0; 16]))),
    };
    (ip, u16::from_be_bytes([port[0], port[1]]))
}

/// A torrent's peers as the table lists them: address, port, seeder, age.
fn listed_peers(t: &Torrent, now: u32) -> Vec<(IpAddr, u16, bool, u32)> {
    let mut out = Vec::new();
    let mut push = |addr: &[u8], seeder: bool, age: u32| {
        if out.len() < MAX_LISTED {
            let (ip, port) = split_addr(addr);
            out.push((ip, port, seeder, age));
        }
    };
    t.v4.for_each_peer(|r, s| push(&r.addr, s, r.age(now)));
    if let Some(v6) = &t.v6 {
        v6.for_each_peer(|r, s| push(&r.addr, s, r.age(now)));
    }
    out
}

fn session_json(s: &LiveSession) -> Value {
    json!({
        "info_hash": hex(&s.info_hash.0),
        "ip": s.ip.to_string(),
        "port": s.port,
        "seeder": s.seeder,
        "age": s.age,
        "uploaded": s.uploaded,
        "downloaded": s.downloaded,
    })
}

impl AdminApi {
    pub(super) fn get_torrent(&self, hash: &str, clock: Clock) -> Reply {
        let h = match body::info_hash("info_hash", hash) {
            Ok(h) => InfoHash(h),
            Err(e) => return Reply::error(400, e.0),
        };
        let rules = self.tracker.access();
        let id = rules.site().and_then(|s| s.torrent_id(&h.0));
        let (counts, peers) = {
            let shard = self.tracker.table().lock(&h);
            match shard.get(&h) {
                Some(t) => (
                    (t.seeders(), t.leechers(), t.downloaded),
                    listed_peers(t, clock.now),
                ),
                None => ((0, 0, 0), Vec::new()),
            }
        };
        if peers.is_empty() && id.is_none() {
            return Reply::error(404, format!("{} has no peers here", hex(&h.0)));
        }
        let users: HashMap<(IpAddr, u16), u64> = if rules.private() {
            let sessions = self.tracker.ledger().sessions_on(&h, clock.now);
            sessions
                .iter()
                .map(|s| ((s.ip, s.port), s.user_id))
                .collect()
        } else {
            HashMap::new()
        };
        let peers: Vec<Value> = peers
            .iter()
            .map(|&(ip, port, seeder, age)| {
                let mut p =
                    json!({ "ip": ip.to_string(), "port": port, "seeder": seeder, "age": age });
                if let Some(u) = users.get(&(ip, port)).filter(|&&u| u != 0) {
                    p["user_id"] = json!(u);
                }
                p
            })
            .collect();
        let mut out = json!({
            "info_hash": hex(&h.0),
            "seeders": counts.0,
            "leechers": counts.1,
            "completed": counts.2,
            "peers_truncated": counts.0 + counts.1 > peers.len(),
            "peers": peers,
        });
        if let Some(id) = id {
            out["id"] = json!(id);
        }
        Reply::ok(out)
    }

    pub(super) fn top_torrents(&self, query: &str) -> Reply {
        let n = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("top="))
            .map_or(Some(50), |v| v.parse::<usize>().ok())
            .filter(|n| (1..=MAX_TOP).contains(n));
        let Some(n) = n else {
            return Reply::error(400, format!("top: must be 1 to {MAX_TOP}"));
        };
        // The n busiest so far, smallest on top to be pushed out.
        let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::new();
        self.tracker.table().for_each(|h, t| {
            let peers = t.seeders() + t.leechers();
            if heap.len() < n || heap.peek().is_some_and(|Reverse(m)| m.0 < peers) {
                heap.push(Reverse((peers, h.0, t.seeders(), t.downloaded)));
                if heap.len() > n {
                    heap.pop();
                }
            }
        });
        let torrents: Vec<Value> = heap
            .into_sorted_vec()
            .iter()
            .map(|Reverse((peers, h, seeders, completed))| {
                json!({
                    "info_hash": hex(h),
                    "seeders": seeders,
                    "leechers": peers - seeders,
                    "completed": completed,
                })
            })
            .collect();
        Reply::ok(json!({ "torrents": torrents }))
    }

    pub(super) fn get_user(&self, id: &str, clock: Clock) -> Reply {
        let id = match path_id("id", id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let rules = self.tracker.access();
        let passkey = match rules.site() {
            Some(site) => site.passkey_of(id),
            None if rules.passkey_file() => {
                let ids = rules.api_changes().user_keys.lock();
                ids.unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
            }
            None => return Reply::error(409, "private mode is off: there are no users"),
        };
        let Some(passkey) = passkey else {
            return Reply::error(404, format!("user {id} is not served"));
        };
        let (sessions, more, pending) = self.tracker.ledger().sessions_of(&passkey, clock.now);
        let peers: Vec<Value> = sessions.iter().map(session_json).collect();
        Reply::ok(json!({
            "id": id,
            "peers": peers,
            "peers_truncated": more,
            "pending": { "uploaded": pending.uploaded, "downloaded": pending.downloaded },
        }))
    }
}
