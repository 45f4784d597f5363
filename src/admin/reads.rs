//! The API's reads: a torrent's counts and peers, the busiest torrents,
//! a user's live peers and pending credits. Each answer is bounded
//! (`MAX_LISTED` peers, 1,000 torrents) and each walk locks one shard at
//! a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use serde::Serialize;
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

/// Peers a torrent's answer lists unless `?peers=N` asks for more.
pub const DEFAULT_PEERS: usize = 200;

/// A listed peer, as the answer writes it.
#[derive(Serialize)]
struct PeerOut {
    ip: IpAddr,
    port: u16,
    seeder: bool,
    age: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
}

/// `GET /api/torrents/{info_hash}`.
#[derive(Serialize)]
struct TorrentOut {
    info_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    seeders: usize,
    leechers: usize,
    completed: u32,
    peers_truncated: bool,
    peers: Vec<PeerOut>,
}

/// A user's live peer, as `GET /api/users/{id}` writes it.
#[derive(Serialize)]
struct SessionOut {
    info_hash: String,
    ip: IpAddr,
    port: u16,
    seeder: bool,
    age: u32,
    uploaded: u64,
    downloaded: u64,
}

impl From<&LiveSession> for SessionOut {
    fn from(s: &LiveSession) -> SessionOut {
        SessionOut {
            info_hash: hex(&s.info_hash.0),
            ip: s.ip,
            port: s.port,
            seeder: s.seeder,
            age: s.age,
            uploaded: s.uploaded,
            downloaded: s.downloaded,
        }
    }
}

/// Up to `most` of a torrent's peers as the table lists them.
fn listed_peers(t: &Torrent, now: u32, most: usize) -> Vec<PeerOut> {
    let mut out = Vec::with_capacity(most.min(t.seeders() + t.leechers()));
    let mut push = |addr: &[u8], seeder: bool, age: u32| {
        if out.len() < most {
            let (ip, port) = split_addr(addr);
            let user_id = None;
            out.push(PeerOut {
                ip,
                port,
                seeder,
                age,
                user_id,
            });
        }
    };
    t.v4.for_each_peer(|r, s| push(&r.addr, s, r.age(now)));
    if let Some(v6) = &t.v6 {
        v6.for_each_peer(|r, s| push(&r.addr, s, r.age(now)));
    }
    out
}

/// `name=N` of a query, `default` when absent; None when malformed or
/// past `most`.
fn query_count(
    query: &str,
    name: &str,
    default: usize,
    least: usize,
    most: usize,
) -> Option<usize> {
    let v = query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    v.map_or(Some(default), |v| v.parse().ok())
        .filter(|n| (least..=most).contains(n))
}

impl AdminApi {
    pub(super) fn get_torrent(&self, hash: &str, query: &str, clock: Clock) -> Reply {
        let h = match body::info_hash("info_hash", hash) {
            Ok(h) => InfoHash(h),
            Err(e) => return Reply::error(400, e.0),
        };
        let Some(most) = query_count(query, "peers", DEFAULT_PEERS, 0, MAX_LISTED) else {
            return Reply::error(400, format!("peers: must be 0 to {MAX_LISTED}"));
        };
        let rules = self.tracker.access();
        let id = rules.site().and_then(|s| s.torrent_id(&h.0));
        let (counts, mut peers) = {
            let shard = self.tracker.table().lock(&h);
            match shard.get(&h) {
                Some(t) => (
                    (t.seeders(), t.leechers(), t.downloaded),
                    listed_peers(t, clock.now, most),
                ),
                None => ((0, 0, 0), Vec::new()),
            }
        };
        if counts.0 + counts.1 == 0 && id.is_none() {
            return Reply::error(404, format!("{} has no peers here", hex(&h.0)));
        }
        if rules.site().is_some() && !peers.is_empty() {
            let sessions = self.tracker.ledger().sessions_on(&h, clock.now);
            let users: HashMap<(IpAddr, u16), u64> = sessions
                .iter()
                .map(|s| ((s.ip, s.port), s.user_id))
                .collect();
            for p in &mut peers {
                p.user_id = users.get(&(p.ip, p.port)).copied().filter(|&u| u != 0);
            }
        }
        Reply::ok(TorrentOut {
            info_hash: hex(&h.0),
            id,
            seeders: counts.0,
            leechers: counts.1,
            completed: counts.2,
            peers_truncated: counts.0 + counts.1 > peers.len(),
            peers,
        })
    }

    pub(super) fn top_torrents(&self, query: &str) -> Reply {
        let Some(n) = query_count(query, "top", 50, 1, MAX_TOP) else {
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
        let peers: Vec<SessionOut> = sessions.iter().map(SessionOut::from).collect();
        Reply::ok(json!({
            "id": id,
            "peers": peers,
            "peers_truncated": more,
            "pending": { "uploaded": pending.uploaded, "downloaded": pending.downloaded },
        }))
    }
}
