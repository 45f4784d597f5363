//! One message on the Redis stream: a node's changes since its last
//! flush, as one binary field.
//!
//! ```text
//! "RTC2" | node_len u8 | node | run u64 | seq u64 | created_ms u64
//!        | count u32 | count x change | tag [32]
//! ```
//!
//! (integers little-endian; a change is `SwarmChange`'s 21 to 39 bytes;
//! the tag is the HMAC-SHA256 of everything before it under the cluster's
//! message key, `cluster::mac`). A message whose tag does not check out
//! is refused before a byte of it is decoded.
//! `run` is random per process start and `seq` counts the node's messages
//! in that run, so a reader notices a message it never got (trimmed from
//! the stream before it read it, lost in a Redis restart, dropped at
//! the node while Redis was away) as a gap in `seq`.
//! Anything that does not read back exactly — another magic, a count the
//! bytes do not hold, trailing bytes — is not ours and is skipped whole.

use super::mac::{ClusterMac, Domain, TAG_LEN};
use crate::tracker::change::{MAX_ENCODED, SwarmChange};

const MAGIC: &[u8; 4] = b"RTC2";

/// The largest message a flush writes (more changes go in the next one).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why stream bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Another program's entry.
    #[error("not a ringtracker message (magic)")]
    Foreign,
    /// Longer than any message a node writes.
    #[error("over {MAX_MESSAGE} bytes")]
    Oversized,
    /// Its MAC is not the cluster's.
    #[error("its tag does not check out under the cluster's key")]
    Unauthenticated,
    /// Shorter than its header says.
    #[error("message truncated")]
    Truncated,
    /// A change that does not decode, at this offset.
    #[error("malformed change at byte {0}")]
    BadChange(usize),
    /// Bytes left over after the changes it counts.
    #[error("{0} bytes after the last change")]
    Trailing(usize),
}

/// A message being filled by the sync thread (its buffer reused).
pub struct MessageBuilder {
    buf: Vec<u8>,
    count: u32,
    header_len: usize,
    /// The tag is on: the message is finished.
    tagged: bool,
}

impl MessageBuilder {
    /// An empty message.
    pub fn new() -> Self {
        MessageBuilder {
            buf: Vec::with_capacity(MAX_MESSAGE),
            count: 0,
            header_len: 0,
            tagged: false,
        }
    }

    /// Start message `seq` of `node`'s run `run`, made at `created_ms`
    /// (unix ms).
    pub fn start(&mut self, node: &str, (run, seq): (u64, u64), created_ms: u64) {
        let node = &node.as_bytes()[..node.len().min(255)];
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        self.buf.push(node.len() as u8);
        self.buf.extend_from_slice(node);
        self.buf.extend_from_slice(&run.to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&created_ms.to_le_bytes());
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.header_len = self.buf.len();
        self.count = 0;
        self.tagged = false;
    }

    /// Whether another change may not fit.
    pub fn is_full(&self) -> bool {
        self.buf.len() + MAX_ENCODED + TAG_LEN > MAX_MESSAGE
    }

    /// Add one change.
    pub fn push(&mut self, change: &SwarmChange) {
        change.encode(&mut self.buf);
        self.count += 1;
    }

    /// How many changes it holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The finished message's bytes, tagged under `mac`.
    pub fn finish(&mut self, mac: &ClusterMac) -> &[u8] {
        if !self.tagged {
            let at = self.header_len - 4;
            self.buf[at..self.header_len].copy_from_slice(&self.count.to_le_bytes());
            let tag = mac.tag(Domain::Message, &[&self.buf]);
            self.buf.extend_from_slice(&tag);
            self.tagged = true;
        }
        &self.buf
    }
}

impl Default for MessageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// A message read from the stream, checked whole.
#[derive(Debug)]
pub struct Message<'a> {
    /// The node that wrote it.
    pub node: &'a str,
    /// That node's run (its start, ordered: unix ms << 12 | random).
    pub run: u64,
    /// Its number in the run, from 1 (a gap is a lost message).
    pub seq: u64,
    /// Unix ms it was made (messages older than 10 minutes are replays).
    pub created_ms: u64,
    /// How many changes it carries.
    pub count: u32,
    changes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Check `bytes` end to end: its size, its tag under `mac`, then every
    /// change decodes and nothing is left over.
    pub fn parse(bytes: &'a [u8], mac: &ClusterMac) -> Result<Message<'a>, MessageError> {
        if !bytes.starts_with(MAGIC) {
            return Err(MessageError::Foreign);
        }
        if bytes.len() > MAX_MESSAGE {
            return Err(MessageError::Oversized);
        }
        let body_len = bytes
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(MessageError::Unauthenticated)?;
        let (body, tag) = bytes.split_at(body_len);
        if !mac.verify(Domain::Message, &[body], tag) {
            return Err(MessageError::Unauthenticated);
        }
        Self::parse_body(body)
    }

    /// The authenticated body, checked end to end.
    fn parse_body(bytes: &'a [u8]) -> Result<Message<'a>, MessageError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(MessageError::Foreign)?;
        let (&len, rest) = rest.split_first().ok_or(MessageError::Truncated)?;
        let len = usize::from(len);
        let node = rest.get(..len).ok_or(MessageError::Truncated)?;
        let node = std::str::from_utf8(node).map_err(|_| MessageError::Foreign)?;
        let rest = &rest[len..];
        let u64_at = |at: usize| -> Result<u64, MessageError> {
            let b = rest.get(at..at + 8).ok_or(MessageError::Truncated)?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let (run, seq, created_ms) = (u64_at(0)?, u64_at(8)?, u64_at(16)?);
        let count = u32::from_le_bytes(
            rest.get(24..28)
                .ok_or(MessageError::Truncated)?
                .try_into()
                .expect("4 bytes"),
        );
        let changes = &rest[28..];
        let (mut at, mut seen) = (0, 0u32);
        while at < changes.len() && seen < count {
            let (_, n) = SwarmChange::decode(&changes[at..]).ok_or(MessageError::BadChange(at))?;
            at += n;
            seen += 1;
        }
        if seen < count {
            return Err(MessageError::Truncated);
        }
        if at != changes.len() {
            return Err(MessageError::Trailing(changes.len() - at));
        }
        Ok(Message {
            node,
            run,
            seq,
            created_ms,
            count,
            changes,
        })
    }

    /// The changes, in the order they were made.
    pub fn changes(&self) -> impl Iterator<Item = SwarmChange> + 'a {
        let mut rest = self.changes;
        std::iter::from_fn(move || {
            let (c, n) = SwarmChange::decode(rest)?;
            rest = &rest[n..];
            Some(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::InfoHash;
    use crate::tracker::change::ChangeKind;
    use crate::tracker::table::PeerAddr;

    fn mac() -> ClusterMac {
        ClusterMac::from_secret(&[7; 32])
    }

    fn change(i: u8) -> SwarmChange {
        SwarmChange {
            info_hash: InfoHash([i; 20]),
            addr: PeerAddr::V4([10, 0, 0, i, 0, 80]),
            kind: ChangeKind::Seeder,
            completed: i.is_multiple_of(2),
        }
    }

    #[test]
    fn messages_round_trip_and_anything_else_is_refused() {
        let mut b = MessageBuilder::new();
        b.start("node-a", (99, 5), 1_700_000_000_123);
        for i in 1..=3 {
            b.push(&change(i));
        }
        let key = mac();
        let bytes = b.finish(&key).to_vec();
        let m = Message::parse(&bytes, &key).unwrap();
        assert_eq!(
            (m.node, m.created_ms, m.count),
            ("node-a", 1_700_000_000_123, 3)
        );
        assert_eq!(
            m.changes().collect::<Vec<_>>(),
            [change(1), change(2), change(3)]
        );

        let parse = |b: &[u8]| Message::parse(b, &key).map(|m| m.count);
        assert_eq!(parse(b"hello").unwrap_err(), MessageError::Foreign);
        assert_eq!(parse(b"RTC2").unwrap_err(), MessageError::Unauthenticated);
        // Any change to the bytes, a tag cut short, or another key's tag.
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(parse(cut).unwrap_err(), MessageError::Unauthenticated);
        let mut more = bytes.clone();
        more.push(0);
        assert_eq!(parse(&more).unwrap_err(), MessageError::Unauthenticated);
        let other = ClusterMac::from_secret(&[8; 32]);
        assert_eq!(
            Message::parse(&bytes, &other).unwrap_err(),
            MessageError::Unauthenticated
        );
        let huge = [&MAGIC[..], &vec![0; MAX_MESSAGE][..]].concat();
        assert_eq!(parse(&huge).unwrap_err(), MessageError::Oversized);
        // Bodies a key holder got wrong are still checked end to end.
        let retag = |mut body: Vec<u8>| {
            body.truncate(body.len() - TAG_LEN);
            let tag = key.tag(Domain::Message, &[&body]);
            body.extend_from_slice(&tag);
            body
        };
        let first_change = 4 + 1 + 6 + 24 + 4;
        let mut bad = bytes.clone();
        bad[first_change] = 0x7f;
        assert_eq!(parse(&retag(bad)).unwrap_err(), MessageError::BadChange(0));
        // A count larger than the changes is truncation, not a panic.
        let mut short = bytes;
        short[first_change - 4] = 200;
        assert_eq!(parse(&retag(short)).unwrap_err(), MessageError::Truncated);
    }

    #[test]
    fn a_builder_says_when_it_is_full() {
        let mut b = MessageBuilder::new();
        b.start("n", (0, 0), 0);
        let mut n = 0;
        while !b.is_full() {
            b.push(&change(1));
            n += 1;
        }
        let key = mac();
        assert!(b.finish(&key).len() <= MAX_MESSAGE);
        assert_eq!(Message::parse(b.finish(&key), &key).unwrap().count, n);
    }
}
