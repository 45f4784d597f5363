//! The HTTP head parser, the endpoint split and the announce and scrape
//! query parsers: no panic, and a parsed head never claims more bytes than
//! it was given.
#![no_main]

use arrayvec::ArrayVec;
use libfuzzer_sys::fuzz_target;
use ringtracker::protocol::http::{self, Endpoint, MAX_HEAD_BYTES, MAX_SCRAPE_HASHES};

fuzz_target!(|buf: &[u8]| {
    if let Ok(Some(head)) = http::parse_head(buf) {
        assert!(head.len <= buf.len() && head.len <= MAX_HEAD_BYTES);
        let query = match http::endpoint(head.target) {
            Endpoint::Announce { query, .. } | Endpoint::Scrape { query, .. } => query,
            Endpoint::Unknown => head.target,
        };
        let _ = http::parse_announce(query);
        let mut hashes = ArrayVec::<_, MAX_SCRAPE_HASHES>::new();
        if http::parse_scrape(query, &mut hashes).is_ok() {
            assert!(
                hashes.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
        }
    }
    // The query parsers straight on the bytes too: most inputs are not
    // heads.
    let _ = http::parse_announce(buf);
    let mut hashes = ArrayVec::<_, MAX_SCRAPE_HASHES>::new();
    let _ = http::parse_scrape(buf, &mut hashes);
});
