//! Token buckets per client address, in a table of fixed size.
//!
//! A flood from spoofed source addresses must not grow memory, so there is
//! no map from address to bucket: an address hashes (with a per-process
//! key) to one of `slots` buckets, and addresses that collide share it.
//! With the default 65536 slots an honest client shares its bucket with a
//! flooding one only by rare chance; the table costs 512 KiB whatever the
//! number of addresses.
//!
//! Each bucket is one `AtomicU64` (tokens in thousandths, and the second of
//! the last refill), updated with a compare-exchange: workers share the
//! table without locks. Time comes in as tracker seconds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::peer_set::AddrHasher;

const MILLI: u64 = 1000;

/// Token buckets per client address in a fixed table of atomics (addresses
/// hash to slots with a random key; IPv6 by its /64).
pub struct RateLimiter {
    slots: Box<[AtomicU64]>,
    hasher: AddrHasher,
    /// Tokens added per second, in thousandths.
    rate_milli: u64,
    /// Most tokens a bucket holds, in thousandths.
    burst_milli: u64,
}

impl RateLimiter {
    /// `per_second` requests per second with bursts of `burst`, over
    /// `slots` buckets (a power of two); `hasher` must be keyed randomly
    /// (a client must not be able to aim at another's bucket).
    pub fn new(per_second: u32, burst: u32, slots: usize, hasher: AddrHasher) -> RateLimiter {
        assert!(slots.is_power_of_two());
        let burst_milli = u64::from(burst.max(1)) * MILLI;
        RateLimiter {
            // A fresh bucket is full (tokens = burst, time 0).
            slots: (0..slots)
                .map(|_| AtomicU64::new(pack(burst_milli, 0)))
                .collect(),
            hasher,
            rate_milli: u64::from(per_second) * MILLI,
            burst_milli,
        }
    }

    /// Take a token for `ip` at tracker time `now`; false when over the
    /// limit.
    pub fn allow(&self, ip: IpAddr, now: u32) -> bool {
        let h = match ip.to_canonical() {
            IpAddr::V4(a) => self.hasher.hash(&a.octets()),
            IpAddr::V6(a) => self.hasher.hash(&a.octets()),
        };
        let slot = &self.slots[(h >> 32) as usize & (self.slots.len() - 1)];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (tokens, last) = unpack(current);
            // Workers read the clock independently: one may still be in the
            // second before the one another just stored. Never count time
            // backwards (that would look like an hour and refill the bucket).
            let elapsed = u64::from(now.saturating_sub(last).min(3600));
            let refilled = (tokens + elapsed * self.rate_milli).min(self.burst_milli);
            let (allowed, left) = if refilled >= MILLI {
                (true, refilled - MILLI)
            } else {
                (false, refilled)
            };
            match slot.compare_exchange_weak(
                current,
                pack(left, now.max(last)),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return allowed,
                Err(actual) => current = actual,
            }
        }
    }
}

fn pack(tokens_milli: u64, second: u32) -> u64 {
    (tokens_milli.min(u64::from(u32::MAX)) << 32) | u64::from(second)
}

fn unpack(v: u64) -> (u64, u32) {
    (v >> 32, v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bursts_then_the_rate() {
        let l = RateLimiter::new(2, 5, 1024, AddrHasher::new(1, 2));
        let a = ip("10.0.0.1");
        for _ in 0..5 {
            assert!(l.allow(a, 100));
        }
        assert!(!l.allow(a, 100), "burst spent");
        // One second later: two more.
        assert!(l.allow(a, 101) && l.allow(a, 101));
        assert!(!l.allow(a, 101));
        // Long idle refills to the burst, not beyond.
        let allowed = (0..10).filter(|_| l.allow(a, 500)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn addresses_have_their_own_buckets_and_mapped_is_v4() {
        let l = RateLimiter::new(1, 1, 1 << 16, AddrHasher::new(1, 2));
        assert!(l.allow(ip("10.0.0.1"), 7));
        assert!(!l.allow(ip("::ffff:10.0.0.1"), 7), "the same client");
        // Another client (these keys put the two in different slots).
        assert!(l.allow(ip("10.0.0.2"), 7));
    }

    #[test]
    fn a_clock_a_second_behind_does_not_refill() {
        let l = RateLimiter::new(1, 1, 64, AddrHasher::new(1, 2));
        let a = ip("10.0.0.1");
        assert!(l.allow(a, 50));
        assert!(!l.allow(a, 49), "an earlier second is not a refill");
        assert!(l.allow(a, 51));
    }

    #[test]
    fn a_flood_of_addresses_does_not_grow_memory() {
        let l = RateLimiter::new(1, 1, 256, AddrHasher::new(1, 2));
        for i in 0..100_000u32 {
            l.allow(IpAddr::from(i.to_be_bytes()), 1);
        }
        assert_eq!(l.slots.len(), 256);
    }
}
