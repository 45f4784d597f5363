//! A map the announce path reads while one other thread writes it: split
//! in shards behind read-write locks, so a reader waits at most for the
//! insertion of one entry into one shard. Keys are passkeys and info
//! hashes, random enough that their last byte spreads them.

use std::sync::RwLock;

use hashbrown::{DefaultHashBuilder, HashMap};

const SHARDS: usize = 64;

/// Key → value in `SHARDS` locked shards.
pub struct ShardedMap<K, V> {
    maps: Box<[RwLock<HashMap<K, V, DefaultHashBuilder>>]>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            maps: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl<K, V> ShardedMap<K, V>
where
    K: std::hash::Hash + Eq + AsRef<[u8]> + std::borrow::Borrow<[u8]>,
    V: Copy,
{
    fn shard(&self, key: &[u8]) -> &RwLock<HashMap<K, V, DefaultHashBuilder>> {
        let b = key.last().copied().unwrap_or(0);
        &self.maps[usize::from(b) % SHARDS]
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<V> {
        // A poisoned lock still holds a consistent map (single inserts).
        let map = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied()
    }

    /// Put `value` under `key`.
    pub fn insert(&self, key: K, value: V) {
        let mut map = (self.shard(key.as_ref()).write()).unwrap_or_else(|e| e.into_inner());
        map.insert(key, value);
    }

    /// Remove `key` if its value is `owner`'s (another row may have taken
    /// the key over in the same read); returns whether it went.
    pub fn remove_if(&self, key: &[u8], owner: impl Fn(&V) -> bool) -> bool {
        let mut map = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        let owned = map.get(key).is_some_and(owner);
        if owned {
            map.remove(key);
        }
        owned
    }

    /// Visit every entry, one shard read-locked at a time.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for m in self.maps.iter() {
            let map = m.read().unwrap_or_else(|e| e.into_inner());
            map.iter().for_each(|(k, v)| f(k, v));
        }
    }

    /// Keep only the entries `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for m in self.maps.iter() {
            let mut map = m.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|k, v| keep(k, v));
        }
    }

    /// Entries, over every shard.
    pub fn len(&self) -> usize {
        self.maps
            .iter()
            .map(|m| m.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no shard holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
