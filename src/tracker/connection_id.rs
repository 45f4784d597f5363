//! Stateless BEP 15 connection ids.
//!
//! A connection id is `issued_at (u32 seconds) || mac (u32)`, where the MAC is
//! SipHash-1-3 keyed by a per-process random key over the client's IP and
//! `issued_at`. Checking one needs only the key, the packet's source address
//! and the clock: nothing is stored per client, so a flood of connects cannot
//! exhaust anything, and an id is worthless from any other address.
//! A forger has to guess 32 bits per source address per validity window.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// How long an id is accepted by default (`udp.connection_id_lifetime`).
/// Clients use one for a minute (BEP 15) and trackers should accept it for
/// two.
pub const CONNECTION_ID_LIFETIME: u32 = 120;

/// How far ahead of this node's clock another node's may be (cluster
/// mode): an id it issued "in the future" by up to this is accepted.
pub const MAX_CLOCK_SKEW: u32 = 60;

/// Issues and checks BEP 15 connection ids without state: each is its issue
/// time and a MAC over it and the client's address.
pub struct ConnectionIdIssuer {
    key: [u8; 16],
    /// Added to tracker time for the ids' clock: 0 alone (a per-process
    /// clock); in cluster mode the unix time the tracker clock started, so
    /// that nodes with one key agree on when an id was issued.
    clock_base: u32,
    /// Seconds an id may seem issued in the future (another node's clock
    /// ahead of ours); 0 for a per-process clock.
    skew: u32,
    /// Seconds an id is accepted after it was issued.
    lifetime: u32,
}

/// A connection-id key from a secret shared by cluster nodes (at least 32
/// bytes): SipHash-1-3 over it with two fixed keys, 128 bits.
pub fn key_from_secret(secret: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 16];
    for (half, k) in key
        .chunks_mut(8)
        .zip([0x7274_6b65_7930_u64, 0x7274_6b65_7931])
    {
        let mut h = SipHasher13::new_with_keys(k, !k);
        h.write(secret);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

impl ConnectionIdIssuer {
    /// `key` must be random and secret; one per process is enough.
    pub fn new(key: [u8; 16]) -> Self {
        ConnectionIdIssuer {
            key,
            clock_base: 0,
            skew: 0,
            lifetime: CONNECTION_ID_LIFETIME,
        }
    }

    /// Ids accepted for `seconds` after they were issued.
    pub fn with_lifetime(mut self, seconds: u32) -> Self {
        self.lifetime = seconds;
        self
    }

    /// Ids on a clock shared with other nodes: tracker time plus
    /// `clock_base` (the unix time tracker time 0 stands for). Clocks of
    /// nodes differ a little: an id up to `MAX_CLOCK_SKEW` seconds in the
    /// future is accepted.
    pub fn with_clock_base(mut self, clock_base: u32) -> Self {
        self.clock_base = clock_base;
        self.skew = MAX_CLOCK_SKEW;
        self
    }

    /// The id for `ip` at tracker time `now` (seconds).
    pub fn issue(&self, ip: IpAddr, now: u32) -> u64 {
        let now = now.wrapping_add(self.clock_base);
        (u64::from(now) << 32) | u64::from(self.mac(ip, now))
    }

    /// Whether `connection_id` was issued to `ip` within the last
    /// `lifetime` seconds.
    pub fn is_valid(&self, connection_id: u64, ip: IpAddr, now: u32) -> bool {
        let now = now.wrapping_add(self.clock_base);
        let issued_at = (connection_id >> 32) as u32;
        // An id from the future (wrapping_sub huge) is as invalid as an
        // old one, unless another node's clock may be that far ahead.
        if now.wrapping_sub(issued_at) > self.lifetime && issued_at.wrapping_sub(now) > self.skew {
            return false;
        }
        // One integer compare on the whole MAC: no early exit on the first
        // differing byte, so timing says nothing about how close a guess was.
        self.mac(ip, issued_at) ^ (connection_id as u32) == 0
    }

    fn mac(&self, ip: IpAddr, issued_at: u32) -> u32 {
        let mut h = SipHasher13::new_with_key(&self.key);
        match ip {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write_u32(issued_at);
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> ConnectionIdIssuer {
        ConnectionIdIssuer::new(*b"0123456789abcdef")
    }

    #[test]
    fn valid_for_two_minutes_from_the_same_address() {
        let i = issuer();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let id = i.issue(ip, 1000);
        assert!(i.is_valid(id, ip, 1000));
        assert!(i.is_valid(id, ip, 1000 + CONNECTION_ID_LIFETIME));
        assert!(!i.is_valid(id, ip, 1001 + CONNECTION_ID_LIFETIME));
        assert!(!i.is_valid(id, ip, 999), "issued in the future");
    }

    #[test]
    fn refused_from_another_address_or_key() {
        let i = issuer();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let id = i.issue(ip, 50);
        assert!(!i.is_valid(id, "127.0.0.2".parse().unwrap(), 50));
        assert!(!i.is_valid(id, "::1".parse().unwrap(), 50));
        let other = ConnectionIdIssuer::new([7; 16]);
        assert!(!other.is_valid(id, ip, 50));
        assert!(!i.is_valid(id ^ 1, ip, 50));
    }

    #[test]
    fn works_across_clock_wrap() {
        let i = issuer();
        let ip: IpAddr = "::1".parse().unwrap();
        let id = i.issue(ip, u32::MAX - 10);
        assert!(i.is_valid(id, ip, 20));
        assert!(!i.is_valid(id, ip, 200));
    }

    #[test]
    fn nodes_sharing_a_secret_accept_each_others_ids() {
        let secret = [9u8; 32];
        // Node A's tracker clock started at unix 1_000_000, B's 500 s later.
        let a = ConnectionIdIssuer::new(key_from_secret(&secret)).with_clock_base(1_000_000);
        let b = ConnectionIdIssuer::new(key_from_secret(&secret)).with_clock_base(1_000_500);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let id = a.issue(ip, 600);
        assert!(b.is_valid(id, ip, 100 + 60));
        assert!(!b.is_valid(id, ip, 100 + 121));
        // A's clock a few seconds (up to a minute) ahead of B's.
        assert!(b.is_valid(id, ip, 100 - 5));
        assert!(b.is_valid(id, ip, 100 - MAX_CLOCK_SKEW));
        assert!(!b.is_valid(id, ip, 100 - MAX_CLOCK_SKEW - 1));
        let mut other = secret;
        other[31] ^= 1;
        assert_ne!(key_from_secret(&other), key_from_secret(&secret));
    }

    #[test]
    fn the_lifetime_is_the_operator_s() {
        let i = ConnectionIdIssuer::new([3; 16]).with_lifetime(600);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let id = i.issue(ip, 1000);
        assert!(i.is_valid(id, ip, 1599) && i.is_valid(id, ip, 1600));
        assert!(!i.is_valid(id, ip, 1601), "older than the lifetime");
    }
}
