//! The management API's changes to a list file (`access.list`,
//! `private.passkeys`): entries put in or taken out at once, without
//! writing the file. Shared by every `AccessRules` a reload builds, so a
//! change outlives SIGHUP until the file itself changes its mind about
//! that entry (`AccessRules::carry_api_changes`).
//!
//! The announce path asks it first; while it is empty that is one atomic
//! load, and otherwise one read lock of one shard.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::sharded_map::ShardedMap;

/// Entries the API may hold per list: about 50 MB of passkeys at most.
pub const MAX_API_ENTRIES: usize = 1_000_000;

/// The API's entries already fill `MAX_API_ENTRIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the API holds {MAX_API_ENTRIES} changes to this list already; put them in its file and send SIGHUP"
)]
pub struct OverlayFull;

/// Key → listed (true) or taken off (false), over the file's entries.
pub struct ListOverlay<K> {
    entries: ShardedMap<K, bool>,
    len: AtomicUsize,
    /// Writes are the API's and a reload's, one at a time.
    writer: Mutex<()>,
}

impl<K> Default for ListOverlay<K> {
    fn default() -> Self {
        ListOverlay {
            entries: ShardedMap::default(),
            len: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }
}

impl<K> std::fmt::Debug for ListOverlay<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListOverlay({})", self.len.load(Ordering::Relaxed))
    }
}

impl<K> ListOverlay<K>
where
    K: std::hash::Hash + Eq + AsRef<[u8]> + std::borrow::Borrow<[u8]> + Clone,
{
    /// The API's word on `key`, if it has one.
    pub fn listed(&self, key: &[u8]) -> Option<bool> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.entries.get(key)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put `key` on the list (`listed`) or take it off, whatever the file
    /// says, until the file changes its mind about it.
    pub fn set(&self, key: K, listed: bool) -> Result<(), OverlayFull> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let new = self.entries.get(key.as_ref()).is_none();
        if new && self.len() >= MAX_API_ENTRIES {
            return Err(OverlayFull);
        }
        self.entries.insert(key, listed);
        if new {
            self.len.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Drop the entries `stale` names, given each one's word (a reload
    /// whose file changed its mind about them, or now says the same);
    /// returns how many went.
    pub fn prune(&self, stale: impl Fn(&K, bool) -> bool) -> usize {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = 0;
        self.entries.retain(|k, listed| {
            let drop = stale(k, *listed);
            gone += usize::from(drop);
            !drop
        });
        self.len.fetch_sub(gone, Ordering::Release);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_override_until_pruned_and_are_bounded() {
        let o: ListOverlay<[u8; 20]> = ListOverlay::default();
        assert_eq!(o.listed(&[1; 20]), None);
        o.set([1; 20], true).unwrap();
        o.set([2; 20], false).unwrap();
        o.set([1; 20], false).unwrap();
        assert_eq!(
            (o.listed(&[1; 20]), o.listed(&[2; 20])),
            (Some(false), Some(false))
        );
        assert_eq!(o.len(), 2);
        assert_eq!(o.prune(|k, _| k[0] == 1), 1);
        assert_eq!((o.listed(&[1; 20]), o.len()), (None, 1));
        o.len.store(MAX_API_ENTRIES, Ordering::Relaxed);
        assert_eq!(o.set([3; 20], true), Err(OverlayFull));
        assert!(o.set([2; 20], true).is_ok(), "a held entry may change");
    }
}
