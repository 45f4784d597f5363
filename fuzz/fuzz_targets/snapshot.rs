//! The snapshot reader: any bytes are refused with an error or checked
//! and restored into a table without a panic.
//!
//! The first input byte picks the mode. 0: the rest is the file as is
//! (mostly refused by the checksum). Otherwise the rest is the file
//! without its trailer, and the harness appends a correct one (length and
//! CRC-32): mutations then reach the record decoder behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtracker::storage::snapshot::Snapshot;
use ringtracker::tracker::Tracker;
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::table::SwarmTable;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode != 0 {
        let len = bytes.len() as u64;
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    let path = std::path::Path::new("fuzz.snap");
    if let Ok(snapshot) = Snapshot::check(bytes, path) {
        let tracker = Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(4, [1, 2]),
            ConnectionIdIssuer::new([3; 16]),
        );
        snapshot.restore(&tracker, 0, 1_800_000_000);
    }
});
