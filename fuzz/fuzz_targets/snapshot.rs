//! The snapshot reader: any bytes are refused with an error or checked
//! and restored into a table without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtracker::storage::snapshot::Snapshot;
use ringtracker::tracker::Tracker;
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::table::SwarmTable;

fuzz_target!(|bytes: &[u8]| {
    let path = std::path::Path::new("fuzz.snap");
    if let Ok(snapshot) = Snapshot::check(bytes.to_vec(), path) {
        let tracker = Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(4, [1, 2]),
            ConnectionIdIssuer::new([3; 16]),
        );
        snapshot.restore(&tracker, 0, 1_800_000_000);
    }
});
