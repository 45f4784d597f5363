//! Private mode's credit journal as a replay reads it after a crash: any
//! bytes are walked record by record without a panic or an allocation
//! beyond what the bytes hold, and the good part never claims more bytes
//! than there are. First byte 0: the bytes as a file; else the harness
//! writes the header and frames the rest as one record with a correct
//! length and CRC-32, so mutations reach the record decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtracker::storage::database_journal::scan;

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let file = if mode == 0 {
        rest.to_vec()
    } else {
        let mut f = b"RTCREDJ1".to_vec();
        f.extend_from_slice(&(rest.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
        f.extend_from_slice(rest);
        f
    };
    let (records, good) = scan(&file);
    assert!(good <= file.len() as u64);
    assert!(records == 0 || good > 8);
});
