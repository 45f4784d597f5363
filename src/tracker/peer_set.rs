//! The peers of one role (seeders, or leechers) in one swarm.
//!
//! Shaped for memory per peer and for answering announces by copying:
//! - A record is the peer's address in the exact byte layout of a compact
//!   reply (IPv4: 4 + 2 bytes, IPv6: 16 + 2) plus a 16-bit stamp (15 bits
//!   of "last seen", one bit "learned from another cluster node"): 8 bytes
//!   per IPv4 peer, 20 per IPv6 peer, no pointers.
//! - Up to `INLINE` peers live inside the set itself (most torrents have one
//!   or two), with no heap allocation.
//! - Beyond that the records *are* an open-addressing hash table (linear
//!   probing, backward-shift deletion, no tombstones), kept between 20% and
//!   80% full: about 10–15 bytes per IPv4 peer with no separate index.
//!   Port 0 marks an empty slot: a peer announcing port 0 is never stored.
//! - Picking peers for a reply walks the table from a random slot and copies
//!   the occupied ones: random, yet a sequential read through memory.
//!
//! "Last seen" is the tracker clock in seconds, truncated to 15 bits, and
//! ages are computed with wrapping arithmetic. That is exact as long as every
//! peer is looked at within 32768 s of its last announce, which the
//! incremental sweep (a full pass in well under a minute) guarantees; the
//! configured peer timeout is capped below it (`MAX_PEER_TIMEOUT`). The
//! stamp's top bit marks a remote peer (cluster mode: announced at another
//! node, applied here from Redis): it costs no byte, and the sync
//! path needs it to publish only local changes and to let a late removal
//! from another node not delete a peer that has since announced here.

use super::linear_probe::{self, Slot};
use crate::prefetch::prefetch_read;

/// Bytes of a compact IPv4 peer (BEP 23).
pub const V4: usize = 6;
/// Bytes of a compact IPv6 peer (BEP 7).
pub const V6: usize = 18;
/// Peers held without a heap allocation.
pub const INLINE: usize = 2;
/// The longest peer timeout the 15-bit clock can represent with margin
/// (over an hour for the sweep to come round).
pub const MAX_PEER_TIMEOUT: u32 = 8 * 3600;

/// The stamp's bit for a remote peer; the other 15 are the clock.
const REMOTE: u16 = 0x8000;
const CLOCK: u16 = 0x7fff;

/// Where a peer's last announce was made (cluster mode).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// At this node.
    Local,
    /// At another node; applied from Redis.
    Remote,
}

/// One stored peer: its compact address and its stamp (last seen, and
/// whether it is another node's).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct PeerRecord<const N: usize> {
    /// IP then port, big-endian: a window of a compact reply.
    pub addr: [u8; N],
    /// Tracker seconds of the last announce mod 2^15, and `REMOTE`.
    stamp: u16,
}

/// What `upsert` found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Upsert {
    /// The peer was not in the set; it is now.
    New,
    /// It was, `age` seconds old (before this announce), from `was`.
    Found {
        /// Seconds since it was last seen.
        age: u32,
        /// Its origin before this announce.
        was: Origin,
    },
}

impl<const N: usize> PeerRecord<N> {
    const EMPTY: Self = PeerRecord {
        addr: [0; N],
        stamp: 0,
    };

    /// A record of `addr` last seen at `now`, from `origin`.
    pub fn new(addr: [u8; N], now: u32, origin: Origin) -> Self {
        let remote = if origin == Origin::Remote { REMOTE } else { 0 };
        PeerRecord {
            addr,
            stamp: (now as u16 & CLOCK) | remote,
        }
    }

    /// This node's peer, or another node's.
    pub fn origin(&self) -> Origin {
        if self.stamp & REMOTE != 0 {
            Origin::Remote
        } else {
            Origin::Local
        }
    }

    /// Re-stamp unless an announce of the same origin comes before
    /// `min_age`; returns what it was. A change of origin always applies
    /// (the node that saw the peer last owns it).
    pub(crate) fn refresh(&mut self, now: u32, min_age: u32, origin: Origin) -> Upsert {
        let (age, was) = (self.age(now), self.origin());
        if age >= min_age || was != origin {
            *self = PeerRecord::new(self.addr, now, origin);
        }
        Upsert::Found { age, was }
    }

    /// Stored peers never have port 0 (see `AnnounceParams::port`), so the
    /// port alone tells an empty slot: a two-byte compare.
    fn is_empty(&self) -> bool {
        self.addr[N - 2] == 0 && self.addr[N - 1] == 0
    }

    /// Seconds since the last announce (exact below 2^15).
    pub fn age(&self, now: u32) -> u32 {
        u32::from((now as u16).wrapping_sub(self.stamp) & CLOCK)
    }
}

/// A keyed hash of peer addresses. Addresses are chosen by clients (and an
/// attacker can pick many ports), so the key keeps them from piling up in
/// one probe run.
#[derive(Clone, Copy, Debug)]
pub struct AddrHasher {
    k0: u64,
    k1: u64,
}

impl AddrHasher {
    /// A hasher keyed with `k0`, `k1` (drawn at random per process).
    pub fn new(k0: u64, k1: u64) -> Self {
        AddrHasher { k0, k1: k1 | 1 }
    }

    /// The keyed hash of `addr`.
    pub fn hash(&self, addr: &[u8]) -> u64 {
        let mut h = self.k0;
        for chunk in addr.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = fold_mul(h ^ u64::from_le_bytes(w), self.k1);
        }
        fold_mul(h, 0x9e37_79b9_7f4a_7c15)
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The seeders or the leechers of one swarm: up to two records inline,
/// beyond that an open-addressing table whose slots are the records.
pub struct PeerSet<const N: usize> {
    repr: Repr<N>,
}

enum Repr<const N: usize> {
    /// The first `len` records are peers.
    Inline {
        len: u8,
        recs: [PeerRecord<N>; INLINE],
    },
    /// An open-addressing table; `len` slots are occupied.
    Hashed {
        slots: Box<[PeerRecord<N>]>,
        len: u32,
    },
}

impl<const N: usize> Default for PeerSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PeerSet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        PeerSet {
            repr: Repr::Inline {
                len: 0,
                recs: [PeerRecord::EMPTY; INLINE],
            },
        }
    }

    /// How many peers.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Hashed { len, .. } => *len as usize,
        }
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes this set holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Hashed { slots, .. } => std::mem::size_of_val(&**slots),
        }
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: &[u8; N], hasher: &AddrHasher) -> bool {
        match &self.repr {
            Repr::Inline { len, recs } => recs[..*len as usize].iter().any(|r| r.addr == *addr),
            Repr::Hashed { slots, .. } => find(slots, addr, hasher).is_ok(),
        }
    }

    /// Insert a local peer or refresh its stamp. Returns true if it was new.
    pub fn upsert(&mut self, addr: [u8; N], now: u32, hasher: &AddrHasher) -> bool {
        self.upsert_with(addr, now, 0, Origin::Local, hasher) == Upsert::New
    }

    /// `upsert` from `origin`, but a stored peer's stamp is refreshed only
    /// if it is at least `min_age` seconds old (an early re-announce leaves
    /// it alone) or changes origin.
    pub fn upsert_with(
        &mut self,
        addr: [u8; N],
        now: u32,
        min_age: u32,
        origin: Origin,
        hasher: &AddrHasher,
    ) -> Upsert {
        self.upsert_record(PeerRecord::new(addr, now, origin), now, min_age, hasher)
    }

    /// Put a record taken from another set (its stamp as it is) into this
    /// one, which does not hold it.
    pub(crate) fn insert(&mut self, rec: PeerRecord<N>, hasher: &AddrHasher) {
        self.upsert_record(rec, 0, u32::MAX, hasher);
    }

    /// `upsert_with` of a made record (`rec`'s stamp says when and where).
    fn upsert_record(
        &mut self,
        rec: PeerRecord<N>,
        now: u32,
        min_age: u32,
        hasher: &AddrHasher,
    ) -> Upsert {
        let (addr, origin) = (rec.addr, rec.origin());
        debug_assert!(addr[N - 2..] != [0, 0], "port 0 marks empty slots");
        match &mut self.repr {
            Repr::Inline { len, recs } => {
                let n = *len as usize;
                if let Some(r) = recs[..n].iter_mut().find(|r| r.addr == addr) {
                    return r.refresh(now, min_age, origin);
                }
                if n < INLINE {
                    recs[n] = rec;
                    *len += 1;
                    return Upsert::New;
                }
                let mut slots = vec![PeerRecord::EMPTY; capacity_for(n + 1)].into_boxed_slice();
                for r in &recs[..n] {
                    place(&mut slots, *r, hasher);
                }
                place(&mut slots, rec, hasher);
                self.repr = Repr::Hashed {
                    slots,
                    len: n as u32 + 1,
                };
                Upsert::New
            }
            Repr::Hashed { slots, len } => match find(slots, &addr, hasher) {
                Ok(i) => slots[i].refresh(now, min_age, origin),
                Err(i) => {
                    slots[i] = rec;
                    *len += 1;
                    // Keep probe runs short: at most 80% full.
                    if (*len as usize) * 5 > slots.len() * 4 {
                        let cap = capacity_for(*len as usize);
                        *slots = rehash(slots, cap, hasher);
                    }
                    Upsert::New
                }
            },
        }
    }

    /// The stored record of `addr`, if any.
    pub fn get(&self, addr: &[u8; N], hasher: &AddrHasher) -> Option<PeerRecord<N>> {
        match &self.repr {
            Repr::Inline { len, recs } => recs[..*len as usize]
                .iter()
                .find(|r| r.addr == *addr)
                .copied(),
            Repr::Hashed { slots, .. } => find(slots, addr, hasher).ok().map(|i| slots[i]),
        }
    }

    /// Remove the peer; returns whether it was there.
    pub fn remove(&mut self, addr: &[u8; N], hasher: &AddrHasher) -> bool {
        let removed = match &mut self.repr {
            Repr::Inline { len, recs } => {
                let n = *len as usize;
                match recs[..n].iter().position(|r| r.addr == *addr) {
                    Some(i) => {
                        recs[i] = recs[n - 1];
                        recs[n - 1] = PeerRecord::EMPTY;
                        *len -= 1;
                        true
                    }
                    None => false,
                }
            }
            Repr::Hashed { slots, len } => match find(slots, addr, hasher) {
                Ok(i) => {
                    delete_at(slots, i, hasher);
                    *len -= 1;
                    true
                }
                Err(_) => false,
            },
        };
        if removed {
            self.shrink_if_sparse(hasher);
        }
        removed
    }

    /// Drop every peer not seen for more than `timeout` seconds, handing
    /// each to `gone`; returns how many went. One pass over the records, in
    /// place.
    pub fn retain_fresh(
        &mut self,
        now: u32,
        timeout: u32,
        hasher: &AddrHasher,
        gone: &mut impl FnMut(&PeerRecord<N>),
    ) -> usize {
        let before = self.len();
        match &mut self.repr {
            Repr::Inline { len, recs } => {
                let mut kept = 0;
                for i in 0..*len as usize {
                    if recs[i].age(now) <= timeout {
                        recs[kept] = recs[i];
                        kept += 1;
                    } else {
                        gone(&recs[i]);
                    }
                }
                for r in &mut recs[kept..] {
                    *r = PeerRecord::EMPTY;
                }
                *len = kept as u8;
            }
            Repr::Hashed { slots, len } => {
                // Backward-shift deletion only ever moves a record to an
                // earlier slot of its own probe run, i.e. to the slot being
                // looked at or to one not yet reached: so re-examining slot
                // `i` after a deletion visits every record exactly once or
                // (when a wrapped run moves back past the end) again, which
                // is harmless.
                let mut i = 0;
                while i < slots.len() {
                    if !slots[i].is_empty() && slots[i].age(now) > timeout {
                        gone(&slots[i]);
                        delete_at(slots, i, hasher);
                        *len -= 1;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        self.shrink_if_sparse(hasher);
        before - self.len()
    }

    /// Copy up to `max` peer addresses into `out` (N bytes each, compact
    /// layout), starting from the place `pick` (a random number) chooses,
    /// skipping `skip` (the announcing peer). Returns how many were
    /// written. Never writes one peer twice.
    pub fn copy_random(&self, out: &mut [u8], max: usize, skip: &[u8; N], pick: u32) -> usize {
        let max = max.min(out.len() / N);
        if max == 0 {
            return 0;
        }
        let records: &[PeerRecord<N>] = match &self.repr {
            Repr::Inline { len, recs } => &recs[..*len as usize],
            Repr::Hashed { slots, .. } => slots,
        };
        let start = window_start(pick, records.len());
        touch_window(records, start, max);
        let (before, from_start) = records.split_at(start);
        let mut written = 0;
        for r in from_start.iter().chain(before) {
            if r.is_empty() || r.addr == *skip {
                continue;
            }
            out[written * N..(written + 1) * N].copy_from_slice(&r.addr);
            written += 1;
            if written == max {
                break;
            }
        }
        written
    }

    /// Ask for the cache line of `addr`'s slot (the batch pipeline, ahead
    /// of an announce that will look it up).
    pub fn prefetch_slot(&self, addr: &[u8; N], hasher: &AddrHasher) {
        if let Repr::Hashed { slots, .. } = &self.repr {
            prefetch_read(&slots[home(addr, slots.len(), hasher)]);
        }
    }

    /// Ask for the cache lines of the window of `max` peers that `pick`
    /// chooses (the span `touch_window` would load).
    pub fn prefetch_window(&self, pick: u32, max: usize) {
        if let Repr::Hashed { slots, .. } = &self.repr {
            let start = window_start(pick, slots.len());
            let span = (max * 2).min(slots.len());
            let per_line = (64 / std::mem::size_of::<PeerRecord<N>>()).max(1);
            for k in (0..span).step_by(per_line) {
                prefetch_read(&slots[(start + k) % slots.len()]);
            }
        }
    }

    /// Every stored record, for snapshots and tests.
    pub fn iter(&self) -> impl Iterator<Item = &PeerRecord<N>> {
        let records: &[PeerRecord<N>] = match &self.repr {
            Repr::Inline { len, recs } => &recs[..*len as usize],
            Repr::Hashed { slots, .. } => slots,
        };
        records.iter().filter(|r| !r.is_empty())
    }

    fn shrink_if_sparse(&mut self, hasher: &AddrHasher) {
        let Repr::Hashed { slots, len } = &mut self.repr else {
            return;
        };
        let n = *len as usize;
        if n <= INLINE {
            let mut recs = [PeerRecord::EMPTY; INLINE];
            for (dst, src) in recs.iter_mut().zip(slots.iter().filter(|r| !r.is_empty())) {
                *dst = *src;
            }
            self.repr = Repr::Inline { len: n as u8, recs };
        } else if n * 5 < slots.len() {
            *slots = rehash(slots, capacity_for(n), hasher);
        }
    }
}

/// Load every cache line of the window of `max` peers from `start` before
/// copying it: independent loads the CPU overlaps, where the copy loop would
/// meet the misses one after another (the window of a big swarm is about a
/// dozen lines and rarely cached). +3% announce replies/s at the standard
/// load (docs/PERFORMANCE.md).
fn touch_window<const N: usize>(records: &[PeerRecord<N>], start: usize, max: usize) {
    // At least 20% of the slots are full and usually half: 2 x max slots
    // hold the window in the common case; more would load lines for nothing.
    let span = (max * 2).min(records.len());
    let step = (64 / std::mem::size_of::<PeerRecord<N>>()).max(1);
    let mut touched = 0u8;
    for k in (0..span).step_by(step) {
        let i = start + k;
        let i = if i >= records.len() {
            i - records.len()
        } else {
            i
        };
        touched ^= records[i].addr[0];
    }
    // Keeps the loads from being optimized away.
    std::hint::black_box(touched);
}

/// The slot a window starts at, from a random 32-bit `pick`: uniform over
/// `len` slots (multiply-shift, no division).
fn window_start(pick: u32, len: usize) -> usize {
    ((u64::from(pick) * len as u64) >> 32) as usize
}

/// Slots for `n` peers: about 55% full, so that both growing (at 80%) and
/// shrinking (below 20%) are some way off.
fn capacity_for(n: usize) -> usize {
    (n * 9 / 5).max(4)
}

/// The slot a record's probe run starts at.
fn home(addr: &[u8], cap: usize, hasher: &AddrHasher) -> usize {
    linear_probe::home(hasher.hash(addr), cap)
}

impl<const N: usize> Slot for PeerRecord<N> {
    fn is_vacant(&self) -> bool {
        self.is_empty()
    }
}

/// `Ok(slot)` holding `addr`, or `Err(slot)`: the empty slot where it goes.
fn find<const N: usize>(
    slots: &[PeerRecord<N>],
    addr: &[u8; N],
    hasher: &AddrHasher,
) -> Result<usize, usize> {
    linear_probe::find(slots, home(addr, slots.len(), hasher), |r| r.addr == *addr)
}

fn place<const N: usize>(slots: &mut [PeerRecord<N>], rec: PeerRecord<N>, hasher: &AddrHasher) {
    match find(slots, &rec.addr, hasher) {
        Ok(i) | Err(i) => slots[i] = rec,
    }
}

fn rehash<const N: usize>(
    slots: &[PeerRecord<N>],
    cap: usize,
    hasher: &AddrHasher,
) -> Box<[PeerRecord<N>]> {
    let mut new = vec![PeerRecord::EMPTY; cap].into_boxed_slice();
    for r in slots.iter().filter(|r| !r.is_empty()) {
        place(&mut new, *r, hasher);
    }
    new
}

/// Empty slot `hole`, pulling later records of its probe run back.
fn delete_at<const N: usize>(slots: &mut [PeerRecord<N>], hole: usize, hasher: &AddrHasher) {
    let cap = slots.len();
    linear_probe::delete_at(slots, hole, PeerRecord::EMPTY, |r| {
        home(&r.addr, cap, hasher)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, RngExt, SeedableRng};
    use std::collections::HashSet;

    fn addr(i: u32) -> [u8; V4] {
        let ip = (i + 1).to_be_bytes();
        [ip[0], ip[1], ip[2], ip[3], 0x1a, 0xe1]
    }

    fn hasher() -> AddrHasher {
        AddrHasher::new(12345, 67890)
    }

    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(std::mem::size_of::<PeerRecord<V4>>(), 8);
        assert_eq!(std::mem::size_of::<PeerRecord<V6>>(), 20);
        assert_eq!(std::mem::size_of::<PeerSet<V4>>(), 24);
        assert!(std::mem::size_of::<PeerSet<V6>>() <= 48);
    }

    #[test]
    fn tiny_sets_stay_inline() {
        let h = hasher();
        let mut s = PeerSet::<V4>::new();
        assert!(s.upsert(addr(1), 0, &h));
        assert!(s.upsert(addr(2), 0, &h));
        assert!(!s.upsert(addr(2), 5, &h));
        assert_eq!(s.len(), 2);
        assert_eq!(s.heap_bytes(), 0);
        assert!(s.upsert(addr(3), 0, &h));
        assert!(s.heap_bytes() > 0);
        assert!(s.remove(&addr(3), &h));
        assert_eq!(s.heap_bytes(), 0, "back inline once small");
        assert!(s.contains(&addr(1), &h) && s.contains(&addr(2), &h));
    }

    #[test]
    fn matches_a_model_under_random_operations() {
        let h = hasher();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut s = PeerSet::<V4>::new();
        let mut model = HashSet::new();
        for step in 0..200_000u32 {
            let a = addr(rng.random_range(0..3000));
            if rng.random_range(0..3) == 0 {
                assert_eq!(s.remove(&a, &h), model.remove(&a), "step {step}");
            } else {
                assert_eq!(s.upsert(a, step, &h), model.insert(a), "step {step}");
            }
            assert_eq!(s.len(), model.len());
        }
        for a in &model {
            assert!(s.contains(a, &h));
        }
        let stored: HashSet<_> = s.iter().map(|r| r.addr).collect();
        assert_eq!(stored, model);
    }

    #[test]
    fn table_stays_between_20_and_80_percent_full() {
        let h = hasher();
        let mut s = PeerSet::<V4>::new();
        for i in 0..10_000 {
            s.upsert(addr(i), 0, &h);
            let slots = s.heap_bytes() / 8;
            if slots > 0 {
                assert!(s.len() * 5 <= slots * 4);
            }
        }
        for i in 0..9_990 {
            s.remove(&addr(i), &h);
            let slots = s.heap_bytes() / 8;
            if slots > 4 {
                assert!(s.len() * 5 >= slots, "len {} slots {slots}", s.len());
            }
        }
    }

    #[test]
    fn expiry_by_injected_clock() {
        let h = hasher();
        let mut s = PeerSet::<V4>::new();
        for i in 0..1000 {
            // Half the peers announced at t=100, half at t=700.
            s.upsert(addr(i), if i % 2 == 0 { 100 } else { 700 }, &h);
        }
        assert_eq!(
            s.retain_fresh(700, 600, &h, &mut |_| {}),
            0,
            "exactly the timeout is kept"
        );
        assert_eq!(s.retain_fresh(701, 600, &h, &mut |_| {}), 500);
        assert_eq!(s.len(), 500);
        for i in 0..1000 {
            assert_eq!(s.contains(&addr(i), &h), i % 2 == 1);
        }
        assert_eq!(s.retain_fresh(1300, 600, &h, &mut |_| {}), 0);
        assert_eq!(s.retain_fresh(1301, 600, &h, &mut |_| {}), 500);
        assert!(s.is_empty());
        assert_eq!(s.heap_bytes(), 0);
    }

    #[test]
    fn expiry_across_the_clock_wrap() {
        let h = hasher();
        let mut s = PeerSet::<V4>::new();
        s.upsert(addr(1), 65_530, &h);
        s.upsert(addr(2), 65_000, &h);
        // 65_536 + 10 is 16 s after the first, 546 s after the second.
        let mut gone = Vec::new();
        assert_eq!(
            s.retain_fresh(65_546, 100, &h, &mut |r| gone.push(r.addr)),
            1
        );
        assert_eq!(gone, [addr(2)]);
        assert!(s.contains(&addr(1), &h));
        // The 15-bit clock wraps at 32768 as well.
        s.upsert_with(addr(3), 32_760, 0, Origin::Remote, &h);
        assert_eq!(s.get(&addr(3), &h).unwrap().age(32_770), 10);
    }

    #[test]
    fn origin_is_kept_in_the_stamp_and_changes_hands() {
        let h = hasher();
        let mut s = PeerSet::<V4>::new();
        for i in 0..10 {
            s.upsert_with(addr(i), 1000, 0, Origin::Remote, &h);
        }
        let r = s.get(&addr(4), &h).unwrap();
        assert_eq!((r.origin(), r.age(1030)), (Origin::Remote, 30));
        // A local announce before min_age still takes the peer over.
        assert_eq!(
            s.upsert_with(addr(4), 1030, 900, Origin::Local, &h),
            Upsert::Found {
                age: 30,
                was: Origin::Remote
            }
        );
        let r = s.get(&addr(4), &h).unwrap();
        assert_eq!((r.origin(), r.age(1030)), (Origin::Local, 0));
        // The same origin before min_age leaves the stamp alone.
        s.upsert_with(addr(4), 1040, 900, Origin::Local, &h);
        assert_eq!(s.get(&addr(4), &h).unwrap().age(1040), 10);
    }

    #[test]
    fn copy_random_skips_self_and_never_repeats() {
        let h = hasher();
        let mut rng = SmallRng::seed_from_u64(2);
        let mut s = PeerSet::<V4>::new();
        for i in 0..100 {
            s.upsert(addr(i), 0, &h);
        }
        let mut out = [0u8; 200 * V4];
        for _ in 0..100 {
            let n = s.copy_random(&mut out, 99, &addr(7), rng.next_u32());
            assert_eq!(n, 99);
            let got: HashSet<_> = out[..n * V4].chunks(V4).collect();
            assert_eq!(got.len(), 99);
            assert!(!got.contains(&addr(7)[..]));
        }
        assert_eq!(s.copy_random(&mut out, 10, &addr(7), rng.next_u32()), 10);
        assert_eq!(
            s.copy_random(&mut out[..3 * V4 + 1], 10, &addr(7), rng.next_u32()),
            3
        );
        assert_eq!(s.copy_random(&mut out, 0, &addr(7), rng.next_u32()), 0);
    }

    #[test]
    fn ipv6_records() {
        let h = hasher();
        let mut s = PeerSet::<V6>::new();
        let mut a = [0u8; V6];
        a[15] = 1;
        a[17] = 80;
        for i in 0..10u8 {
            a[0] = i;
            s.upsert(a, 0, &h);
        }
        assert_eq!(s.len(), 10);
        let mut out = [0u8; 10 * V6];
        assert_eq!(s.copy_random(&mut out, 10, &[0xff; V6], 3 << 29), 10);
    }
}
