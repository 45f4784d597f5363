//! The swarm table: info hash -> `Torrent`, split into many shards.
//!
//! Every worker thread answers from the same table, so contention is kept
//! low by numbers: a power-of-two count of shards (1024 by default), each a
//! small mutex around a `TorrentMap` (an open-addressing table of one-line
//! entries), chosen by the first bytes of the info hash; each shard has a
//! cache line of its own. A lock is held for one announce (update and copy
//! of peers) and never across I/O.
//!
//! Info hashes are picked by whoever announces, not by chance: an attacker
//! could choose thousands of hashes that agree in any fixed 8 bytes. So the
//! map places them by a keyed hash of the whole info hash with a
//! per-process random key instead of using its bytes directly.
//!
//! `prefetch` asks for an info hash's home entry without taking the lock:
//! each shard publishes where its slots are (two relaxed atomics, written
//! under the lock when the map moves), and the batch pipeline prefetches
//! from that view. A stale view costs a useless prefetch, never a wrong
//! answer: the lookup itself always happens under the lock.
//!
//! Expiry is incremental: `sweep_next` visits the next few shards (a shared
//! cursor, so workers split the work), drops peers not seen within the
//! timeout and frees torrents left without peers. There is no pass over the
//! whole table under one lock.
//!
//! A torrent freed for want of peers leaves its completed count in its
//! shard's `IdleCounts` (bounded: `tracker.max_idle_torrents`), where
//! scrape still finds it and the torrent's next peer takes it back.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::idle_counts::IdleCounts;
use super::peer_set::{AddrHasher, Origin, V4, V6};
use super::swarm::{PeerEffect, PeerUpdate, Torrent, became_seeder};
use super::torrent_map::{Entry, TagHasher, TorrentMap, home};
use crate::prefetch::prefetch_read;
use crate::protocol::InfoHash;

struct Shard {
    torrents: TorrentMap,
    /// Completed counts of this shard's torrents that have no peers.
    idle: IdleCounts,
}

/// `tracker.max_idle_torrents`' default: completed counts kept for
/// torrents without peers (29 to 57 bytes each: about 420 MB when full).
pub const DEFAULT_MAX_IDLE_TORRENTS: usize = 10_000_000;

/// A shard: its lock, and where its slots are for lock-free prefetching.
/// One cache line each, so workers locking neighbouring shards do not
/// share a line.
#[repr(align(64))]
struct ShardCell {
    lock: Mutex<Shard>,
    slots: AtomicPtr<Entry>,
    capacity: AtomicUsize,
}

impl ShardCell {
    /// Publish where the map's slots are now, if they moved.
    fn publish(&self, map: &TorrentMap) {
        let (ptr, cap) = map.raw_slots();
        if self.capacity.load(Ordering::Relaxed) != cap {
            self.slots.store(ptr.cast_mut(), Ordering::Relaxed);
            self.capacity.store(cap, Ordering::Relaxed);
        }
    }
}

/// What the last sweep of one shard found, for the stats line.
#[derive(Default)]
struct ShardGauge {
    torrents: AtomicU64,
    seeders: AtomicU64,
    leechers: AtomicU64,
    /// Torrents with IPv4 peers, and the IPv6 share of the three above
    /// (torrents with IPv6 peers).
    torrents4: AtomicU64,
    torrents6: AtomicU64,
    seeders6: AtomicU64,
    leechers6: AtomicU64,
    /// Completed counts kept for torrents without peers.
    idle: AtomicU64,
}

/// Every torrent's swarms: info hash → `Torrent`, in shards each behind its
/// own lock, with incremental expiry and lock-free prefetch.
pub struct SwarmTable {
    shards: Box<[ShardCell]>,
    gauges: Box<[ShardGauge]>,
    mask: usize,
    sweep_cursor: AtomicUsize,
    addr_hasher: AddrHasher,
    tags: TagHasher,
    /// Idle completed counts dropped (or refused) because a shard's share
    /// of `max_idle_torrents` was full.
    idle_evicted: AtomicU64,
}

/// Totals as of the last sweep of each shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableTotals {
    /// Torrents with peers.
    pub torrents: u64,
    /// Seeders, both families.
    pub seeders: u64,
    /// Leechers, both families.
    pub leechers: u64,
    /// Torrents with IPv4 peers; torrents with IPv6 peers and the IPv6
    /// peers (a torrent with both counts in both).
    pub torrents4: u64,
    /// Torrents with IPv6 peers.
    pub torrents6: u64,
    /// IPv6 seeders.
    pub seeders6: u64,
    /// IPv6 leechers.
    pub leechers6: u64,
    /// Torrents without peers whose completed count is kept.
    pub idle: u64,
}

/// A peer's compact address (address then port, big-endian), of either
/// family.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerAddr {
    /// IPv4: 4 address bytes, 2 port bytes.
    V4([u8; V4]),
    /// IPv6: 16 address bytes, 2 port bytes.
    V6([u8; V6]),
}

impl PeerAddr {
    /// The compact form of `ip`:`port` (IPv4-mapped IPv6 must already be IPv4).
    pub fn new(ip: std::net::IpAddr, port: u16) -> PeerAddr {
        let port = port.to_be_bytes();
        match ip {
            std::net::IpAddr::V4(ip) => {
                let mut a = [0u8; V4];
                a[..4].copy_from_slice(&ip.octets());
                a[4..].copy_from_slice(&port);
                PeerAddr::V4(a)
            }
            std::net::IpAddr::V6(ip) => {
                let mut a = [0u8; V6];
                a[..16].copy_from_slice(&ip.octets());
                a[16..].copy_from_slice(&port);
                PeerAddr::V6(a)
            }
        }
    }

    /// From 6 or 18 compact bytes.
    pub fn from_bytes(b: &[u8]) -> Option<PeerAddr> {
        match b.len() {
            V4 => Some(PeerAddr::V4(b.try_into().ok()?)),
            V6 => Some(PeerAddr::V6(b.try_into().ok()?)),
            _ => None,
        }
    }

    /// The compact bytes (6 or 18).
    pub fn bytes(&self) -> &[u8] {
        match self {
            PeerAddr::V4(a) => a,
            PeerAddr::V6(a) => a,
        }
    }
}

/// When a change counts a completed download (scrape's `downloaded`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Download {
    /// Never (a plain announce, a stop).
    Never,
    /// If the change makes the peer a seeder it was not (a local
    /// `completed`: a retransmission counts once).
    IfBecameSeeder,
    /// Whatever the change does (a completion another node counted, or a
    /// seeder on port 0 that is not stored).
    Always,
}

/// One change to one peer of one torrent: the one way the table's peers
/// are written, by announces, snapshot restore and cluster sync alike.
#[derive(Clone, Copy, Debug)]
pub struct PeerChange {
    /// Whose peer.
    pub addr: PeerAddr,
    /// What to do to it.
    pub update: PeerUpdate,
    /// Tracker time of the change (a restored peer: now minus its age).
    pub now: u32,
    /// A peer that keeps its role and origin keeps its stamp unless it is
    /// this old (`min interval`).
    pub min_age: u32,
    /// Where it comes from (this node, or another: cluster mode).
    pub origin: Origin,
    /// Whether it counts a completed download.
    pub download: Download,
}

/// What `ShardGuard::apply` did, and the torrent's counts after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Applied {
    /// What happened to the peer.
    pub effect: PeerEffect,
    /// Whether a completed download was counted.
    pub counted_download: bool,
    /// Seeders after it.
    pub seeders: u32,
    /// Leechers after it.
    pub leechers: u32,
    /// Completed downloads after it.
    pub downloaded: u32,
}

/// A torrent as `SwarmTable::for_each_with_idle_in_shard` lists it.
#[derive(Clone, Copy)]
pub enum Listed<'a> {
    /// It has peers.
    Swarm(&'a Torrent),
    /// It has none; its completed count is kept.
    Idle(u32),
}

/// A stored peer, as `ShardGuard::peer` finds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    /// In the seeders' set.
    pub seeder: bool,
    /// This node's or another's.
    pub origin: Origin,
    /// Seconds since its last announce.
    pub age: u32,
}

/// A shard's torrents, locked. Dropping it releases the lock.
pub struct ShardGuard<'a> {
    guard: MutexGuard<'a, Shard>,
    cell: &'a ShardCell,
    tags: &'a TagHasher,
    idle_evicted: &'a AtomicU64,
}

impl ShardGuard<'_> {
    /// The torrent `info_hash` names, if it has peers.
    pub fn get(&self, info_hash: &InfoHash) -> Option<&Torrent> {
        self.guard.torrents.get(info_hash, self.tags.tag(info_hash))
    }

    fn get_mut(&mut self, info_hash: &InfoHash) -> Option<&mut Torrent> {
        let tag = self.tags.tag(info_hash);
        self.guard.torrents.get_mut(info_hash, tag)
    }

    /// The completed count kept for `info_hash` while it has no peers.
    pub fn idle_downloads(&self, info_hash: &InfoHash) -> Option<u32> {
        self.guard.idle.get(info_hash)
    }

    /// Apply `c` to the torrent `info_hash` (made by a change that stores
    /// a peer, freed when it empties) at `h`'s hashes, then call `then`
    /// with the torrent if it still exists (an announce copies its reply's
    /// peers there, under the same lock).
    pub fn apply<R: Default>(
        &mut self,
        info_hash: &InfoHash,
        c: &PeerChange,
        h: &AddrHasher,
        then: impl FnOnce(&Torrent) -> R,
    ) -> (Applied, R) {
        let tag = self.tags.tag(info_hash);
        let Shard {
            torrents: map,
            idle,
        } = &mut *self.guard;
        let creates = matches!(c.update, PeerUpdate::Seeder | PeerUpdate::Leecher);
        if creates {
            let t = map.get_or_insert(*info_hash, tag);
            // A torrent in the map has peers, so an empty one is new: it
            // takes back the count it left when it last emptied.
            if t.is_empty()
                && let Some(n) = idle.take(info_hash)
            {
                t.downloaded = t.downloaded.max(n);
            }
            self.cell.publish(map);
        }
        let mut applied = Applied {
            effect: PeerEffect::Untouched,
            counted_download: false,
            seeders: 0,
            leechers: 0,
            downloaded: 0,
        };
        let Some(t) = map.get_mut(info_hash, tag) else {
            // No peers (a stop, or a port-0 announce): the count is the
            // idle one, and a completion that counts anyway is added to it.
            let n = idle.get(info_hash).unwrap_or(0);
            if c.download == Download::Always {
                applied.counted_download = true;
                let evicted = idle.keep(*info_hash, n.saturating_add(1)).evicted;
                self.idle_evicted
                    .fetch_add(evicted as u64, Ordering::Relaxed);
            }
            applied.downloaded = idle.get(info_hash).unwrap_or(0);
            return (applied, R::default());
        };
        applied.effect = match c.addr {
            PeerAddr::V4(a) => t.v4.update_with(a, c.update, c.now, c.min_age, c.origin, h),
            PeerAddr::V6(a) if creates => t
                .v6_mut()
                .update_with(a, c.update, c.now, c.min_age, c.origin, h),
            PeerAddr::V6(a) => match &mut t.v6 {
                Some(v6) => v6.update_with(a, c.update, c.now, c.min_age, c.origin, h),
                None => PeerEffect::Untouched,
            },
        };
        applied.counted_download = match c.download {
            Download::Never => false,
            Download::Always => true,
            Download::IfBecameSeeder => became_seeder(applied.effect, c.update),
        };
        if applied.counted_download {
            t.downloaded = t.downloaded.saturating_add(1);
        }
        applied.seeders = t.seeders() as u32;
        applied.leechers = t.leechers() as u32;
        applied.downloaded = t.downloaded;
        if !t.is_empty() {
            return (applied, then(t));
        }
        let evicted = idle.keep(*info_hash, t.downloaded).evicted;
        self.idle_evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        map.remove(info_hash, tag);
        (applied, R::default())
    }

    /// Drop the torrent's swarm whole (the site withdrew it); returns how
    /// many peers it had.
    pub fn drop_torrent(&mut self, info_hash: &InfoHash) -> usize {
        let tag = self.tags.tag(info_hash);
        let Shard {
            torrents: map,
            idle,
        } = &mut *self.guard;
        let peers = map
            .get(info_hash, tag)
            .map_or(0, |t| t.seeders() + t.leechers());
        map.remove(info_hash, tag);
        idle.take(info_hash);
        self.cell.publish(map);
        peers
    }

    /// Raise a torrent's completed count to `n` if it has fewer (a
    /// restored snapshot's or another node's checkpoint's count): in its
    /// swarm if it has peers, else among the idle counts.
    pub fn raise_downloads(&mut self, info_hash: &InfoHash, n: u32) {
        if let Some(t) = self.get_mut(info_hash) {
            t.downloaded = t.downloaded.max(n);
            return;
        }
        let evicted = self.guard.idle.keep(*info_hash, n).evicted;
        self.idle_evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
    }

    /// The stored peer `addr` of `info_hash` at tracker time `now`.
    pub fn peer(
        &self,
        info_hash: &InfoHash,
        addr: &PeerAddr,
        now: u32,
        h: &AddrHasher,
    ) -> Option<PeerInfo> {
        let t = self.get(info_hash)?;
        let (origin, age, seeder) = match addr {
            PeerAddr::V4(a) => t.v4.get(a, h).map(|(r, s)| (r.origin(), r.age(now), s))?,
            PeerAddr::V6(a) => {
                let (r, s) = t.v6.as_ref()?.get(a, h)?;
                (r.origin(), r.age(now), s)
            }
        };
        Some(PeerInfo {
            seeder,
            origin,
            age,
        })
    }
}

impl SwarmTable {
    /// `shards` must be a power of two; `seeds` key the map and peer hashes.
    pub fn new(shards: usize, seeds: [u64; 2]) -> Self {
        assert!(
            shards.is_power_of_two(),
            "shard count must be a power of two"
        );
        SwarmTable {
            shards: (0..shards)
                .map(|_| ShardCell {
                    lock: Mutex::new(Shard {
                        torrents: TorrentMap::default(),
                        idle: IdleCounts::with_cap(DEFAULT_MAX_IDLE_TORRENTS.div_ceil(shards)),
                    }),
                    slots: AtomicPtr::new(std::ptr::null_mut()),
                    capacity: AtomicUsize::new(0),
                })
                .collect(),
            gauges: (0..shards).map(|_| ShardGauge::default()).collect(),
            mask: shards - 1,
            sweep_cursor: AtomicUsize::new(0),
            addr_hasher: AddrHasher::new(seeds[0], seeds[1]),
            // Keys of their own, derived from the same secret seeds.
            tags: TagHasher::new(
                seeds[0].rotate_left(29) ^ 0x243f_6a88_85a3_08d3,
                seeds[1].rotate_left(17) ^ 0x1319_8a2e_0370_7344,
            ),
            idle_evicted: AtomicU64::new(0),
        }
    }

    /// Keep at most `max` completed counts of torrents without peers
    /// (`tracker.max_idle_torrents`; each shard an equal share, rounded
    /// up). Counts kept already are forgotten: call before serving.
    pub fn with_max_idle(self, max: usize) -> Self {
        let per_shard = max.div_ceil(self.shards.len());
        for cell in self.shards.iter() {
            lock(&cell.lock).idle = IdleCounts::with_cap(per_shard);
        }
        self
    }

    /// Idle completed counts dropped or refused so far because their
    /// shard's share of `max_idle_torrents` was full.
    pub fn idle_evicted(&self) -> u64 {
        self.idle_evicted.load(Ordering::Relaxed)
    }

    /// The keyed hash of peer addresses (per process, random).
    pub fn addr_hasher(&self) -> &AddrHasher {
        &self.addr_hasher
    }

    /// How many shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard_index(&self, info_hash: &InfoHash) -> usize {
        usize::from(u16::from_le_bytes([info_hash.0[0], info_hash.0[1]])) & self.mask
    }

    /// Lock the shard holding `info_hash`.
    pub fn lock(&self, info_hash: &InfoHash) -> ShardGuard<'_> {
        let cell = &self.shards[self.shard_index(info_hash)];
        ShardGuard {
            guard: lock(&cell.lock),
            cell,
            tags: &self.tags,
            idle_evicted: &self.idle_evicted,
        }
    }

    /// Ask for the cache lines a lookup of `info_hash` will touch (its
    /// shard's lock and its home entry, and the next entry in case it
    /// probes on), without taking the lock.
    pub fn prefetch(&self, info_hash: &InfoHash) {
        let cell = &self.shards[self.shard_index(info_hash)];
        prefetch_read(cell);
        let cap = cell.capacity.load(Ordering::Relaxed);
        if cap == 0 {
            return;
        }
        let slots = cell.slots.load(Ordering::Relaxed);
        // The view may be stale (the map grew since): the address is only
        // ever prefetched, never read (`wrapping_add` keeps it safe code).
        let at = slots.wrapping_add(home(self.tags.tag(info_hash), cap));
        prefetch_read(at);
        prefetch_read(at.wrapping_add(1));
    }

    /// Expire peers in the next `count` shards (shared cursor: concurrent
    /// callers take different shards), handing each expired peer to
    /// `gone`, and drop the swarms of torrents `keep` refuses. Returns how
    /// many peers were dropped.
    pub fn sweep_next(
        &self,
        count: usize,
        now: u32,
        peer_timeout: u32,
        keep: impl Fn(&InfoHash) -> bool,
        mut gone: impl FnMut(&InfoHash, &[u8], Origin),
    ) -> usize {
        let mut dropped = 0;
        for _ in 0..count {
            let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) & self.mask;
            dropped += self.sweep_shard(i, now, peer_timeout, &keep, &mut gone);
        }
        dropped
    }

    /// Sweep one shard (see `sweep_next`).
    pub fn sweep_shard(
        &self,
        i: usize,
        now: u32,
        peer_timeout: u32,
        keep: impl Fn(&InfoHash) -> bool,
        mut gone: impl FnMut(&InfoHash, &[u8], Origin),
    ) -> usize {
        let cell = &self.shards[i];
        let mut guard = lock(&cell.lock);
        let shard = &mut *guard;
        let h = &self.addr_hasher;
        let (mut dropped, mut seeders, mut leechers, mut evicted) = (0, 0, 0, 0);
        let (mut torrents4, mut torrents6, mut seeders6, mut leechers6) = (0, 0, 0, 0);
        shard.torrents.retain(|hash, t| {
            if !keep(hash) {
                dropped += t.seeders() + t.leechers();
                return false;
            }
            dropped += t.retain_fresh(now, peer_timeout, h, |addr, origin| {
                gone(hash, addr, origin);
            });
            if t.is_empty() {
                evicted += shard.idle.keep(*hash, t.downloaded).evicted;
                return false;
            }
            seeders += t.seeders() as u64;
            leechers += t.leechers() as u64;
            torrents4 += u64::from(!t.v4.is_empty());
            if let Some(v6) = &t.v6 {
                torrents6 += 1;
                seeders6 += v6.seeders() as u64;
                leechers6 += v6.leechers() as u64;
            }
            true
        });
        self.idle_evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        // Counts of torrents the rules refuse now go too.
        shard.idle.retain(&keep);
        cell.publish(&shard.torrents);
        let g = &self.gauges[i];
        g.idle.store(shard.idle.len() as u64, Ordering::Relaxed);
        g.torrents
            .store(shard.torrents.len() as u64, Ordering::Relaxed);
        g.seeders.store(seeders, Ordering::Relaxed);
        g.leechers.store(leechers, Ordering::Relaxed);
        g.torrents4.store(torrents4, Ordering::Relaxed);
        g.torrents6.store(torrents6, Ordering::Relaxed);
        g.seeders6.store(seeders6, Ordering::Relaxed);
        g.leechers6.store(leechers6, Ordering::Relaxed);
        dropped
    }

    /// Visit every torrent, one shard locked at a time (full scrape).
    pub fn for_each(&self, mut f: impl FnMut(&InfoHash, &Torrent)) {
        for i in 0..self.shards.len() {
            self.for_each_in_shard(i, &mut f);
        }
    }

    /// Visit the torrents of shard `i` under its lock (snapshots copy the
    /// table shard by shard, so announces wait for one shard at most).
    pub fn for_each_in_shard(&self, i: usize, mut f: impl FnMut(&InfoHash, &Torrent)) {
        let shard = lock(&self.shards[i].lock);
        for (hash, torrent) in shard.torrents.iter() {
            f(hash, torrent);
        }
    }

    /// Call `f` with every torrent of shard `i` (under its lock), then
    /// with every idle completed count of it.
    pub fn for_each_with_idle_in_shard(&self, i: usize, mut f: impl FnMut(&InfoHash, Listed<'_>)) {
        let shard = lock(&self.shards[i].lock);
        for (hash, torrent) in shard.torrents.iter() {
            f(hash, Listed::Swarm(torrent));
        }
        for (hash, n) in shard.idle.iter() {
            f(hash, Listed::Idle(n));
        }
    }

    /// Torrents in the table now (each shard locked in turn, briefly).
    pub fn torrent_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.lock).torrents.len())
            .sum()
    }

    /// Sum of the gauges left by the last sweep of every shard.
    pub fn totals(&self) -> TableTotals {
        let mut t = TableTotals::default();
        for g in self.gauges.iter() {
            t.torrents += g.torrents.load(Ordering::Relaxed);
            t.seeders += g.seeders.load(Ordering::Relaxed);
            t.leechers += g.leechers.load(Ordering::Relaxed);
            t.torrents4 += g.torrents4.load(Ordering::Relaxed);
            t.torrents6 += g.torrents6.load(Ordering::Relaxed);
            t.seeders6 += g.seeders6.load(Ordering::Relaxed);
            t.leechers6 += g.leechers6.load(Ordering::Relaxed);
            t.idle += g.idle.load(Ordering::Relaxed);
        }
        t
    }
}

/// A worker that panicked while holding a shard leaves the map consistent
/// (every mutation is a single map or set operation), so keep serving.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> PeerAddr {
        let ip = (0x0a00_0001 + i).to_be_bytes();
        PeerAddr::V4([ip[0], ip[1], ip[2], ip[3], 0, 80])
    }

    fn put(table: &SwarmTable, hash: InfoHash, addr: PeerAddr, update: PeerUpdate, now: u32) {
        let c = PeerChange {
            addr,
            update,
            now,
            min_age: 0,
            origin: Origin::Local,
            download: Download::Never,
        };
        let h = *table.addr_hasher();
        table.lock(&hash).apply(&hash, &c, &h, |_| ());
    }

    fn never(_: &InfoHash, _: &[u8], _: Origin) {}

    #[test]
    fn sweeps_expire_peers_and_free_empty_torrents() {
        let table = SwarmTable::new(4, [5, 6]);
        for t in 0..40u8 {
            let hash = InfoHash([t; 20]);
            // Torrent t has t+1 peers: one fresh (seen at 1000), the rest old.
            put(&table, hash, addr(0), PeerUpdate::Seeder, 1000);
            for i in 1..=u32::from(t) {
                put(&table, hash, addr(i), PeerUpdate::Leecher, 100);
            }
        }
        // Nothing is old enough yet.
        assert_eq!(table.sweep_next(4, 1000, 900, |_| true, never), 0);
        assert_eq!(
            table.totals(),
            TableTotals {
                torrents: 40,
                seeders: 40,
                leechers: (0..40).sum(),
                torrents4: 40,
                ..TableTotals::default()
            }
        );
        // The old peers go; the fresh ones stay.
        let dropped: usize = (0..4)
            .map(|i| table.sweep_shard(i, 1001, 900, |_| true, never))
            .sum();
        assert_eq!(dropped, (0..40).sum::<usize>());
        assert_eq!(table.totals().leechers, 0);
        assert_eq!(table.totals().torrents, 40);
        // Then everything goes, and the torrents are freed.
        assert_eq!(table.sweep_next(4, 1901, 900, |_| true, never), 40);
        assert_eq!(table.totals(), TableTotals::default());
        assert!(
            table
                .lock(&InfoHash([3; 20]))
                .get(&InfoHash([3; 20]))
                .is_none()
        );
    }

    #[test]
    fn sweeps_drop_swarms_the_rules_refuse() {
        let table = SwarmTable::new(2, [1, 1]);
        for t in [1u8, 2] {
            let hash = InfoHash([t; 20]);
            put(&table, hash, addr(u32::from(t)), PeerUpdate::Seeder, 0);
        }
        let refused = InfoHash([2; 20]);
        let dropped: usize = (0..2)
            .map(|i| table.sweep_shard(i, 0, 60, |hash| *hash != refused, never))
            .sum();
        assert_eq!(dropped, 1);
        assert!(table.lock(&refused).get(&refused).is_none());
        let kept = InfoHash([1; 20]);
        assert!(table.lock(&kept).get(&kept).is_some());
    }

    #[test]
    fn shard_cursor_visits_every_shard() {
        let table = SwarmTable::new(8, [1, 1]);
        let hash = InfoHash([0xff; 20]);
        put(&table, hash, addr(1), PeerUpdate::Seeder, 0);
        // Eight single-shard steps must reach the shard, wherever it is.
        let dropped: usize = (0..8)
            .map(|_| table.sweep_next(1, 10_000, 60, |_| true, never))
            .sum();
        assert_eq!(dropped, 1);
    }

    fn complete(table: &SwarmTable, hash: InfoHash, addr: PeerAddr, now: u32) {
        let c = PeerChange {
            addr,
            update: PeerUpdate::Seeder,
            now,
            min_age: 0,
            origin: Origin::Local,
            download: Download::IfBecameSeeder,
        };
        let h = *table.addr_hasher();
        table.lock(&hash).apply(&hash, &c, &h, |_| ());
    }

    fn downloads(table: &SwarmTable, hash: &InfoHash) -> (Option<u32>, Option<u32>) {
        let shard = table.lock(hash);
        (
            shard.get(hash).map(|t| t.downloaded),
            shard.idle_downloads(hash),
        )
    }

    #[test]
    fn completed_counts_outlive_their_swarm_and_come_back() {
        let table = SwarmTable::new(4, [5, 6]);
        let (a, b) = (InfoHash([0xa0; 20]), InfoHash([0xb0; 20]));
        put(&table, a, addr(1), PeerUpdate::Leecher, 10);
        complete(&table, a, addr(1), 11);
        put(&table, a, addr(1), PeerUpdate::Remove, 12);
        assert_eq!(downloads(&table, &a), (None, Some(1)));
        // A torrent never completed leaves nothing behind.
        put(&table, b, addr(1), PeerUpdate::Seeder, 10);
        put(&table, b, addr(1), PeerUpdate::Remove, 12);
        assert_eq!(downloads(&table, &b), (None, None));
        // Its next peer takes the count back, and counts on.
        put(&table, a, addr(2), PeerUpdate::Leecher, 20);
        assert_eq!(downloads(&table, &a), (Some(1), None));
        complete(&table, a, addr(2), 21);
        // Expired by the sweep: kept again.
        assert_eq!(table.sweep_next(4, 2000, 900, |_| true, never), 1);
        assert_eq!(downloads(&table, &a), (None, Some(2)));
        assert_eq!(table.totals().idle, 1);
        // A restored count raises it; a withdrawn torrent forgets it.
        table.lock(&a).raise_downloads(&a, 7);
        assert_eq!(downloads(&table, &a), (None, Some(7)));
        table.lock(&a).drop_torrent(&a);
        assert_eq!(downloads(&table, &a), (None, None));
        // A port-0 seeder's completion on an idle torrent counts there,
        // and its answer says so.
        let c = InfoHash([0xc0; 20]);
        table.lock(&c).raise_downloads(&c, 3);
        let port0 = PeerChange {
            addr: addr(9),
            update: PeerUpdate::ReadOnly,
            now: 2500,
            min_age: 0,
            origin: Origin::Local,
            download: Download::Always,
        };
        let h = *table.addr_hasher();
        let (applied, ()) = table.lock(&c).apply(&c, &port0, &h, |_| ());
        assert!(applied.counted_download);
        assert_eq!(applied.downloaded, 4);
        assert_eq!(downloads(&table, &c), (None, Some(4)));
        // Refused by the access rules at the sweep: neither a swarm's
        // count nor an idle one is kept.
        put(&table, b, addr(1), PeerUpdate::Leecher, 3000);
        complete(&table, b, addr(1), 3000);
        table.sweep_next(4, 3001, 900, |h| *h != b && *h != c, never);
        assert_eq!(downloads(&table, &b), (None, None));
        assert_eq!(downloads(&table, &c), (None, None));
    }

    #[test]
    fn idle_counts_are_bounded_smallest_first_and_counted() {
        // Two shards of four.
        let table = SwarmTable::new(2, [5, 6]).with_max_idle(8);
        for i in 0..40u8 {
            let hash = InfoHash([i; 20]);
            complete(&table, hash, addr(1), 10);
            for _ in 0..i {
                table.lock(&hash).raise_downloads(&hash, u32::from(i));
            }
            put(&table, hash, addr(1), PeerUpdate::Remove, 11);
        }
        table.sweep_next(2, 12, 900, |_| true, never);
        assert!(table.totals().idle <= 8, "{:?}", table.totals());
        assert_eq!(table.idle_evicted() + table.totals().idle, 40);
        // The biggest counts are the ones kept.
        assert_eq!(downloads(&table, &InfoHash([39; 20])), (None, Some(39)));
        assert_eq!(downloads(&table, &InfoHash([1; 20])), (None, None));
        let none = SwarmTable::new(2, [5, 6]).with_max_idle(0);
        complete(&none, InfoHash([1; 20]), addr(1), 10);
        put(&none, InfoHash([1; 20]), addr(1), PeerUpdate::Remove, 11);
        assert_eq!(
            (none.idle_evicted(), downloads(&none, &InfoHash([1; 20]))),
            (1, (None, None))
        );
    }
}
