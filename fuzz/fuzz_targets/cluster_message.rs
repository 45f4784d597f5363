//! Cluster mode's stream messages. Bytes as read from Redis are refused
//! by their tag (or, by a rare chance, parse); the same bytes tagged with
//! the key the target knows, as a key holder would write them, get past
//! the tag, and are then refused with an error or parse whole and apply,
//! change by change, to a real table as another node's changes, without a
//! panic; the count in the header is the count of changes read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtracker::cluster::apply::apply_remote;
use ringtracker::cluster::mac::{ClusterMac, Domain};
use ringtracker::cluster::message::Message;
use ringtracker::tracker::Tracker;
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::change::PublishPolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::table::SwarmTable;

fuzz_target!(|bytes: &[u8]| {
    let mac = ClusterMac::from_secret(&[7; 32]);
    let _ = Message::parse(bytes, &mac);
    let mut tagged = bytes.to_vec();
    tagged.extend_from_slice(&mac.tag(Domain::Message, &[bytes]));
    let Ok(message) = Message::parse(&tagged, &mac) else {
        return;
    };
    let tracker = Tracker::new(
        AnnouncePolicy::default(),
        SwarmTable::new(4, [1, 2]),
        ConnectionIdIssuer::new([0; 16]),
    )
    .with_publish(PublishPolicy {
        refresh_interval: 1200,
    });
    let mut n = 0;
    for change in message.changes() {
        apply_remote(&tracker, &change, n);
        n += 1;
    }
    assert_eq!(n, message.count);
    tracker.sweep(4, 100_000, |_| {});
});
