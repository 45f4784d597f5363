//! One torrent: its IPv4 and IPv6 swarms and its completed count.
//!
//! IPv4 and IPv6 peers live in separate swarms: a reply carries peers of the
//! family the request came in on, and each swarm's records have the exact
//! compact layout of that family. Seeders and leechers are apart, so a
//! seeder is sent leechers only without filtering. The IPv6 swarm is boxed
//! and made on first use: most torrents never see an IPv6 peer, and the
//! inline IPv4 swarm keeps a one- or two-peer torrent free of heap memory.

use rand::Rng;

use super::peer_set::{AddrHasher, PeerSet, V4, V6};

/// What an announce does to the announcing peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerUpdate {
    /// Store it (or refresh it) as a seeder (`left == 0`).
    Seeder,
    /// Store it (or refresh it) as a leecher.
    Leecher,
    /// Remove it (`stopped`).
    Remove,
    /// Leave the swarm as it is: the peer cannot be stored (port 0).
    ReadOnly,
}

#[derive(Default)]
pub struct Swarm<const N: usize> {
    pub seeders: PeerSet<N>,
    pub leechers: PeerSet<N>,
}

impl<const N: usize> Swarm<N> {
    pub fn is_empty(&self) -> bool {
        self.seeders.is_empty() && self.leechers.is_empty()
    }

    /// Apply an announce. Returns true if the peer just became a seeder
    /// (was not one before), which is when `completed` counts a download:
    /// a retransmitted `completed` counts once.
    pub fn update(&mut self, addr: [u8; N], update: PeerUpdate, now: u32, h: &AddrHasher) -> bool {
        // Refresh in the set the peer announces for first: in the steady
        // state (same role as last time) that is the only probe. Only a new
        // or role-changing peer also looks in the other set.
        match update {
            PeerUpdate::Seeder => {
                let new = self.seeders.upsert(addr, now, h);
                if new {
                    self.leechers.remove(&addr, h);
                }
                new
            }
            PeerUpdate::Leecher => {
                if self.leechers.upsert(addr, now, h) {
                    self.seeders.remove(&addr, h);
                }
                false
            }
            PeerUpdate::Remove => {
                if !self.seeders.remove(&addr, h) {
                    self.leechers.remove(&addr, h);
                }
                false
            }
            PeerUpdate::ReadOnly => false,
        }
    }

    /// Write up to `max` peers for a peer that is (`is_seeder`) or is not a
    /// seeder into `out`, never `skip` itself. A seeder gets leechers only;
    /// a leecher gets seeders and leechers in proportion to their numbers.
    /// Returns how many peers were written.
    pub fn select(
        &self,
        is_seeder: bool,
        out: &mut [u8],
        max: usize,
        skip: &[u8; N],
        rng: &mut impl Rng,
    ) -> usize {
        let max = max.min(out.len() / N);
        if is_seeder {
            return self.leechers.copy_random(out, max, skip, rng);
        }
        let (s, l) = (self.seeders.len(), self.leechers.len());
        let seeder_share = if s + l <= max {
            s
        } else {
            (max * s + (s + l) / 2) / (s + l)
        };
        // Leechers first, up to their share; then seeders fill the rest, so
        // a shortfall of leechers (or `skip` among them) goes to seeders.
        // The asker is a leecher, so it is never among the seeders and the
        // seeders always deliver at least their share.
        let n = self
            .leechers
            .copy_random(out, max - seeder_share, skip, rng);
        n + self
            .seeders
            .copy_random(&mut out[n * N..], max - n, skip, rng)
    }
}

#[derive(Default)]
pub struct Torrent {
    pub v4: Swarm<V4>,
    pub v6: Option<Box<Swarm<V6>>>,
    /// Completed downloads reported (`completed` events), for scrape.
    pub downloaded: u32,
}

impl Torrent {
    pub fn seeders(&self) -> usize {
        self.v4.seeders.len() + self.v6.as_ref().map_or(0, |s| s.seeders.len())
    }

    pub fn leechers(&self) -> usize {
        self.v4.leechers.len() + self.v6.as_ref().map_or(0, |s| s.leechers.len())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.as_ref().is_none_or(|s| s.is_empty())
    }

    pub fn v6_mut(&mut self) -> &mut Swarm<V6> {
        self.v6.get_or_insert_with(Box::default)
    }

    /// Expire peers not seen for more than `timeout` seconds; frees the IPv6
    /// swarm when it empties. Returns how many peers went.
    pub fn retain_fresh(&mut self, now: u32, timeout: u32, h: &AddrHasher) -> usize {
        let mut gone = self.v4.seeders.retain_fresh(now, timeout, h)
            + self.v4.leechers.retain_fresh(now, timeout, h);
        if let Some(v6) = &mut self.v6 {
            gone += v6.seeders.retain_fresh(now, timeout, h)
                + v6.leechers.retain_fresh(now, timeout, h);
            if v6.is_empty() {
                self.v6 = None;
            }
        }
        gone
    }

    /// Heap bytes held by this torrent's peers (not the table entry itself).
    pub fn heap_bytes(&self) -> usize {
        let v4 = self.v4.seeders.heap_bytes() + self.v4.leechers.heap_bytes();
        let v6 = self.v6.as_ref().map_or(0, |s| {
            std::mem::size_of::<Swarm<V6>>() + s.seeders.heap_bytes() + s.leechers.heap_bytes()
        });
        v4 + v6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::collections::HashSet;

    fn addr(i: u16) -> [u8; V4] {
        let p = (1000 + i).to_be_bytes();
        [127, 0, 0, 1, p[0], p[1]]
    }

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(std::mem::size_of::<Swarm<V4>>(), 48);
        assert_eq!(std::mem::size_of::<Torrent>(), 64);
    }

    #[test]
    fn roles_move_and_completed_counts_once() {
        let h = AddrHasher::new(1, 2);
        let mut s = Swarm::<V4>::default();
        assert!(!s.update(addr(1), PeerUpdate::Leecher, 0, &h));
        assert_eq!((s.seeders.len(), s.leechers.len()), (0, 1));
        assert!(s.update(addr(1), PeerUpdate::Seeder, 0, &h));
        assert!(
            !s.update(addr(1), PeerUpdate::Seeder, 0, &h),
            "already a seeder"
        );
        assert_eq!((s.seeders.len(), s.leechers.len()), (1, 0));
        s.update(addr(1), PeerUpdate::ReadOnly, 0, &h);
        assert_eq!((s.seeders.len(), s.leechers.len()), (1, 0));
        s.update(addr(1), PeerUpdate::Remove, 0, &h);
        assert!(s.is_empty());
    }

    #[test]
    fn seeders_get_leechers_only_and_leechers_get_a_mix() {
        let h = AddrHasher::new(1, 2);
        let mut rng = SmallRng::seed_from_u64(9);
        let mut s = Swarm::<V4>::default();
        for i in 0..30 {
            s.update(addr(i), PeerUpdate::Seeder, 0, &h);
        }
        for i in 100..110 {
            s.update(addr(i), PeerUpdate::Leecher, 0, &h);
        }
        let mut out = [0u8; 100 * V4];
        let n = s.select(true, &mut out, 50, &addr(0), &mut rng);
        assert_eq!(n, 10);
        let leechers: HashSet<_> = (100..110).map(addr).collect();
        assert!(out[..n * V4].chunks(V4).all(|c| leechers.contains(c)));

        let n = s.select(false, &mut out, 20, &addr(100), &mut rng);
        assert_eq!(n, 20);
        let got: HashSet<_> = out[..n * V4].chunks(V4).collect();
        assert_eq!(got.len(), 20, "no duplicates");
        assert!(!got.contains(&addr(100)[..]));
        let l = got.iter().filter(|c| leechers.contains(**c)).count();
        assert!((3..=7).contains(&l), "about a quarter leechers, got {l}");

        // Asking for more than there are returns everyone but the asker.
        let n = s.select(false, &mut out, 100, &addr(100), &mut rng);
        assert_eq!(n, 39);
    }

    #[test]
    fn a_leecher_alone_with_seeders_gets_all_it_asks_for() {
        let h = AddrHasher::new(1, 2);
        let mut rng = SmallRng::seed_from_u64(5);
        let mut s = Swarm::<V4>::default();
        for i in 0..50 {
            s.update(addr(i), PeerUpdate::Seeder, 0, &h);
        }
        s.update(addr(200), PeerUpdate::Leecher, 0, &h);
        let mut out = [0u8; 100 * V4];
        let n = s.select(false, &mut out, 10, &addr(200), &mut rng);
        assert_eq!(n, 10);
        let got: HashSet<_> = out[..n * V4].chunks(V4).collect();
        assert_eq!(got.len(), 10);
    }
}
