//! The cluster's message authentication: HMAC-SHA256 under a key derived
//! from `cluster.secret_file`, apart from the connection-id key (which is
//! derived from the same secret another way: knowing one tells nothing of
//! the other).
//!
//! Redis is a trust boundary: anyone who can write to it can add stream
//! entries and checkpoint keys. What claims to come from a node is applied
//! only if its tag checks out under the key every node holds: a stream
//! message's tag covers its whole body; a checkpoint's head tag covers the
//! node, generation, part count and stream id, and each part's tag covers
//! the node, generation, index and bytes of the part, so a forged or
//! swapped part is refused before the next one is read. Each kind of tag
//! has its own domain label, so no tag of one kind verifies as another.
#![forbid(unsafe_code)]

use ring::hmac;

/// Bytes of a tag.
pub const TAG_LEN: usize = 32;

/// What a tag authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A stream message.
    Message,
    /// A checkpoint's head (node, generation, parts, stream id).
    CheckpointHead,
    /// One part of a checkpoint.
    CheckpointPart,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Message => b"ringtracker cluster message\0",
            Domain::CheckpointHead => b"ringtracker checkpoint head\0",
            Domain::CheckpointPart => b"ringtracker checkpoint part\0",
        }
    }
}

/// The key every node derives from the shared secret.
#[derive(Clone)]
pub struct ClusterMac {
    key: hmac::Key,
}

impl std::fmt::Debug for ClusterMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterMac(..)")
    }
}

impl ClusterMac {
    /// The message key of a cluster secret (at least 32 bytes, checked by
    /// the config): HMAC-SHA256 of the secret under a fixed label.
    pub fn from_secret(secret: &[u8]) -> ClusterMac {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"ringtracker cluster mac key v1");
        let key = hmac::sign(&derive, secret);
        ClusterMac {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
        }
    }

    /// The tag of `parts`, concatenated, in `domain`.
    pub fn tag(&self, domain: Domain, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.label());
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `tag` is the tag of `parts` in `domain` (compared in
    /// constant time).
    pub fn verify(&self, domain: Domain, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.tag(domain, parts);
        tag.len() == TAG_LEN
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_verify_under_the_same_secret_only_and_per_domain() {
        let a = ClusterMac::from_secret(&[7; 32]);
        let b = ClusterMac::from_secret(&[8; 32]);
        let tag = a.tag(Domain::Message, &[b"hello ", b"world"]);
        assert!(a.verify(Domain::Message, &[b"hello world"], &tag));
        assert!(!b.verify(Domain::Message, &[b"hello world"], &tag));
        assert!(!a.verify(Domain::CheckpointHead, &[b"hello world"], &tag));
        assert!(!a.verify(Domain::Message, &[b"hello world!"], &tag));
        assert!(!a.verify(Domain::Message, &[b"hello world"], &tag[..31]));
        // Apart from the connection-id key of the same secret.
        let id_key = crate::tracker::connection_id::key_from_secret(&[7; 32]);
        assert_ne!(&tag[..16], &id_key[..]);
    }
}
