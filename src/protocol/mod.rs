//! Sans-I/O wire formats: parse from `&[u8]`, write into `&mut [u8]`.
//!
//! Nothing in here touches a socket, a clock or a random number generator,
//! so every byte layout can be tested (and fuzzed) by feeding slices.
#![forbid(unsafe_code)]

pub mod bencode;
pub mod client_software;
pub mod gzip;
pub mod http;
pub mod udp;

/// A torrent's info hash as it travels on the wire: 20 bytes (BEP 52 v2
/// hashes arrive truncated to 20 bytes and form a swarm of their own).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InfoHash(pub [u8; 20]);

impl std::fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The 20-byte peer id a client announces. Kept for client filters; peers
/// are identified by address, never by this.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct PeerId(pub [u8; 20]);

/// What a client says it is doing. The numbering is BEP 15's (HTTP uses
/// names and another order; each frontend maps to this).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// A regular re-announce.
    None,
    /// The download finished.
    Completed,
    /// The first announce of a session.
    Started,
    /// The client leaves the swarm.
    Stopped,
}
