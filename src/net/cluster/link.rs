//! The sync thread's connection to Redis: one server or a
//! Redis Cluster (redis-rs's sync clients), and the few commands cluster
//! mode uses. Every call has a deadline: a slow or vanished Redis makes a
//! call fail, never hang the thread.

use std::time::Duration;

use redis::{Cmd, RedisResult, Value};

use crate::cluster::follow::{StreamEnds, StreamId};
use crate::config::ClusterConfig;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any reply may take beyond a blocking read's own wait.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// The stream every node appends its messages to and reads everyone's
/// from. One key, so one `XREAD BLOCK` waits on all nodes; in a Redis
/// Cluster it lives in one slot (the checkpoints spread over the rest).
pub const STREAM: &str = "ringtracker:{changes}";
/// The set of node names (whose checkpoints a joining node loads).
pub const NODES: &str = "ringtracker:{changes}:nodes";

/// A checkpoint's head key (which generation is current, its stream id).
pub fn checkpoint_head(node: &str) -> String {
    format!("ringtracker:checkpoint:{{{node}}}")
}

/// One part of a checkpoint generation.
pub fn checkpoint_part(node: &str, generation: u64, part: usize) -> String {
    format!("ringtracker:checkpoint:{{{node}}}:{generation}:{part}")
}

/// The connection to Redis: one server, or a Redis Cluster.
pub enum Link {
    /// One server.
    Single(redis::Connection),
    /// A Redis Cluster (its client routes by key).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Link {
    /// Connect as `[cluster]` says; reads may block up to `block` more.
    pub fn connect(config: &ClusterConfig, block: Duration) -> RedisResult<Link> {
        if config.redis_cluster {
            let client = redis::cluster::ClusterClient::builder(config.redis.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(block + REPLY_TIMEOUT)
                .retries(0)
                .build()?;
            return Ok(Link::Cluster(Box::new(client.get_connection()?)));
        }
        // One server: the first URL that answers.
        let mut last = None;
        for url in &config.redis {
            let attempt = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(CONNECT_TIMEOUT));
            match attempt {
                Ok(conn) => {
                    conn.set_read_timeout(Some(block + REPLY_TIMEOUT))?;
                    conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
                    return Ok(Link::Single(conn));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("cluster.redis is not empty (checked at load)"))
    }

    /// Run `cmd` and return its reply.
    pub fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::Single(c) => cmd.query(c),
            Link::Cluster(c) => cmd.query(c.as_mut()),
        }
    }
}

/// `XADD STREAM MAXLEN ~ keep * m <message>`: returns the entry's id.
pub fn xadd(link: &mut Link, message: &[u8], keep: u64) -> RedisResult<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(keep)
        .arg("*")
        .arg("m")
        .arg(message);
    match link.query(&cmd)? {
        Value::BulkString(id) => Ok(String::from_utf8_lossy(&id).into_owned()),
        Value::SimpleString(id) => Ok(id),
        other => Err(unexpected("XADD", &other)),
    }
}

/// One stream entry: its id and its `m` field (None if it has none).
pub struct Entry {
    /// Its id.
    pub id: StreamId,
    /// Its `m` field, if it has one.
    pub message: Option<Vec<u8>>,
}

/// `XREAD COUNT count BLOCK block_ms STREAMS STREAM after`.
pub fn xread(
    link: &mut Link,
    after: StreamId,
    count: usize,
    block: Duration,
) -> RedisResult<Vec<Entry>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(after.to_string());
    let reply = link.query(&cmd)?;
    let mut entries = Vec::new();
    // [[key, [[id, [field, value, ...]], ...]]] (RESP2), or a map (RESP3).
    let streams = match reply {
        Value::Nil => return Ok(entries),
        Value::Array(s) => s.into_iter().filter_map(stream_entries).collect::<Vec<_>>(),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        other => return Err(unexpected("XREAD", &other)),
    };
    for list in streams {
        let Value::Array(items) = list else { continue };
        for item in items {
            if let Some(e) = entry(item) {
                entries.push(e);
            }
        }
    }
    Ok(entries)
}

fn stream_entries(v: Value) -> Option<Value> {
    match v {
        Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
        _ => None,
    }
}

fn entry(v: Value) -> Option<Entry> {
    let Value::Array(mut parts) = v else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = match parts.pop()? {
        Value::BulkString(b) => StreamId::parse(std::str::from_utf8(&b).ok()?),
        Value::SimpleString(s) => StreamId::parse(&s),
        _ => return None,
    };
    let mut message = None;
    if let Value::Array(fields) = fields {
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Value::BulkString(k), Value::BulkString(v)) = (k, v)
                && k == b"m"
            {
                message = Some(v);
            }
        }
    }
    Some(Entry { id, message })
}

/// `XINFO STREAM STREAM`, or None if the stream does not exist.
pub fn stream_ends(link: &mut Link) -> RedisResult<Option<StreamEnds>> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("STREAM").arg(STREAM);
    let reply = match link.query(&cmd) {
        Ok(r) => r,
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(a) => {
            let mut it = a.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(m) => m,
        other => return Err(unexpected("XINFO", &other)),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let number = |v: &Value| match v {
        Value::Int(n) => *n as u64,
        other => text(other).parse().unwrap_or(0),
    };
    let mut ends = StreamEnds {
        last_generated: StreamId::default(),
        max_deleted: StreamId::default(),
        length: 0,
        entries_added: 0,
        first: StreamId::default(),
    };
    for (k, v) in &pairs {
        match text(k).as_str() {
            "last-generated-id" => ends.last_generated = StreamId::parse(&text(v)),
            "max-deleted-entry-id" => ends.max_deleted = StreamId::parse(&text(v)),
            "length" => ends.length = number(v),
            "entries-added" => ends.entries_added = number(v),
            "first-entry" => {
                if let Value::Array(e) = v
                    && let Some(id) = e.first()
                {
                    ends.first = StreamId::parse(&text(id));
                }
            }
            _ => {}
        }
    }
    Ok(Some(ends))
}

fn unexpected(what: &str, v: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "unexpected reply",
        format!("{what}: {v:?}"),
    ))
}
