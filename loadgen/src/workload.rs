//! What to send: torrents with Zipf popularity, peers pinned to a torrent and
//! a source address, and the bytes of each BEP 15 request. No sockets here.

use rand::{Rng, RngExt};

pub const PROTOCOL_ID: u64 = 0x41727101980;

/// The kinds of request we send; the discriminant is the BEP 15 action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Connect = 0,
    Announce = 1,
    Scrape = 2,
}

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub torrents: u32,
    pub peers: u32,
    /// Zipf exponent of torrent popularity. 0 places peers round-robin:
    /// every torrent gets exactly peers / torrents of them (for the
    /// bytes-per-peer table).
    pub zipf: f64,
    pub seeder_share: f64,
    pub numwant: i32,
    /// Share of requests that are scrapes (the rest are announces).
    pub scrape_share: f64,
    pub scrape_hashes: usize,
    /// Weights of the events none, started, completed, stopped.
    pub events: [u32; 4],
    /// Source addresses (one socket each).
    pub sources: u32,
    /// Seed for info hashes, so every run and every server sees the same.
    pub seed: u64,
    /// Private-tracker load: users whose passkeys the peers announce with
    /// (0: none).
    pub passkeys: u32,
}

/// The passkey of user `n`: 19 letters and digits.
pub fn passkey_of(n: u32) -> [u8; 19] {
    let mut key = *b"loadgen000000000000";
    let digits = format!("{n:012}");
    key[7..].copy_from_slice(digits.as_bytes());
    key
}

pub struct Workload {
    pub config: WorkloadConfig,
    /// Which torrent each peer belongs to (drawn by popularity at start).
    peer_torrent: Vec<u32>,
    event_total: u32,
    /// Announces written: with passkeys, every peer's running totals grow
    /// with it (1 KiB each), so each announce has bytes to credit.
    written: std::cell::Cell<u64>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The most peers one source address can hold (announced ports 1024..).
pub const PEERS_PER_SOURCE: u32 = 64_000;

impl Workload {
    pub fn new(config: WorkloadConfig, rng: &mut impl Rng) -> Workload {
        assert!(config.torrents > 0 && config.peers > 0);
        let event_total = config.events.iter().sum::<u32>().max(1);
        if config.zipf == 0.0 {
            let peer_torrent = (0..config.peers).map(|k| k % config.torrents).collect();
            return Workload {
                config,
                peer_torrent,
                event_total,
                written: std::cell::Cell::new(0),
            };
        }
        // Cumulative Zipf weights, then each peer draws its torrent.
        let mut cdf = Vec::with_capacity(config.torrents as usize);
        let mut sum = 0.0;
        for rank in 1..=config.torrents {
            sum += 1.0 / f64::from(rank).powf(config.zipf);
            cdf.push(sum);
        }
        let peer_torrent = (0..config.peers)
            .map(|_| {
                let x = rng.random::<f64>() * sum;
                cdf.partition_point(|&c| c < x).min(cdf.len() - 1) as u32
            })
            .collect();
        Workload {
            config,
            peer_torrent,
            event_total,
            written: std::cell::Cell::new(0),
        }
    }

    pub fn info_hash(&self, torrent: u32) -> [u8; 20] {
        let mut h = [0u8; 20];
        let base = self.config.seed ^ (u64::from(torrent) << 20);
        for (i, chunk) in h.chunks_mut(8).enumerate() {
            let v = splitmix(base.wrapping_add(i as u64)).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        h
    }

    /// The source (socket) index and announced port of peer `k`.
    pub fn peer_address(&self, k: u32) -> (u32, u16) {
        let s = self.config.sources;
        (k % s, (1024 + k / s) as u16)
    }

    /// Peers that send from source `s`: `s`, `s + sources`, ...
    pub fn peers_of_source(&self, s: u32) -> u32 {
        let n = self.config.peers;
        let sources = self.config.sources;
        n / sources + u32::from(s < n % sources)
    }

    pub fn peer_torrent(&self, k: u32) -> u32 {
        self.peer_torrent[k as usize]
    }

    pub fn is_seeder(&self, k: u32) -> bool {
        (splitmix(u64::from(k) ^ 0x5eed) as f64 / u64::MAX as f64) < self.config.seeder_share
    }

    /// Pick the next request for source `s`: a random peer of that source.
    pub fn random_kind(&self, rng: &mut impl Rng) -> Kind {
        if self.config.scrape_share > 0.0 && rng.random::<f64>() < self.config.scrape_share {
            Kind::Scrape
        } else {
            Kind::Announce
        }
    }

    pub fn random_peer_of_source(&self, s: u32, rng: &mut impl Rng) -> u32 {
        let n = self.peers_of_source(s);
        s + rng.random_range(0..n) * self.config.sources
    }

    fn random_event(&self, rng: &mut impl Rng) -> u32 {
        // Weights are in order none, started, completed, stopped; BEP 15
        // numbers them 0, 2, 1, 3.
        let mut x = rng.random_range(0..self.event_total);
        for (i, w) in self.config.events.iter().enumerate() {
            if x < *w {
                return [0, 2, 1, 3][i];
            }
            x -= w;
        }
        0
    }

    /// Write an announce for peer `k` into `out`; returns its length.
    pub fn write_announce(
        &self,
        out: &mut [u8],
        cid: u64,
        tid: u32,
        k: u32,
        event: Option<u32>,
        rng: &mut impl Rng,
    ) -> usize {
        let torrent = self.peer_torrent(k);
        let (_, port) = self.peer_address(k);
        let event = event.unwrap_or_else(|| self.random_event(rng));
        let left: u64 = if self.is_seeder(k) { 0 } else { 1 << 20 };
        out[..8].copy_from_slice(&cid.to_be_bytes());
        out[8..12].copy_from_slice(&1u32.to_be_bytes());
        out[12..16].copy_from_slice(&tid.to_be_bytes());
        out[16..36].copy_from_slice(&self.info_hash(torrent));
        out[36..44].copy_from_slice(b"-LG0001-");
        out[44..56].copy_from_slice(&splitmix(u64::from(k)).to_le_bytes().repeat(2)[..12]);
        out[56..64].copy_from_slice(&0u64.to_be_bytes());
        out[64..72].copy_from_slice(&left.to_be_bytes());
        out[72..80].copy_from_slice(&0u64.to_be_bytes());
        out[80..84].copy_from_slice(&event.to_be_bytes());
        out[84..88].copy_from_slice(&0u32.to_be_bytes());
        out[88..92].copy_from_slice(&k.to_be_bytes());
        out[92..96].copy_from_slice(&self.config.numwant.to_be_bytes());
        out[96..98].copy_from_slice(&port.to_be_bytes());
        let Some(key) = self.passkey(k) else {
            return 98;
        };
        let total = self.next_total();
        out[56..64].copy_from_slice(&if left == 0 { 0 } else { total }.to_be_bytes());
        out[72..80].copy_from_slice(&total.to_be_bytes());
        // BEP 41 URLData: the tracker URL's path, /<passkey>/announce.
        let path_len = 1 + key.len() + 9;
        out[98] = 2;
        out[99] = path_len as u8;
        out[100] = b'/';
        out[101..101 + key.len()].copy_from_slice(&key);
        out[101 + key.len()..100 + path_len].copy_from_slice(b"/announce");
        100 + path_len
    }

    /// Private-tracker load: peer `k`'s passkey.
    pub fn passkey(&self, k: u32) -> Option<[u8; 19]> {
        (self.config.passkeys > 0).then(|| passkey_of(k % self.config.passkeys))
    }

    /// A running total that grows with every announce written.
    pub fn next_total(&self) -> u64 {
        let n = self.written.get() + 1;
        self.written.set(n);
        n << 10
    }

    /// Write a scrape of random torrents (by popularity: a random peer's).
    pub fn write_scrape(&self, out: &mut [u8], cid: u64, tid: u32, rng: &mut impl Rng) -> usize {
        out[..8].copy_from_slice(&cid.to_be_bytes());
        out[8..12].copy_from_slice(&2u32.to_be_bytes());
        out[12..16].copy_from_slice(&tid.to_be_bytes());
        let mut len = 16;
        for _ in 0..self.config.scrape_hashes {
            let k = rng.random_range(0..self.config.peers);
            out[len..len + 20].copy_from_slice(&self.info_hash(self.peer_torrent(k)));
            len += 20;
        }
        len
    }
}

pub fn write_connect(out: &mut [u8], tid: u32) -> usize {
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&0u32.to_be_bytes());
    out[12..16].copy_from_slice(&tid.to_be_bytes());
    16
}

/// What a reply turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyCheck {
    Connect(u64),
    Announce {
        peers: usize,
    },
    Scrape,
    /// BEP 15 error packet.
    Error,
    /// Wrong action for the request, or a malformed body.
    Invalid,
}

/// Check a reply against the kind of request its transaction id belongs to
/// (the caller has matched the transaction id).
pub fn check_reply(kind: Kind, reply: &[u8], scrape_hashes: usize) -> ReplyCheck {
    if reply.len() < 8 {
        return ReplyCheck::Invalid;
    }
    let action = u32::from_be_bytes(reply[..4].try_into().unwrap());
    match (kind, action) {
        (_, 3) => ReplyCheck::Error,
        (Kind::Connect, 0) if reply.len() == 16 => {
            ReplyCheck::Connect(u64::from_be_bytes(reply[8..16].try_into().unwrap()))
        }
        (Kind::Announce, 1) if reply.len() >= 20 && (reply.len() - 20).is_multiple_of(6) => {
            ReplyCheck::Announce {
                peers: (reply.len() - 20) / 6,
            }
        }
        (Kind::Scrape, 2) if reply.len() == 8 + 12 * scrape_hashes => ReplyCheck::Scrape,
        _ => ReplyCheck::Invalid,
    }
}

/// Whether `reply` is a well-formed connect, announce or scrape reply of
/// any request (for replies whose request has timed out and is forgotten).
pub fn is_reply(reply: &[u8]) -> bool {
    let Some(action) = reply.get(..4) else {
        return false;
    };
    match u32::from_be_bytes(action.try_into().unwrap()) {
        0 => reply.len() == 16,
        1 => reply.len() >= 20 && (reply.len() - 20).is_multiple_of(6),
        2 => reply.len() >= 8 && (reply.len() - 8).is_multiple_of(12),
        _ => false,
    }
}

pub fn reply_tid(reply: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(reply.get(4..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn config() -> WorkloadConfig {
        WorkloadConfig {
            torrents: 1000,
            peers: 10_000,
            zipf: 1.0,
            seeder_share: 0.25,
            numwant: 50,
            scrape_share: 0.1,
            scrape_hashes: 4,
            events: [90, 4, 3, 3],
            sources: 7,
            seed: 1,
            passkeys: 0,
        }
    }

    #[test]
    fn private_announces_carry_the_passkey_and_growing_totals() {
        let mut rng = SmallRng::seed_from_u64(1);
        let w = Workload::new(
            WorkloadConfig {
                passkeys: 3,
                ..config()
            },
            &mut rng,
        );
        let mut out = [0u8; 256];
        let n = w.write_announce(&mut out, 1, 2, 4, Some(0), &mut rng);
        assert_eq!(n, 98 + 2 + 29);
        assert_eq!(&out[98..100], &[2, 29]);
        assert_eq!(&out[100..n], b"/loadgen000000000001/announce");
        let first = u64::from_be_bytes(out[72..80].try_into().unwrap());
        w.write_announce(&mut out, 1, 2, 4, Some(0), &mut rng);
        assert!(u64::from_be_bytes(out[72..80].try_into().unwrap()) > first);
    }

    #[test]
    fn popularity_is_skewed_and_addresses_are_distinct() {
        let mut rng = SmallRng::seed_from_u64(1);
        let w = Workload::new(config(), &mut rng);
        let top = (0..10_000).filter(|&k| w.peer_torrent(k) == 0).count();
        let last = (0..10_000).filter(|&k| w.peer_torrent(k) == 999).count();
        assert!(top > 500 && last < 10, "top {top} last {last}");
        let addrs: std::collections::HashSet<_> = (0..10_000).map(|k| w.peer_address(k)).collect();
        assert_eq!(addrs.len(), 10_000);
        let total: u32 = (0..7).map(|s| w.peers_of_source(s)).sum();
        assert_eq!(total, 10_000);
        for _ in 0..1000 {
            let k = w.random_peer_of_source(3, &mut rng);
            assert!(k < 10_000 && w.peer_address(k).0 == 3);
        }
        let seeders = (0..10_000).filter(|&k| w.is_seeder(k)).count();
        assert!((2000..3000).contains(&seeders), "{seeders}");
    }

    #[test]
    fn zipf_zero_makes_equal_swarms() {
        let mut rng = SmallRng::seed_from_u64(1);
        let w = Workload::new(
            WorkloadConfig {
                zipf: 0.0,
                ..config()
            },
            &mut rng,
        );
        let mut sizes = vec![0; 1000];
        for k in 0..10_000 {
            sizes[w.peer_torrent(k) as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| n == 10));
    }

    #[test]
    fn requests_have_bep15_layout() {
        let mut rng = SmallRng::seed_from_u64(1);
        let w = Workload::new(config(), &mut rng);
        let mut out = [0u8; 256];
        assert_eq!(w.write_announce(&mut out, 5, 6, 7, Some(2), &mut rng), 98);
        assert_eq!(out[8..12], 1u32.to_be_bytes());
        assert_eq!(out[12..16], 6u32.to_be_bytes());
        assert_eq!(out[16..36], w.info_hash(w.peer_torrent(7)));
        assert_eq!(out[80..84], 2u32.to_be_bytes());
        assert_eq!(w.write_scrape(&mut out, 5, 6, &mut rng), 16 + 80);
        assert_eq!(write_connect(&mut out, 9), 16);
        assert_eq!(out[..8], PROTOCOL_ID.to_be_bytes());
    }

    #[test]
    fn replies_are_checked() {
        let mut r = vec![0, 0, 0, 1, 0, 0, 0, 6];
        r.extend_from_slice(&[0; 12]);
        assert_eq!(
            check_reply(Kind::Announce, &r, 4),
            ReplyCheck::Announce { peers: 0 }
        );
        assert_eq!(check_reply(Kind::Scrape, &r, 4), ReplyCheck::Invalid);
        r.extend_from_slice(&[1; 6]);
        assert_eq!(
            check_reply(Kind::Announce, &r, 4),
            ReplyCheck::Announce { peers: 1 }
        );
        r.push(0);
        assert_eq!(check_reply(Kind::Announce, &r, 4), ReplyCheck::Invalid);
        assert_eq!(
            check_reply(Kind::Connect, &[0, 0, 0, 3, 0, 0, 0, 1, b'x'], 4),
            ReplyCheck::Error
        );
        assert_eq!(reply_tid(&r), Some(6));
    }
}
