//! The BEP 15 request parser and the BEP 41 option walk: no panic, and
//! what they return stays inside the packet.
#![no_main]

use arrayvec::ArrayVec;
use libfuzzer_sys::fuzz_target;
use ringtracker::protocol::udp::{self, MAX_URL_DATA, Request};

fuzz_target!(|packet: &[u8]| {
    let _ = udp::peek_announce(packet);
    match udp::parse_request(packet) {
        Ok(Request::Announce(a)) => {
            assert!(a.options.len() <= packet.len());
            let mut url = ArrayVec::<u8, MAX_URL_DATA>::new();
            let _ = udp::url_data(a.options, &mut url);
            assert!(url.len() <= MAX_URL_DATA);
        }
        Ok(Request::Scrape(s)) => {
            assert!(s.len() * 20 <= packet.len());
            assert_eq!(s.info_hashes().len(), s.len());
        }
        Ok(Request::Connect { .. }) | Err(_) => {}
    }
});
