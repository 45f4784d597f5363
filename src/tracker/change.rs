//! Cluster mode's unit of replication: one change to one peer
//! (`SwarmChange`), which local changes become one (`PublishPolicy`), and
//! its fixed binary form on the Redis stream.
//!
//! A node publishes what changed in its own table: a peer added, changed
//! role, stopped or expired, a completed download; and an unchanged peer's
//! refresh at most once per `refresh_interval`, so that other nodes keep
//! it alive while it keeps announcing here. A peer another node told us
//! about (a remote peer) is never published again, and its expiry here is
//! not news to anyone.

use super::peer_set::{Origin, V4, V6};
use super::swarm::{PeerEffect, PeerUpdate};
use super::table::{Applied, PeerAddr};
use crate::protocol::InfoHash;

/// What happened to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Announced (added, changed role, or a refresh re-published) as a
    /// leecher.
    Leecher,
    /// The same as a seeder.
    Seeder,
    /// Left with `stopped`.
    Stopped,
    /// Not seen for the peer timeout at its node.
    Expired,
    /// A completed download by a peer that is not stored (port 0): no
    /// address.
    Completed,
}

/// One change, as it travels: 21 to 39 bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwarmChange {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The peer.
    pub addr: PeerAddr,
    /// What happened to it.
    pub kind: ChangeKind,
    /// The change counted a completed download at its node.
    pub completed: bool,
}

/// The longest encoded change.
pub const MAX_ENCODED: usize = 1 + 20 + V6;

const FLAG_COMPLETED: u8 = 0x08;
const FLAG_V6: u8 = 0x10;
const KIND_MASK: u8 = 0x07;

impl SwarmChange {
    /// Append the wire form: kind and flags, info hash, address (none for
    /// `Completed`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = match self.kind {
            ChangeKind::Leecher => 1,
            ChangeKind::Seeder => 2,
            ChangeKind::Stopped => 3,
            ChangeKind::Expired => 4,
            ChangeKind::Completed => 5,
        };
        let v6 = matches!(self.addr, PeerAddr::V6(_));
        out.push(
            kind | if self.completed { FLAG_COMPLETED } else { 0 } | if v6 { FLAG_V6 } else { 0 },
        );
        out.extend_from_slice(&self.info_hash.0);
        if self.kind != ChangeKind::Completed {
            out.extend_from_slice(self.addr.bytes());
        }
    }

    /// Read one change from the front of `bytes`: the change and its
    /// length, or `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<(SwarmChange, usize)> {
        let (&head, rest) = bytes.split_first()?;
        if head & !(KIND_MASK | FLAG_COMPLETED | FLAG_V6) != 0 {
            return None;
        }
        let kind = match head & KIND_MASK {
            1 => ChangeKind::Leecher,
            2 => ChangeKind::Seeder,
            3 => ChangeKind::Stopped,
            4 => ChangeKind::Expired,
            5 => ChangeKind::Completed,
            _ => return None,
        };
        let info_hash = InfoHash(rest.get(..20)?.try_into().ok()?);
        let addr_len = match (kind, head & FLAG_V6 != 0) {
            (ChangeKind::Completed, _) => 0,
            (_, false) => V4,
            (_, true) => V6,
        };
        let addr = match addr_len {
            0 => PeerAddr::V4([0; V4]),
            n => {
                let a = PeerAddr::from_bytes(rest.get(20..20 + n)?)?;
                // Port 0 is never stored: such a record is not ours.
                if a.bytes()[n - 2..] == [0, 0] {
                    return None;
                }
                a
            }
        };
        let change = SwarmChange {
            info_hash,
            addr,
            kind,
            completed: head & FLAG_COMPLETED != 0,
        };
        Some((change, 1 + 20 + addr_len))
    }
}

/// Cluster mode's rule for which local changes are published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishPolicy {
    /// Seconds: an unchanged peer's refresh is published at most once per
    /// this (and at least once per this plus its announce interval).
    pub refresh_interval: u32,
}

impl PublishPolicy {
    /// What a local change (`update` of `addr` in `info_hash`, applied
    /// with `min_age`) publishes, given what it did.
    pub fn local_change(
        &self,
        info_hash: &InfoHash,
        addr: PeerAddr,
        update: PeerUpdate,
        min_age: u32,
        applied: &Applied,
        now: u32,
    ) -> Option<SwarmChange> {
        let role = if update == PeerUpdate::Seeder {
            ChangeKind::Seeder
        } else {
            ChangeKind::Leecher
        };
        let kind = match (update, applied.effect) {
            (
                PeerUpdate::Seeder | PeerUpdate::Leecher,
                PeerEffect::Added | PeerEffect::RoleChanged,
            ) => role,
            // A peer that announced at another node last is ours now.
            (
                _,
                PeerEffect::Refreshed {
                    was: Origin::Remote,
                    ..
                },
            ) => role,
            (_, PeerEffect::Refreshed { age, .. })
                if age >= min_age && self.refresh_due(info_hash, age, now) =>
            {
                role
            }
            (PeerUpdate::Remove, PeerEffect::Removed) => ChangeKind::Stopped,
            (PeerUpdate::ReadOnly, _) if applied.counted_download => ChangeKind::Completed,
            _ => return None,
        };
        Some(SwarmChange {
            info_hash: *info_hash,
            addr,
            kind,
            completed: applied.counted_download,
        })
    }

    /// Whether a refresh of a peer last stamped `age` seconds before `now`
    /// crosses a boundary of its torrent's refresh windows. Each torrent's
    /// windows start at a phase of its own (from its info hash, random),
    /// so refreshes spread over time instead of coming in waves.
    fn refresh_due(&self, info_hash: &InfoHash, age: u32, now: u32) -> bool {
        let r = self.refresh_interval.max(1);
        if age >= r {
            return true;
        }
        let phase = u32::from_le_bytes([
            info_hash.0[4],
            info_hash.0[5],
            info_hash.0[6],
            info_hash.0[7],
        ]);
        (u64::from(now) + u64::from(phase)) % u64::from(r) < u64::from(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(effect: PeerEffect, counted_download: bool) -> Applied {
        Applied {
            effect,
            counted_download,
            seeders: 1,
            leechers: 0,
            downloaded: 0,
        }
    }

    #[test]
    fn changes_round_trip_and_junk_is_refused() {
        let v4 = PeerAddr::V4([10, 0, 0, 1, 0x1a, 0xe1]);
        let mut v6 = [0u8; V6];
        v6[0] = 0x20;
        v6[17] = 80;
        let all = [
            (ChangeKind::Leecher, v4, false),
            (ChangeKind::Seeder, PeerAddr::V6(v6), true),
            (ChangeKind::Stopped, v4, false),
            (ChangeKind::Expired, PeerAddr::V6(v6), false),
            (ChangeKind::Completed, PeerAddr::V4([0; V4]), true),
        ];
        let mut wire = Vec::new();
        for (i, &(kind, addr, completed)) in all.iter().enumerate() {
            let c = SwarmChange {
                info_hash: InfoHash([i as u8; 20]),
                addr,
                kind,
                completed,
            };
            c.encode(&mut wire);
        }
        assert_eq!(wire.len(), 27 + 39 + 27 + 39 + 21);
        let mut at = 0;
        for (i, &(kind, addr, completed)) in all.iter().enumerate() {
            let (c, n) = SwarmChange::decode(&wire[at..]).unwrap();
            assert_eq!((c.kind, c.addr, c.completed), (kind, addr, completed));
            assert_eq!(c.info_hash, InfoHash([i as u8; 20]));
            at += n;
        }
        assert_eq!(at, wire.len());
        // Unknown kinds, flags, short records and port 0 are not changes.
        assert!(SwarmChange::decode(&[0; 27]).is_none());
        assert!(SwarmChange::decode(&[0x41; 27]).is_none());
        assert!(SwarmChange::decode(&wire[..26]).is_none());
        let mut port0 = wire[..27].to_vec();
        port0[25..27].copy_from_slice(&[0, 0]);
        assert!(SwarmChange::decode(&port0).is_none());
    }

    #[test]
    fn changes_are_published_refreshes_only_once_per_window() {
        let p = PublishPolicy {
            refresh_interval: 1200,
        };
        let hash = InfoHash([0; 20]);
        let addr = PeerAddr::V4([10, 0, 0, 1, 0, 80]);
        let publish = |update, effect, counted, now| {
            p.local_change(&hash, addr, update, 0, &applied(effect, counted), now)
                .map(|c| (c.kind, c.completed))
        };
        use PeerEffect::*;
        use PeerUpdate::*;
        assert_eq!(
            publish(Leecher, Added, false, 5),
            Some((ChangeKind::Leecher, false))
        );
        assert_eq!(
            publish(Seeder, RoleChanged, true, 5),
            Some((ChangeKind::Seeder, true))
        );
        assert_eq!(
            publish(Remove, Removed, false, 5),
            Some((ChangeKind::Stopped, false))
        );
        assert_eq!(publish(Remove, Untouched, false, 5), None);
        assert_eq!(
            publish(ReadOnly, Untouched, true, 5),
            Some((ChangeKind::Completed, true))
        );
        assert_eq!(publish(ReadOnly, Untouched, false, 5), None);
        // A peer taken over from another node is published at once.
        let taken = Refreshed {
            age: 1,
            was: Origin::Remote,
        };
        assert_eq!(
            publish(Seeder, taken, false, 5),
            Some((ChangeKind::Seeder, false))
        );
        // Refreshes every 100 s over an hour: one per 1200-s window.
        let refreshed = (1..=36)
            .filter(|k| {
                let effect = Refreshed {
                    age: 100,
                    was: Origin::Local,
                };
                publish(Seeder, effect, false, k * 100).is_some()
            })
            .count();
        assert_eq!(refreshed, 3);
        // A refresh older than the window is always published.
        let old = Refreshed {
            age: 1800,
            was: Origin::Local,
        };
        assert!(publish(Leecher, old, false, 7).is_some());
    }
}
