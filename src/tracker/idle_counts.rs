//! Completed counts of torrents without peers, so that scrape's
//! `downloaded` survives a quiet night: when a swarm empties its count
//! moves here, and comes back when the torrent gets a peer again.
//!
//! One `IdleCounts` per table shard, under the shard's lock, so a count
//! moves between the swarm and here atomically with the swarm's change.
//! Each is bounded (`tracker.max_idle_torrents` split over the shards);
//! when one is full the smallest counts go first, an eighth at a time, so
//! the scan that finds them is paid once per many insertions; a count
//! below the cut is refused (it would have been among the smallest), and
//! until a count leaves, one below the last cut is refused without a
//! scan.
//!
//! Counts do not age: a torrent nobody announces keeps its count until
//! bigger ones push it out, so a client that completes many made-up
//! torrents twice can push out real counts of one (the most a count of
//! one is worth).

use hashbrown::HashMap;

use crate::protocol::InfoHash;

/// One shard's counts: info hash → completed downloads (never 0).
#[derive(Default)]
pub struct IdleCounts {
    counts: HashMap<InfoHash, u32>,
    /// The most kept.
    cap: usize,
    /// While full, counts below this are refused (the last cut's pivot).
    floor: u32,
}

/// What `IdleCounts::keep` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kept {
    /// Counts dropped to make room (or the count offered, if refused).
    pub evicted: usize,
}

impl IdleCounts {
    /// An empty set keeping at most `cap` counts (0: none).
    pub fn with_cap(cap: usize) -> Self {
        IdleCounts {
            counts: HashMap::new(),
            cap,
            floor: 0,
        }
    }

    /// How many counts are kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The count kept for `hash`.
    pub fn get(&self, hash: &InfoHash) -> Option<u32> {
        self.counts.get(hash).copied()
    }

    /// Take `hash`'s count back (its torrent has peers again).
    pub fn take(&mut self, hash: &InfoHash) -> Option<u32> {
        let taken = self.counts.remove(hash);
        if taken.is_some() {
            // Room again: the next cut, if any, measures the counts then.
            self.floor = 0;
        }
        taken
    }

    /// Keep only the counts of info hashes `keep` says yes to (the access
    /// rules at the sweep); returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&InfoHash) -> bool) -> usize {
        let before = self.counts.len();
        self.counts.retain(|h, _| keep(h));
        if self.counts.len() < before {
            self.floor = 0;
        }
        before - self.counts.len()
    }

    /// Every count kept.
    pub fn iter(&self) -> impl Iterator<Item = (&InfoHash, u32)> {
        self.counts.iter().map(|(h, n)| (h, *n))
    }

    /// Keep `count` for `hash` (the larger of it and one kept already).
    /// A count of 0 is not kept. When full, the smallest counts make room.
    pub fn keep(&mut self, hash: InfoHash, count: u32) -> Kept {
        if count == 0 || self.cap == 0 {
            return Kept {
                evicted: usize::from(count > 0),
            };
        }
        if let Some(n) = self.counts.get_mut(&hash) {
            *n = (*n).max(count);
            return Kept::default();
        }
        let mut evicted = 0;
        if self.counts.len() >= self.cap {
            if count < self.floor {
                return Kept { evicted: 1 };
            }
            // Room for it, unless it is among the smallest itself.
            evicted = self.cut();
            if count < self.floor {
                return Kept {
                    evicted: evicted + 1,
                };
            }
        }
        self.counts.insert(hash, count);
        Kept { evicted }
    }

    /// Drop the smallest eighth of the counts (at least one); returns how
    /// many went. Ties at the pivot go in no particular order.
    fn cut(&mut self) -> usize {
        let n = self.counts.len();
        let target = (n / 8).max(1);
        let mut values: Vec<u32> = self.counts.values().copied().collect();
        let (_, pivot, _) = values.select_nth_unstable(target - 1);
        let pivot = *pivot;
        let mut left = target;
        // Strictly below the pivot first, then ties until the target.
        self.counts.retain(|_, v| {
            if *v < pivot && left > 0 {
                left -= 1;
                return false;
            }
            true
        });
        self.counts.retain(|_, v| {
            if *v == pivot && left > 0 {
                left -= 1;
                return false;
            }
            true
        });
        self.floor = pivot;
        target - left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u32) -> InfoHash {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&i.to_le_bytes());
        InfoHash(b)
    }

    #[test]
    fn keeps_the_larger_count_and_gives_it_back() {
        let mut c = IdleCounts::with_cap(10);
        assert_eq!(c.keep(h(1), 0), Kept::default());
        assert!(c.is_empty());
        c.keep(h(1), 5);
        c.keep(h(1), 3);
        assert_eq!(c.get(&h(1)), Some(5));
        assert_eq!(c.take(&h(1)), Some(5));
        assert_eq!(c.take(&h(1)), None);
    }

    #[test]
    fn when_full_the_smallest_counts_go_first() {
        let mut c = IdleCounts::with_cap(64);
        for i in 0..64 {
            c.keep(h(i), 100 + i);
        }
        // Full: the smallest eighth goes, and a count of 1, smaller
        // still, is refused; then a big one fits in the room made.
        assert_eq!(c.keep(h(1000), 1), Kept { evicted: 9 });
        assert_eq!(c.keep(h(1001), 10_000), Kept::default());
        assert_eq!(c.len(), 57);
        assert!((0..8).all(|i| c.get(&h(i)).is_none()));
        assert!((8..64).all(|i| c.get(&h(i)) == Some(100 + i)));
        assert_eq!(c.get(&h(1001)), Some(10_000));
        // Room: small counts are taken until it is full.
        for i in 2000..2007 {
            assert_eq!(c.keep(h(i), 2), Kept::default());
        }
        assert_eq!(c.len(), 64);
        // Ties: every count equal, the cut still makes room.
        let mut t = IdleCounts::with_cap(16);
        for i in 0..16 {
            t.keep(h(i), 7);
        }
        assert_eq!(t.keep(h(99), 7), Kept { evicted: 2 });
        assert_eq!((t.len(), t.get(&h(99))), (15, Some(7)));
        // The access rules at the sweep: refused hashes go.
        assert_eq!(t.retain(|hash| *hash != h(99)), 1);
        assert_eq!(t.get(&h(99)), None);
        // A count taken back lowers the floor: small counts fit again.
        let mut f = IdleCounts::with_cap(8);
        for i in 0..9 {
            f.keep(h(i), 1000 + i);
        }
        assert_eq!(f.keep(h(50), 5), Kept { evicted: 1 }, "below the cut");
        f.take(&h(8));
        assert_eq!(f.keep(h(51), 5), Kept::default());
        // Full again: the cut is measured anew and takes the 5.
        assert_eq!(f.keep(h(52), 6), Kept { evicted: 1 });
        assert_eq!((f.get(&h(51)), f.get(&h(52))), (None, Some(6)));
        // Nothing kept at all with a cap of 0.
        let mut none = IdleCounts::with_cap(0);
        assert_eq!(none.keep(h(1), 9), Kept { evicted: 1 });
        assert!(none.is_empty());
    }
}
