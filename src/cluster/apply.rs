//! Applying another node's change to the local table, through the same
//! `ShardGuard::apply` as announces, as a remote peer.
//!
//! The node that saw a peer last owns it: an added or refreshed peer from
//! another node becomes (or stays) remote here, whatever it was; a local
//! announce takes it back. A removal (stopped, expired) from another node
//! deletes only a remote peer: if the peer has announced here since, its
//! address is local here and a late removal from the node it left must not
//! delete it. Remote changes are never published again.

use crate::tracker::Tracker;
use crate::tracker::change::{ChangeKind, SwarmChange};
use crate::tracker::peer_set::Origin;
use crate::tracker::swarm::{PeerEffect, PeerUpdate};
use crate::tracker::table::{Download, PeerChange};

/// What applying one remote change did (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// The table changed (a peer added, refreshed, moved or removed; a
    /// download counted).
    Applied,
    /// A removal of a peer that is local here (it moved here), or of one
    /// not here at all; or a torrent the access rules refuse.
    Ignored,
}

/// Apply `change` (made at another node) at tracker time `now`.
pub fn apply_remote(tracker: &Tracker, change: &SwarmChange, now: u32) -> RemoteOutcome {
    let hash = &change.info_hash;
    if !tracker.rules().permits(hash) {
        return RemoteOutcome::Ignored;
    }
    let h = *tracker.table().addr_hasher();
    let mut shard = tracker.table().lock(hash);
    let update = match change.kind {
        ChangeKind::Seeder => PeerUpdate::Seeder,
        ChangeKind::Leecher => PeerUpdate::Leecher,
        ChangeKind::Completed => PeerUpdate::ReadOnly,
        ChangeKind::Stopped | ChangeKind::Expired => {
            let here = shard.peer(hash, &change.addr, now, &h);
            if here.is_none_or(|p| p.origin == Origin::Local) {
                return RemoteOutcome::Ignored;
            }
            PeerUpdate::Remove
        }
    };
    let c = PeerChange {
        addr: change.addr,
        update,
        now,
        min_age: 0,
        origin: Origin::Remote,
        // The node that made the change counted the download once.
        download: if change.completed {
            Download::Always
        } else {
            Download::Never
        },
    };
    let (applied, ()) = shard.apply(hash, &c, &h, |_| ());
    if applied.effect == PeerEffect::Untouched && !applied.counted_download {
        RemoteOutcome::Ignored
    } else {
        RemoteOutcome::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, InfoHash, PeerId};
    use crate::tracker::announce::{AnnounceParams, AnnouncePolicy};
    use crate::tracker::change::PublishPolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::{PeerAddr, SwarmTable};

    fn tracker() -> Tracker {
        Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(4, [1, 2]),
            ConnectionIdIssuer::new([0; 16]),
        )
        .with_publish(PublishPolicy {
            refresh_interval: 1200,
        })
    }

    const HASH: InfoHash = InfoHash([5; 20]);
    const PEER: PeerAddr = PeerAddr::V4([10, 0, 0, 9, 0x1a, 0xe1]);

    fn remote(kind: ChangeKind, completed: bool) -> SwarmChange {
        SwarmChange {
            info_hash: HASH,
            addr: PEER,
            kind,
            completed,
        }
    }

    fn local_announce(t: &Tracker, event: Event, now: u32) -> Option<SwarmChange> {
        let p = AnnounceParams {
            info_hash: HASH,
            peer_id: PeerId([1; 20]),
            ip: "10.0.0.9".parse().unwrap(),
            port: 6881,
            event,
            left: 0,
            uploaded: 0,
            downloaded: 0,
            numwant: 10,
            picks: Default::default(),
            both_families: false,
        };
        t.announce(&p, now, &mut [0; 1200]).unwrap().change
    }

    fn origin(t: &Tracker, now: u32) -> Option<Origin> {
        let h = *t.table().addr_hasher();
        t.table()
            .lock(&HASH)
            .peer(&HASH, &PEER, now, &h)
            .map(|p| p.origin)
    }

    #[test]
    fn remote_peers_are_served_counted_and_removed() {
        let t = tracker();
        let added = apply_remote(&t, &remote(ChangeKind::Seeder, true), 10);
        assert_eq!(added, RemoteOutcome::Applied);
        assert_eq!(origin(&t, 10), Some(Origin::Remote));
        let counts = t.scrape(&HASH);
        assert_eq!((counts.seeders, counts.completed), (1, 1));
        // A completion without a stored peer still counts.
        apply_remote(&t, &remote(ChangeKind::Completed, true), 11);
        assert_eq!(t.scrape(&HASH).completed, 2);
        let stopped = apply_remote(&t, &remote(ChangeKind::Stopped, false), 12);
        assert_eq!(stopped, RemoteOutcome::Applied);
        assert_eq!(origin(&t, 12), None);
        assert_eq!(
            apply_remote(&t, &remote(ChangeKind::Expired, false), 13),
            RemoteOutcome::Ignored
        );
    }

    #[test]
    fn a_peer_that_moved_here_is_not_deleted_by_a_late_removal() {
        let t = tracker();
        apply_remote(&t, &remote(ChangeKind::Leecher, false), 10);
        // It announces here now: published (ours now), local.
        let published = local_announce(&t, Event::None, 20).expect("taken over");
        assert_eq!(published.kind, ChangeKind::Seeder);
        assert_eq!(origin(&t, 20), Some(Origin::Local));
        // The node it left expires it later: ignored here.
        let late = apply_remote(&t, &remote(ChangeKind::Expired, false), 4000);
        assert_eq!(late, RemoteOutcome::Ignored);
        assert_eq!(origin(&t, 4000), Some(Origin::Local));
        // An unchanged local refresh soon after publishes nothing.
        assert_eq!(local_announce(&t, Event::None, 25), None);
        // And it moves away again when another node says it announced there.
        apply_remote(&t, &remote(ChangeKind::Seeder, false), 30);
        assert_eq!(origin(&t, 30), Some(Origin::Remote));
    }

    #[test]
    fn only_local_expiries_are_published() {
        let t = tracker();
        local_announce(&t, Event::Started, 0);
        let other = InfoHash([6; 20]);
        let c = SwarmChange {
            info_hash: other,
            ..remote(ChangeKind::Leecher, false)
        };
        apply_remote(&t, &c, 0);
        let mut expired = Vec::new();
        let gone = t.sweep(4, 4000, |c| expired.push(c));
        assert_eq!(gone, 2);
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].info_hash, expired[0].kind),
            (HASH, ChangeKind::Expired)
        );
    }
}
