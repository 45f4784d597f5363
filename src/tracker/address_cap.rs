//! Open HTTP connections per client address, shared by every HTTP worker.
//!
//! One address must not hold every connection slot (it could then keep
//! everyone else out by trickling a byte before each idle timeout). As for
//! the rate limits, there is no map from address to count, which a flood
//! of addresses would grow: an address hashes (per-process random key) to
//! one of `SLOTS` counters, and colliding addresses share one. An IPv6
//! address counts by its /64, the block one host is usually given (a
//! client could otherwise open a connection from each of 2^64 addresses).
//! Addresses the operator trusts as reverse proxies are not capped: one
//! proxy carries every client, and limiting clients is its job.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::peer_set::AddrHasher;

/// Counters in the table (4 bytes each: 256 KiB).
pub const SLOTS: usize = 65536;

/// HTTP connections per client address over all workers: a fixed table of
/// atomic counters an address hashes to (IPv6 by its /64).
pub struct AddressCap {
    counts: Box<[AtomicU32]>,
    hasher: AddrHasher,
    /// Connections one address may hold; 0 means no cap.
    limit: u32,
    exempt: Vec<IpAddr>,
}

/// The address already holds as many connections as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap;

/// A connection's hold on its address's counter, given back by `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held(u32);

impl AddressCap {
    /// `hasher` must be keyed randomly (a client must not be able to aim at
    /// another's counter).
    pub fn new(limit: u32, exempt: Vec<IpAddr>, hasher: AddrHasher) -> AddressCap {
        AddressCap {
            counts: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            hasher,
            limit,
            exempt,
        }
    }

    /// Count a new connection from `ip`: `Ok(None)` when the address is not
    /// capped, `Err(OverCap)` when it already holds `limit` connections.
    pub fn acquire(&self, ip: IpAddr) -> Result<Option<Held>, OverCap> {
        let ip = ip.to_canonical();
        if self.limit == 0 || self.exempt.contains(&ip) {
            return Ok(None);
        }
        let h = match ip {
            IpAddr::V4(a) => self.hasher.hash(&a.octets()),
            IpAddr::V6(a) => self.hasher.hash(&a.octets()[..8]),
        };
        let slot = (h >> 32) as usize & (SLOTS - 1);
        let taken = self.counts[slot].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < self.limit).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(Some(Held(slot as u32))),
            Err(_) => Err(OverCap),
        }
    }

    /// The connection that acquired `held` is gone.
    pub fn release(&self, held: Held) {
        self.counts[held.0 as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(limit: u32) -> AddressCap {
        AddressCap::new(
            limit,
            vec!["10.0.0.9".parse().unwrap()],
            AddrHasher::new(1, 2),
        )
    }

    #[test]
    fn an_address_holds_at_most_the_limit_until_it_releases() {
        let c = cap(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let one = c.acquire(a).unwrap().unwrap();
        c.acquire(a).unwrap().unwrap();
        assert_eq!(c.acquire(a), Err(OverCap));
        // The v4-mapped form is the same address.
        assert_eq!(c.acquire("::ffff:192.0.2.1".parse().unwrap()), Err(OverCap));
        assert!(c.acquire("192.0.2.2".parse().unwrap()).is_ok());
        c.release(one);
        assert!(c.acquire(a).is_ok());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_proxies_and_zero_are_uncapped() {
        let c = cap(1);
        c.acquire("2001:db8::1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(c.acquire("2001:db8::ffff:1".parse().unwrap()), Err(OverCap));
        assert!(c.acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(c.acquire(proxy), Ok(None));
        }
        let off = cap(0);
        assert_eq!(off.acquire(proxy), Ok(None));
        assert_eq!(off.acquire("192.0.2.1".parse().unwrap()), Ok(None));
    }
}
