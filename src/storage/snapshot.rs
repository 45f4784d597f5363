//! Snapshots of the swarm table (and private mode's ledger), so that a
//! restart does not send every client into a herd of empty replies.
//!
//! Format (version 1, integers little-endian):
//!
//! ```text
//! header   "RTSNAPSH" | version u32 | flags u32 (0) | saved_at u64 (unix s)
//! records  tag u8, then by tag:
//!   1 torrent  info_hash [20] | downloaded u32 | n4 u32 | n6 u32
//!              | n4 x (addr [6]  | age u16 | role u8)
//!              | n6 x (addr [18] | age u16 | role u8)
//!              (n4 = n6 = 0: a torrent without peers whose completed
//!              count is kept, `tracker.max_idle_torrents`)
//!   2 totals   key_len u8 | passkey | uploaded u64 | downloaded u64
//!   6 next     next batch number u64
//!   7 pending  transfer
//!   8 batch    id u64 | n u32 | n x transfer
//!   9 session  session (its time: age in seconds)
//!   10 freeleech user_id u64 | torrent_id u64 (0: every torrent)
//!              | until u64 (unix s; u64::MAX: no end) — database mode:
//!              the grants the management API made
//!   255 end    torrents u64 | peers u64
//! trailer  length of everything before u64 | CRC-32 of it u32
//! ```
//!
//! (`transfer` and `session` as in `storage/ledger_codec.rs`.) Records 3
//! (pending), 4 (session) and 5 (batch) of earlier files, whose credits
//! were bytes only and whose sessions had no seeder flag, are still read.
//!
//! A peer's `role` has bit 0 for a seeder and bit 1 for a remote peer
//! (cluster mode: announced at another node). A peer's `age` is seconds
//! since its last announce when the file was
//! written; at load the time the tracker was down is added, and peers past
//! the timeout are dropped. Nothing is trusted before the trailer checks
//! out: a truncated, corrupt or foreign file is refused with the reason.
//!
//! Writing copies the table one shard at a time (announces to that shard
//! wait for the copy of a few hundred torrents, nothing else), into
//! `PATH.tmp`, which is synced and renamed over `PATH`, then the directory
//! is synced. The snapshot being replaced is kept as `PATH.prev` (hard
//! link), so `PATH` itself always names a complete file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::ledger_codec::{Reader, put_key, put_session, put_transfer};
use super::operator_file::read_bounded;
use crate::protocol::{InfoHash, PeerId};
use crate::tracker::Tracker;
use crate::tracker::ledger::{Batch, LedgerState, Passkey, SessionState, Totals, Transfer};
use crate::tracker::peer_set::Origin;
use crate::tracker::peer_set::{V4, V6};
use crate::tracker::site::Grant;
use crate::tracker::swarm::PeerUpdate;
use crate::tracker::table::{Download, Listed, PeerAddr, PeerChange};

const MAGIC: &[u8; 8] = b"RTSNAPSH";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 12;

const TAG_TORRENT: u8 = 1;
const TAG_TOTALS: u8 = 2;
const TAG_BYTES_PENDING: u8 = 3;
const TAG_BYTES_SESSION: u8 = 4;
const TAG_BYTES_BATCH: u8 = 5;
const TAG_NEXT_BATCH: u8 = 6;
const TAG_PENDING: u8 = 7;
const TAG_BATCH: u8 = 8;
const TAG_SESSION: u8 = 9;
const TAG_FREELEECH: u8 = 10;
const TAG_END: u8 = 255;

/// A peer entry's role byte: bit 0 seeder, bit 1 learned from another
/// cluster node.
const ROLE_SEEDER: u8 = 1;
const ROLE_REMOTE: u8 = 2;

/// Why a snapshot cannot be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file system refused.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The snapshot's path.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Not a snapshot at all.
    #[error("snapshot {path} is not a ringtracker snapshot (no RTSNAPSH header)")]
    Foreign {
        /// The snapshot's path.
        path: PathBuf,
    },
    /// Written by a build with another format.
    #[error("snapshot {path} has format version {found}; this ringtracker reads version {VERSION}")]
    Version {
        /// The snapshot's path.
        path: PathBuf,
        /// The version it has.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("snapshot {path} is truncated ({len} bytes; it says {expected})")]
    Truncated {
        /// The snapshot's path.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// The length its header names.
        expected: u64,
    },
    /// The CRC does not match.
    #[error("snapshot {path} is corrupt (checksum mismatch)")]
    Checksum {
        /// The snapshot's path.
        path: PathBuf,
    },
    /// A record is out of bounds or inconsistent.
    #[error("snapshot {path} is corrupt at byte {offset}: {what}")]
    Corrupt {
        /// The snapshot's path.
        path: PathBuf,
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// What a write or a load covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Torrents written or loaded.
    pub torrents: u64,
    /// Completed counts of torrents without peers written or loaded
    /// (torrent records with no peer).
    pub idle: u64,
    /// Peers written or loaded.
    pub peers: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Peers dropped at load: their lifetime ran out while the tracker was
    /// down.
    pub expired: u64,
    /// Remote peers left out (`Scope::LocalPeers`).
    pub remote_left_out: u64,
    /// How long it took, in microseconds.
    pub micros: u64,
}

/// A test hook: stop for good halfway through a write (after half the
/// shards), so a test can kill the process mid-write without timing.
#[derive(Debug, Clone, Copy)]
pub struct Stall;

/// Write the tracker's state at tracker time `now` (`unix_now` is the
/// wall clock, for the downtime at the next load) to `path`.
pub fn write(
    tracker: &Tracker,
    path: &Path,
    now: u32,
    unix_now: u64,
    stall: Option<Stall>,
) -> Result<SnapshotStats, SnapshotError> {
    let started = Instant::now();
    let tmp = sibling(path, "tmp");
    let written = write_file(tracker, &tmp, now, unix_now, stall);
    let mut stats = match written {
        Ok(stats) => stats,
        Err(source) => {
            // A full disk must not stay fuller for our half-written file.
            let _ = fs::remove_file(&tmp);
            return Err(SnapshotError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Keep the snapshot being replaced as PATH.prev; PATH always names a
    // complete file (a link, then an atomic rename over it).
    if path.exists() {
        let prev = sibling(path, "prev");
        let prev_tmp = sibling(path, "prev.tmp");
        let _ = fs::remove_file(&prev_tmp);
        fs::hard_link(path, &prev_tmp)
            .or_else(|_| fs::copy(path, &prev_tmp).map(drop))
            .map_err(io)?;
        fs::rename(&prev_tmp, &prev).map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    File::open(parent_dir(path))
        .and_then(|d| d.sync_all())
        .map_err(io)?;

    stats.micros = started.elapsed().as_micros() as u64;
    Ok(stats)
}

/// The directory `path` is in: `.` for a bare file name (whose
/// `parent()` is the empty path, which cannot be opened).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Write the snapshot's bytes to `tmp` and sync them.
fn write_file(
    tracker: &Tracker,
    tmp: &Path,
    now: u32,
    unix_now: u64,
    stall: Option<Stall>,
) -> io::Result<SnapshotStats> {
    let file = File::create(tmp)?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let (out, stats) = encode(tracker, out, now, unix_now, stall, Scope::Everything)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(stats)
}

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every peer, and private mode's ledger (the file at `storage.snapshot`).
    Everything,
    /// This node's local peers only, no ledger (cluster mode's checkpoint
    /// in Redis: other nodes load them as remote peers).
    LocalPeers,
}

/// Encode the tracker's state at tracker time `now` into `out`, trailer
/// included; returns `out` (flushed) and what it held.
pub fn encode<W: Write>(
    tracker: &Tracker,
    out: W,
    now: u32,
    unix_now: u64,
    stall: Option<Stall>,
    scope: Scope,
) -> io::Result<(W, SnapshotStats)> {
    let mut out = Checksummed::new(out);
    let mut stats = SnapshotStats::default();

    let mut buf = Vec::with_capacity(64 * 1024);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&unix_now.to_le_bytes());
    out.write_all(&buf)?;

    let table = tracker.table();
    let shards = table.shard_count();
    for i in 0..shards {
        if stall.is_some() && i == shards / 2 {
            out.flush()?;
            tracing::warn!("snapshot write stalled halfway (test hook)");
            loop {
                std::thread::park();
            }
        }
        buf.clear();
        table.for_each_with_idle_in_shard(i, |hash, listed| match listed {
            Listed::Swarm(t) => encode_torrent(&mut buf, hash, t, now, scope, &mut stats),
            // A torrent record without peers: the count alone (builds
            // before idle counts read it and keep nothing).
            Listed::Idle(n) => {
                buf.push(TAG_TORRENT);
                buf.extend_from_slice(&hash.0);
                buf.extend_from_slice(&n.to_le_bytes());
                buf.extend_from_slice(&[0; 8]);
                stats.idle += 1;
            }
        });
        out.write_all(&buf)?;
    }

    buf.clear();
    // On a site's database the credit journal holds the ledger instead.
    match tracker.rules().site() {
        _ if scope != Scope::Everything => {}
        None => encode_ledger(&mut buf, &tracker.ledger().export(now)),
        Some(site) => {
            for g in site.freeleech().api_grants() {
                buf.push(TAG_FREELEECH);
                for v in [g.user_id, g.torrent_id, g.until] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    buf.push(TAG_END);
    // The end record counts every torrent record, idle ones too.
    buf.extend_from_slice(&(stats.torrents + stats.idle).to_le_bytes());
    buf.extend_from_slice(&stats.peers.to_le_bytes());
    out.write_all(&buf)?;

    let (len, crc) = (out.len, out.crc.clone().finalize());
    let mut inner = out.inner;
    inner.write_all(&len.to_le_bytes())?;
    inner.write_all(&crc.to_le_bytes())?;
    inner.flush()?;
    stats.bytes = len + TRAILER_LEN as u64;
    Ok((inner, stats))
}

/// The private mode's ledger: totals, pending credits, sealed batches and
/// the sessions' baselines.
fn encode_ledger(buf: &mut Vec<u8>, ledger: &LedgerState) {
    for (key, t) in &ledger.totals {
        buf.push(TAG_TOTALS);
        put_key(buf, key);
        buf.extend_from_slice(&t.uploaded.to_le_bytes());
        buf.extend_from_slice(&t.downloaded.to_le_bytes());
    }
    for t in &ledger.pending {
        buf.push(TAG_PENDING);
        put_transfer(buf, t);
    }
    for b in &ledger.batches {
        buf.push(TAG_BATCH);
        buf.extend_from_slice(&b.id.to_le_bytes());
        buf.extend_from_slice(&(b.transfers.len() as u32).to_le_bytes());
        for t in &b.transfers {
            put_transfer(buf, t);
        }
    }
    buf.push(TAG_NEXT_BATCH);
    buf.extend_from_slice(&ledger.next_batch.to_le_bytes());
    for s in &ledger.sessions {
        buf.push(TAG_SESSION);
        put_session(buf, s, s.age);
    }
}

/// Move an unreadable snapshot aside, never over an earlier one:
/// `PATH.bad.<unix time>` (then `.1`, `.2`, ... if taken). Returns where it
/// went.
pub fn keep_aside(path: &Path, unix_now: u64) -> io::Result<PathBuf> {
    let stamp = sibling(path, &format!("bad.{unix_now}"));
    for n in 0..1000u32 {
        let to = if n == 0 {
            stamp.clone()
        } else {
            sibling(&stamp, &n.to_string())
        };
        if to.symlink_metadata().is_ok() {
            continue;
        }
        return fs::rename(path, &to).map(|()| to);
    }
    Err(io::Error::other(
        "a thousand bad snapshots of the same second",
    ))
}

/// `PATH.<ext>`, beside `path`.
pub fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn encode_torrent(
    buf: &mut Vec<u8>,
    hash: &InfoHash,
    t: &crate::tracker::swarm::Torrent,
    now: u32,
    scope: Scope,
    stats: &mut SnapshotStats,
) {
    let wanted = |r_origin: Origin| scope == Scope::Everything || r_origin == Origin::Local;
    let (mut n4, mut n6) = (0u32, 0u32);
    if scope == Scope::Everything {
        n4 = (t.v4.seeders() + t.v4.leechers()) as u32;
        n6 =
            t.v6.as_ref()
                .map_or(0, |s| (s.seeders() + s.leechers()) as u32);
    } else {
        t.v4.for_each_peer(|r, _| n4 += u32::from(wanted(r.origin())));
        if let Some(v6) = &t.v6 {
            v6.for_each_peer(|r, _| n6 += u32::from(wanted(r.origin())));
        }
        let all = t.seeders() + t.leechers();
        stats.remote_left_out += (all as u64).saturating_sub(u64::from(n4 + n6));
    }
    if n4 + n6 == 0 {
        return;
    }
    buf.push(TAG_TORRENT);
    buf.extend_from_slice(&hash.0);
    buf.extend_from_slice(&t.downloaded.to_le_bytes());
    buf.extend_from_slice(&n4.to_le_bytes());
    buf.extend_from_slice(&n6.to_le_bytes());
    t.v4.for_each_peer(|r, seeder| {
        if wanted(r.origin()) {
            encode_peer(buf, &r.addr, r.age(now), seeder, r.origin());
        }
    });
    if let Some(v6) = &t.v6 {
        v6.for_each_peer(|r, seeder| {
            if wanted(r.origin()) {
                encode_peer(buf, &r.addr, r.age(now), seeder, r.origin());
            }
        });
    }
    stats.torrents += 1;
    stats.peers += u64::from(n4 + n6);
}

fn encode_peer(buf: &mut Vec<u8>, addr: &[u8], age: u32, seeder: bool, origin: Origin) {
    buf.extend_from_slice(addr);
    buf.extend_from_slice(&(age as u16).to_le_bytes());
    let remote = if origin == Origin::Remote {
        ROLE_REMOTE
    } else {
        0
    };
    buf.push(u8::from(seeder) | remote);
}

/// A snapshot read from disk whose trailer and structure checked out.
pub struct Snapshot {
    bytes: Vec<u8>,
    /// Unix time it was written.
    pub saved_at: u64,
    /// Torrent records it holds (idle ones, without peers, too).
    pub torrents: u64,
    /// Peers it holds.
    pub peers: u64,
}

/// One record of a checked snapshot.
enum Record<'a> {
    Torrent {
        hash: InfoHash,
        downloaded: u32,
        v4: &'a [u8],
        v6: &'a [u8],
    },
    Totals(Passkey, Totals),
    Pending(Transfer),
    Session(SessionState),
    Batch(Batch),
    NextBatch(u64),
    Freeleech(Grant),
}

/// Largest snapshot file read.
const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

impl Snapshot {
    /// Read and check `path`. `Ok(None)`: there is no snapshot yet.
    pub fn read(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
        // A regular file only (a FIFO or a device named by mistake must
        // not hang or fill memory); its size is the table's, so the bound
        // is only a sanity one.
        let bytes = match read_bounded(path, MAX_SNAPSHOT_BYTES, "snapshots are at most 64 GiB") {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::check(bytes, path).map(Some)
    }

    /// Check the bytes of a snapshot file read from `path` (named in
    /// errors); the fuzzer's entry point too.
    pub fn check(bytes: Vec<u8>, path: &Path) -> Result<Snapshot, SnapshotError> {
        let path_buf = || path.to_path_buf();
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::Foreign { path: path_buf() });
        }
        if bytes.len() < HEADER_LEN + 1 + 16 + TRAILER_LEN {
            return Err(SnapshotError::Truncated {
                path: path_buf(),
                len: bytes.len(),
                expected: (HEADER_LEN + 1 + 16 + TRAILER_LEN) as u64,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(SnapshotError::Version {
                path: path_buf(),
                found: version,
            });
        }
        let body_len = bytes.len() - TRAILER_LEN;
        let said = u64::from_le_bytes(bytes[body_len..body_len + 8].try_into().expect("8 bytes"));
        if said != body_len as u64 {
            return Err(SnapshotError::Truncated {
                path: path_buf(),
                len: bytes.len(),
                expected: said.saturating_add(TRAILER_LEN as u64),
            });
        }
        let crc = u32::from_le_bytes(bytes[body_len + 8..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body_len]) != crc {
            return Err(SnapshotError::Checksum { path: path_buf() });
        }
        let saved_at = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let mut snapshot = Snapshot {
            bytes,
            saved_at,
            torrents: 0,
            peers: 0,
        };
        let (torrents, peers) =
            snapshot
                .walk(|_| {})
                .map_err(|(offset, what)| SnapshotError::Corrupt {
                    path: path_buf(),
                    offset,
                    what,
                })?;
        snapshot.torrents = torrents;
        snapshot.peers = peers;
        Ok(snapshot)
    }

    /// Visit every record; returns the end record's counts, checked against
    /// what was seen. Errors carry the byte offset.
    fn walk(&self, mut visit: impl FnMut(Record<'_>)) -> Result<(u64, u64), (usize, &'static str)> {
        let body = &self.bytes[..self.bytes.len() - TRAILER_LEN];
        let mut r = Reader::new(body, HEADER_LEN);
        let (mut torrents, mut peers) = (0u64, 0u64);
        loop {
            let tag_at = r.at;
            let tag = r.u8()?;
            match tag {
                TAG_TORRENT => {
                    let hash = InfoHash(r.array()?);
                    let downloaded = r.u32()?;
                    let n4 = r.u32()? as usize;
                    let n6 = r.u32()? as usize;
                    let v4 = r.take(n4.checked_mul(V4 + 3).ok_or((r.at, "peer count"))?)?;
                    let v6 = r.take(n6.checked_mul(V6 + 3).ok_or((r.at, "peer count"))?)?;
                    if v4
                        .chunks(V4 + 3)
                        .chain(v6.chunks(V6 + 3))
                        .any(|p| p[p.len() - 1] > 3 || p[p.len() - 5..p.len() - 3] == [0, 0])
                    {
                        return Err((tag_at, "a peer record with port 0 or a bad role"));
                    }
                    torrents += 1;
                    peers += (n4 + n6) as u64;
                    visit(Record::Torrent {
                        hash,
                        downloaded,
                        v4,
                        v6,
                    });
                }
                TAG_TOTALS => {
                    let key = r.key()?;
                    let t = Totals {
                        uploaded: r.u64()?,
                        downloaded: r.u64()?,
                    };
                    visit(Record::Totals(key, t));
                }
                TAG_PENDING => visit(Record::Pending(r.transfer()?)),
                TAG_BYTES_PENDING => visit(Record::Pending(r.bytes_transfer()?)),
                TAG_BATCH | TAG_BYTES_BATCH => {
                    let id = r.u64()?;
                    let n = r.u32()? as usize;
                    // No huge allocation for a count the file cannot hold
                    // (a bytes-only transfer takes at least 37 bytes).
                    r.check_count(n, 37)?;
                    let mut transfers = Vec::with_capacity(n);
                    for _ in 0..n {
                        transfers.push(if tag == TAG_BATCH {
                            r.transfer()?
                        } else {
                            r.bytes_transfer()?
                        });
                    }
                    visit(Record::Batch(Batch { id, transfers }));
                }
                TAG_NEXT_BATCH => visit(Record::NextBatch(r.u64()?)),
                TAG_FREELEECH => visit(Record::Freeleech(Grant {
                    user_id: r.u64()?,
                    torrent_id: r.u64()?,
                    until: r.u64()?,
                })),
                TAG_SESSION => visit(Record::Session(r.session()?)),
                TAG_BYTES_SESSION => {
                    let passkey = r.key()?;
                    let info_hash = InfoHash(r.array()?);
                    let peer_id = PeerId(r.array()?);
                    visit(Record::Session(SessionState {
                        passkey,
                        info_hash,
                        peer_id,
                        uploaded: r.u64()?,
                        downloaded: r.u64()?,
                        age: r.u32()?,
                        seeder: false,
                    }));
                }
                TAG_END => {
                    let (t, p) = (r.u64()?, r.u64()?);
                    if (t, p) != (torrents, peers) {
                        return Err((tag_at, "the counts at the end do not match the records"));
                    }
                    if r.at != body.len() {
                        return Err((r.at, "bytes after the end record"));
                    }
                    return Ok((torrents, peers));
                }
                _ => return Err((tag_at, "unknown record type")),
            }
        }
    }

    /// Put the snapshot's state into `tracker` (before it serves) at tracker
    /// time `now`; `unix_now` gives the downtime to add to every age.
    pub fn restore(&self, tracker: &Tracker, now: u32, unix_now: u64) -> SnapshotStats {
        self.restore_as(tracker, now, unix_now, None)
    }

    /// `restore`, every peer from `origin` if given (a checkpoint from the
    /// cluster: another node's local peers are remote here; its ledger
    /// records, if any, are ignored). Completed counts are
    /// raised to the snapshot's, never lowered, so that several nodes'
    /// checkpoints can be loaded into one table.
    pub fn restore_as(
        &self,
        tracker: &Tracker,
        now: u32,
        unix_now: u64,
        origin: Option<Origin>,
    ) -> SnapshotStats {
        let started = Instant::now();
        let down = u32::try_from(unix_now.saturating_sub(self.saved_at)).unwrap_or(u32::MAX);
        let timeout = tracker.policy().peer_timeout;
        let h = *tracker.table().addr_hasher();
        let mut stats = SnapshotStats {
            bytes: self.bytes.len() as u64,
            ..SnapshotStats::default()
        };
        // A peer entry: its change (stamped now minus its age, downtime
        // included), or None if it expired while the tracker was down.
        let change = |entry: &[u8]| -> Option<PeerChange> {
            let n = entry.len();
            let age = u32::from(u16::from_le_bytes([entry[n - 3], entry[n - 2]]));
            let age = age.saturating_add(down);
            let role = entry[n - 1];
            (age <= timeout).then(|| PeerChange {
                addr: PeerAddr::from_bytes(&entry[..n - 3]).expect("checked at read"),
                update: if role & ROLE_SEEDER != 0 {
                    PeerUpdate::Seeder
                } else {
                    PeerUpdate::Leecher
                },
                // The stamp is kept mod 2^15, like every stamp.
                now: now.wrapping_sub(age),
                min_age: 0,
                origin: origin.unwrap_or(if role & ROLE_REMOTE != 0 {
                    Origin::Remote
                } else {
                    Origin::Local
                }),
                download: Download::Never,
            })
        };
        let walked = self.walk(|record| match record {
            Record::Torrent {
                hash,
                downloaded,
                v4,
                v6,
            } => {
                let mut shard = tracker.table().lock(&hash);
                let mut kept = false;
                for e in v4.chunks(V4 + 3).chain(v6.chunks(V6 + 3)) {
                    match change(e) {
                        // A checkpoint loaded into a running table is at
                        // most as current as a peer already there.
                        Some(c)
                            if origin.is_some()
                                && shard.peer(&hash, &c.addr, now, &h).is_some() =>
                        {
                            kept = true;
                        }
                        Some(c) => {
                            shard.apply(&hash, &c, &h, |_| ());
                            stats.peers += 1;
                            kept = true;
                        }
                        None => stats.expired += 1,
                    }
                }
                // A torrent whose peers all expired (or that had none)
                // keeps its completed count among the idle ones, as it
                // would have had the tracker kept running.
                shard.raise_downloads(&hash, downloaded);
                if kept {
                    stats.torrents += 1;
                } else if downloaded > 0 {
                    stats.idle += 1;
                }
            }
            // Another node's checkpoint (`origin`) restores peers and
            // completed counts only: ledger records in it are not ours to
            // believe (they would mint credits or reset baselines).
            _ if origin.is_some() => {}
            Record::Totals(key, t) => tracker.ledger().import_totals(key, t),
            Record::Pending(t) => tracker.ledger().restore(vec![t]),
            Record::Session(s) => tracker.ledger().import_session(s, now),
            Record::Batch(b) => tracker.ledger().import_batches(vec![b], 0),
            Record::NextBatch(next) => tracker.ledger().import_batches(Vec::new(), next),
            Record::Freeleech(g) => {
                if let Some(site) = tracker.rules().site() {
                    // Past the bound: the rest are the table's or lost.
                    let _ = site.freeleech().grant(g);
                }
            }
        });
        debug_assert!(walked.is_ok(), "checked at read");
        stats.micros = started.elapsed().as_micros() as u64;
        stats
    }
}

/// Counts and checksums what goes through it.
struct Checksummed<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Checksummed<W> {
    fn new(inner: W) -> Self {
        Checksummed {
            inner,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;
    use crate::tracker::announce::{AnnounceParams, AnnouncePolicy};
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::ledger::{Account, Report};
    use crate::tracker::table::SwarmTable;
    use std::net::IpAddr;

    fn tracker(seed: u64) -> Tracker {
        Tracker::new(
            AnnouncePolicy {
                min_interval: 0,
                ..AnnouncePolicy::default()
            },
            SwarmTable::new(16, [seed, seed + 1]),
            ConnectionIdIssuer::new([seed as u8; 16]),
        )
    }

    fn params(hash: u8, ip: &str, port: u16, left: u64, event: Event) -> AnnounceParams {
        AnnounceParams {
            info_hash: InfoHash([hash; 20]),
            peer_id: PeerId([1; 20]),
            ip: ip.parse::<IpAddr>().unwrap(),
            port,
            event,
            left,
            uploaded: 0,
            downloaded: 0,
            numwant: 0,
            picks: Default::default(),
            both_families: false,
        }
    }

    fn announce(t: &Tracker, hash: u8, ip: &str, left: u64, event: Event, now: u32) {
        let p = params(hash, ip, 6881, left, event);
        let mut out = [0u8; 64];
        t.announce(&p, now, &mut out).unwrap();
    }

    /// The peers a port-0 leecher at `ip` is sent (it is not stored).
    fn peers_of(t: &Tracker, hash: u8, ip: &str) -> Vec<Vec<u8>> {
        let p = AnnounceParams {
            numwant: 200,
            ..params(hash, ip, 0, 1, Event::None)
        };
        let mut out = vec![0u8; 200 * 18];
        let a = t.announce(&p, 0, &mut out).unwrap();
        let mut peers: Vec<Vec<u8>> = out[..a.peers * a.peer_len]
            .chunks(a.peer_len)
            .map(<[u8]>::to_vec)
            .collect();
        peers.sort();
        peers
    }

    /// A credit to the test passkey on torrent 2 at tracker time 1000.
    fn credit(t: &Tracker, event: Event, uploaded: u64) {
        let report = Report {
            passkey: b"abcdef0123456789",
            info_hash: InfoHash([2; 20]),
            peer_id: PeerId([3; 20]),
            event,
            uploaded,
            downloaded: 20,
            left: 0,
            account: Account::UNIT,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 6881,
            agent: b"",
        };
        t.ledger().record(&report, 1000).unwrap();
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rt-snap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tracker with an inline torrent, a split one (v4 and v6) and ledger
    /// state, at tracker time 1000.
    fn filled() -> Tracker {
        let t = tracker(1);
        announce(&t, 1, "10.0.0.1", 0, Event::Started, 1000);
        for i in 0..40 {
            announce(
                &t,
                2,
                &format!("10.0.1.{i}"),
                i % 2,
                Event::Started,
                960 + i as u32,
            );
        }
        announce(&t, 2, "10.0.1.7", 0, Event::Completed, 1000);
        announce(&t, 2, "2001:db8::1", 5, Event::Started, 1000);
        credit(&t, Event::Started, 10);
        // One batch sealed for the journal, more credit pending after it.
        t.ledger().seal();
        credit(&t, Event::None, 15);
        t
    }

    #[test]
    fn round_trip_keeps_swarms_counts_and_the_ledger() {
        let d = dir("round");
        let path = d.join("swarms.snap");
        let a = filled();
        let w = write(&a, &path, 1000, 1_700_000_000, None).unwrap();
        assert_eq!((w.torrents, w.peers), (2, 42));
        let snap = Snapshot::read(&path).unwrap().unwrap();
        assert_eq!((snap.torrents, snap.peers), (2, 42));

        let b = tracker(2);
        let r = snap.restore(&b, 0, 1_700_000_010);
        assert_eq!((r.torrents, r.peers, r.expired), (2, 42, 0));
        for hash in [1, 2] {
            assert_eq!(
                a.scrape(&InfoHash([hash; 20])),
                b.scrape(&InfoHash([hash; 20]))
            );
            for ip in ["10.9.9.9", "2001:db8::9"] {
                assert_eq!(
                    peers_of(&a, hash, ip),
                    peers_of(&b, hash, ip),
                    "{hash} {ip}"
                );
            }
        }
        assert_eq!(b.scrape(&InfoHash([2; 20])).completed, 1);
        assert_eq!(b.ledger().take_pending(), a.ledger().take_pending());
        assert_eq!(b.ledger().batches(), a.ledger().batches());
        assert_eq!(b.ledger().batches().0[0].transfers[0].credit.uploaded, 10);
        assert_eq!(b.ledger().totals(), a.ledger().totals());
        assert_eq!(b.ledger().sessions(), 1);
        // The file was written whole: no temporary left, and a second write
        // keeps the first as .prev.
        assert!(!sibling(&path, "tmp").exists());
        write(&a, &path, 1001, 1_700_000_001, None).unwrap();
        assert!(Snapshot::read(&sibling(&path, "prev")).unwrap().is_some());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn database_mode_keeps_the_api_s_freeleech_grants_and_not_the_table_s() {
        use crate::tracker::access::AccessRules;
        use crate::tracker::site::{Grant, NO_END, SiteDirectory};
        let d = dir("freeleech");
        let path = d.join("swarms.snap");
        let with_site = |seed| {
            let t = tracker(seed);
            let site = Some(std::sync::Arc::new(SiteDirectory::default()));
            t.set_access(AccessRules::default().with_site(site));
            t
        };
        let a = with_site(1);
        let rules = a.access();
        let f = rules.site().unwrap().freeleech();
        let token = Grant {
            user_id: 3,
            torrent_id: 9,
            until: 1_800_000_000,
        };
        let personal = Grant {
            user_id: 4,
            torrent_id: 0,
            until: NO_END,
        };
        f.grant(token).unwrap();
        f.grant(personal).unwrap();
        f.apply_rows(
            &[Grant {
                user_id: 5,
                torrent_id: 9,
                until: NO_END,
            }],
            true,
        );
        write(&a, &path, 10, 1_700_000_000, None).unwrap();
        let b = with_site(2);
        Snapshot::read(&path)
            .unwrap()
            .unwrap()
            .restore(&b, 0, 1_700_000_001);
        let rules = b.access();
        let f = rules.site().unwrap().freeleech();
        assert!(f.free(3, 9, 1_700_000_001) && f.free(4, 1, 1_700_000_001));
        assert!(
            !f.free(5, 9, 0),
            "the table's rows come back from the table"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    /// Records 3, 4 and 5 as snapshots wrote them before credits had more
    /// than bytes: still read, the bytes credited as reported.
    #[test]
    fn a_ledger_in_the_earlier_layout_still_loads() {
        let key = b"abcdef0123456789";
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1_700_000_000u64.to_le_bytes());
        let bytes_transfer = |b: &mut Vec<u8>, up: u64| {
            b.push(16);
            b.extend_from_slice(key);
            b.extend_from_slice(&[2; 20]);
            b.extend_from_slice(&up.to_le_bytes());
            b.extend_from_slice(&7u64.to_le_bytes());
        };
        // A session: key, hash, peer id, totals, age.
        body.push(TAG_BYTES_SESSION);
        body.push(16);
        body.extend_from_slice(key);
        body.extend_from_slice(&[2; 20]);
        body.extend_from_slice(&[3; 20]);
        body.extend_from_slice(&50u64.to_le_bytes());
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&5u32.to_le_bytes());
        body.push(TAG_BYTES_PENDING);
        bytes_transfer(&mut body, 40);
        body.push(TAG_BYTES_BATCH);
        body.extend_from_slice(&4u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        bytes_transfer(&mut body, 30);
        body.push(TAG_END);
        body.extend_from_slice(&[0; 16]);
        let len = body.len() as u64;
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&crc.to_le_bytes());
        let snap = Snapshot::check(body, Path::new("old")).unwrap();
        let t = tracker(1);
        snap.restore(&t, 0, 1_700_000_000);
        assert_eq!(t.ledger().sessions(), 1);
        let pending = t.ledger().take_pending();
        assert_eq!(
            (pending[0].credit.uploaded, pending[0].credit.raw_uploaded),
            (40, 40)
        );
        let (batches, next) = t.ledger().batches();
        assert_eq!((batches[0].id, next), (4, 5));
        assert_eq!(batches[0].transfers[0].credit.raw_downloaded, 7);
    }

    #[test]
    fn peers_whose_lifetime_ran_out_while_down_are_dropped() {
        let d = dir("expire");
        let path = d.join("s");
        let a = filled();
        write(&a, &path, 1000, 1_700_000_000, None).unwrap();
        let snap = Snapshot::read(&path).unwrap().unwrap();
        // Peers of torrent 2 announced at 960..999 (ages 1..40 s at the
        // write); down for 3595 s, those older than 5 s are past 3600: the
        // 35 announced at 960..=994 but one (it completed at 1000).
        let b = tracker(3);
        let r = snap.restore(&b, 0, 1_700_003_595);
        assert_eq!(r.peers + r.expired, 42);
        assert_eq!(r.expired, 34);
        // Down for two hours: no peer survives, no swarm; the completed
        // count does, as it would have had the tracker kept running.
        let c = tracker(4);
        let r = snap.restore(&c, 0, 1_700_007_200);
        assert_eq!((r.torrents, r.peers, r.expired, r.idle), (0, 0, 42, 1));
        assert_eq!(c.scrape(&InfoHash([2; 20])).completed, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    /// A torrent without peers is a torrent record without peers: its
    /// completed count comes back, in a snapshot and in a checkpoint.
    #[test]
    fn idle_torrents_keep_their_completed_counts() {
        let a = filled();
        announce(&a, 3, "10.0.0.3", 5, Event::Started, 1000);
        announce(&a, 3, "10.0.0.3", 0, Event::Completed, 1000);
        announce(&a, 3, "10.0.0.3", 0, Event::Stopped, 1000);
        assert_eq!(a.scrape(&InfoHash([3; 20])).completed, 1);
        for scope in [Scope::Everything, Scope::LocalPeers] {
            let (bytes, w) = encode(&a, Vec::new(), 1000, 1_700_000_000, None, scope).unwrap();
            assert_eq!((w.torrents, w.idle), (2, 1));
            let snap = Snapshot::check(bytes, Path::new("s")).unwrap();
            assert_eq!(snap.torrents, 3, "the end record counts every record");
            let b = tracker(6);
            let r = snap.restore(&b, 0, 1_700_000_010);
            assert_eq!((r.torrents, r.idle), (2, 1));
            let counts = b.scrape(&InfoHash([3; 20]));
            assert_eq!(
                (counts.seeders, counts.completed, counts.leechers),
                (0, 1, 0)
            );
        }
    }

    /// Cluster mode's checkpoint: only local peers go in; loaded elsewhere
    /// they are remote, and a peer the table already has is left alone.
    #[test]
    fn a_checkpoint_holds_local_peers_and_loads_them_as_remote() {
        use crate::tracker::peer_set::Origin;
        use crate::tracker::table::PeerAddr;
        let a = filled();
        // A remote peer in torrent 1: not a checkpoint's business.
        let remote = crate::tracker::change::SwarmChange {
            info_hash: InfoHash([1; 20]),
            addr: PeerAddr::V4([10, 9, 9, 9, 0, 80]),
            kind: crate::tracker::change::ChangeKind::Leecher,
            completed: false,
        };
        crate::cluster::apply::apply_remote(&a, &remote, 1000);
        let (bytes, stats) =
            encode(&a, Vec::new(), 1000, 1_700_000_000, None, Scope::LocalPeers).unwrap();
        assert_eq!((stats.peers, stats.remote_left_out), (42, 1));
        let snap = Snapshot::check(bytes, Path::new("checkpoint")).unwrap();
        let b = tracker(5);
        // B already has one of A's peers, fresh and its own.
        announce(&b, 1, "10.0.0.1", 0, Event::Started, 5);
        let r = snap.restore_as(&b, 5, 1_700_000_010, Some(Origin::Remote));
        assert_eq!(r.peers, 41);
        let h = *b.table().addr_hasher();
        let origin = |hash: u8, ip: [u8; 4]| {
            let addr = PeerAddr::V4([ip[0], ip[1], ip[2], ip[3], 0x1a, 0xe1]);
            let hash = InfoHash([hash; 20]);
            b.table()
                .lock(&hash)
                .peer(&hash, &addr, 5, &h)
                .map(|p| p.origin)
        };
        assert_eq!(origin(1, [10, 0, 0, 1]), Some(Origin::Local));
        assert_eq!(origin(2, [10, 0, 1, 7]), Some(Origin::Remote));
        assert_eq!(origin(1, [10, 9, 9, 9]), None);
    }

    #[test]
    fn truncated_corrupt_and_foreign_files_are_refused_with_the_reason() {
        let d = dir("bad");
        let path = d.join("s");
        write(&filled(), &path, 1000, 1_700_000_000, None).unwrap();
        let good = fs::read(&path).unwrap();
        let bad = d.join("bad");
        let refuse = |bytes: &[u8]| {
            fs::write(&bad, bytes).unwrap();
            match Snapshot::read(&bad) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted"),
            }
        };
        for cut in [good.len() - 1, good.len() / 2, 30, 9] {
            let e = refuse(&good[..cut]);
            assert!(
                e.contains("truncated") || e.contains("corrupt"),
                "{cut}: {e}"
            );
            assert!(e.contains(bad.to_str().unwrap()), "{e}");
        }
        let mut flipped = good.clone();
        flipped[100] ^= 1;
        assert!(refuse(&flipped).contains("checksum mismatch"));
        assert!(refuse(b"d8:announce...").contains("not a ringtracker snapshot"));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert!(refuse(&v2).contains("format version 2"));
        // A file that checks out but lies about its counts.
        let mut lying = good[..good.len() - TRAILER_LEN].to_vec();
        let end = lying.len() - 16;
        lying[end] ^= 1;
        let crc = crc32fast::hash(&lying);
        let len = lying.len() as u64;
        lying.extend_from_slice(&len.to_le_bytes());
        lying.extend_from_slice(&crc.to_le_bytes());
        assert!(refuse(&lying).contains("counts at the end"));
        assert!(Snapshot::read(&d.join("missing")).unwrap().is_none());
        fs::remove_dir_all(&d).unwrap();
    }
}
