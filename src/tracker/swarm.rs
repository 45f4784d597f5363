//! One torrent: its IPv4 and IPv6 swarms and its completed count.
//!
//! IPv4 and IPv6 peers live in separate swarms, so each swarm's records
//! have the exact compact layout of that family: a reply copies the
//! asker's family, and an HTTP one then the other (dual-stack replies). Seeders and leechers are apart, so a
//! seeder is sent leechers only without filtering. The IPv6 swarm is boxed
//! and made on first use: most torrents never see an IPv6 peer, and the
//! inline IPv4 swarm keeps a one- or two-peer torrent free of heap memory:
//! a whole such torrent is a 64-byte table entry (20-byte key, 4-byte tag,
//! 40-byte `Torrent`).

use rand::Rng;

use super::peer_set::{AddrHasher, INLINE, Origin, PeerRecord, PeerSet, Upsert, V4, V6};

/// The random numbers a reply needs: one per set, each choosing where
/// that set's window of peers starts, and one for the interval it tells.
/// Drawn by the caller (like time, randomness is an argument), so the
/// batch pipeline knows the windows before the announce runs and can
/// prefetch them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Picks {
    /// Where the leechers' window starts.
    pub leechers: u32,
    /// Where the seeders' window starts.
    pub seeders: u32,
    /// The interval's draw (`AnnouncePolicy::reply_interval`).
    pub interval: u32,
}

impl Picks {
    /// Fresh picks from `rng`.
    pub fn draw(rng: &mut impl Rng) -> Picks {
        Picks {
            leechers: rng.next_u32(),
            seeders: rng.next_u32(),
            interval: rng.next_u32(),
        }
    }
}

/// How many of a reply's `max` peers come from the leechers and how many
/// from the seeders, for an asker that is (or is not) a seeder, in a swarm
/// of `s` seeders and `l` leechers: a seeder gets leechers only, a leecher
/// both in proportion. (Seeders then fill any shortfall of leechers.)
fn shares(is_seeder: bool, max: usize, s: usize, l: usize) -> (usize, usize) {
    if is_seeder {
        return (max, 0);
    }
    let seeders = if s + l <= max {
        s
    } else {
        (max * s + (s + l) / 2) / (s + l)
    };
    (max - seeders, seeders)
}

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

/// Whether `effect` of `update` made the peer a seeder it was not before.
pub fn became_seeder(effect: PeerEffect, update: PeerUpdate) -> bool {
    update == PeerUpdate::Seeder && matches!(effect, PeerEffect::Added | PeerEffect::RoleChanged)
}

/// What an update did to the peer it names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerEffect {
    /// It was not in the swarm and is now.
    Added,
    /// It was, in the other role (`seeder`: its role now).
    RoleChanged,
    /// It was, in the same role, last seen `age` seconds before, from
    /// `was` (its stamp was refreshed unless too young: `min_age`).
    Refreshed {
        /// Seconds since it was last seen.
        age: u32,
        /// Its origin before this change.
        was: Origin,
    },
    /// It was, and is gone (`stopped`).
    Removed,
    /// Nothing changed: removing a peer that was not there, or port 0.
    Untouched,
}

/// The peers of one family in one torrent.
///
/// A swarm of one or two peers (most torrents) keeps them inline, whatever
/// their roles, with a bit per record saying "seeder": 24 bytes and no heap
/// allocation. A third peer moves the swarm to a boxed pair of `PeerSet`s,
/// seeders and leechers apart; it moves back inline when it shrinks to two.
pub struct Swarm<const N: usize> {
    repr: Repr<N>,
}

enum Repr<const N: usize> {
    Inline {
        len: u8,
        /// Bit i set: `recs[i]` is a seeder.
        seeder_bits: u8,
        recs: [PeerRecord<N>; INLINE],
    },
    Split(Box<Split<N>>),
}

#[derive(Default)]
struct Split<const N: usize> {
    seeders: PeerSet<N>,
    leechers: PeerSet<N>,
}

impl<const N: usize> Default for Swarm<N> {
    fn default() -> Self {
        Swarm {
            repr: Repr::Inline {
                len: 0,
                seeder_bits: 0,
                recs: [PeerRecord::new([0; N], 0, Origin::Local); INLINE],
            },
        }
    }
}

impl<const N: usize> Swarm<N> {
    /// Seeders in the swarm.
    pub fn seeders(&self) -> usize {
        match &self.repr {
            Repr::Inline { seeder_bits, .. } => seeder_bits.count_ones() as usize,
            Repr::Split(s) => s.seeders.len(),
        }
    }

    /// Leechers in the swarm.
    pub fn leechers(&self) -> usize {
        match &self.repr {
            Repr::Inline {
                len, seeder_bits, ..
            } => *len as usize - seeder_bits.count_ones() as usize,
            Repr::Split(s) => s.leechers.len(),
        }
    }

    /// Whether it has no peer.
    pub fn is_empty(&self) -> bool {
        self.seeders() + self.leechers() == 0
    }

    /// The peer's record and role (true: seeder), if it is in the swarm.
    pub fn get(&self, addr: &[u8; N], h: &AddrHasher) -> Option<(PeerRecord<N>, bool)> {
        match &self.repr {
            Repr::Inline {
                len,
                seeder_bits,
                recs,
            } => recs[..*len as usize]
                .iter()
                .position(|r| r.addr == *addr)
                .map(|i| (recs[i], seeder_bits & (1 << i) != 0)),
            Repr::Split(s) => s
                .seeders
                .get(addr, h)
                .map(|r| (r, true))
                .or_else(|| s.leechers.get(addr, h).map(|r| (r, false))),
        }
    }

    /// Apply a local announce. Returns true if the peer just became a
    /// seeder (was not one before), which is when `completed` counts a
    /// download: a retransmitted `completed` counts once.
    pub fn update(&mut self, addr: [u8; N], update: PeerUpdate, now: u32, h: &AddrHasher) -> bool {
        let effect = self.update_with(addr, update, now, 0, Origin::Local, h);
        became_seeder(effect, update)
    }

    /// Apply an update from `origin`. A peer that stays in its role keeps
    /// its stamp unless it is at least `min_age` seconds old or changes
    /// origin: an announce before `min interval` is answered without
    /// touching the peer's record.
    pub fn update_with(
        &mut self,
        addr: [u8; N],
        update: PeerUpdate,
        now: u32,
        min_age: u32,
        origin: Origin,
        h: &AddrHasher,
    ) -> PeerEffect {
        if let Repr::Inline {
            len,
            seeder_bits,
            recs,
        } = &mut self.repr
        {
            let n = *len as usize;
            let found = recs[..n].iter().position(|r| r.addr == addr);
            match (update, found) {
                (PeerUpdate::ReadOnly, _) | (PeerUpdate::Remove, None) => {
                    return PeerEffect::Untouched;
                }
                (PeerUpdate::Remove, Some(i)) => {
                    let last = n - 1;
                    recs[i] = recs[last];
                    // The last record moves into slot i, its role bit with it.
                    let last_bit = (*seeder_bits >> last) & 1;
                    *seeder_bits &= !(1 << last);
                    if i != last {
                        *seeder_bits = (*seeder_bits & !(1 << i)) | (last_bit << i);
                    }
                    *len -= 1;
                    return PeerEffect::Removed;
                }
                (PeerUpdate::Seeder | PeerUpdate::Leecher, Some(i)) => {
                    let was_seeder = *seeder_bits & (1 << i) != 0;
                    let seeder = update == PeerUpdate::Seeder;
                    let min_age = if seeder == was_seeder { min_age } else { 0 };
                    let Upsert::Found { age, was } = recs[i].refresh(now, min_age, origin) else {
                        unreachable!("refresh finds")
                    };
                    *seeder_bits = (*seeder_bits & !(1 << i)) | (u8::from(seeder) << i);
                    return if seeder == was_seeder {
                        PeerEffect::Refreshed { age, was }
                    } else {
                        PeerEffect::RoleChanged
                    };
                }
                (PeerUpdate::Seeder | PeerUpdate::Leecher, None) if n < INLINE => {
                    recs[n] = PeerRecord::new(addr, now, origin);
                    let seeder = update == PeerUpdate::Seeder;
                    *seeder_bits |= u8::from(seeder) << n;
                    *len += 1;
                    return PeerEffect::Added;
                }
                (PeerUpdate::Seeder | PeerUpdate::Leecher, None) => self.split(h),
            }
        }
        let Repr::Split(split) = &mut self.repr else {
            unreachable!("inline cases returned above")
        };
        // Refresh in the set the peer announces for first: in the steady
        // state (same role as last time) that is the only probe. Only a new
        // or role-changing peer also looks in the other set.
        let (own, other) = match update {
            PeerUpdate::Seeder => (&mut split.seeders, &mut split.leechers),
            PeerUpdate::Leecher => (&mut split.leechers, &mut split.seeders),
            PeerUpdate::ReadOnly => return PeerEffect::Untouched,
            PeerUpdate::Remove => {
                if !split.seeders.remove(&addr, h) && !split.leechers.remove(&addr, h) {
                    return PeerEffect::Untouched;
                }
                self.inline_if_small();
                return PeerEffect::Removed;
            }
        };
        match own.upsert_with(addr, now, min_age, origin, h) {
            Upsert::Found { age, was } => PeerEffect::Refreshed { age, was },
            Upsert::New if other.remove(&addr, h) => PeerEffect::RoleChanged,
            Upsert::New => PeerEffect::Added,
        }
    }

    /// Move an inline swarm to separate sets (a third peer is coming).
    fn split(&mut self, h: &AddrHasher) {
        let Repr::Inline {
            len,
            seeder_bits,
            recs,
        } = &self.repr
        else {
            return;
        };
        let mut split = Box::<Split<N>>::default();
        for (i, r) in recs[..*len as usize].iter().enumerate() {
            let set = if *seeder_bits & (1 << i) != 0 {
                &mut split.seeders
            } else {
                &mut split.leechers
            };
            set.insert(*r, h);
        }
        self.repr = Repr::Split(split);
    }

    /// Move a split swarm of at most `INLINE` peers back inline.
    fn inline_if_small(&mut self) {
        let Repr::Split(split) = &self.repr else {
            return;
        };
        if split.seeders.len() + split.leechers.len() > INLINE {
            return;
        }
        let mut inline = Swarm::<N>::default();
        if let Repr::Inline {
            len,
            seeder_bits,
            recs,
        } = &mut inline.repr
        {
            let all = split
                .seeders
                .iter()
                .map(|r| (r, true))
                .chain(split.leechers.iter().map(|r| (r, false)));
            for (i, (r, seeder)) in all.enumerate() {
                recs[i] = *r;
                *seeder_bits |= u8::from(seeder) << i;
                *len += 1;
            }
        }
        *self = inline;
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
        picks: Picks,
    ) -> usize {
        let max = max.min(out.len() / N);
        let split = match &self.repr {
            Repr::Inline {
                len,
                seeder_bits,
                recs,
            } => {
                let mut n = 0;
                for (i, r) in recs[..*len as usize].iter().enumerate() {
                    let wanted = !is_seeder || seeder_bits & (1 << i) == 0;
                    if n < max && wanted && r.addr != *skip {
                        out[n * N..(n + 1) * N].copy_from_slice(&r.addr);
                        n += 1;
                    }
                }
                return n;
            }
            Repr::Split(split) => split,
        };
        let (leechers, _) = shares(is_seeder, max, split.seeders.len(), split.leechers.len());
        // Leechers first, up to their share; then (for a leecher) seeders
        // fill the rest, so a shortfall of leechers (or `skip` among them)
        // goes to seeders. The asker is then a leecher, so it is never among
        // the seeders and the seeders always deliver at least their share.
        let n = split
            .leechers
            .copy_random(out, leechers, skip, picks.leechers);
        if is_seeder {
            return n;
        }
        n + split
            .seeders
            .copy_random(&mut out[n * N..], max - n, skip, picks.seeders)
    }

    /// Ask for the cache lines an announce by `addr` will touch in a big
    /// swarm: its own slot in the set of its role, and each window `select`
    /// will copy with the same `picks` (the batch pipeline, ahead of the
    /// announce). Small swarms live in the table entry.
    pub fn prefetch_announce(
        &self,
        addr: &[u8; N],
        is_seeder: bool,
        max: usize,
        picks: Picks,
        h: &AddrHasher,
    ) {
        let Repr::Split(split) = &self.repr else {
            return;
        };
        let own = if is_seeder {
            &split.seeders
        } else {
            &split.leechers
        };
        own.prefetch_slot(addr, h);
        let (leechers, seeders) = shares(is_seeder, max, split.seeders.len(), split.leechers.len());
        if leechers > 0 {
            split.leechers.prefetch_window(picks.leechers, leechers);
        }
        if seeders > 0 {
            split.seeders.prefetch_window(picks.seeders, seeders);
        }
    }

    /// Expire peers not seen for more than `timeout` seconds, handing each
    /// to `gone`; returns how many went.
    pub fn retain_fresh(
        &mut self,
        now: u32,
        timeout: u32,
        h: &AddrHasher,
        gone: &mut impl FnMut(&PeerRecord<N>),
    ) -> usize {
        match &mut self.repr {
            Repr::Inline {
                len,
                seeder_bits,
                recs,
            } => {
                let (mut kept, mut bits) = (0, 0u8);
                for i in 0..*len as usize {
                    if recs[i].age(now) <= timeout {
                        recs[kept] = recs[i];
                        bits |= ((*seeder_bits >> i) & 1) << kept;
                        kept += 1;
                    } else {
                        gone(&recs[i]);
                    }
                }
                let gone = *len as usize - kept;
                *len = kept as u8;
                *seeder_bits = bits;
                gone
            }
            Repr::Split(split) => {
                let went = split.seeders.retain_fresh(now, timeout, h, gone)
                    + split.leechers.retain_fresh(now, timeout, h, gone);
                self.inline_if_small();
                went
            }
        }
    }

    /// Visit every peer with its role (true: seeder), for snapshots.
    pub fn for_each_peer(&self, mut f: impl FnMut(&PeerRecord<N>, bool)) {
        match &self.repr {
            Repr::Inline {
                len,
                seeder_bits,
                recs,
            } => {
                for (i, r) in recs[..*len as usize].iter().enumerate() {
                    f(r, seeder_bits & (1 << i) != 0);
                }
            }
            Repr::Split(split) => {
                split.seeders.iter().for_each(|r| f(r, true));
                split.leechers.iter().for_each(|r| f(r, false));
            }
        }
    }

    /// Heap bytes held by this swarm.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Split(s) => {
                std::mem::size_of::<Split<N>>() + s.seeders.heap_bytes() + s.leechers.heap_bytes()
            }
        }
    }
}

/// One torrent's peers (an IPv4 swarm, an IPv6 one once it has an IPv6
/// peer) and its completed count.
#[derive(Default)]
pub struct Torrent {
    /// IPv4 peers.
    pub v4: Swarm<V4>,
    /// IPv6 peers (boxed: most torrents have none).
    pub v6: Option<Box<Swarm<V6>>>,
    /// Completed downloads reported (`completed` events), for scrape.
    pub downloaded: u32,
}

impl Torrent {
    /// Seeders of both families.
    pub fn seeders(&self) -> usize {
        self.v4.seeders() + self.v6.as_ref().map_or(0, |s| s.seeders())
    }

    /// Leechers of both families.
    pub fn leechers(&self) -> usize {
        self.v4.leechers() + self.v6.as_ref().map_or(0, |s| s.leechers())
    }

    /// Whether it has no peer.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.as_ref().is_none_or(|s| s.is_empty())
    }

    /// The IPv6 swarm, created if absent.
    pub fn v6_mut(&mut self) -> &mut Swarm<V6> {
        self.v6.get_or_insert_with(Box::default)
    }

    /// Expire peers not seen for more than `timeout` seconds, handing each
    /// one's compact address and origin to `gone`; frees the IPv6 swarm
    /// when it empties. Returns how many peers went.
    pub fn retain_fresh(
        &mut self,
        now: u32,
        timeout: u32,
        h: &AddrHasher,
        mut gone: impl FnMut(&[u8], Origin),
    ) -> usize {
        let mut went = self
            .v4
            .retain_fresh(now, timeout, h, &mut |r| gone(&r.addr, r.origin()));
        if let Some(v6) = &mut self.v6 {
            went += v6.retain_fresh(now, timeout, h, &mut |r| gone(&r.addr, r.origin()));
            if v6.is_empty() {
                self.v6 = None;
            }
        }
        went
    }

    /// Heap bytes held by this torrent's peers (not the table entry itself).
    pub fn heap_bytes(&self) -> usize {
        let v6 = self
            .v6
            .as_ref()
            .map_or(0, |s| std::mem::size_of::<Swarm<V6>>() + s.heap_bytes());
        self.v4.heap_bytes() + v6
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
        assert_eq!(std::mem::size_of::<Swarm<V4>>(), 24);
        assert_eq!(std::mem::size_of::<Torrent>(), 40);
        // With its key and tag, a torrent is one 64-byte table entry
        // (`torrent_map::tests::an_entry_is_64_bytes`).
    }

    #[test]
    fn roles_move_and_completed_counts_once() {
        let h = AddrHasher::new(1, 2);
        let mut s = Swarm::<V4>::default();
        assert!(!s.update(addr(1), PeerUpdate::Leecher, 0, &h));
        assert_eq!((s.seeders(), s.leechers()), (0, 1));
        assert!(s.update(addr(1), PeerUpdate::Seeder, 0, &h));
        assert!(
            !s.update(addr(1), PeerUpdate::Seeder, 0, &h),
            "already a seeder"
        );
        assert_eq!((s.seeders(), s.leechers()), (1, 0));
        s.update(addr(1), PeerUpdate::ReadOnly, 0, &h);
        assert_eq!((s.seeders(), s.leechers()), (1, 0));
        s.update(addr(1), PeerUpdate::Remove, 0, &h);
        assert!(s.is_empty());
    }

    #[test]
    fn inline_and_split_agree_with_a_model() {
        use rand::RngExt;
        let h = AddrHasher::new(3, 4);
        let mut rng = SmallRng::seed_from_u64(11);
        let mut s = Swarm::<V4>::default();
        let mut model: std::collections::HashMap<[u8; V4], bool> = Default::default();
        for step in 0..50_000u32 {
            let a = addr(rng.random_range(0..6));
            let (update, expect_became) = match rng.random_range(0..4) {
                0 => (PeerUpdate::Seeder, model.get(&a) != Some(&true)),
                1 => (PeerUpdate::Leecher, false),
                2 => (PeerUpdate::Remove, false),
                _ => (PeerUpdate::ReadOnly, false),
            };
            assert_eq!(s.update(a, update, step, &h), expect_became, "step {step}");
            match update {
                PeerUpdate::Seeder => drop(model.insert(a, true)),
                PeerUpdate::Leecher => drop(model.insert(a, false)),
                PeerUpdate::Remove => drop(model.remove(&a)),
                PeerUpdate::ReadOnly => {}
            }
            let seeders = model.values().filter(|s| **s).count();
            assert_eq!(
                (s.seeders(), s.leechers()),
                (seeders, model.len() - seeders)
            );
            for i in 0..6 {
                assert_eq!(
                    s.get(&addr(i), &h).map(|(_, seeder)| seeder),
                    model.get(&addr(i)).copied()
                );
            }
            if model.len() <= INLINE {
                assert_eq!(s.heap_bytes(), 0, "small swarms live inline");
            }
            // A seeder is never sent seeders; nobody is sent themselves.
            let mut out = [0u8; 10 * V4];
            let n = s.select(true, &mut out, 10, &a, Picks::draw(&mut rng));
            assert!(
                out[..n * V4]
                    .chunks(V4)
                    .all(|c| model.get(c) == Some(&false) && c != a)
            );
            let n = s.select(false, &mut out, 10, &a, Picks::draw(&mut rng));
            let expected = model.len() - usize::from(model.contains_key(&a));
            assert_eq!(n, expected);
        }
    }

    #[test]
    fn early_reannounces_leave_the_stamp_but_role_changes_apply() {
        let h = AddrHasher::new(1, 2);
        // Inline (two peers) and split (five peers) behave the same.
        for peers in [2u16, 5] {
            let mut s = Swarm::<V4>::default();
            for i in 0..peers {
                s.update(addr(i), PeerUpdate::Leecher, 0, &h);
            }
            // At 10 s, within a 60 s minimum: the stamp stays at 0 ...
            let local = Origin::Local;
            let early = s.update_with(addr(0), PeerUpdate::Leecher, 10, 60, local, &h);
            assert_eq!(
                early,
                PeerEffect::Refreshed {
                    age: 10,
                    was: local
                }
            );
            // ... but becoming a seeder is news, and is stamped.
            let news = s.update_with(addr(1), PeerUpdate::Seeder, 10, 60, local, &h);
            assert_eq!(news, PeerEffect::RoleChanged);
            // After the minimum, a plain re-announce refreshes.
            s.update_with(addr(1), PeerUpdate::Seeder, 80, 60, local, &h);
            // With a 100 s timeout at 105 s: peer 0 (stamp 0) and the
            // untouched others go, peer 1 (stamp 80) stays.
            let mut gone = 0;
            let went = s.retain_fresh(105, 100, &h, &mut |_| gone += 1);
            assert_eq!((went, gone), (usize::from(peers) - 1, went));
            assert_eq!(
                s.get(&addr(1), &h).map(|(_, seeder)| seeder),
                Some(true),
                "{peers} peers"
            );
        }
    }

    #[test]
    fn inline_expiry_keeps_roles() {
        let h = AddrHasher::new(1, 2);
        let mut s = Swarm::<V4>::default();
        s.update(addr(1), PeerUpdate::Leecher, 10, &h);
        s.update(addr(2), PeerUpdate::Seeder, 100, &h);
        assert_eq!(s.retain_fresh(150, 100, &h, &mut |_| {}), 1);
        assert_eq!(s.get(&addr(2), &h).map(|(_, seeder)| seeder), Some(true));
        assert_eq!((s.seeders(), s.leechers()), (1, 0));
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
        let n = s.select(true, &mut out, 50, &addr(0), Picks::draw(&mut rng));
        assert_eq!(n, 10);
        let leechers: HashSet<_> = (100..110).map(addr).collect();
        assert!(out[..n * V4].chunks(V4).all(|c| leechers.contains(c)));

        let n = s.select(false, &mut out, 20, &addr(100), Picks::draw(&mut rng));
        assert_eq!(n, 20);
        let got: HashSet<_> = out[..n * V4].chunks(V4).collect();
        assert_eq!(got.len(), 20, "no duplicates");
        assert!(!got.contains(&addr(100)[..]));
        let l = got.iter().filter(|c| leechers.contains(**c)).count();
        assert!((3..=7).contains(&l), "about a quarter leechers, got {l}");

        // Asking for more than there are returns everyone but the asker.
        let n = s.select(false, &mut out, 100, &addr(100), Picks::draw(&mut rng));
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
        let n = s.select(false, &mut out, 10, &addr(200), Picks::draw(&mut rng));
        assert_eq!(n, 10);
        let got: HashSet<_> = out[..n * V4].chunks(V4).collect();
        assert_eq!(got.len(), 10);
    }
}
