//! Freeleech tokens (one user, one torrent) and personal freeleech (one
//! user, every torrent: torrent id 0), each until a unix second or for
//! good. While one is in force the user's download on that torrent is
//! credited × 0; raw bytes are still counted.
//!
//! Two writers: the management API (at once) and the database thread
//! (the rows of `rt_freeleech_tokens`, read every sync). Whichever changed
//! a grant last wins: a row is applied when it appears or changes between
//! two reads, so a row read again unchanged does not undo the API, and a
//! row the site deleted takes back only what the table granted. The API's
//! grants are kept in the snapshot; after a restart they stand over rows
//! for the same user and torrent until either changes.
//!
//! The announce path asks `free`: one atomic load while nothing is granted,
//! else one or two lookups in a sharded map.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::tracker::list_overlay::{MAX_API_ENTRIES, OverlayFull};
use crate::tracker::sharded_map::ShardedMap;

/// `until` of a grant without end.
pub const NO_END: u64 = u64::MAX;

/// One grant: a user's download on a torrent (0: every torrent) is free
/// until `until` (unix seconds, exclusive; `NO_END`: for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// `rt_users.id`.
    pub user_id: u64,
    /// `rt_torrents.id`; 0: personal freeleech.
    pub torrent_id: u64,
    /// Unix seconds, or `NO_END`.
    pub until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    until: u64,
    /// Granted by the API (kept in the snapshot), not by a row.
    api: bool,
}

/// The key: torrent then user, big-endian, so the last byte (the shard)
/// is the user id's lowest.
type Key = [u8; 16];

fn key(user_id: u64, torrent_id: u64) -> Key {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&torrent_id.to_be_bytes());
    k[8..].copy_from_slice(&user_id.to_be_bytes());
    k
}

fn grant_of(k: &Key, h: Held) -> Grant {
    Grant {
        torrent_id: u64::from_be_bytes(k[..8].try_into().expect("8 bytes")),
        user_id: u64::from_be_bytes(k[8..].try_into().expect("8 bytes")),
        until: h.until,
    }
}

/// What `apply_rows` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowsApplied {
    /// Grants a new or changed row set.
    pub set: usize,
    /// Grants of rows the site deleted, taken back.
    pub removed: usize,
}

/// Every grant in force.
#[derive(Default)]
pub struct Freeleech {
    grants: ShardedMap<Key, Held>,
    len: AtomicUsize,
    /// Writes are one at a time; also the rows of the last read.
    writer: Mutex<HashMap<Key, u64, DefaultHashBuilder>>,
}

impl Freeleech {
    /// Whether `user_id`'s download on `torrent_id` is free at `unix`.
    pub fn free(&self, user_id: u64, torrent_id: u64, unix: u64) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let live = |t| {
            self.grants
                .get(&key(user_id, t))
                .is_some_and(|h| unix < h.until)
        };
        live(0) || live(torrent_id)
    }

    /// Grants held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put(&self, k: Key, held: Held) -> Result<(), OverlayFull> {
        let new = self.grants.get(&k).is_none();
        if new && self.len() >= MAX_API_ENTRIES {
            return Err(OverlayFull);
        }
        self.grants.insert(k, held);
        if new {
            self.len.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    fn take(&self, k: &Key, only: impl Fn(&Held) -> bool) -> bool {
        let gone = self.grants.remove_if(k, only);
        if gone {
            self.len.fetch_sub(1, Ordering::Release);
        }
        gone
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, HashMap<Key, u64, DefaultHashBuilder>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The API grants `g` (or a snapshot brings it back).
    pub fn grant(&self, g: Grant) -> Result<(), OverlayFull> {
        let _w = self.writer();
        let held = Held {
            until: g.until,
            api: true,
        };
        self.put(key(g.user_id, g.torrent_id), held)
    }

    /// The API takes back the grant of `user_id` on `torrent_id` (0:
    /// personal), whoever made it; false if there was none.
    pub fn revoke(&self, user_id: u64, torrent_id: u64) -> bool {
        let _w = self.writer();
        self.take(&key(user_id, torrent_id), |_| true)
    }

    /// Apply a read of the site's table (grants in force). With `first`
    /// (the first read of the process) a row does not replace a grant the
    /// API made before the restart.
    pub fn apply_rows(&self, rows: &[Grant], first: bool) -> RowsApplied {
        let mut last = self.writer();
        let mut done = RowsApplied::default();
        let mut read: HashMap<Key, u64, DefaultHashBuilder> = HashMap::default();
        for g in rows {
            let k = key(g.user_id, g.torrent_id);
            let prev = last.get(&k).copied();
            let held = self.grants.get(&k);
            let api_stands = first && held.is_some_and(|h| h.api);
            if prev != Some(g.until) && !api_stands {
                let row = Held {
                    until: g.until,
                    api: false,
                };
                if self.put(k, row).is_err() {
                    continue; // full: not remembered, so tried again next read
                }
                done.set += 1;
            }
            read.insert(k, g.until);
        }
        for k in last.keys().filter(|k| !read.contains_key(*k)) {
            done.removed += usize::from(self.take(k, |h| !h.api));
        }
        *last = read;
        done
    }

    /// Drop grants whose time is up at `unix`; returns how many.
    pub fn expire(&self, unix: u64) -> usize {
        let _w = self.writer();
        let mut gone = 0;
        self.grants.retain(|_, h| {
            let keep = unix < h.until;
            gone += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(gone, Ordering::Release);
        gone
    }

    /// The grants the API made (for the snapshot).
    pub fn api_grants(&self) -> Vec<Grant> {
        let mut out = Vec::new();
        self.grants.for_each(|k, h| {
            if h.api {
                out.push(grant_of(k, *h));
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(user_id: u64, torrent_id: u64, until: u64) -> Grant {
        Grant {
            user_id,
            torrent_id,
            until,
        }
    }

    #[test]
    fn a_token_frees_one_torrent_and_personal_freeleech_all_until_their_time() {
        let f = Freeleech::default();
        assert!(!f.free(1, 7, 100));
        f.grant(g(1, 7, 200)).unwrap();
        assert!(f.free(1, 7, 199) && !f.free(1, 7, 200));
        assert!(
            !f.free(1, 8, 100) && !f.free(2, 7, 100),
            "that user, that torrent"
        );
        f.grant(g(2, 0, NO_END)).unwrap();
        assert!(f.free(2, 8, u64::MAX - 1) && f.free(2, 9, 0));
        assert_eq!(f.expire(300), 1);
        assert!(!f.free(1, 7, 100) && f.free(2, 1, 300));
        assert!(f.revoke(2, 0) && !f.revoke(2, 0));
        assert!(f.is_empty());
    }

    #[test]
    fn rows_apply_when_they_change_and_the_last_writer_wins() {
        let f = Freeleech::default();
        f.grant(g(1, 7, 500)).unwrap();
        let rows = [g(1, 7, 100), g(2, 7, NO_END)];
        assert_eq!(
            f.apply_rows(&rows, true).set,
            1,
            "the API's grant stands at the first read"
        );
        assert!(f.free(1, 7, 400) && f.free(2, 7, 400));
        f.revoke(2, 7);
        f.apply_rows(&rows, false);
        assert!(
            !f.free(2, 7, 0),
            "a row read again unchanged does not undo the API"
        );
        f.apply_rows(&[g(1, 7, 100), g(2, 7, 900)], false);
        assert!(f.free(2, 7, 800), "a changed row wins");
        f.grant(g(3, 0, NO_END)).unwrap();
        let done = f.apply_rows(&[g(1, 7, 100)], false);
        assert_eq!(
            done.removed, 1,
            "the deleted row's grant goes, the API's stays"
        );
        assert!(f.free(3, 5, 0) && !f.free(2, 7, 0));
        assert_eq!(f.api_grants().len(), 2);
    }
}
