//! One shard's torrents: info hash -> `Torrent`, an open-addressing table
//! of 64-byte entries.
//!
//! Why not `hashbrown`: the batch pipeline prefetches each datagram's
//! torrent entry before looking it up, so it needs the entry's address from
//! the hash alone, which a SwissTable does not give (its probe starts at a
//! control-byte group, and the entry sits up to 15 buckets from it). Here
//! an entry lives at its home slot or, rarely, a slot or two after it
//! (linear probing), so prefetching the home line (and the next) covers
//! most lookups. An entry is the info hash, a 32-bit tag and the `Torrent`
//! (20 + 4 + 40 bytes) with no control bytes elsewhere: a lookup that
//! finds its entry at home touches the two lines the prefetch asked for.
//! (Entries are not aligned to cache lines: glibc's aligned allocations
//! left holes that cost 1.6x the resident memory at 1M torrents, for no
//! measurable speed: 383k vs 376k replies/s unaligned vs aligned.)
//!
//! The tag is the upper half of a keyed hash of the info hash (never 0:
//! 0 marks an empty slot) and also places the entry (`home`), so a probe
//! compares 4 bytes before the 20 and a deletion never hashes again.
//! Info hashes are chosen by clients, so the hash is keyed with a
//! per-process random key (`AddrHasher`, the same multiply-fold hash the
//! peer sets use): an attacker cannot aim many hashes at one probe run.
//!
//! Memory: grown by 1.5x when 80% full, so between 53% and 80% full, about
//! 64 / 0.66 ≈ 97 bytes per torrent on average; hashbrown held 65 bytes per
//! bucket at 44–87.5% (about 98 on average). Shrunk after a sweep leaves it
//! under 20% full. Deletion shifts later entries back (no tombstones).
//! (Growing to 1.5x the *length* instead, i.e. 1.2x the capacity, kept the
//! table fuller but reallocated so often that the freed arrays more than
//! ate the saving.)

use super::linear_probe::{self, Slot};
use super::peer_set::AddrHasher;
use super::swarm::Torrent;
use crate::protocol::InfoHash;

/// One slot: an info hash, its tag (0: empty) and its torrent: 64 bytes.
#[repr(C)]
pub struct Entry {
    key: InfoHash,
    /// 0: empty slot.
    tag: u32,
    torrent: Torrent,
}

impl Entry {
    fn vacant() -> Entry {
        Entry {
            key: InfoHash([0; 20]),
            tag: 0,
            torrent: Torrent::default(),
        }
    }
}

impl Slot for Entry {
    fn is_vacant(&self) -> bool {
        self.tag == 0
    }
}

/// A keyed hash of info hashes, reduced to the tag that places them.
#[derive(Clone, Copy, Debug)]
pub struct TagHasher(AddrHasher);

impl TagHasher {
    /// A hasher keyed with `k0`, `k1`.
    pub fn new(k0: u64, k1: u64) -> Self {
        TagHasher(AddrHasher::new(k0, k1))
    }

    /// Never 0.
    pub fn tag(&self, key: &InfoHash) -> u32 {
        ((self.0.hash(&key.0) >> 32) as u32) | 1
    }
}

/// The slot a tag's probe run starts at (the tag is the hash's upper half).
pub fn home(tag: u32, cap: usize) -> usize {
    linear_probe::home(u64::from(tag) << 32, cap)
}

/// One shard's torrents: an open-addressing table of `Entry`s, placed by
/// tag, linear probing, backward-shift deletion.
pub struct TorrentMap {
    slots: Box<[Entry]>,
    len: usize,
}

impl Default for TorrentMap {
    fn default() -> Self {
        TorrentMap {
            slots: Box::new([]),
            len: 0,
        }
    }
}

impl TorrentMap {
    /// How many torrents.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the slots are and how many: what the prefetching pipeline
    /// needs to find a home slot without the lock (`SwarmTable::prefetch`).
    pub fn raw_slots(&self) -> (*const Entry, usize) {
        (self.slots.as_ptr(), self.slots.len())
    }

    /// Bytes of the slot array.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// `Ok(slot)` holding `key`, or `Err(slot)`: the empty slot where it
    /// would go. The table must have room (it is never full).
    fn find(&self, key: &InfoHash, tag: u32) -> Result<usize, usize> {
        let start = home(tag, self.slots.len());
        linear_probe::find(&self.slots, start, |e| e.tag == tag && e.key == *key)
    }

    /// The torrent `key` (whose tag is `tag`), if present.
    pub fn get(&self, key: &InfoHash, tag: u32) -> Option<&Torrent> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(key, tag).ok()?;
        Some(&self.slots[i].torrent)
    }

    /// The same, to change.
    pub fn get_mut(&mut self, key: &InfoHash, tag: u32) -> Option<&mut Torrent> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(key, tag).ok()?;
        Some(&mut self.slots[i].torrent)
    }

    /// The torrent of `key`, inserted empty if absent.
    pub fn get_or_insert(&mut self, key: InfoHash, tag: u32) -> &mut Torrent {
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.resize((self.slots.len() * 3 / 2).max(8));
        }
        let i = match self.find(&key, tag) {
            Ok(i) => i,
            Err(i) => {
                self.slots[i].key = key;
                self.slots[i].tag = tag;
                self.len += 1;
                i
            }
        };
        &mut self.slots[i].torrent
    }

    /// Remove `key`'s entry; returns whether it was there.
    pub fn remove(&mut self, key: &InfoHash, tag: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        match self.find(key, tag) {
            Ok(i) => {
                self.delete_at(i);
                self.len -= 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Keep the torrents `keep` says yes to (it may change them too); each
    /// is asked exactly once.
    pub fn retain(&mut self, mut keep: impl FnMut(&InfoHash, &mut Torrent) -> bool) {
        let cap = self.slots.len();
        let Some(start) = self.slots.iter().position(Entry::is_vacant) else {
            return; // no slots at all (the table is never full)
        };
        // Walk once round from an empty slot: no probe run crosses it, and a
        // deletion only pulls entries of the same run back to the slot
        // being looked at or to ones not reached yet, so slot `i` is looked
        // at again after a deletion and every entry is asked once.
        let (mut i, mut walked) = ((start + 1) % cap, 0);
        while walked < cap {
            let e = &mut self.slots[i];
            if !e.is_vacant() && !keep(&e.key, &mut e.torrent) {
                self.delete_at(i);
                self.len -= 1;
            } else {
                i = (i + 1) % cap;
                walked += 1;
            }
        }
        if self.len * 5 < cap {
            self.resize(if self.len == 0 {
                0
            } else {
                capacity_for(self.len)
            });
        }
    }

    /// Every torrent with its info hash.
    pub fn iter(&self) -> impl Iterator<Item = (&InfoHash, &Torrent)> {
        self.slots
            .iter()
            .filter(|e| !e.is_vacant())
            .map(|e| (&e.key, &e.torrent))
    }

    /// Empty slot `hole`, pulling later entries of its probe run back.
    fn delete_at(&mut self, hole: usize) {
        let cap = self.slots.len();
        linear_probe::delete_at(&mut self.slots, hole, Entry::vacant(), |e| home(e.tag, cap));
    }

    fn resize(&mut self, cap: usize) {
        let mut new: Box<[Entry]> = (0..cap).map(|_| Entry::vacant()).collect();
        for e in std::mem::take(&mut self.slots).into_vec() {
            if !e.is_vacant() {
                let i = linear_probe::find(&new, home(e.tag, cap), |_| false).unwrap_err();
                new[i] = e;
            }
        }
        self.slots = new;
    }
}

/// Slots for `n` torrents: two thirds full, so that growing (at 80%) and
/// shrinking (below 20%) are both some way off.
fn capacity_for(n: usize) -> usize {
    (n * 3 / 2).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::swarm::PeerUpdate;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::HashMap;

    fn hash(i: u32) -> InfoHash {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&i.to_le_bytes());
        h[19] = 7;
        InfoHash(h)
    }

    #[test]
    fn an_entry_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    /// Inserts, lookups, removals and sweeps against a model, through
    /// growth and shrinking.
    #[test]
    fn agrees_with_a_model() {
        let tags = TagHasher::new(1, 2);
        let peers = AddrHasher::new(3, 4);
        let mut rng = SmallRng::seed_from_u64(5);
        let mut map = TorrentMap::default();
        let mut model: HashMap<InfoHash, u32> = HashMap::new();
        for step in 0..200_000u32 {
            let k = hash(rng.random_range(0..3000));
            let tag = tags.tag(&k);
            match rng.random_range(0..10) {
                0..=5 => {
                    let t = map.get_or_insert(k, tag);
                    t.downloaded += 1;
                    t.v4.update([1, 2, 3, 4, 0, 80], PeerUpdate::Seeder, 0, &peers);
                    *model.entry(k).or_default() += 1;
                }
                6 | 7 => assert_eq!(map.remove(&k, tag), model.remove(&k).is_some()),
                8 => assert_eq!(
                    map.get(&k, tag).map(|t| t.downloaded),
                    model.get(&k).copied()
                ),
                _ if step % 50 == 0 => {
                    // A sweep that drops every other key (by a bit of it),
                    // asking each exactly once.
                    let mut asked = 0;
                    map.retain(|k, _| {
                        asked += 1;
                        k.0[0] & 1 == 0
                    });
                    assert_eq!(asked, model.len());
                    model.retain(|k, _| k.0[0] & 1 == 0);
                }
                _ => {}
            }
            assert_eq!(map.len(), model.len(), "step {step}");
        }
        for (k, n) in &model {
            assert_eq!(map.get(k, tags.tag(k)).map(|t| t.downloaded), Some(*n));
        }
        assert_eq!(map.iter().count(), model.len());
    }

    #[test]
    fn stays_between_a_fifth_and_four_fifths_full() {
        let tags = TagHasher::new(9, 9);
        let mut map = TorrentMap::default();
        for i in 0..10_000 {
            let k = hash(i);
            map.get_or_insert(k, tags.tag(&k));
            let cap = map.raw_slots().1;
            assert!(map.len() * 5 <= cap * 4, "{} in {cap}", map.len());
        }
        map.retain(|k, _| u32::from_le_bytes(k.0[..4].try_into().unwrap()) < 100);
        let cap = map.raw_slots().1;
        assert!(map.len() == 100 && cap <= 200, "{cap}");
        map.retain(|_, _| false);
        assert_eq!(map.raw_slots().1, 0, "an empty map holds no memory");
    }
}
