//! Checkpoints: each node's local peers in the engine, in the snapshot
//! format (`storage::snapshot`, `Scope::LocalPeers`), with the stream id
//! they are current to. A node that starts, or finds it missed stream
//! entries, loads every node's checkpoint (another node's peers as remote
//! peers, its own as local) and tails the stream from there, so it serves
//! the cluster's peers without waiting for clients to re-announce.
//!
//! A checkpoint is written in parts of `PART_BYTES` under a new
//! generation number, then its head (generation, parts, stream id) is set:
//! a reader sees a whole old checkpoint or a whole new one. Parts and head
//! expire after the peer timeout (by then every peer in them has expired
//! anyway), so a node that is gone for good leaves nothing behind.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use redis::{RedisResult, Value};

use super::link::{Link, NODES, checkpoint_head, checkpoint_part};
use super::unix_ms;
use crate::cluster::stats::ClusterStats;
use crate::config::ClusterConfig;
use crate::storage::snapshot::{self, Scope, Snapshot, SnapshotStats};
use crate::storage::snapshotter::unix_now;
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
    buf: Vec<u8>,
    parts: usize,
}

impl PartWriter<'_> {
    fn put(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(checkpoint_part(self.node, self.generation, self.parts))
            .arg(&self.buf[..])
            .arg("EX")
            .arg(self.ttl);
        self.link.query(&cmd).map_err(io::Error::other)?;
        self.parts += 1;
        self.buf.clear();
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PART_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_BYTES {
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
pub fn write(
    link: &mut Link,
    tracker: &Tracker,
    node: &str,
    stream_id: &str,
    generation: u64,
    ttl: u64,
    (now, unix_now): (u32, u64),
) -> io::Result<(SnapshotStats, usize)> {
    let parts = PartWriter {
        link,
        node,
        generation,
        ttl,
        buf: Vec::with_capacity(PART_BYTES),
        parts: 0,
    };
    let (parts, stats) = snapshot::encode(tracker, parts, now, unix_now, None, Scope::LocalPeers)?;
    let (count, link) = (parts.parts, parts.link);
    let mut head = redis::cmd("SET");
    head.arg(checkpoint_head(node))
        .arg(format!("{generation} {count} {stream_id}"))
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

/// A node's checkpoint as loaded.
pub struct Loaded {
    pub node: String,
    /// The stream id it is current to.
    pub stream_id: String,
    pub stats: SnapshotStats,
}

/// Load every node's checkpoint into `tracker` at tracker time `now`
/// (`own`'s peers as local, every other node's as remote). A missing,
/// expired or unreadable checkpoint is skipped and logged.
pub fn load_all(
    link: &mut Link,
    tracker: &Tracker,
    own: &str,
    (now, unix_now): (u32, u64),
) -> RedisResult<Vec<Loaded>> {
    let mut members = redis::cmd("SMEMBERS");
    members.arg(NODES);
    let nodes: Vec<String> = match link.query(&members)? {
        Value::Array(v) | Value::Set(v) => v.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    let mut loaded = Vec::new();
    for node in nodes {
        let Some((stream_id, bytes)) = read(link, &node)? else {
            continue;
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
                loaded.push(Loaded {
                    node,
                    stream_id,
                    stats,
                });
            }
            Err(e) => tracing::warn!("cluster: {e}; skipped"),
        }
    }
    Ok(loaded)
}

/// A node's checkpoint: its stream id and bytes (None if there is none
/// whole).
fn read(link: &mut Link, node: &str) -> RedisResult<Option<(String, Vec<u8>)>> {
    let mut get = redis::cmd("GET");
    get.arg(checkpoint_head(node));
    let Some(head) = text(&link.query(&get)?) else {
        return Ok(None);
    };
    let mut fields = head.split(' ');
    let (Some(generation), Some(parts), Some(stream_id)) = (
        fields.next().and_then(|g| g.parse::<u64>().ok()),
        fields.next().and_then(|p| p.parse::<usize>().ok()),
        fields.next(),
    ) else {
        tracing::warn!("cluster: checkpoint head of node {node} malformed; skipped");
        return Ok(None);
    };
    if parts > MAX_PARTS {
        tracing::warn!("cluster: checkpoint of node {node} has {parts} parts; skipped");
        return Ok(None);
    }
    let mut bytes = Vec::new();
    for part in 0..parts {
        let mut get = redis::cmd("GET");
        get.arg(checkpoint_part(node, generation, part));
        match link.query(&get)? {
            Value::BulkString(b) => bytes.extend_from_slice(&b),
            _ => return Ok(None),
        }
    }
    Ok(Some((stream_id.to_string(), bytes)))
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
}

impl CheckpointWriter {
    pub(super) fn run(self, requests: Receiver<String>) {
        let mut link: Option<Link> = None;
        // Generation numbers from the clock: a restarted node never
        // reuses one its previous run may have left.
        let mut generation = unix_ms();
        let mut written: VecDeque<(u64, usize)> = VecDeque::new();
        while let Ok(position) = requests.recv() {
            if link.is_none() {
                link = Link::connect(&self.config, Duration::ZERO).ok();
            }
            let Some(l) = &mut link else {
                ClusterStats::add(&self.stats.checkpoint_failures, 1);
                continue;
            };
            generation += 1;
            let at = (self.started.elapsed().as_secs() as u32, unix_now());
            match write(
                l,
                &self.tracker,
                &self.node,
                &position,
                generation,
                self.ttl,
                at,
            ) {
                Ok((stats, parts)) => {
                    ClusterStats::add(&self.stats.checkpoints_written, 1);
                    self.stats
                        .remote_peers
                        .store(stats.remote_left_out, Ordering::Relaxed);
                    written.push_back((generation, parts));
                    if written.len() > 2
                        && let Some((old, parts)) = written.pop_front()
                    {
                        let _ = delete(l, &self.node, old, parts);
                    }
                }
                Err(e) => {
                    ClusterStats::add(&self.stats.checkpoint_failures, 1);
                    tracing::warn!("cluster: checkpoint not written: {e}");
                    link = None;
                }
            }
        }
    }
}
