//! The UDP request handler on a sequence of datagrams from a few sources,
//! with its invariants: no reply without a valid connection id (other than
//! a connect's), no reply larger than its request unless the connection id
//! was valid (no amplification for a spoofed source), and every reply is a
//! well-formed BEP 15 packet answering the request's transaction id.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use ringtracker::engine::udp::{REPLY_BUFFER_LEN, UdpOutcome, handle_datagram};
use ringtracker::tracker::Tracker;
use ringtracker::tracker::access::AccessRules;
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::swarm::Picks;
use ringtracker::tracker::table::SwarmTable;

fuzz_target!(|data: &[u8]| {
    let tracker = Tracker::new(
        AnnouncePolicy::default(),
        SwarmTable::new(4, [1, 2]),
        ConnectionIdIssuer::new([3; 16]),
    );
    let rules = AccessRules::default();
    let mut out = vec![0u8; REPLY_BUFFER_LEN];
    let mut rest = data;
    let mut now = 100u32;
    // Each record: flags, source, length, that many bytes.
    while let [flags, source, len, tail @ ..] = rest {
        let n = (*len as usize * 8).min(tail.len());
        let mut packet = tail[..n].to_vec();
        rest = &tail[n..];
        let ip: IpAddr = if source & 1 == 0 {
            [127, 0, 0, source >> 1].into()
        } else {
            format!("::1:{source}").parse().unwrap()
        };
        let src = SocketAddr::new(ip, 6881);
        now += u32::from(*flags >> 4);
        // Let the fuzzer past the connection id check when it asks to.
        if *flags & 1 == 1 && packet.len() >= 8 {
            let id = tracker.connection_ids().issue(ip, now);
            packet[..8].copy_from_slice(&id.to_be_bytes());
        }
        let picks = Picks {
            leechers: u32::from(*flags).wrapping_mul(0x9e37_79b9),
            seeders: u32::from(*source).wrapping_mul(0x85eb_ca6b),
            interval: u32::from(*flags ^ *source).wrapping_mul(0xc2b2_ae35),
        };
        let outcome = handle_datagram(&tracker, &rules, &packet, src, now, picks, &mut out);
        if let UdpOutcome::Reply { len, .. } = outcome {
            check_reply(&tracker, &packet, &out[..len], ip, now);
        }
    }
});

fn check_reply(tracker: &Tracker, request: &[u8], reply: &[u8], ip: IpAddr, now: u32) {
    assert!(
        request.len() >= 16,
        "a reply to a datagram shorter than a header"
    );
    let cid = u64::from_be_bytes(request[..8].try_into().unwrap());
    let action = u32::from_be_bytes(reply[..4].try_into().unwrap());
    assert_eq!(reply[4..8], request[12..16], "the request's transaction id");
    let authenticated = tracker.connection_ids().is_valid(cid, ip, now);
    if action != 0 {
        assert!(authenticated, "a reply without a valid connection id");
    }
    assert!(
        reply.len() <= request.len() || authenticated,
        "a {}-byte reply to an unauthenticated {}-byte request",
        reply.len(),
        request.len()
    );
    let peer_len = if ip.is_ipv4() { 6 } else { 18 };
    match action {
        0 => assert_eq!(reply.len(), 16),
        1 => assert!(reply.len() >= 20 && (reply.len() - 20) % peer_len == 0),
        2 => assert!(reply.len() >= 8 && (reply.len() - 8) % 12 == 0),
        3 => assert!(reply.len() >= 8 && std::str::from_utf8(&reply[8..]).is_ok()),
        a => panic!("unknown action {a} in a reply"),
    }
}
