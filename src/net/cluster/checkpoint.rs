//! Checkpoints: each node's local peers in Redis, in the snapshot
//! format (`storage::snapshot`, `Scope::LocalPeers`), with the stream id
//! they are current to. A node that starts, or finds it missed stream
//! entries, loads every node's checkpoint (another node's peers as remote
//! peers, its own as local) and tails the stream from there, so it serves
//! the cluster's peers without waiting for clients to re-announce.
//!
//! A checkpoint is written in parts of `PART_BYTES` under a new
//! generation number, then its head (generation, parts, stream id) is set:
//! a reader sees a whole old checkpoint or a whole new one. The head and
//! every part carry a tag under the cluster's key (`cluster::mac`): a
//! head or part that does not check out makes the reader skip that
//! node's checkpoint (counted), and it is checked before the next part is
//! read. What a checkpoint restores is peers and completed counts only
//! (those of torrents without peers too), never private mode's ledger
//! records. Parts and head expire after the peer timeout (by then every
//! peer in them has expired anyway, and every other node's checkpoint
//! carries the same completed counts), so a node that is gone for good
//! leaves nothing behind.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redis::{RedisResult, Value};

use super::MAX_NODES;
use super::link::{Link, NODES, checkpoint_head, checkpoint_part};
use crate::clock::{unix_ms, unix_now};
use crate::cluster::follow::StreamId;
use crate::cluster::mac::{ClusterMac, Domain, TAG_LEN};
use crate::cluster::schedule::CheckpointRetry;
use crate::cluster::stats::{ClusterStats, Rejected};
use crate::config::ClusterConfig;
use crate::storage::snapshot::{self, Scope, Snapshot, SnapshotStats};
use crate::tracker::Tracker;
use crate::tracker::peer_set::Origin;

/// Bytes per part: well under Redis's 512 MB string limit, and small
/// enough that one SET does not hold up the server for long.
const PART_BYTES: usize = 4 << 20;
/// The largest checkpoint read (a sanity bound: 16 GiB).
const MAX_PARTS: usize = 4096;

/// Writes a checkpoint's bytes as parts (SET with an expiry).
struct PartWriter<'a> {
    link: &'a mut Link,
    node: &'a str,
    generation: u64,
    ttl: u64,
    mac: &'a ClusterMac,
    /// The part's tag (set when it is sent), then its bytes.
    buf: Vec<u8>,
    parts: usize,
}

/// What a part's tag covers besides its bytes.
fn part_context(node: &str, generation: u64, index: usize) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[..8].copy_from_slice(&(node.len() as u64).to_le_bytes());
    c[8..16].copy_from_slice(&generation.to_le_bytes());
    c[16..].copy_from_slice(&(index as u64).to_le_bytes());
    c
}

/// What a head's tag covers.
fn head_fields(node: &str, generation: u64, parts: usize, stream_id: &str) -> String {
    format!("{} {node} {generation} {parts} {stream_id}", node.len())
}

impl PartWriter<'_> {
    fn put(&mut self) -> io::Result<()> {
        if self.buf.len() == TAG_LEN {
            return Ok(());
        }
        let context = part_context(self.node, self.generation, self.parts);
        let tag = self.mac.tag(
            Domain::CheckpointPart,
            &[&context, self.node.as_bytes(), &self.buf[TAG_LEN..]],
        );
        self.buf[..TAG_LEN].copy_from_slice(&tag);
        let mut cmd = redis::cmd("SET");
        cmd.arg(checkpoint_part(self.node, self.generation, self.parts))
            .arg(&self.buf[..])
            .arg("EX")
            .arg(self.ttl);
        self.link.query(&cmd).map_err(io::Error::other)?;
        self.parts += 1;
        self.buf.truncate(TAG_LEN);
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(TAG_LEN + PART_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == TAG_LEN + PART_BYTES {
            self.put()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.put()
    }
}

/// Write `node`'s checkpoint, current to `stream_id`, at tracker time
/// `now`, as generation `generation` (kept for `ttl` seconds). Returns
/// what it held and its parts.
#[allow(clippy::too_many_arguments)]
pub fn write(
    link: &mut Link,
    tracker: &Tracker,
    node: &str,
    stream_id: &str,
    generation: u64,
    ttl: u64,
    (now, unix_now): (u32, u64),
    mac: &ClusterMac,
) -> io::Result<(SnapshotStats, usize)> {
    let mut buf = Vec::with_capacity(TAG_LEN + PART_BYTES);
    buf.resize(TAG_LEN, 0);
    let parts = PartWriter {
        link,
        node,
        generation,
        ttl,
        mac,
        buf,
        parts: 0,
    };
    let (parts, stats) = snapshot::encode(tracker, parts, now, unix_now, None, Scope::LocalPeers)?;
    let (count, link) = (parts.parts, parts.link);
    let fields = head_fields(node, generation, count, stream_id);
    let tag = mac.tag(Domain::CheckpointHead, &[fields.as_bytes()]);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let mut head = redis::cmd("SET");
    head.arg(checkpoint_head(node))
        .arg(format!("{generation} {count} {stream_id} {tag}"))
        .arg("EX")
        .arg(ttl);
    link.query(&head).map_err(io::Error::other)?;
    let mut register = redis::cmd("SADD");
    register.arg(NODES).arg(node);
    link.query(&register).map_err(io::Error::other)?;
    Ok((stats, count))
}

/// Delete the parts of an old generation (two generations are kept, so a
/// node reading the one before this is not cut short).
pub fn delete(link: &mut Link, node: &str, generation: u64, parts: usize) -> RedisResult<()> {
    for part in 0..parts {
        let mut del = redis::cmd("DEL");
        del.arg(checkpoint_part(node, generation, part));
        link.query(&del)?;
    }
    Ok(())
}

/// What a catch-up loaded, and how many other nodes in the node set had
/// no checkpoint to load (none written yet, expired, or refused).
#[derive(Default)]
pub struct LoadedAll {
    /// The checkpoints loaded.
    pub loaded: Vec<Loaded>,
    /// Nodes without one.
    pub missing: usize,
}

/// A node's checkpoint as loaded.
pub struct Loaded {
    /// Whose checkpoint.
    pub node: String,
    /// The stream id it is current to.
    pub stream_id: StreamId,
    /// What it held.
    pub stats: SnapshotStats,
}

/// Load every node's checkpoint into `tracker` at tracker time `now`
/// (`own`'s peers as local, every other node's as remote). A missing,
/// expired or unreadable checkpoint is skipped; one that does not check
/// out under `mac` is skipped and counted; what was skipped is logged in
/// one line per catch-up (forged heads must not flood the log). At most
/// `MAX_NODES` nodes are read (a set grown by someone who may write to
/// Redis is read no further).
pub fn load_all(
    link: &mut Link,
    tracker: &Tracker,
    own: &str,
    (now, unix_now): (u32, u64),
    mac: &ClusterMac,
    stats: &ClusterStats,
) -> RedisResult<LoadedAll> {
    let mut members = redis::cmd("SRANDMEMBER");
    members.arg(NODES).arg(MAX_NODES);
    let nodes: Vec<String> = match link.query(&members)? {
        Value::Array(v) | Value::Set(v) => v.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    let mut all = LoadedAll::default();
    let mut skipped: (usize, Option<String>) = (0, None);
    let mut skip = |why: String| {
        skipped.0 += 1;
        skipped.1.get_or_insert(why);
    };
    for node in nodes {
        let (stream_id, bytes) = match read(link, &node, mac)? {
            Ok(Some(found)) => found,
            Ok(None) => {
                all.missing += usize::from(node != own);
                continue;
            }
            Err(why) => {
                all.missing += usize::from(node != own);
                stats.reject(Rejected::Checkpoint);
                skip(format!("node {node:?}: {why}"));
                continue;
            }
        };
        let place = format!("checkpoint of node {node}");
        match Snapshot::check(bytes, Path::new(&place)) {
            Ok(s) => {
                let origin = if node == own {
                    Origin::Local
                } else {
                    Origin::Remote
                };
                let stats = s.restore_as(tracker, now, unix_now, Some(origin));
                all.loaded.push(Loaded {
                    node,
                    stream_id,
                    stats,
                });
            }
            Err(e) => {
                all.missing += 1;
                skip(e.to_string());
            }
        }
    }
    if let (n, Some(first)) = skipped {
        tracing::warn!("cluster: {n} checkpoint(s) skipped ({first}, ...)");
    }
    Ok(all)
}

/// A node's checkpoint: its stream id and bytes (`Ok(None)` if there is
/// none whole; `Err` with why, if it does not check out).
#[allow(clippy::type_complexity)]
fn read(
    link: &mut Link,
    node: &str,
    mac: &ClusterMac,
) -> RedisResult<Result<Option<(StreamId, Vec<u8>)>, &'static str>> {
    let mut get = redis::cmd("GET");
    get.arg(checkpoint_head(node));
    let Some(head) = text(&link.query(&get)?) else {
        return Ok(Ok(None));
    };
    let mut fields = head.split(' ');
    let (Some(generation), Some(parts), Some(stream_id), Some(tag), None) = (
        fields.next().and_then(|g| g.parse::<u64>().ok()),
        fields.next().and_then(|p| p.parse::<usize>().ok()),
        fields.next(),
        fields.next().and_then(unhex),
        fields.next(),
    ) else {
        return Ok(Err("its head is malformed"));
    };
    let covered = head_fields(node, generation, parts, stream_id);
    if !mac.verify(Domain::CheckpointHead, &[covered.as_bytes()], &tag) {
        return Ok(Err("its head's tag does not check out"));
    }
    if parts > MAX_PARTS {
        return Ok(Err("it has too many parts"));
    }
    let mut bytes = Vec::new();
    for part in 0..parts {
        let mut get = redis::cmd("GET");
        get.arg(checkpoint_part(node, generation, part));
        let Value::BulkString(b) = link.query(&get)? else {
            return Ok(Ok(None));
        };
        if b.len() < TAG_LEN || b.len() > TAG_LEN + PART_BYTES {
            return Ok(Err("a part is of an impossible size"));
        }
        let (tag, data) = b.split_at(TAG_LEN);
        let context = part_context(node, generation, part);
        if !mac.verify(
            Domain::CheckpointPart,
            &[&context, node.as_bytes(), data],
            tag,
        ) {
            return Ok(Err("a part's tag does not check out"));
        }
        bytes.extend_from_slice(data);
    }
    Ok(Ok(Some((StreamId::parse(stream_id), bytes))))
}

/// 32 bytes from 64 hex digits.
fn unhex(s: &str) -> Option<[u8; TAG_LEN]> {
    if s.len() != 2 * TAG_LEN || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; TAG_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The checkpoint thread: writes this node's checkpoint when the sync
/// thread asks, on a connection of its own (a big checkpoint must not
/// hold up the sync).
pub(super) struct CheckpointWriter {
    pub(super) config: ClusterConfig,
    pub(super) node: String,
    pub(super) tracker: Arc<Tracker>,
    pub(super) started: Instant,
    pub(super) stats: Arc<ClusterStats>,
    pub(super) ttl: u64,
    pub(super) mac: ClusterMac,
}

impl CheckpointWriter {
    /// Write a checkpoint at every request (the position the sync thread
    /// has read to). One that fails on a connection that went stale (Redis
    /// restarted) is written again at once on a new connection; one that
    /// fails again is retried as `CheckpointRetry` says, until it is
    /// written or a newer request replaces it, not left for the next
    /// interval.
    pub(super) fn run(self, requests: Receiver<String>) {
        let mut link: Option<Link> = None;
        // Generation numbers from the clock: a restarted node never
        // reuses one its previous run may have left.
        let mut generation = unix_ms();
        let mut written: VecDeque<(u64, usize)> = VecDeque::new();
        let mut retry = CheckpointRetry::default();
        loop {
            let position = match retry.wait() {
                None => requests.recv().ok(),
                Some(wait) => match requests.recv_timeout(wait) {
                    Ok(newer) => Some(newer),
                    Err(RecvTimeoutError::Timeout) => retry.due(),
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(position) = position else {
                return;
            };
            generation += 1;
            match self.write_fresh(&mut link, &position, generation) {
                Ok((stats, parts)) => {
                    if retry.written() {
                        tracing::info!("cluster: checkpoints written again");
                    }
                    ClusterStats::add(&self.stats.checkpoints_written, 1);
                    self.stats
                        .remote_peers
                        .store(stats.remote_left_out, Ordering::Relaxed);
                    written.push_back((generation, parts));
                    if written.len() > 2
                        && let Some((old, parts)) = written.pop_front()
                        && let Some(l) = &mut link
                    {
                        let _ = delete(l, &self.node, old, parts);
                    }
                }
                Err(e) => {
                    ClusterStats::add(&self.stats.checkpoint_failures, 1);
                    if retry.failed(position) {
                        tracing::warn!("cluster: checkpoint not written ({e}); retrying");
                    }
                }
            }
        }
    }

    /// Write on the connection kept (connecting if there is none); if that
    /// fails, once more on a new connection.
    fn write_fresh(
        &self,
        link: &mut Option<Link>,
        position: &str,
        generation: u64,
    ) -> io::Result<(SnapshotStats, usize)> {
        let mut last = io::Error::other("no connection");
        for _ in 0..2 {
            if link.is_none() {
                *link = Link::connect(&self.config, Duration::ZERO).ok();
            }
            let Some(l) = link else {
                continue;
            };
            let at = (self.started.elapsed().as_secs() as u32, unix_now());
            match write(
                l,
                &self.tracker,
                &self.node,
                position,
                generation,
                self.ttl,
                at,
                &self.mac,
            ) {
                Ok(done) => return Ok(done),
                Err(e) => {
                    last = e;
                    *link = None;
                }
            }
        }
        Err(last)
    }
}
